"""Gated SAE (Rajamanoharan et al. 2024): separate which latents fire from how strongly.

With h = (x − b_dec) @ W_enc, the gate π_gate = h + b_gate decides firing and the magnitude
π_mag = h ⊙ exp(r_mag) + b_mag (weights tied up to a per-latent scale) sets the value:
f = 1[π_gate > 0] ⊙ ReLU(π_mag). Loss: ‖x − x̂‖² + λ ‖ReLU(π_gate)‖₁ + ‖x − x̂_gate‖², where
x̂_gate decodes ReLU(π_gate) through a frozen decoder. Unit-norm decoder.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from sae.architectures.base import (SparseCoder, StepContext, StepOutput, firing_quantile, reconstruction_loss,
                                    register, warmed_up)
from sae.metrics import firing_counts, l0


@register
class GatedSAE(SparseCoder):
    name = "gated"
    saelens_architecture = "gated"

    def __init__(self, cfg, d_out: int):
        super().__init__(cfg, d_out)
        del self.b_enc  # the gate and the magnitude path have their own biases
        self.b_gate = nn.Parameter(torch.zeros(self.d_sae))
        self.r_mag = nn.Parameter(torch.zeros(self.d_sae))
        self.b_mag = nn.Parameter(torch.zeros(self.d_sae))

    @torch.no_grad()
    def init_from_data(self, x: Tensor, target: Tensor) -> None:
        """Also start the gate biases where each gate opens on about k / d_sae of the batch, and
        rescale the magnitudes to the best-fitting size (``rescale_code``)."""
        super().init_from_data(x, target)
        self.b_gate.copy_(-firing_quantile(self.encoder_input(x) @ self.W_enc, self.cfg.k / self.d_sae))
        self.rescale_code(x, target)

    def scale_latents(self, scale: float) -> None:
        """The magnitude path alone: the gate, and so which latents fire, stays the same."""
        self.r_mag.add_(math.log(scale))
        self.b_mag.mul_(scale)

    def gate_and_magnitude(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x [.., d_in] -> (π_gate, π_mag), each [.., d_sae]."""
        h = self.encoder_input(x) @ self.W_enc
        return h + self.b_gate, h * self.r_mag.exp() + self.b_mag

    def pre_acts(self, x: Tensor) -> Tensor:
        """The gate pre-activations: a latent fires where they are positive."""
        return self.gate_and_magnitude(x)[0]

    def encode(self, x: Tensor) -> Tensor:
        gate, magnitude = self.gate_and_magnitude(x)
        return (gate > 0) * torch.relu(magnitude)

    def code_gain(self, latents: Tensor) -> Tensor:
        """Active latents follow the magnitude path, h · exp(r_mag) + b_mag."""
        return (latents > 0) * self.r_mag.exp()

    def training_forward(self, x: Tensor, target: Tensor, ctx: StepContext) -> StepOutput:
        gate, magnitude = self.gate_and_magnitude(x)
        latents = (gate > 0) * torch.relu(magnitude)
        recon = self.add_skip(self.decode(latents), x)
        gate_acts = torch.relu(gate)
        via_gate = self.add_skip(gate_acts @ self.W_dec.detach() + self.b_dec.detach(), x)
        weight = warmed_up(self.cfg.l1_coefficient, self.cfg.sparsity_warmup, ctx.progress)
        losses = {"mse": reconstruction_loss(recon, target),
                  "l1": weight * gate_acts.sum(-1).mean(),
                  "gate_aux": reconstruction_loss(via_gate, target)}
        return StepOutput(recon, losses, firing_counts(latents), l0(latents))
