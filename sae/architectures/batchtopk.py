"""BatchTopK SAE (Bussmann et al. 2024): keep the B·k largest activations of the whole batch.

Tokens share a budget of k active latents on average, so easy tokens use fewer and hard
ones more. An inference threshold (EMA of the smallest activation kept per batch) replaces
the batch-level selection at inference, which makes the saved coder a JumpReLU with one
shared threshold (SAELens architecture ``jumprelu``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from sae.architectures.base import register
from sae.architectures.topk import TopKSAE
from sae.sparse import Selection, SparseLatents, one_thread


def batch_topk(pre: Tensor, k: int) -> Selection:
    """The B·k largest ReLU'd entries of pre [B, d_sae], exactly, as compressed rows.

    Only each row's 2k best entries are ranked, except in rows whose 2k-th best still beats
    the batch cutoff: those may hold more of the batch's top entries, so they are ranked whole.
    """
    n_rows, d_sae = pre.shape
    n_keep = n_rows * k
    width = min(2 * k, d_sae)
    values, indices = pre.topk(width, dim=-1, sorted=False)
    with one_thread():
        values = values.relu()
        floor = values.min(dim=-1).values
        cutoff = values.flatten().kthvalue(values.numel() - n_keep + 1).values
        whole = (floor >= cutoff) & (floor > 0) & (width < d_sae)
        rows = torch.arange(n_rows, device=pre.device)[:, None]
        cand_values = torch.cat([values[~whole].flatten(), pre[whole].relu().flatten()])
        cand_ids = torch.cat([indices[~whole].flatten(),
                              torch.arange(d_sae, device=pre.device).repeat(int(whole.sum()))])
        cand_rows = torch.cat([rows[~whole].expand(-1, width).flatten(), rows[whole].expand(-1, d_sae).flatten()])
        kept = cand_values.topk(n_keep, sorted=False).indices
        kept = kept[cand_values[kept] > 0]
        kept = kept[torch.sort(cand_rows[kept], stable=True).indices]  # compressed rows: row-major
        crow = torch.zeros(n_rows + 1, dtype=torch.long, device=pre.device)
        torch.cumsum(torch.bincount(cand_rows[kept], minlength=n_rows), 0, out=crow[1:])
        return cand_values[kept], cand_ids[kept], crow


@register
class BatchTopKSAE(TopKSAE):
    name = "batchtopk"
    saelens_architecture = "jumprelu"

    def __init__(self, cfg, d_out: int):
        super().__init__(cfg, d_out)
        self.register_buffer("threshold", torch.tensor(-1.0))  # < 0: not measured yet

    def select(self, pre: Tensor) -> Selection:
        return batch_topk(pre, self.cfg.k)

    def encode(self, x: Tensor) -> Tensor:
        pre = torch.relu(self.pre_acts(x))
        return pre * (pre > self.threshold)

    def encode_sparse(self, x: Tensor) -> SparseLatents:
        latents = super().encode_sparse(x)
        self.update_threshold(latents.values.detach())
        return latents

    @torch.no_grad()
    def update_threshold(self, values: Tensor) -> None:
        """EMA of the smallest activation the batch selection kept."""
        positive = values[values > 0]
        if positive.numel() == 0:
            return
        smallest = positive.min()
        if self.threshold < 0:
            self.threshold.copy_(smallest)
        else:
            self.threshold.lerp_(smallest, 1.0 - self.cfg.threshold_momentum)

    def inference_state(self) -> dict[str, Tensor]:
        state = super().inference_state()
        state["threshold"] = self.threshold.clamp_min(0.0).expand(self.d_sae).clone()
        return state

    def saelens_fields(self) -> dict:
        return {}
