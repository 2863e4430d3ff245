"""Sparse coder architectures, one file each, selected by name from ``ARCHITECTURES``."""

# Importing the modules registers them, in this order.
from sae.architectures import relu, topk, batchtopk, jumprelu, gated, matryoshka  # noqa: F401, I001
from sae.architectures.base import ARCHITECTURES, SparseCoder, StepContext, StepOutput, register
from sae.config import SAEConfig

__all__ = ["ARCHITECTURES", "SparseCoder", "StepContext", "StepOutput", "build", "register"]


def build(cfg: SAEConfig, d_out: int) -> SparseCoder:
    """A freshly initialised coder for a resolved config (see ``SAEConfig.resolved``)."""
    cfg.validate(d_out)
    return ARCHITECTURES[cfg.architecture](cfg, d_out)
