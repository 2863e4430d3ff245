"""Shared fixtures for the circuits tests: TopK SAEs trained on the embedded model.

``tiny_saes`` trains one SAE per node hook of Marks et al.'s circuits on the tiny model, in
one on-the-fly pass (each batch read once): the embeddings (``blocks.0.hook_resid_pre``),
and every layer's attention output, MLP output and residual stream. The folders are cached
in pytest's cache directory under a key made of the checkpoint's weights and these
settings and the training code, so a second test session (or a later test in the same one)
reuses them; a new checkpoint, a changed recipe or changed code under ``sae/`` or
``activations/`` trains afresh, and then removes the stale caches of the same seed (about
120 MB each), so that editing the code does not fill the disk.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from activations.tiny import CHECKPOINT_DIR

N_LAYERS = 4
NODE_HOOKS: list[str] = ["blocks.0.hook_resid_pre"] + [
    f"blocks.{layer}.{name}" for layer in range(N_LAYERS)
    for name in ("hook_attn_out", "hook_mlp_out", "hook_resid_post")]
# SAE_FIXTURE_SEED trains the same recipe from another seed, to tell which demonstrations hold
# for any such dictionary and which for this one (scripts/fixture_seeds.py); SAE_FIXTURE_D_SAE
# trains another width, to compare recipes. 512 latents since 2026-11-30 (1,536 before): the
# same FVU at 600k tokens, and 100-node SVA circuits reach 0.7 with all four seeds' SAEs
# instead of one (docs/circuits.md, "Narrower dictionaries"). SAE_FIXTURE_LR_SCALE multiplies the
# learning rate (3 gives today's default, sae.config.DEFAULT_LR); SAE_FIXTURE_K sets the active
# latents per token.
RECIPE = {"architecture": "topk", "d_sae": int(os.environ.get("SAE_FIXTURE_D_SAE", "512")),
          "k": int(os.environ.get("SAE_FIXTURE_K", "16")),
          "tokens": 600_000, "batch_size": 2048, "seed": int(os.environ.get("SAE_FIXTURE_SEED", "0"))}


def fixture_lr(d_sae: int) -> float:
    """The recipe's learning rate: the default of before 2026-11-30 (2e-4, not
    ``sae.config.DEFAULT_LR``'s 6e-4, scaled by (d_sae / 16384) ** -0.5), so that the SAEs
    every demonstration was measured on stay the same; ``SAE_FIXTURE_LR_SCALE`` multiplies it."""
    return float(os.environ.get("SAE_FIXTURE_LR_SCALE", "1")) * 2e-4 / (d_sae / 2**14) ** 0.5


RECIPE["lr"] = fixture_lr(RECIPE["d_sae"])
LEGACY_D_SAE = 1536  # the width of caches written before their DONE recorded one


def _cache_key() -> str:
    """The checkpoint, the recipe and the code that trains: the training is bit-reproducible
    on one machine, so a cached run is reused only while all three are unchanged."""
    digest = hashlib.sha256((Path(CHECKPOINT_DIR) / "model.safetensors").read_bytes())
    digest.update(json.dumps([RECIPE, NODE_HOOKS], sort_keys=True).encode())
    root = Path(__file__).resolve().parents[2]
    for source in sorted([*(root / "sae").rglob("*.py"), *(root / "activations").rglob("*.py")]):
        digest.update(source.relative_to(root).as_posix().encode() + source.read_bytes())
    return digest.hexdigest()[:16]


def _train(run_dir: Path, model: str = "tiny") -> None:
    """The recipe's SAEs for every node hook of ``model`` ("tiny" or a checkpoint folder)."""
    from sae.config import SAEConfig, TrainConfig
    from sae.trainer import train

    r = RECIPE
    cfg = TrainConfig(sae=SAEConfig(architecture=r["architecture"], d_sae=r["d_sae"], k=r["k"], lr=r["lr"]),
                      coders=[{"hook": hook} for hook in NODE_HOOKS], model=model, out=str(run_dir),
                      tokens=r["tokens"], batch_size=r["batch_size"], seed=r["seed"], device="cpu",
                      checkpoint_every=0, log_every=50, eval_contexts=0, eval_tokens=16_384)
    train(cfg)


def _remove_stale(fresh: Path) -> None:
    """Delete the finished caches beside ``fresh`` that hold this seed's SAEs of this width (or
    an unknown seed's: those written before the seed was recorded; a cache without a recorded
    width has ``LEGACY_D_SAE``), all of older code or checkpoints."""
    import shutil
    for other in fresh.parent.glob("tiny-saes-*"):
        done = other / "DONE"
        if other == fresh or not done.is_file():
            continue
        try:
            recorded = json.loads(done.read_text())
            seed, d_sae = recorded.get("seed"), recorded.get("d_sae", LEGACY_D_SAE)
        except (ValueError, AttributeError):
            seed, d_sae = None, RECIPE["d_sae"]
        if seed in (None, RECIPE["seed"]) and d_sae == RECIPE["d_sae"]:
            shutil.rmtree(other, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_saes(request) -> dict[str, Path]:
    """Hook name -> SAE folder (SAELens format) for every hook in ``NODE_HOOKS``."""
    root = Path(request.config.cache.mkdir(f"tiny-saes-{_cache_key()}"))
    done = root / "DONE"
    if not done.exists():
        run_dir = root / "run"
        if run_dir.exists():
            import shutil
            shutil.rmtree(run_dir)
        threads = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            _train(run_dir)
        finally:
            torch.set_num_threads(threads)
        done.write_text(json.dumps({"seed": RECIPE["seed"], "d_sae": RECIPE["d_sae"]}) + "\n")
        _remove_stale(root)
    folders = {}
    for folder in sorted((root / "run" / "saes").iterdir()):
        cfg = json.loads((folder / "cfg.json").read_text())
        folders[cfg["metadata"]["hook_name"]] = folder
    assert sorted(folders) == sorted(NODE_HOOKS), folders
    return folders
