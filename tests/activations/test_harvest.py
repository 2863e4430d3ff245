import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from activations.data import DatasetSpec, TokenData
from activations.errors import ToolkitError
from activations.harvest import HarvestConfig, harvest
from activations.models import load_model
from activations.store import ActivationStore, StoreSource

HOOKS = ["blocks.0.hook_resid_post", "blocks.1.hook_mlp_out"]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "docs.txt"
    path.write_text("\n\n".join(f"the cat sat on mat {i} and the dog ran {i * 7 % 13} times" for i in range(400)))
    return str(path)


def _cfg(model_dir, text_file, out, **kw):
    base = dict(model=model_dir, hooks=HOOKS, tokens=6000, out=str(out), dataset=text_file, context=32,
                shard_tokens=1024, batch_contexts=8, progress=False, device="cpu")
    return HarvestConfig(**{**base, **kw})


def _cli(*args, **kw):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "sae", *args], capture_output=True, text=True, env=env, **kw)


def _shard_hashes(folder):
    manifest = json.loads((Path(folder) / "manifest.json").read_text())
    return {s["file"]: s["sha256"] for s in manifest["shards"]}


def test_store_rows_equal_model_activations(toy_gpt2_dir, text_file, tmp_path):
    out = harvest(_cfg(toy_gpt2_dir, text_file, tmp_path / "a", dtype="float32"))
    store = ActivationStore(out)
    manifest = store.manifest
    assert manifest["complete"] and store.n_tokens == manifest["n_contexts"] * 32 >= 6000
    model = load_model(toy_gpt2_dir, device="cpu")
    tokens = TokenData(DatasetSpec(text_file, 0, 32), model.tokenizer).contexts(manifest["n_contexts"])
    acts = model.capture(tokens, HOOKS)
    for hook in HOOKS:
        flat = acts[hook].reshape(-1, 64)
        torch.testing.assert_close(store.rows(hook, torch.arange(store.n_tokens)), flat, rtol=0, atol=1e-6)
        mean = flat.double().mean(0)
        torch.testing.assert_close(store.mean(hook).double(), mean, rtol=1e-4, atol=1e-6)
        assert abs(manifest["stats"][hook]["mean_norm"] - flat.norm(dim=-1).mean().item()) < 1e-4
    shard = store.shard(1)
    first = manifest["contexts_per_shard"]
    assert shard["sequence_ids"][0].item() == first and shard["positions"][:3].tolist() == [0, 1, 2]
    assert shard["token_ids"].tolist() == tokens[first:2 * first].reshape(-1).tolist()


def test_exclude_bos_and_half_precision(toy_gpt2_dir, text_file, tmp_path):
    out = harvest(_cfg(toy_gpt2_dir, text_file, tmp_path / "b", exclude_bos=True, dtype="bfloat16"))
    store = ActivationStore(out)
    shard = store.shard(0)
    assert shard[HOOKS[0]].dtype == torch.bfloat16
    assert (shard["positions"] != 0).all() and (shard["token_ids"] != 0).all()
    contexts = TokenData(DatasetSpec(text_file, 0, 32), load_model(toy_gpt2_dir).tokenizer).contexts(
        store.manifest["n_contexts"])
    assert store.n_tokens == int((contexts != 0).sum()) < contexts.numel()


def test_kill9_then_resume_is_byte_identical(toy_gpt2_dir, text_file, tmp_path):
    args = ["harvest", "--model", toy_gpt2_dir, "--hooks", ",".join(HOOKS), "--dataset", text_file,
            "--context", "32", "--tokens", "60000", "--shard-tokens", "2048", "--batch-contexts", "1",
            "--device", "cpu", "--no-progress"]
    assert _cli(*args, "--out", str(tmp_path / "full")).returncode == 0
    killed = tmp_path / "killed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "sae", *args, "--out", str(killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        manifest = killed / "manifest.json"
        if manifest.is_file() and len(json.loads(manifest.read_text())["shards"]) >= 3:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = json.loads((killed / "manifest.json").read_text())
    assert not partial["complete"] and 3 <= len(partial["shards"]) < partial["n_shards"]
    refused = _cli(*args, "--out", str(killed))
    assert refused.returncode == 2 and "--resume" in refused.stderr
    assert _cli(*args, "--out", str(killed), "--resume").returncode == 0
    assert _shard_hashes(killed) == _shard_hashes(tmp_path / "full")
    for name in _shard_hashes(killed):
        assert (killed / name).read_bytes() == (tmp_path / "full" / name).read_bytes()


def test_existing_store_is_never_overwritten_unless_asked(toy_gpt2_dir, text_file, tmp_path):
    harvest(_cfg(toy_gpt2_dir, text_file, tmp_path / "c"))
    before = _shard_hashes(tmp_path / "c")
    with pytest.raises(ToolkitError, match=r"different activation store \(differs in .*dtype"):
        harvest(_cfg(toy_gpt2_dir, text_file, tmp_path / "c", dtype="float32"))
    assert _shard_hashes(tmp_path / "c") == before
    harvest(_cfg(toy_gpt2_dir, text_file, tmp_path / "c", dtype="float32", overwrite=True))
    assert ActivationStore(tmp_path / "c").manifest["dtype"] == "float32"
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine")
    with pytest.raises(ToolkitError, match="not empty"):
        harvest(_cfg(toy_gpt2_dir, text_file, tmp_path / "d"))
    with pytest.raises(ToolkitError, match="not part of an activation store"):
        harvest(_cfg(toy_gpt2_dir, text_file, tmp_path / "d", overwrite=True))
    assert (tmp_path / "d" / "notes.txt").read_text() == "mine"


def test_damaged_stores_give_one_line_errors_naming_the_file(toy_gpt2_dir, text_file, tmp_path):
    out = harvest(_cfg(toy_gpt2_dir, text_file, tmp_path / "e"))
    shard = out / "shard-000002.safetensors"
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF
    shard.write_bytes(bytes(data))
    result = _cli("inspect", str(out))
    assert result.returncode == 2
    assert result.stderr.strip() == result.stderr.strip().splitlines()[0]
    assert "shard-000002.safetensors" in result.stderr and "corrupt" in result.stderr
    shard.write_bytes(bytes(data[:-100]))
    result = _cli("inspect", str(out))
    assert result.returncode == 2 and "shard-000002.safetensors" in result.stderr and "truncated" in result.stderr
    (out / "manifest.json").unlink()
    result = _cli("inspect", str(out))
    assert result.returncode == 2 and "no manifest.json" in result.stderr


def test_unknown_hook_and_nan_are_refused(toy_gpt2_dir, text_file, tmp_path, monkeypatch):
    result = _cli("harvest", "--model", toy_gpt2_dir, "--hooks", "blocks.0.hook_resid_psot",
                  "--out", str(tmp_path / "f"), "--dataset", text_file)
    assert result.returncode == 2
    assert "unknown hook name 'blocks.0.hook_resid_psot'" in result.stderr and "blocks.{0..1}.hook_resid_post" in result.stderr
    model = load_model(toy_gpt2_dir, device="cpu")
    real = model.capture

    def poisoned(tokens, hooks):
        acts = real(tokens, hooks)
        acts[HOOKS[1]][0, 3, 5] = float("nan")
        return acts
    monkeypatch.setattr(model, "capture", poisoned)
    with pytest.raises(ToolkitError, match=r"activations of blocks.1.hook_mlp_out contain NaN or inf in shard-000000"):
        harvest(_cfg(toy_gpt2_dir, text_file, tmp_path / "g"), model=model)
    # the store was left incomplete, never marked complete
    assert not json.loads((tmp_path / "g" / "manifest.json").read_text())["complete"]


def test_store_refuses_other_model_and_missing_hook(toy_gpt2_dir, text_file, tmp_path):
    store = ActivationStore(harvest(_cfg(toy_gpt2_dir, text_file, tmp_path / "h")))
    with pytest.raises(ToolkitError, match="was harvested from model .* not 'gpt2'"):
        store.check_model("gpt2")
    store.check_model(toy_gpt2_dir + "/")  # the same folder, written another way
    with pytest.raises(ToolkitError, match="no hook 'blocks.1.hook_resid_post'; it holds"):
        store.check_hooks(["blocks.1.hook_resid_post"])


def test_store_source_shuffles_across_shards_and_covers_each_row(toy_gpt2_dir, text_file, tmp_path):
    out = harvest(_cfg(toy_gpt2_dir, text_file, tmp_path / "i", dtype="float32"))
    source = StoreSource(out, window=2)
    store = source.store
    n = store.n_tokens
    batches = list(source.batches(64, seed=5, epochs=1))
    assert all(b[HOOKS[0]].shape == (64, 64) for b in batches)
    seen = torch.cat([b[HOOKS[0]] for b in batches])
    everything = store.rows(HOOKS[0], torch.arange(n))
    # every served row is the stored row it claims to be, no row is served twice, almost all are served
    rows = lambda key: torch.cat([b[key] for b in batches])
    match = rows("sequence_ids") * 32 + rows("positions")
    torch.testing.assert_close(everything[match], seen)
    torch.testing.assert_close(store.rows(HOOKS[1], match), rows(HOOKS[1]))
    assert (store.rows(HOOKS[0], match) == seen).all()
    assert len(set(match.tolist())) == len(seen) >= n - 64
    assert (match[1:] - match[:-1]).abs().float().mean() > store.shards[0]["n_tokens"] / 4
    assert rows("token_ids").tolist() == [everything_tokens for everything_tokens in
                                          torch.cat([x["token_ids"] for x in store.iter_shards()])[match].tolist()]
    again = next(source.batches(64, seed=5, epochs=1))
    torch.testing.assert_close(again[HOOKS[0]], batches[0][HOOKS[0]])
    other = next(source.batches(64, seed=6, epochs=1))
    assert not torch.equal(other[HOOKS[0]], batches[0][HOOKS[0]])


def test_torchrun_two_ranks_make_the_same_store(toy_gpt2_dir, text_file, tmp_path):
    args = ["harvest", "--model", toy_gpt2_dir, "--hooks", ",".join(HOOKS), "--dataset", text_file,
            "--context", "32", "--tokens", "9000", "--shard-tokens", "1024", "--device", "cpu", "--no-progress"]
    assert _cli(*args, "--out", str(tmp_path / "single")).returncode == 0
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533"]
    result = subprocess.run([*torchrun, "-m", "sae", *args, "--out", str(tmp_path / "multi")],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not list((tmp_path / "multi").glob("progress-rank*.json"))
    single, multi = ActivationStore(tmp_path / "single"), ActivationStore(tmp_path / "multi")
    tokens = lambda s: sorted(zip(torch.cat([x["sequence_ids"] for x in s.iter_shards()]).tolist(),
                                  torch.cat([x["positions"] for x in s.iter_shards()]).tolist(),
                                  torch.cat([x["token_ids"] for x in s.iter_shards()]).tolist()))
    assert tokens(single) == tokens(multi)
    assert _shard_hashes(tmp_path / "single") == _shard_hashes(tmp_path / "multi")
    assert single.manifest["stats"] == multi.manifest["stats"]


def test_prefetched_keeps_order_and_raises_the_producers_error():
    from activations.harvest import prefetched
    assert list(prefetched(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield 1
        raise ValueError("corpus broke")
    got = []
    with pytest.raises(ValueError, match="corpus broke"):
        for item in prefetched(failing()):
            got.append(item)
    assert got == [1]


def test_shard_stats_match_float64_sums_and_refuse_any_non_finite_value():
    from activations.harvest import _shard_stats
    gen = torch.Generator().manual_seed(0)
    acts = torch.randn(4096, 24, generator=gen) * 30 + 5
    stats = _shard_stats("h", acts, "shard-x")
    x = acts.double()
    torch.testing.assert_close(stats["stats.h.sum"], x.sum(0), rtol=1e-6, atol=1e-3)
    assert float(stats["stats.h.sum_norm"]) == pytest.approx(float(x.norm(dim=-1).sum()), rel=1e-6)
    assert float(stats["stats.h.sum_sq_norm"]) == pytest.approx(float(x.square().sum()), rel=1e-6)
    for bad in (float("nan"), float("inf"), -float("inf")):
        broken = acts.clone()
        broken[1000, 7] = bad
        with pytest.raises(ToolkitError, match="contain NaN or inf in shard-x"):
            _shard_stats("h", broken, "shard-x")
    both = acts.clone()
    both[1, 3], both[2, 3] = float("inf"), -float("inf")  # cancel to NaN in the column sum
    with pytest.raises(ToolkitError, match="NaN or inf"):
        _shard_stats("h", both, "shard-x")
