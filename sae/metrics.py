"""Every metric of the toolkit, defined once; training logs and ``sae eval`` both use these.

- L0: mean number of non-zero latents per token.
- FVU: Σ‖x − x̂‖² / Σ‖x − mean(x)‖² over the evaluation tokens (variance about the mean).
  Explained variance = 1 − FVU.
- CE loss recovered: (CE_zero − CE_sae) / (CE_zero − CE_clean), the SAE spliced in at its hook
  versus the clean model and the hook zero-ablated. KL recovered likewise, with KL to the
  clean model's next-token distribution (KL_clean = 0): (KL_zero − KL_sae) / KL_zero.
- Dead fraction: latents that never fire over a stated token window; dense fraction:
  latents firing on more than a stated fraction of that window's tokens.
- Feature density: fraction of tokens on which a latent fires; its log10 histogram.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from sae.sparse import SparseLatents

LOG10_DENSITY_FLOOR = -10.0  # log10 density recorded for latents that never fired


def l0(latents: Tensor | SparseLatents) -> Tensor:
    """Mean number of non-zero latents per token; ``latents`` [N, d_sae] or sparse rows."""
    if isinstance(latents, SparseLatents):
        return (latents.values != 0).sum() / max(latents.n_rows, 1)
    return (latents != 0).sum(-1).float().mean()


def firing_counts(latents: Tensor | SparseLatents) -> Tensor:
    """[d_sae] int64: number of tokens on which each latent is non-zero."""
    if isinstance(latents, SparseLatents):
        fired = latents.indices[latents.values != 0]
        return torch.bincount(fired, minlength=latents.d_sae)
    return (latents != 0).sum(0)


class ReconstructionStats:
    """Running sums, in float64, from which FVU over all tokens seen so far follows exactly."""

    def __init__(self):
        self.n = 0
        self.squared_error = 0.0
        self.sum_squares = 0.0
        self.sum: Tensor | None = None

    def update(self, x: Tensor, x_hat: Tensor) -> ReconstructionStats:
        """Add tokens: x, x_hat [N, d]."""
        x, x_hat = x.detach().double(), x_hat.detach().double()
        self.n += x.shape[0]
        self.squared_error += float((x - x_hat).pow(2).sum())
        self.sum_squares += float(x.pow(2).sum())
        total = x.sum(0)
        self.sum = total if self.sum is None else self.sum + total
        return self

    @property
    def fvu(self) -> float:
        """Σ‖x − x̂‖² / Σ‖x − mean(x)‖²."""
        variance = self.sum_squares - float(self.sum.pow(2).sum()) / self.n
        return self.squared_error / variance if variance > 0 else math.nan


def fvu(x: Tensor, x_hat: Tensor) -> float:
    """Fraction of variance unexplained of x [N, d] by x_hat [N, d], about the mean of x."""
    return ReconstructionStats().update(x, x_hat).fvu


def explained_variance(x: Tensor, x_hat: Tensor) -> float:
    return 1.0 - fvu(x, x_hat)


def next_token_ce(logits: Tensor, tokens: Tensor) -> float:
    """Mean cross-entropy (nats) of predicting tokens[:, 1:] from logits[:, :-1] ([B, T, V], [B, T])."""
    return float(F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten()))


def next_token_kl(clean_logits: Tensor, logits: Tensor) -> float:
    """Mean KL(clean ‖ patched) of the next-token distributions, over positions [B, T, V]."""
    clean = clean_logits.float().log_softmax(-1)
    patched = logits.float().log_softmax(-1)
    return float(F.kl_div(patched, clean, log_target=True, reduction="none").sum(-1).mean())


def ce_loss_recovered(ce_clean: float, ce_sae: float, ce_zero: float) -> float:
    """(CE_zero − CE_sae) / (CE_zero − CE_clean): 1 = as good as the clean model, 0 = as bad as zeros."""
    gap = ce_zero - ce_clean
    return (ce_zero - ce_sae) / gap if gap != 0 else math.nan


def kl_recovered(kl_sae: float, kl_zero: float) -> float:
    """(KL_zero − KL_sae) / (KL_zero − KL_clean) with KL_clean = 0."""
    return (kl_zero - kl_sae) / kl_zero if kl_zero != 0 else math.nan


def feature_density(counts: Tensor, n_tokens: int) -> Tensor:
    """[d_sae] fraction of the window's ``n_tokens`` tokens on which each latent fired."""
    return counts.double() / n_tokens


def dead_fraction(counts: Tensor) -> float:
    """Fraction of latents that never fired in the window the counts cover."""
    return float((counts == 0).double().mean())


def dense_fraction(counts: Tensor, n_tokens: int, threshold: float = 0.1) -> float:
    """Fraction of latents firing on more than ``threshold`` of the window's tokens."""
    return float((feature_density(counts, n_tokens) > threshold).double().mean())


def log10_density(counts: Tensor, n_tokens: int) -> Tensor:
    """[d_sae] float32 log10 feature density; latents that never fired get LOG10_DENSITY_FLOOR."""
    density = feature_density(counts, n_tokens)
    return density.clamp_min(10**LOG10_DENSITY_FLOOR).log10().float()


def density_histogram(counts: Tensor, n_tokens: int, bins: int = 20) -> tuple[list[int], list[float]]:
    """Histogram of log10 density over [LOG10_DENSITY_FLOOR, 0]: (counts per bin, bin edges)."""
    logs = log10_density(counts, n_tokens).double()
    hist = torch.histc(logs, bins=bins, min=LOG10_DENSITY_FLOOR, max=0.0)
    edges = torch.linspace(LOG10_DENSITY_FLOOR, 0.0, bins + 1)
    return [int(c) for c in hist], [round(float(e), 4) for e in edges]
