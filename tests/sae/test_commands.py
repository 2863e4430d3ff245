"""``sae train`` and ``sae eval`` end to end on a store harvested from a toy GPT-2."""

import json
import shutil
from pathlib import Path

import pytest

from sae.cli import main
from tests.sae.test_io import saelens_folder

HOOKS = ["blocks.0.hook_resid_post", "blocks.1.ln2.hook_normalized", "blocks.1.hook_mlp_out"]
SMALL_RUN = ["--d-sae", "128", "--tokens", "16k", "--batch-size", "512", "--set", "eval_tokens=2048",
             "--set", "eval_contexts=4", "--set", "context=32", "--set", "checkpoint_every=10"]


@pytest.fixture(scope="module")
def store(toy_gpt2_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("acts") / "acts"
    assert main(["harvest", "--model", toy_gpt2_dir, "--hooks", ",".join(HOOKS), "--tokens", "24k",
                 "--out", str(out), "--context", "32", "--dtype", "float32", "--no-progress"]) == 0
    return str(out)


@pytest.fixture(scope="module")
def sae_run(store, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "sweep"
    code = main(["train", "--acts", store, "--out", str(run), "--hook", HOOKS[0], "--k", "4,8", *SMALL_RUN])
    return run, code


def test_train_writes_the_run_folder(sae_run, capsys):
    run, code = sae_run
    assert code == 0
    names = sorted(p.name for p in (run / "saes").iterdir())
    assert names == [f"{HOOKS[0]}-topk-d128-k4", f"{HOOKS[0]}-topk-d128-k8"]
    for name in names:
        assert {p.name for p in (run / "saes" / name).iterdir()} == {"cfg.json", "sae_weights.safetensors",
                                                                    "sparsity.safetensors"}
    assert (run / "config.json").exists() and (run / "metrics.jsonl").stat().st_size > 0
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-00000032"]
    scores = json.loads((run / "eval.json").read_text())
    for name in names:
        assert scores[name]["fvu"] < 1.0 and scores[name]["l0"] <= scores[name]["k"]
        # splicing the SAE back in with its error term must reproduce the clean model
        assert scores[name]["ce_with_error"] == pytest.approx(scores[name]["ce_clean"], abs=1e-4)
        assert scores[name]["ce_zero"] != scores[name]["ce_clean"]


def test_eval_prints_a_table_for_several_saes(sae_run, store, tmp_path, capsys):
    run, _ = sae_run
    dirs = sorted(str(p) for p in (run / "saes").iterdir())
    out = tmp_path / "scores.json"
    assert main(["eval", *dirs, "--acts", store, "--tokens", "2048", "--contexts", "2", "--context", "32",
                 "--json", str(out)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["sae", "L0", "FVU", "expl.var"] and "CE rec." in table[0]
    assert len(table) == 3 and table[1].startswith(dirs[0])
    scores = json.loads(out.read_text())
    assert set(scores) == set(dirs) and all("ce_loss_recovered" in s for s in scores.values())



def test_eval_of_a_run_folder_scores_every_sae_in_it(sae_run, store, tmp_path, capsys):
    """`sae eval RUN` is `sae eval RUN/saes/*`: the same rows, the same scores."""
    run, _ = sae_run
    dirs = sorted(str(p) for p in (run / "saes").iterdir())
    flags = ["--acts", store, "--tokens", "2048", "--contexts", "0"]
    assert main(["eval", str(run), *flags, "--json", str(tmp_path / "run.json")]) == 0
    assert main(["eval", *dirs, *flags, "--json", str(tmp_path / "dirs.json")]) == 0
    assert json.loads((tmp_path / "run.json").read_text()) == json.loads((tmp_path / "dirs.json").read_text())
    assert len(json.loads((tmp_path / "run.json").read_text())) == 2
    capsys.readouterr()
    assert main(["eval", store, *flags]) == 2
    assert capsys.readouterr().err.strip().endswith("holds none; pass an SAE folder or a `sae train` run folder")


def test_inspect_summarises_a_run_folder_and_refuses_broken_weights(sae_run, tmp_path, capsys):
    """`sae inspect RUN` loads every SAE and prints one row each, with the run's eval.json
    scores; NaN weights and a folder that is neither a store nor SAEs are one-line errors."""
    from safetensors.torch import load_file, save_file
    run, _ = sae_run
    scores = json.loads((run / "eval.json").read_text())
    assert main(["inspect", str(run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"2 SAEs in {run}; weights loaded and finite"
    assert lines[1].split()[:3] == ["sae", "hooks", "architecture"]
    for line, name in zip(lines[2:], sorted(scores), strict=True):
        cells = line.split()
        assert cells[:3] == [name, HOOKS[0], "topk"] and cells[4] == str(scores[name]["k"])
        assert cells[6:8] == [f"{scores[name]['l0']:.1f}", f"{scores[name]['fvu']:.4f}"]
    broken = tmp_path / "broken"
    shutil.copytree(run / "saes" / sorted(scores)[0], broken)
    weights = load_file(broken / "sae_weights.safetensors")
    weights["W_dec"][3, 1] = float("nan")
    save_file(weights, broken / "sae_weights.safetensors")
    assert main(["inspect", str(broken)]) == 2
    assert "contain NaN or inf (W_dec); train it again" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["inspect", str(tmp_path / "empty")]) == 2
    assert "is neither an activation store (no manifest.json) nor an SAE folder" in capsys.readouterr().err

def test_transcoder_with_skip_from_the_command_line(store, tmp_path):
    run = tmp_path / "tc"
    assert main(["train", "--acts", store, "--out", str(run), "--hook", HOOKS[1], "--hook-out", HOOKS[2],
                 "--set", "skip=true", "--k", "8", *SMALL_RUN]) == 0
    (scores,) = json.loads((run / "eval.json").read_text()).values()
    assert scores["hook_out"] == HOOKS[2] and scores["fvu"] < 1.0
    assert scores["ce_with_error"] == pytest.approx(scores["ce_clean"], abs=1e-4)
    cfg = json.loads(next((run / "saes").iterdir()).joinpath("cfg.json").read_text())
    assert cfg["hook_name_out"] == HOOKS[2] and cfg["d_out"] == 64


@pytest.mark.parametrize("flags, message", [
    (["--architecture", "sparsemax"], "unknown architecture 'sparsemax'; valid architectures: relu, topk"),
    (["--k", "500"], "k = 500 must be between 1 and d_sae = 128"),
    (["--set", "lrr=0.1"], "unknown config field 'lrr'; valid fields:"),
    (["--set", "d_in=100"], "d_in = 100 in the config does not match the width 64"),
    (["--hook", "blocks.1.hook_resid_post"], "the activations have no hook blocks.1.hook_resid_post"),
    (["--tokens", "0"], "config field 'tokens' must be positive, got 0; change it in the config or with --set"),
    (["--batch-size", "-4"], "'batch_size' must be positive, got -4"),
    (["--lr", "-1"], "'lr' must be 0 or more, got -1.0"),
    (["--lr", "nan"], "'lr' must be 0 or more, got nan"),
    (["--set", "beta1=1"], "'beta1' must be at least 0 and below 1, got 1.0"),
    (["--set", "beta2=-0.5"], "'beta2' must be at least 0 and below 1"),
    (["--set", "log_every=0"], "'log_every' must be positive"),
    (["--set", "expansion_factor=0"], "'expansion_factor' must be positive"),
    (["--d-sae", "-4"], "'d_sae' must be 0 or more"),
    (["--set", "eval_tokens=0"], "'eval_tokens' must be positive"),
    (["--set", "threshold_momentum=1"], "'threshold_momentum' must be at least 0 and below 1"),
    (["--target-l0", "-1"], "'target_l0' must be 0 or more"),
    (["--set", "warmup_steps=-1"], "'warmup_steps' must be 0 or more"),
    (["--set", "decay_fraction=1.5"], "'decay_fraction' must be between 0 and 1"),
    (["--set", "dead_window=0"], "'dead_window' must be positive"),
    (["--set", "checkpoint_every=-1"], "'checkpoint_every' must be 0 or more"),
    (["--set", "auxk_k=-1"], "'auxk_k' must be 0 or more"),
    (["--set", "grad_clip=inf"], "'grad_clip' must be 0 or more, got inf"),
    (["--set", 'matryoshka_prefixes=["a", 128]'], "matryoshka_prefixes ['a', 128] must be positive whole numbers"),
    (["--set", "matryoshka_prefixes=[1.5, 128]"], "matryoshka_prefixes [1.5, 128] must be positive whole numbers"),
    (["--acts", "", "--model", "{toy}", "--set", "context=100"], "context = 100 is longer than model"),
    (["--model", "gpt2"], "was harvested from model"),
])
def test_bad_input_is_one_clear_line(store, toy_gpt2_dir, tmp_path, capsys, flags, message):
    flags = [flag.format(toy=toy_gpt2_dir) for flag in flags]
    args = ["train", "--acts", store, "--out", str(tmp_path / "bad"), "--hook", HOOKS[0], *SMALL_RUN, *flags]
    assert main(args) == 2
    one_error_line(capsys, message)
    assert not (tmp_path / "bad").exists()


def test_resume_reads_the_runs_own_config(sae_run, capsys):
    run, _ = sae_run
    before = json.loads((run / "eval.json").read_text())
    assert main(["train", "--out", str(run), "--resume"]) == 0  # already finished: re-exports the same coders
    after = json.loads((run / "eval.json").read_text())
    assert {n: s["fvu"] for n, s in after.items()} == pytest.approx({n: s["fvu"] for n, s in before.items()})
    assert main(["train", "--out", str(run), "--resume", "--k", "3"]) == 2
    assert "pass only --out" in capsys.readouterr().err


def test_eval_refuses_activations_of_another_width(store, tmp_path, capsys):
    saelens_folder(tmp_path / "sae", "standard")  # d_in 16, hook blocks.3.hook_resid_pre
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    cfg["metadata"].update(hook_name=HOOKS[0], model_name=None)  # a model mismatch would be refused first
    (tmp_path / "sae" / "cfg.json").write_text(json.dumps(cfg))
    assert main(["eval", str(tmp_path / "sae"), "--acts", store, "--contexts", "0"]) == 2
    assert "expects width 16 at blocks.0.hook_resid_post but the activations have 64" in capsys.readouterr().err


def one_error_line(capsys, message: str) -> None:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1, err


def copy_run(run: Path, to: Path, drop: tuple[str, ...] = ()) -> Path:
    shutil.copytree(run, to, ignore=shutil.ignore_patterns(*drop))
    return to


def checkpoint_of(run: Path) -> Path:
    return next((run / "checkpoints").glob("step-*"))


def own_project(folder: Path) -> None:
    """Replace ``folder`` with a user's own files named like a run's."""
    shutil.rmtree(folder)
    folder.mkdir()
    for name in ("config.json", "metrics.jsonl", "eval.json"):
        (folder / name).write_text('{"mine": 1}\n')


@pytest.mark.parametrize("damage, message", [
    (lambda run: own_project(run), "is not an unfinished run of this config"),
    (lambda run: shutil.rmtree(run / "checkpoints"), "is not an unfinished run of this config"),
    (lambda run: (checkpoint_of(run) / "trainer.json").write_text(""), "trainer.json is missing or damaged"),
    (lambda run: (checkpoint_of(run) / "rng.safetensors").unlink(), "rng.safetensors is missing or damaged"),
    (lambda run: [p.unlink() for p in checkpoint_of(run).iterdir()], "trainer.json is missing or damaged"),
    (lambda run: (run / "metrics.jsonl").write_text("garbage\n"), "metrics.jsonl has a damaged line"),
    (lambda run: [p.write_bytes(p.read_bytes()[:100]) for p in checkpoint_of(run).glob("*k4.safetensors")],
     "topk-d128-k4.safetensors is missing or damaged"),
])
def test_train_keeps_foreign_and_damaged_run_folders(sae_run, store, tmp_path, capsys, damage, message):
    run = copy_run(sae_run[0], tmp_path / "run")
    damage(run)
    resume = "damaged" in message
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    args = ["--resume"] if resume else ["--acts", store, "--hook", HOOKS[0], "--k", "4,8", *SMALL_RUN]
    assert main(["train", "--out", str(run), *args]) == 2
    one_error_line(capsys, message)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_an_unfinished_run_of_the_same_config_starts_over(sae_run, store, tmp_path):
    run = copy_run(sae_run[0], tmp_path / "run", drop=("checkpoints", "saes", "eval.json"))
    assert main(["train", "--out", str(run), "--acts", store, "--hook", HOOKS[0], "--k", "4,8", *SMALL_RUN]) == 0
    assert (run / "eval.json").exists()


def test_resume_writes_into_the_given_folder(sae_run, tmp_path, capsys):
    original = sae_run[0] / "eval.json"
    stamp = original.stat().st_mtime_ns
    run = copy_run(sae_run[0], tmp_path / "moved", drop=("eval.json",))
    assert main(["train", "--out", str(run), "--resume"]) == 0
    assert f"run folder: {run}" in capsys.readouterr().out
    assert (run / "eval.json").exists() and original.stat().st_mtime_ns == stamp


@pytest.mark.parametrize("prepare, message", [
    (lambda out: None, "does not exist; check --out, or start the run without --resume"),
    (lambda out: out.mkdir(), "holds no config.json, so it is not a run folder"),
    (lambda out: (out.mkdir(), (out / "config.json").write_text("{}")), "nothing to resume"),
])
def test_resume_needs_a_run_folder(tmp_path, capsys, prepare, message):
    prepare(tmp_path / "run")
    assert main(["train", "--out", str(tmp_path / "run"), "--resume"]) == 2
    one_error_line(capsys, message)


@pytest.mark.parametrize("verb, message", [
    (["train", "--out", "{file}/run", "--acts", "{store}", "--hook", HOOKS[0], *SMALL_RUN],
     "error: Not a directory: '{file}/run'"),
    (["train", "--out", "{file}", "--acts", "{store}", "--hook", HOOKS[0], *SMALL_RUN],
     "run folder {file} is a file; choose another --out"),
    (["eval", "{sae}", "--acts", "{store}", "--contexts", "0", "--tokens", "1024", "--json", "{tmp}/no/x.json"],
     "error: No such file or directory: '{tmp}/no/x.json'"),
])
def test_file_system_errors_are_one_line(sae_run, store, tmp_path, capsys, verb, message):
    (tmp_path / "afile").write_text("mine")
    names = {"file": str(tmp_path / "afile"), "store": store, "tmp": str(tmp_path),
             "sae": str(next((sae_run[0] / "saes").iterdir()))}
    assert main([arg.format(**names) for arg in verb]) == 2
    one_error_line(capsys, message.format(**names))
    assert (tmp_path / "afile").read_text() == "mine"


def with_model(sae_dir: Path, to: Path, model: str) -> str:
    shutil.copytree(sae_dir, to)
    cfg = json.loads((to / "cfg.json").read_text())
    cfg["metadata"]["model_name"] = model
    (to / "cfg.json").write_text(json.dumps(cfg))
    return str(to)


@pytest.mark.parametrize("models, flags, message", [
    (["gpt2"], [], "was harvested from model"),
    (["gpt2", None], [], "the SAEs come from different models"),
    ([None], ["--model", "gpt2"], "--model gpt2 is not the model the SAEs were trained on"),
    ([None], ["--tokens", "-5"], "--tokens must be positive, got -5"),
    ([None], ["--batch-size", "-1"], "--batch-size must be positive, got -1"),
    ([None], ["--batch-size", "0"], "--batch-size must be positive, got 0"),
    ([None], ["--dense-threshold", "nan"], "--dense-threshold must be between 0 and 1, got nan"),
    ([None], ["--contexts", "1", "--context", "100"], "context = 100 is longer than model"),
])
def test_eval_refuses_other_models_and_bad_numbers(sae_run, store, tmp_path, capsys, models, flags, message):
    """SAEs of another model than the store's, of several models, or a --model other than
    theirs; or a number no evaluation can use. Models None: the SAE's own."""
    sae_dir = next((sae_run[0] / "saes").iterdir())
    own = json.loads((sae_dir / "cfg.json").read_text())["metadata"]["model_name"]
    dirs = [with_model(sae_dir, tmp_path / f"sae{i}", model or own) for i, model in enumerate(models)]
    assert main(["eval", *dirs, "--acts", store, "--contexts", "0", "--json", str(tmp_path / "x.json"), *flags]) == 2
    one_error_line(capsys, message)
    assert not (tmp_path / "x.json").exists()


def test_version_names_the_installed_package(capsys):
    from importlib.metadata import version
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"sae-toolkit {version('sae-toolkit')}"


@pytest.mark.parametrize("argv, message", [
    (["train", "--tokens", "abc"], "error: sae train: argument --tokens: 'abc' is not a count"),
    (["bogus"], "error: sae: argument VERB: invalid choice: 'bogus'"),
    (["eval", "--batch-size"], "error: sae eval: argument --batch-size: expected one argument"),
])
def test_a_malformed_command_line_is_one_line(capsys, argv, message):
    """argparse's own errors too: one line naming the verb and its --help, no usage block."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and "usage:" not in err, err
