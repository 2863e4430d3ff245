"""The k highest-scoring entries per feature, kept while streaming.

Scores are the activations themselves for the top-activating tokens, and independent uniform
random keys for a reservoir sample: keeping the k largest random keys of a feature's firing
tokens is a uniform sample of k of them without replacement, whatever the stream's length.
"""

from __future__ import annotations

import torch
from torch import Tensor


class BestPerFeature:
    """For F features: ``score`` [F, k] (descending, -inf where empty), ``row`` [F, k] int64
    global token index (-1 where empty), ``value`` [F, k] float32 activation."""

    def __init__(self, n_features: int, k: int):
        self.k = k
        self.score = torch.full((n_features, k), float("-inf"))
        self.row = torch.full((n_features, k), -1, dtype=torch.int64)
        self.value = torch.zeros(n_features, k)

    def update(self, feature: Tensor, score: Tensor, row: Tensor, value: Tensor) -> None:
        """Offer entries [n]: feature index (0..F-1), score, global row and activation."""
        n_features, k = self.score.shape
        better = score > self.score[feature, -1]  # cannot enter a full table otherwise
        feature, score, row, value = feature[better], score[better], row[better], value[better]
        if not feature.numel():
            return
        touched = feature.unique()
        group = torch.cat([touched.repeat_interleave(k), feature])
        score = torch.cat([self.score[touched].flatten(), score.float()])
        row = torch.cat([self.row[touched].flatten(), row])
        value = torch.cat([self.value[touched].flatten(), value.float()])
        order = torch.argsort(score, descending=True, stable=True)
        order = order[torch.argsort(group[order], stable=True)]
        group, score, row, value = group[order], score[order], row[order], value[order]
        first = torch.searchsorted(group, group, right=False)
        rank = torch.arange(len(group)) - first
        keep = rank < k
        g, r = group[keep], rank[keep]
        self.score[g, r], self.row[g, r], self.value[g, r] = score[keep], row[keep], value[keep]
