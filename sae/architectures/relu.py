"""ReLU SAE with an L1 penalty weighted by decoder norms (Anthropic, April 2024 update).

f = ReLU(x @ W_enc + b_enc), x̂ = f @ W_dec + b_dec. Loss: ‖x − x̂‖² + λ Σᵢ fᵢ ‖W_dec,ᵢ‖,
with λ rising linearly from 0 over the first ``sparsity_warmup`` of training. The decoder is
unconstrained (the penalty sees its norms), starts at norm 0.1, and there is no
pre-encoder bias. Dead latents are resampled by the trainer (``resample``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from sae.architectures.base import (SparseCoder, StepContext, StepOutput, reconstruction_loss, register,
                                    warmed_up)
from sae.metrics import firing_counts, l0


@register
class ReLUSAE(SparseCoder):
    name = "relu"
    saelens_architecture = "standard"
    unit_norm_decoder = False
    decoder_init_norm = 0.1
    pre_encoder_bias = False

    def encode(self, x: Tensor) -> Tensor:
        return torch.relu(self.pre_acts(x))

    def training_forward(self, x: Tensor, target: Tensor, ctx: StepContext) -> StepOutput:
        latents = self.encode(x)
        recon = self.add_skip(self.decode(latents), x)
        weight = warmed_up(self.cfg.l1_coefficient, self.cfg.sparsity_warmup, ctx.progress)
        sparsity = latents.sum(0) @ self.W_dec.norm(dim=-1) / x.shape[0]  # mean over tokens of Σᵢ fᵢ‖W_dec,ᵢ‖
        losses = {"mse": reconstruction_loss(recon, target), "l1": weight * sparsity}
        return StepOutput(recon, losses, firing_counts(latents), l0(latents))

    @torch.no_grad()
    def resample(self, dead: Tensor, x: Tensor, target: Tensor, generator: torch.Generator) -> None:
        """Re-initialise dead latents [n] from badly reconstructed tokens of x [B, d_in].

        Tokens are drawn with probability ∝ (squared error)²; a latent's decoder row becomes
        the token's residual direction (at the alive rows' mean norm), its encoder vector the
        token's input direction at 0.2 × the alive encoders' mean norm, and b_enc 0.
        """
        errors = (self.forward(x) - target).pow(2).sum(-1).double().cpu()  # the generator lives on the CPU
        picks = torch.multinomial(errors.pow(2) + 1e-12, dead.numel(), replacement=True, generator=generator)
        picks = picks.to(x.device)
        alive = torch.ones(self.d_sae, dtype=torch.bool, device=dead.device)
        alive[dead] = False
        enc_rows, dec_rows = self.encoder_weight, self.W_dec
        enc_norm = enc_rows[alive].norm(dim=-1).mean() if alive.any() else torch.tensor(1.0)
        dec_norm = dec_rows[alive].norm(dim=-1).mean() if alive.any() else torch.tensor(self.decoder_init_norm)
        residual = target[picks] - self.forward(x[picks])
        inputs = x[picks]
        dec_rows[dead] = residual / residual.norm(dim=-1, keepdim=True).clamp_min(1e-8) * dec_norm
        enc_rows[dead] = inputs / inputs.norm(dim=-1, keepdim=True).clamp_min(1e-8) * enc_norm * 0.2
        self.b_enc[dead] = 0.0
