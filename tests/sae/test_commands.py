"""``sae train`` and ``sae eval`` end to end on a store harvested from a toy GPT-2."""

import json
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
    (["--resume"], "nothing to resume"),
])
def test_bad_input_is_one_clear_line(store, tmp_path, capsys, flags, message):
    args = ["train", "--acts", store, "--out", str(tmp_path / "bad"), "--hook", HOOKS[0], *SMALL_RUN, *flags]
    if "--resume" in flags:
        args = ["train", "--out", str(tmp_path / "bad"), "--resume"]
        Path(tmp_path / "bad").mkdir()
        (tmp_path / "bad" / "config.json").write_text("{}")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


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
    cfg["metadata"]["hook_name"] = HOOKS[0]
    (tmp_path / "sae" / "cfg.json").write_text(json.dumps(cfg))
    assert main(["eval", str(tmp_path / "sae"), "--acts", store, "--contexts", "0"]) == 2
    assert "expects width 16 at blocks.0.hook_resid_post but the activations have 64" in capsys.readouterr().err
