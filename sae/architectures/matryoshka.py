"""Matryoshka BatchTopK SAE (Bussmann et al. 2025; Nabeshima 2024): nested dictionaries.

Selection is BatchTopK's; besides the full reconstruction, each prefix of the latents
(``matryoshka_prefixes``, e.g. the first d_sae/16, d_sae/8, ...) must reconstruct the input
on its own, so early latents learn general features and later ones refine them. Saved, like
BatchTopK, as a JumpReLU with the learned threshold.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from sae.architectures.base import reconstruction_loss, register
from sae.architectures.batchtopk import BatchTopKSAE
from sae.sparse import SparseLatents, sparse_decode


@register
class MatryoshkaSAE(BatchTopKSAE):
    name = "matryoshka"

    def extra_losses(self, latents: SparseLatents, target: Tensor) -> dict[str, Tensor]:
        """Summed reconstruction losses of every proper prefix of the dictionary."""
        losses = []
        for width in self.cfg.matryoshka_prefixes[:-1]:
            prefix = replace(latents, values=latents.values * (latents.indices < width))
            losses.append(reconstruction_loss(sparse_decode(prefix, self.W_dec, self.b_dec), target))
        return {"prefix_mse": torch.stack(losses).sum()} if losses else {}
