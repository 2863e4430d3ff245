"""TopK SAE (Gao et al. 2024): keep each token's k largest pre-activations.

f = TopK(ReLU((x − b_dec) @ W_enc + b_enc)), x̂ = f @ W_dec + b_dec, unit-norm decoder.
Training runs on the sparse kernels (``sae.sparse``): the encoder matmul is the only dense
work. The AuxK loss lets the top ``auxk_k`` dead latents reconstruct the residual error,
weighted by ``auxk_coefficient`` and scaled down while few latents are dead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sae.architectures.base import SparseCoder, StepContext, StepOutput, reconstruction_loss, register
from sae.metrics import firing_counts, l0
from sae.sparse import Selection, SparseLatents, sparse_decode, sparse_encode, uniform_crow


@register
class TopKSAE(SparseCoder):
    name = "topk"
    saelens_architecture = "topk"
    sparse_training = True

    def select(self, pre: Tensor) -> Selection:
        """Each row's k largest pre-activations [B, d_sae], ReLU'd, as compressed rows."""
        values, indices = pre.topk(self.cfg.k, dim=-1, sorted=False)
        return values.relu().flatten(), indices.flatten(), uniform_crow(pre.shape[0], self.cfg.k, pre.device)

    def encode(self, x: Tensor) -> Tensor:
        pre = self.pre_acts(x)
        values, indices = pre.topk(self.cfg.k, dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter_(-1, indices, values.relu())

    def encode_sparse(self, x: Tensor) -> SparseLatents:
        """x [B, d_in] -> the batch's latents in compressed rows, differentiable."""
        b_dec = self.b_dec if self.apply_b_dec_to_input else None
        return sparse_encode(x, self.encoder_weight, self.b_enc, b_dec, self.select)

    def training_forward(self, x: Tensor, target: Tensor, ctx: StepContext) -> StepOutput:
        latents = self.encode_sparse(x)
        recon = self.add_skip(sparse_decode(latents, self.W_dec, self.b_dec), x)
        losses = {"mse": reconstruction_loss(recon, target), **self.extra_losses(latents, target)}
        if ctx.dead is not None and bool(ctx.dead.any()):
            losses["auxk"] = self.auxk_loss(x, (target - recon).detach(), ctx.dead)
        return StepOutput(recon, losses, firing_counts(latents), l0(latents))

    def extra_losses(self, latents: SparseLatents, target: Tensor) -> dict[str, Tensor]:
        """Further loss terms of a subclass."""
        return {}

    def auxk_loss(self, x: Tensor, residual: Tensor, dead: Tensor) -> Tensor:
        """The top ``auxk_k`` dead latents of each token reconstruct residual [B, d_out]."""
        dead_ids = dead.nonzero().squeeze(1)
        k_aux = self.cfg.auxk_k or self.d_in // 2
        scale = min(dead_ids.numel() / k_aux, 1.0)
        k_aux = min(k_aux, dead_ids.numel())
        pre = F.linear(self.encoder_input(x), self.encoder_weight[dead_ids], self.b_enc[dead_ids]).relu()
        values, positions = pre.topk(k_aux, dim=-1, sorted=False)
        crow = uniform_crow(x.shape[0], k_aux, x.device)
        aux = SparseLatents(values.flatten(), dead_ids[positions].flatten(), crow, self.d_sae)
        return self.cfg.auxk_coefficient * scale * reconstruction_loss(sparse_decode(aux, self.W_dec), residual)

    def saelens_fields(self) -> dict:
        return {"k": self.cfg.k}
