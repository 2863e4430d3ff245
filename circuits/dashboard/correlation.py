"""Global streaming Pearson correlation of chosen features with every feature of an SAE.

Over all N tokens streamed (zeros included), with x the chosen feature and y any feature:

    r = (N·Σxy − Σx·Σy) / sqrt((N·Σx² − (Σx)²)(N·Σy² − (Σy)²))

accumulated in float64. Σxy [F, d_sae] is summed over the co-firing pairs of each token (a
TopK SAE with k = 32 gives at most 32·32 pairs per token), or by a dense product when the
latents are so dense that pairs would cost more. Memory: 8·F·d_sae bytes, whatever N is.
"""

from __future__ import annotations

import torch
from torch import Tensor

_PAIR_COST = 100  # one scattered pair costs about as much as this many dense multiply-adds


class StreamingPearson:
    """Correlations of features ``chosen`` [F] with all ``d_sae`` features."""

    def __init__(self, chosen: Tensor, d_sae: int):
        self.chosen = chosen.long()
        self.d_sae = d_sae
        self.n = 0
        self.sum = torch.zeros(d_sae, dtype=torch.float64)
        self.sum_sq = torch.zeros(d_sae, dtype=torch.float64)
        self.cross = torch.zeros(len(chosen), d_sae, dtype=torch.float64)
        self.slot = torch.full((d_sae,), -1, dtype=torch.int64)
        self.slot[self.chosen] = torch.arange(len(chosen))

    def update(self, latents: Tensor) -> None:
        """Add a batch of latents [B, d_sae]."""
        self.n += latents.shape[0]
        self.sum += latents.sum(0, dtype=torch.float64)
        self.sum_sq += latents.square().sum(0, dtype=torch.float64)
        rows, cols = latents.nonzero(as_tuple=True)  # row-major: each token's entries are adjacent
        counts = torch.bincount(rows, minlength=latents.shape[0])
        left = (self.slot[cols] >= 0).nonzero().squeeze(1)
        repeats = counts[rows[left]]
        n_pairs = int(repeats.sum())
        if n_pairs * _PAIR_COST > latents.numel() * len(self.chosen):
            self.cross += (latents[:, self.chosen].t() @ latents).double()
            return
        values = latents[rows, cols]
        starts = counts.cumsum(0) - counts
        li = left.repeat_interleave(repeats)
        segment = (repeats.cumsum(0) - repeats).repeat_interleave(repeats)
        partner = starts[rows[li]] + torch.arange(n_pairs) - segment
        flat = self.slot[cols[li]] * self.d_sae + cols[partner]
        self.cross.view(-1).index_add_(0, flat, (values[li] * values[partner]).double())

    def pearson(self) -> Tensor:
        """[F, d_sae] correlations; 0 where either feature never varied."""
        n = max(self.n, 1)
        cov = n * self.cross - self.sum[self.chosen, None] * self.sum[None, :]
        var = (n * self.sum_sq - self.sum.square()).clamp_min(0)
        denom = (var[self.chosen, None] * var[None, :]).sqrt()
        return torch.where(denom > 0, cov / denom.clamp_min(1e-300), torch.zeros_like(cov))

    def most_correlated(self, m: int) -> tuple[Tensor, Tensor]:
        """The m other features most positively correlated with each chosen one:
        (indices [F, m] int64, r [F, m] float64)."""
        r = self.pearson()
        r[torch.arange(len(self.chosen)), self.chosen] = float("-inf")  # not itself
        top = r.topk(min(m, self.d_sae - 1), dim=1)
        return top.indices, top.values
