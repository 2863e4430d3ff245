"""Bad input to `sae harvest` / `sae inspect`: one `error: ...` line, exit 2, nothing lost or half-written."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from activations.errors import ToolkitError
from activations.harvest import HarvestConfig, harvest
from sae.cli import main

HOOKS = "blocks.0.hook_resid_post,blocks.1.hook_mlp_out"


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "docs.txt"
    path.write_text("\n\n".join(f"the cat sat on mat {i} and the dog ran {i * 3 % 7} times" for i in range(200)))
    return str(path)


def _harvest_args(model_dir, text_file, out, *extra):
    return ["harvest", "--model", model_dir, "--hooks", HOOKS, "--dataset", text_file, "--context", "32",
            "--tokens", "2000", "--shard-tokens", "1024", "--batch-contexts", "8", "--device", "cpu",
            "--no-progress", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def complete_store(toy_gpt2_dir, text_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("store") / "acts"
    assert main(_harvest_args(toy_gpt2_dir, text_file, out)) == 0
    return out


def _snapshot(folder: Path) -> dict | None:
    """Every file under ``folder`` with its bytes; None when the folder does not exist."""
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _fails_with_one_line(capsys, args: list[str], pattern: str) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert re.search(pattern, err), err
    return err


def _write_bad_inputs(folder: Path) -> dict[str, Path]:
    files = {"bad.jsonl": '{"text": "fine"}\nnot json\n', "other_field.jsonl": '{"body": "x"}\n', "empty.txt": "\n\n",
             "latin1.txt": "caf\xe9 au lait\n", "fake.parquet": "not a parquet file"}
    paths = {}
    for name, text in files.items():
        paths[name] = folder / name
        paths[name].write_bytes(text.encode("latin-1"))
    return paths


# --dataset, with {dir} for the folder of bad dataset files -> what the error line must say
BAD_DATASETS = {
    "{dir}/missing.txt": r"missing.txt' does not exist",
    "{dir}/bad.jsonl": r"bad.jsonl:2 is not a JSON object",
    "{dir}/other_field.jsonl": r"other_field.jsonl:1 .*'text' field",
    "{dir}/empty.txt": r"empty.txt' holds no text documents",
    "{dir}/latin1.txt": r"latin1.txt' is not UTF-8 text",
    "{dir}/fake.parquet": r"fake.parquet' is not a readable parquet file",
    "nobody/no-such-dataset": r"cannot open dataset 'nobody/no-such-dataset'",
}
BAD_HARVEST_INPUTS = (
    [(["--dataset", name], pattern) for name, pattern in BAD_DATASETS.items()]
    + [([flag, value], rf"{flag} must be positive, got {value}")
       for flag in ("--batch-contexts", "--shard-tokens") for value in ("0", "-1")]
    + [(["--context", "0"], r"context length 0 is outside 2\.\.64"),
       (["--device", "foo"], r"unknown device 'foo'; use auto, cpu, cuda, cuda:N or mps")])


@pytest.mark.parametrize("extra,pattern", BAD_HARVEST_INPUTS)
@pytest.mark.parametrize("target", ["new folder", "store with --overwrite"])
def test_bad_harvest_input_leaves_the_out_folder_as_it_was(toy_gpt2_dir, text_file, complete_store, tmp_path,
                                                             capsys, monkeypatch, extra, pattern, target):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    _write_bad_inputs(tmp_path)
    extra = [arg.replace("{dir}", str(tmp_path)) for arg in extra]
    out = tmp_path / "out"
    if target != "new folder":
        shutil.copytree(complete_store, out)
        extra.append("--overwrite")
    before = _snapshot(out)
    _fails_with_one_line(capsys, _harvest_args(toy_gpt2_dir, text_file, out, *extra), pattern)
    assert _snapshot(out) == before
    # and the same command with good input then succeeds
    good = [a for a in extra if a == "--overwrite"]
    assert main(_harvest_args(toy_gpt2_dir, text_file, out, *good)) == 0


@pytest.mark.parametrize("files", [["notes.tmp"], ["notes.tmp", "progress-rank0.json", "mine.txt"],
                                   ["manifest.json", "shard-000000.safetensors", "sub/"]])
def test_overwrite_refuses_a_folder_with_foreign_files_before_deleting_anything(
        toy_gpt2_dir, text_file, tmp_path, capsys, files):
    out = tmp_path / "out"
    out.mkdir()
    for name in files:
        (out / name).mkdir() if name.endswith("/") else (out / name).write_text(name)
    before = _snapshot(out)
    _fails_with_one_line(capsys, _harvest_args(toy_gpt2_dir, text_file, out, "--overwrite"),
                         r"holds files that are not part of an activation store")
    assert _snapshot(out) == before and (out / files[-1].rstrip("/")).exists()


def test_overwrite_replaces_a_store_with_its_own_temp_files_and_resume_keeps_foreign_ones(
        toy_gpt2_dir, text_file, complete_store, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(complete_store, out)
    for name in ("shard-000007.safetensors.tmp", "manifest.json.tmp", "progress-rank1.json.tmp"):
        (out / name).write_text("partial")
    assert main(_harvest_args(toy_gpt2_dir, text_file, out, "--overwrite")) == 0
    assert not list(out.glob("*.tmp"))
    (out / "shard-000000.safetensors.tmp").write_text("partial")
    (out / "notes.tmp").write_text("mine")
    assert main(_harvest_args(toy_gpt2_dir, text_file, out, "--resume")) == 0
    assert sorted(p.name for p in out.glob("*.tmp")) == ["notes.tmp"]


@pytest.mark.parametrize("count", ["inf", "-inf", "nan", "1e30", "2000G"])
def test_non_finite_and_absurd_token_counts_are_refused(tmp_path, capsys, count):
    with pytest.raises(SystemExit) as exit_info:
        main(["harvest", "--hooks", "blocks.0.hook_resid_post", "--out", str(tmp_path / "out"), f"--tokens={count}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert re.match(rf"error: sae harvest: argument --tokens: '{count.lower()}' is (not a count|more than)", err)
    assert err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()
    with pytest.raises(ToolkitError, match="--tokens must be between 1 and"):
        harvest(HarvestConfig(tokens=10**30, out=str(tmp_path / "out")))


def _truncate_weights(folder: Path) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


# how to break a copy of a good checkpoint folder -> what the error line must say
BAD_MODEL_FOLDERS = [
    (lambda d: (d / "config.json").unlink(), r"has no config.json, so it is not a HuggingFace checkpoint"),
    (lambda d: (d / "config.json").write_text("{broken"), r"config.json' is not a JSON object with a 'model_type'"),
    (lambda d: (d / "config.json").write_text("[]"), r"config.json' is not a JSON object with a 'model_type'"),
    (lambda d: (d / "model.safetensors").unlink(), r"holds no weights \(model.safetensors"),
    (_truncate_weights, r"cannot load model folder .*unreadable .safetensors weights"),
]


@pytest.mark.parametrize("damage,pattern", BAD_MODEL_FOLDERS)
def test_broken_local_model_folders_are_named(toy_gpt2_dir, text_file, tmp_path, capsys, damage, pattern):
    model = tmp_path / "model"
    shutil.copytree(toy_gpt2_dir, model)
    damage(model)
    args = _harvest_args(str(model), text_file, tmp_path / "out")
    err = _fails_with_one_line(capsys, args, pattern)
    assert "hf download" not in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("model", ["store", "store/manifest.json"])
def test_a_store_is_not_a_model(text_file, complete_store, tmp_path, capsys, model):
    model = str(complete_store) + model[len("store"):]
    _fails_with_one_line(capsys, _harvest_args(model, text_file, tmp_path / "out"),
                         r"(has no config.json|is a file; pass a HuggingFace checkpoint folder)")


def _drop(key):
    def edit(manifest):
        del manifest[key]
        return manifest
    return edit


def _drop_shard_file(manifest):
    del manifest["shards"][0]["file"]
    return manifest


# how to damage a complete store's manifest -> the field the error line must name
BAD_MANIFESTS = [
    (lambda m: [], r"holds a list, not a JSON object"),
    (lambda m: None, r"holds null, not a JSON object"),
    (_drop("stats"), r"field 'stats' is missing"),
    (_drop("shards"), r"field 'shards' is missing"),
    (_drop("n_shards"), r"field 'n_shards' is missing"),
    (lambda m: {**m, "hooks": "blocks.0.hook_resid_post"}, r"field 'hooks' is a string, not an object"),
    (_drop_shard_file, r"field 'shards\[0\].file' is missing"),
    (lambda m: {**m, "stats": {}}, r"field 'stats.blocks.0.hook_resid_post' is missing or not an object"),
]


@pytest.mark.parametrize("edit,pattern", BAD_MANIFESTS)
def test_damaged_manifest_names_the_field(complete_store, tmp_path, capsys, edit, pattern):
    store = tmp_path / "acts"
    shutil.copytree(complete_store, store)
    manifest = json.loads((store / "manifest.json").read_text())
    (store / "manifest.json").write_text(json.dumps(edit(manifest)))
    _fails_with_one_line(capsys, ["inspect", str(store)], rf"manifest.json' .*{pattern}")


def test_shard_of_unknown_dtype_is_named(complete_store, tmp_path, capsys):
    store = tmp_path / "acts"
    shutil.copytree(complete_store, store)
    save_file({"x": torch.zeros(4, dtype=torch.float8_e4m3fn)}, store / "shard-000001.safetensors")
    _fails_with_one_line(capsys, ["inspect", str(store)],
                         r"shard '.*shard-000001.safetensors' holds tensor 'x' of dtype F8_E4M3")


@pytest.mark.parametrize("journal,pattern", [("{broken", r"is not valid JSON"),
                                             ("[]", r"holds a list, not a JSON object"),
                                             ('{"records": []}', r"field 'shards' is missing"),
                                             ('{"shards": [{"index": 0}]}', r"field 'shards\[0\].file' is missing"),
                                             ('{"shards": [{"index": 0, "file": "shard-000000.safetensors", '
                                              '"n_tokens": 1, "sha256": "x"}]}', r"'shards\[0\].bytes' is missing")])
def test_damaged_resume_journal_is_named_and_kept(toy_gpt2_dir, text_file, complete_store, tmp_path, capsys,
                                                  journal, pattern):
    out = tmp_path / "acts"
    shutil.copytree(complete_store, out)
    (out / "progress-rank0.json").write_text(journal)
    _fails_with_one_line(capsys, _harvest_args(toy_gpt2_dir, text_file, out, "--resume"),
                         rf"progress-rank0.json' .*{pattern}")
    assert (out / "progress-rank0.json").read_text() == journal


def test_inspect_of_the_manifest_file_asks_for_the_folder(complete_store, capsys):
    _fails_with_one_line(capsys, ["inspect", str(complete_store / "manifest.json")],
                         rf"manifest.json' is a file; pass the activation store folder that holds manifest.json "
                         rf"\('{re.escape(str(complete_store))}'\)")
