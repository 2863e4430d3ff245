"""JumpReLU SAE (Rajamanoharan et al. 2024): a learned threshold per latent.

f = z · H(z − θ) with z = (x − b_dec) @ W_enc + b_enc. The step function has no useful
gradient, so θ learns through a straight-through estimator: a rectangle kernel of width
``jumprelu_bandwidth`` around the threshold. The sparsity term is the L0 itself (through the
same estimator, weight ``l0_coefficient``), or (L0 / target_l0 − 1)² to steer towards a
chosen L0 (weight ``target_l0_coefficient``), the weight rising over ``sparsity_warmup``. By
default the sparsity term's estimator also passes its gradient to the pre-activations
(``jumprelu_l0_to_encoder``), so the encoder, not only the thresholds, answers it. Decoder
rows have unit norm.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sae.architectures.base import (SparseCoder, StepContext, StepOutput, firing_quantile, reconstruction_loss,
                                    register, warmed_up)
from sae.metrics import firing_counts, l0


def _near_threshold(pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
    """Rectangle kernel K((z − θ) / ε) as a float mask."""
    return ((pre - threshold).abs() < bandwidth / 2).to(pre.dtype)


class _JumpReLU(torch.autograd.Function):
    """z · H(z − θ); ∂/∂θ = −(θ/ε) K((z − θ)/ε)."""

    @staticmethod
    def forward(ctx, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return pre * (pre > threshold)

    @staticmethod
    def backward(ctx, grad: Tensor):
        pre, threshold = ctx.saved_tensors
        near = _near_threshold(pre, threshold, ctx.bandwidth)
        grad_threshold = -(threshold / ctx.bandwidth) * (grad * near).reshape(-1, pre.shape[-1]).sum(0)
        return grad * (pre > threshold), grad_threshold.to(threshold.dtype), None


class _Step(torch.autograd.Function):
    """H(z − θ); ∂/∂θ = −(1/ε) K((z − θ)/ε), and ∂/∂z = +(1/ε) K((z − θ)/ε) when ``to_pre``
    (else no gradient to z)."""

    @staticmethod
    def forward(ctx, pre: Tensor, threshold: Tensor, bandwidth: float, to_pre: bool = False) -> Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth, ctx.to_pre = bandwidth, to_pre
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        pre, threshold = ctx.saved_tensors
        kernel = grad * _near_threshold(pre, threshold, ctx.bandwidth) / ctx.bandwidth
        grad_threshold = -kernel.reshape(-1, pre.shape[-1]).sum(0)
        return (kernel if ctx.to_pre else None), grad_threshold.to(threshold.dtype), None, None


@register
class JumpReLUSAE(SparseCoder):
    name = "jumprelu"
    saelens_architecture = "jumprelu"

    def __init__(self, cfg, d_out: int):
        super().__init__(cfg, d_out)
        self.threshold = nn.Parameter(torch.full((self.d_sae,), cfg.jumprelu_threshold))

    @torch.no_grad()
    def init_from_data(self, x: Tensor, target: Tensor) -> None:
        """Also start each threshold where its latent fires on about L0 / d_sae of the batch
        (L0: target_l0, else k), so training begins near the sparsity it is asked for, with
        the latents rescaled to the best-fitting size (``rescale_code``)."""
        super().init_from_data(x, target)
        rate = (self.cfg.target_l0 or self.cfg.k) / self.d_sae
        self.threshold.copy_(firing_quantile(self.pre_acts(x), rate).clamp_min(0.0))
        self.rescale_code(x, target)

    def scale_latents(self, scale: float) -> None:
        super().scale_latents(scale)
        self.threshold.mul_(scale)  # z and θ scale together, so the same latents fire

    def encode(self, x: Tensor) -> Tensor:
        pre = self.pre_acts(x)
        return torch.relu(pre) * (pre > self.threshold)

    def training_forward(self, x: Tensor, target: Tensor, ctx: StepContext) -> StepOutput:
        pre = self.pre_acts(x)
        latents = _JumpReLU.apply(pre, self.threshold, self.cfg.jumprelu_bandwidth)
        recon = self.add_skip(self.decode(latents), x)
        batch_l0 = _Step.apply(pre, self.threshold, self.cfg.jumprelu_bandwidth,
                               self.cfg.jumprelu_l0_to_encoder).sum(-1).mean()
        target_l0 = self.cfg.target_l0
        if target_l0 > 0:
            sparsity, coefficient = (batch_l0 / target_l0 - 1).pow(2), self.cfg.target_l0_coefficient
        else:
            sparsity, coefficient = batch_l0, self.cfg.l0_coefficient
        weight = warmed_up(coefficient, self.cfg.sparsity_warmup, ctx.progress)
        losses = {"mse": reconstruction_loss(recon, target), "l0": weight * sparsity}
        return StepOutput(recon, losses, firing_counts(latents), l0(latents))

    @torch.no_grad()
    def after_step(self) -> None:
        super().after_step()
        self.threshold.clamp_(min=0.0)
