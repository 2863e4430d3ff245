"""Data-parallel training under torchrun (2 ranks, gloo) against one process with the same
global batch: the same weights within float tolerance."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from sae.cli import main

REPO = Path(__file__).resolve().parents[2]
HOOK = "blocks.0.hook_resid_post"
RUN = ["--hook", HOOK, "--architecture", "topk,relu,jumprelu", "--d-sae", "128", "--k", "8", "--tokens", "12k",
       "--batch-size", "512", "--set", "eval_tokens=1024", "--set", "eval_contexts=0", "--set", "context=32",
       "--set", "checkpoint_every=0", "--set", "dead_window=2048", "--device", "cpu"]


@pytest.fixture(scope="module")
def store(toy_gpt2_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("acts") / "acts"
    assert main(["harvest", "--model", toy_gpt2_dir, "--hooks", HOOK, "--tokens", "16k", "--out", str(out),
                 "--context", "32", "--dtype", "float32", "--no-progress"]) == 0
    return str(out)


def _weights(run: Path) -> dict[str, dict]:
    return {folder.name: load_file(folder / "sae_weights.safetensors") for folder in (run / "saes").iterdir()}


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29541",
               "-m", "sae", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_two_ranks_match_one_process_with_the_same_global_batch(store, tmp_path):
    assert main(["train", "--acts", store, "--out", str(tmp_path / "single"), *RUN]) == 0
    result = _torchrun("train", "--acts", store, "--out", str(tmp_path / "ddp"), *RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    single, ddp = _weights(tmp_path / "single"), _weights(tmp_path / "ddp")
    assert sorted(single) == sorted(ddp) and len(single) == 3
    # Summation order differs (two single-threaded ranks vs one two-threaded process), and Adam
    # turns those last-bit differences into visible ones where a gradient is near zero (the
    # over-penalised ReLU here): 1.8e-4 was seen once, so the bound is 5e-4, still 20 times
    # below what training on another batch changes (checked below).
    for name in single:
        for key, value in single[name].items():
            diff = (value - ddp[name][key]).abs().max().item()
            assert diff < 5e-4 * max(1.0, value.abs().max().item()), (name, key, diff)
    # each rank sees 256 rows: training on 256-row batches alone gives clearly other weights
    local = [*RUN[:RUN.index("--batch-size")], "--batch-size", "256", *RUN[RUN.index("--batch-size") + 2:],
             "--tokens", "6k"]
    assert main(["train", "--acts", store, "--out", str(tmp_path / "local"), *local]) == 0
    for name, weights in _weights(tmp_path / "local").items():
        same_batch = (single[name]["W_dec"] - ddp[name]["W_dec"]).abs().max()
        assert (weights["W_dec"] - ddp[name]["W_dec"]).abs().max() > 20 * same_batch, name
    assert (tmp_path / "ddp" / "metrics.jsonl").stat().st_size > 0


def test_batch_that_does_not_split_over_ranks_is_refused(store, tmp_path):
    result = _torchrun("train", "--acts", store, "--out", str(tmp_path / "odd"), *RUN[:-2], "--device", "cpu",
                       "--batch-size", "511")
    assert result.returncode != 0
    assert "batch_size 511 does not split evenly over 2 processes" in result.stderr
