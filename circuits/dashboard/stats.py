"""The one streamed pass: every per-feature summary a dashboard needs, in bounded memory.

``FeatureStats.update(latents, rows)`` takes a batch of SAE latents [B, d_sae] and the batch's
global token indices [B]. Memory is O(F·(n_bins + top_k + reservoir) + F·d_sae) for F chosen
features, independent of the number of tokens.
"""

from __future__ import annotations

import torch
from torch import Tensor

from circuits.dashboard.correlation import StreamingPearson
from circuits.dashboard.histogram import StreamingHistogram
from circuits.dashboard.selection import BestPerFeature


class FeatureStats:
    """Streaming summaries of features ``chosen`` [F] of an SAE with ``d_sae`` latents.

    Attributes after the pass: ``n_tokens``; per chosen feature ``n_fired`` [F] (tokens with
    activation > 0), ``total`` [F] (sum of activations), ``max`` [F]; ``histogram``,
    ``top`` (highest activations), ``sample`` (uniform reservoir of firing tokens),
    ``pearson`` (correlations with all features).
    """

    def __init__(self, chosen: Tensor, d_sae: int, top_k: int, reservoir: int, n_bins: int = 1024,
                 seed: int = 0):
        n = len(chosen)
        self.chosen = chosen.long()
        self.n_tokens = 0
        self.n_fired = torch.zeros(n, dtype=torch.int64)
        self.total = torch.zeros(n, dtype=torch.float64)
        self.max = torch.zeros(n)
        self.histogram = StreamingHistogram(n, n_bins)
        self.top = BestPerFeature(n, top_k)
        self.sample = BestPerFeature(n, reservoir)
        self.pearson = StreamingPearson(self.chosen, d_sae)
        self._generator = torch.Generator().manual_seed(seed)

    def update(self, latents: Tensor, rows: Tensor) -> None:
        """Add latents [B, d_sae] (float32, >= 0) of the tokens at global indices ``rows`` [B]."""
        self.n_tokens += len(rows)
        acts = latents[:, self.chosen]
        token, feature = (acts > 0).nonzero(as_tuple=True)
        value = acts[token, feature]
        self.n_fired += torch.bincount(feature, minlength=len(self.chosen))
        self.total.index_add_(0, feature, value.double())
        self.max = torch.maximum(self.max, acts.max(0).values)
        self.histogram.update(feature, value)
        self.top.update(feature, value, rows[token], value)
        self.sample.update(feature, torch.rand(len(value), generator=self._generator), rows[token], value)
        self.pearson.update(latents)

    def quantile_samples(self, slot: int, intervals: int, per_interval: int) -> list[dict]:
        """Samples of chosen feature ``slot`` from each of ``intervals`` equal-mass quantile
        intervals of its positive activations: [{quantiles [lo, hi], activations [lo, hi],
        rows [<= per_interval]}]. Boundaries come from the exact histogram of every token;
        the samples are the reservoir's members that fall inside, in random order."""
        if self.n_fired[slot] == 0:
            return []
        levels = torch.linspace(0, 1, intervals + 1, dtype=torch.float64)
        bounds = self.histogram.quantiles(slot, levels)
        bounds[-1] = max(float(bounds[-1]), float(self.max[slot]))
        kept = self.sample.row[slot] >= 0
        rows, values = self.sample.row[slot][kept], self.sample.value[slot][kept].double()
        interval = (torch.searchsorted(bounds[1:-1].contiguous(), values, right=True)).tolist()
        out = []
        for i in range(intervals):
            members = [r for r, j in zip(rows.tolist(), interval) if j == i][:per_interval]
            out.append({"quantiles": [float(levels[i]), float(levels[i + 1])],
                        "activations": [float(bounds[i]), float(bounds[i + 1])], "rows": members})
        return out
