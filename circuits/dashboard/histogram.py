"""Exact per-feature histograms of positive activations, streamed without knowing the range.

Feature f's ``n_bins`` bins are [i·w_f, (i+1)·w_f) with w_f a power of two, chosen so that its
largest activation so far lies below n_bins·w_f. When a larger activation arrives, w_f doubles
(as often as needed) and adjacent bins merge pairwise, so every count stays exact: the only
approximation is the bin width, at most 2·max/n_bins.
"""

from __future__ import annotations

import torch
from torch import Tensor

_UNSET = -(1 << 20)  # log2 width of a feature that has not fired yet


class StreamingHistogram:
    """Histograms of F features: ``counts`` [F, n_bins] int64, ``log2_width`` [F] int64."""

    def __init__(self, n_features: int, n_bins: int = 1024):
        if n_bins & (n_bins - 1):
            raise ValueError("n_bins must be a power of two")
        self.n_bins = n_bins
        self.counts = torch.zeros(n_features, n_bins, dtype=torch.int64)
        self.log2_width = torch.full((n_features,), _UNSET, dtype=torch.int64)

    def update(self, feature: Tensor, value: Tensor) -> None:
        """Add activations ``value`` [n] (> 0) of features ``feature`` [n] (0..F-1)."""
        if not feature.numel():
            return
        value = value.double()
        peak = torch.zeros(len(self.counts), dtype=torch.float64).scatter_reduce(0, feature, value, "amax")
        fired = peak > 0
        needed = torch.full_like(self.log2_width, _UNSET)
        needed[fired] = torch.floor(torch.log2(peak[fired] / self.n_bins)).long() + 1
        for f in (needed > self.log2_width).nonzero().squeeze(1).tolist():
            self._widen(f, int(needed[f] - self.log2_width[f]))
            self.log2_width[f] = needed[f]
        width = torch.pow(2.0, self.log2_width[feature].double())
        bins = torch.div(value, width, rounding_mode="floor").long().clamp_(0, self.n_bins - 1)
        self.counts.view(-1).index_add_(0, feature * self.n_bins + bins, torch.ones_like(bins))

    def _widen(self, f: int, doublings: int) -> None:
        row = self.counts[f]
        group = 1 << min(doublings, self.n_bins.bit_length() - 1)
        merged = row.view(-1, group).sum(1)
        row.zero_()
        row[:len(merged)] = merged

    def width(self, f: int) -> float:
        """Bin width of feature f (0.0 if it never fired)."""
        return 0.0 if self.log2_width[f] == _UNSET else 2.0 ** int(self.log2_width[f])

    def quantiles(self, f: int, levels: Tensor) -> Tensor:
        """Activation values [len(levels)] at quantile ``levels`` in [0, 1] of f's positive
        activations (linear within a bin)."""
        counts = self.counts[f].double()
        total = counts.sum()
        if total == 0:
            return torch.zeros(len(levels), dtype=torch.float64)
        cdf = torch.cat([torch.zeros(1, dtype=torch.float64), counts.cumsum(0)]) / total
        last = int(counts.nonzero().max())
        bin_index = torch.searchsorted(cdf[1:], levels.double().clamp(0, 1), right=True).clamp(max=last)
        below, above = cdf[bin_index], cdf[bin_index + 1]
        inside = ((levels - below) / (above - below)).clamp(0, 1)
        return (bin_index + inside) * self.width(f)

    def coarse(self, f: int, max_bins: int) -> tuple[float, float, list[int]]:
        """(start, bin width, counts) of f's histogram merged to at most ``max_bins`` bins that
        cover its non-empty bins; start is a multiple of the width."""
        row = self.counts[f]
        if not row.any():
            return 0.0, 0.0, []
        used = row.nonzero().squeeze(1)
        first, last = int(used[0]), int(used[-1])
        group = 1
        while (last // group) - (first // group) + 1 > max_bins:
            group *= 2
        merged = row.view(-1, group).sum(1)[first // group: last // group + 1]
        width = self.width(f) * group
        return first // group * width, width, merged.tolist()
