"""Every notebook in notebooks/ runs top to bottom on the embedded model, and is stored
without outputs."""

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def execution_errors(notebook, folder: Path, monkeypatch) -> list:
    """Run ``notebook`` top to bottom in ``folder``; its error outputs. The kernel's temporary
    files (the notebooks' ``tempfile.mkdtemp`` work folders) go under ``folder`` too, so that
    pytest cleans them up with it."""
    from nbclient import NotebookClient
    monkeypatch.chdir(folder)
    monkeypatch.setenv("TMPDIR", str(folder))
    NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    return [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs if o.output_type == "error"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path):
    import nbformat
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    import nbformat
    notebook = nbformat.read(path, as_version=4)
    assert not execution_errors(notebook, tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def other_gpt2_dir(tmp_path_factory) -> str:
    """A GPT-2 checkpoint folder of another shape than tiny (4 layers, d_model 64, random
    weights), with tiny's tokenizer so that the behaviour datasets' answers are single tokens."""
    import shutil

    from activations.synthetic import build_gpt2_checkpoint
    folder = build_gpt2_checkpoint(tmp_path_factory.mktemp("other_gpt2"), n_layer=4, n_embd=64, n_head=4,
                                   n_positions=128, vocab=4096)
    checkpoint = Path(__file__).resolve().parents[1] / "activations" / "tiny" / "checkpoint"
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(checkpoint / name, Path(folder) / name)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_follows_another_gpt2_by_changing_the_model_name(path, other_gpt2_dir, tmp_path, monkeypatch):
    """What a user does to follow a notebook on GPT-2: change the one MODEL line. Real GPT-2
    weights cannot be fetched here, so the model is a local GPT-2 folder of another shape;
    every hook, width and layer count must come from the model, not from tiny."""
    import nbformat
    notebook = nbformat.read(path, as_version=4)
    cells = [c for c in notebook.cells if c.cell_type == "code" and 'MODEL = "tiny"' in c.source]
    assert len(cells) == 1, "each notebook sets MODEL in exactly one place"
    cells[0].source = cells[0].source.replace('MODEL = "tiny"', f"MODEL = {other_gpt2_dir!r}")
    assert not execution_errors(notebook, tmp_path, monkeypatch)
