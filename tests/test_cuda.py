"""The CUDA paths: harvesting on the GPU (issue 2, section 3) and bf16 autocast training with
pinned transfers (issue 3, section 2), each checked against the CPU run of the same thing.

These skip on a machine without a GPU, as CI's is. ``scripts/device_check.sh`` runs them on
one, with the GPU benchmarks; docs/benchmarks.md says what they measured there.
"""

from __future__ import annotations

import pytest
import torch

from activations.harvest import HarvestConfig, harvest
from activations.store import ActivationStore
from sae.config import load_config
from sae.metrics import fvu
from sae.trainer import Trainer
from tests.sae.synthetic import IN_HOOK, synthetic_source

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (scripts/device_check.sh runs these on one)")

HOOKS = ["blocks.1.hook_resid_post", "blocks.2.hook_mlp_out"]


def harvested(folder, device: str, model_dtype: str | None = None) -> dict[str, torch.Tensor]:
    harvest(HarvestConfig(model="tiny", hooks=HOOKS, tokens=16_384, out=str(folder), dtype="float32",
                          model_dtype=model_dtype, batch_contexts=16, shard_tokens=4096, progress=False,
                          device=device))
    shards = list(ActivationStore(folder).iter_shards())
    return {h: torch.cat([s[h] for s in shards]) for h in HOOKS}


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_cuda_harvest_matches_the_cpu_harvest(tmp_path):
    cpu, gpu = harvested(tmp_path / "cpu", "cpu"), harvested(tmp_path / "cuda", "cuda")
    for hook in HOOKS:
        assert gpu[hook].shape == cpu[hook].shape
        assert relative_error(gpu[hook], cpu[hook]) < 1e-4, hook


@pytest.mark.parametrize("model_dtype", ["float16", "bfloat16"])
def test_half_precision_harvest_stays_close_to_float32(tmp_path, model_dtype):
    full, half = harvested(tmp_path / "full", "cuda"), harvested(tmp_path / "half", "cuda", model_dtype)
    for hook in HOOKS:
        assert relative_error(half[hook], full[hook]) < 0.05, hook


@pytest.mark.parametrize("architecture", ["topk", "batchtopk", "relu", "jumprelu", "gated", "matryoshka"])
def test_bf16_training_on_cuda_reaches_the_cpu_fvu(tmp_path, architecture):
    """Same data, same config: the CUDA run (bf16 autocast, pinned transfers) ends with fp32
    weights on the GPU and an FVU within 0.05 of the CPU run's (on CPU, after these 200 steps:
    0.09 to 0.17, and 0.60 for ReLU + L1, still in its L1 warm-up)."""
    source = synthetic_source(n_tokens=16_384)
    results = {}
    for device in ("cpu", "cuda"):
        cfg = load_config(None, {"out": str(tmp_path / device), "hook": IN_HOOK, "architecture": architecture,
                                 "d_sae": 64, "k": 4, "tokens": 200 * 256, "batch_size": 256, "checkpoint_every": 0,
                                 "eval_contexts": 0, "warmup_steps": 10, "device": device})
        trainer = Trainer(cfg, source)
        trainer.fit()
        sae = trainer.coders[0].sae
        assert all(p.dtype == torch.float32 and p.device.type == device for p in sae.parameters())
        x = source.acts[IN_HOOK].to(device) * trainer.scales[IN_HOOK]
        with torch.no_grad():
            results[device] = fvu(x, sae(x))
    assert results["cuda"] < 0.7
    assert abs(results["cuda"] - results["cpu"]) < 0.05, results
