"""The interface every sparse coder implements, and the parameters they share.

A coder maps activations x [.., d_in] at its input hook to latents [.., d_sae] and back to
a reconstruction [.., d_out] of its output hook (d_out = d_in for an SAE; a transcoder reads
one hook and writes another; a skip transcoder adds x @ W_skip.T). Parameters follow the
SAELens layout and names: W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_out],
b_dec [d_out], W_skip [d_out, d_in]. The encoder is stored latent-major, as
``encoder_weight`` [d_sae, d_in] (one contiguous row per latent, like ``nn.Linear``), which the
sparse kernels and the fused optimizer need; ``W_enc`` is its [d_in, d_sae] view.

Adding an architecture is adding a file: subclass ``SparseCoder``, implement ``encode`` and
``training_forward``, and decorate the class with ``@register``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from activations.errors import ToolkitError
from sae.config import SAEConfig


@dataclass
class StepContext:
    """What a training forward pass needs to know about the run."""

    progress: float = 1.0
    """Fraction of training done, in [0, 1] (for sparsity warm-ups)."""
    dead: Tensor | None = None
    """[d_sae] bool: latents that have not fired over the dead window."""


@dataclass
class StepOutput:
    """One training forward pass: the reconstruction, the named loss terms, firing stats."""

    recon: Tensor
    """[B, d_out] reconstruction of the target (training space)."""
    losses: dict[str, Tensor]
    """Named scalar terms; their sum is the loss."""
    fired: Tensor
    """[d_sae] int64: tokens of this batch on which each latent fired."""
    l0: Tensor
    """Scalar: mean active latents per token."""

    @property
    def loss(self) -> Tensor:
        return sum(self.losses.values())


ARCHITECTURES: dict[str, type[SparseCoder]] = {}
"""Registry: architecture name -> class."""


def register(cls: type[SparseCoder]) -> type[SparseCoder]:
    """Class decorator adding an architecture to the registry under ``cls.name``."""
    ARCHITECTURES[cls.name] = cls
    return cls


def reconstruction_loss(recon: Tensor, target: Tensor) -> Tensor:
    """Squared error summed over features, averaged over tokens."""
    return F.mse_loss(recon, target, reduction="sum") / recon.shape[0]


def warmed_up(coefficient: float, warmup: float, progress: float) -> float:
    """``coefficient`` scaled linearly from 0 to 1 over the first ``warmup`` of training."""
    return coefficient * min(1.0, progress / warmup) if warmup > 0 else coefficient


def geometric_median(points: Tensor, iterations: int = 100, tol: float = 1e-7) -> Tensor:
    """Weiszfeld's algorithm: the point minimising the summed distance to points [N, d]."""
    points = points.double()
    median = points.mean(0)
    for _ in range(iterations):
        weights = 1.0 / (points - median).norm(dim=-1).clamp_min(1e-12)
        updated = (weights[:, None] * points).sum(0) / weights.sum()
        shift = (updated - median).norm()
        median = updated
        if shift <= tol * median.norm().clamp_min(1.0):
            break
    return median.float()


def firing_quantile(pre: Tensor, rate: float) -> Tensor:
    """[d_sae] per-latent value that pre [B, d_sae] exceeds on a fraction ``rate`` of rows."""
    rank = min(pre.shape[0], max(1, round(pre.shape[0] * (1.0 - rate))))
    return pre.kthvalue(rank, dim=0).values


def random_directions(n: int, d: int, norm: float) -> Tensor:
    """[n, d] rows uniformly distributed on the sphere of radius ``norm``."""
    rows = torch.randn(n, d)
    return rows * (norm / rows.norm(dim=-1, keepdim=True))


class SparseCoder(nn.Module):
    """Base class: shared parameters, decoding, and the SAELens file layout."""

    name: ClassVar[str]
    """Registry key, e.g. ``"topk"``."""
    saelens_architecture: ClassVar[str]
    """``architecture`` written to cfg.json for inference."""
    unit_norm_decoder: ClassVar[bool] = True
    """Keep decoder rows at unit norm (and project their gradients)."""
    decoder_init_norm: ClassVar[float] = 1.0
    pre_encoder_bias: ClassVar[bool] = True
    """Subtract b_dec from the input before encoding (never for transcoders)."""
    sparse_training: ClassVar[bool] = False
    """Training touches only active latents, apart from the encoder product (which takes
    all threads by itself): the trainer runs the rest of the step on one CPU thread."""

    def __init__(self, cfg: SAEConfig, d_out: int):
        super().__init__()
        self.cfg = cfg
        self.metadata: dict = {}  # cfg.json metadata of a loaded coder (model_name, hook_name, ...)
        self.d_in, self.d_sae, self.d_out = cfg.d_in, cfg.d_sae, d_out
        self.apply_b_dec_to_input = self.pre_encoder_bias and not cfg.is_transcoder
        self.encoder_weight = nn.Parameter(torch.empty(self.d_sae, self.d_in))
        self.b_enc = nn.Parameter(torch.zeros(self.d_sae))
        self.W_dec = nn.Parameter(torch.empty(self.d_sae, d_out))
        self.b_dec = nn.Parameter(torch.zeros(d_out))
        self.W_skip = nn.Parameter(torch.zeros(d_out, self.d_in)) if cfg.skip else None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Random decoder directions; the encoder is the decoder's transpose when shapes allow."""
        self.W_dec.copy_(random_directions(self.d_sae, self.d_out, self.decoder_init_norm))
        if self.d_out == self.d_in:
            self.encoder_weight.copy_(self.W_dec)
        else:
            self.encoder_weight.copy_(random_directions(self.d_sae, self.d_in, self.decoder_init_norm))

    @torch.no_grad()
    def init_from_data(self, x: Tensor, target: Tensor) -> None:
        """Data-dependent initialisation from a first batch x [B, d_in], target [B, d_out]:
        b_dec at the geometric median of the targets."""
        self.b_dec.copy_(geometric_median(target))

    @torch.no_grad()
    def fitted_latent_scale(self, x: Tensor, target: Tensor) -> float:
        """The factor s that best rescales the current code of a batch: the s minimising
        ‖(target − b_dec) − s · (x̂ − b_dec)‖² over the batch, x̂ being the reconstruction."""
        code = self.add_skip(self.decode(self.encode(x)), x) - self.b_dec
        wanted = target - self.b_dec
        norm = float(code.pow(2).sum())
        return float((code * wanted).sum()) / norm if norm > 0 else 1.0

    @torch.no_grad()
    def rescale_code(self, x: Tensor, target: Tensor) -> None:
        """Multiply every latent by ``fitted_latent_scale`` (when positive), keeping which
        latents fire.

        Threshold architectures start their thresholds at a firing quantile, and with random
        unit decoder rows the active latents then overshoot (FVU ≈ 6 on the embedded model's
        residual stream). The MSE gradient answers by raising every threshold at once, and a
        JumpReLU's L0 collapses before its decoder has learned anything; rescaled, training
        starts at FVU ≤ 1 instead.
        """
        scale = self.fitted_latent_scale(x, target)
        if scale > 0:
            self.scale_latents(scale)

    def scale_latents(self, scale: float) -> None:
        """Make every latent ``scale`` times as strong without changing which ones fire."""
        self.encoder_weight.mul_(scale)
        self.b_enc.mul_(scale)

    @property
    def W_enc(self) -> Tensor:
        """[d_in, d_sae] encoder matrix (a view of ``encoder_weight``)."""
        return self.encoder_weight.t()

    def encoder_input(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.d_in:
            raise ToolkitError(f"this {self.name} SAE encodes vectors of width {self.d_in}, got shape {list(x.shape)}; "
                               "pass activations of the hook it was trained on")
        return x - self.b_dec if self.apply_b_dec_to_input else x

    def pre_acts(self, x: Tensor) -> Tensor:
        """[.., d_in] -> [.., d_sae] encoder pre-activations."""
        return F.linear(self.encoder_input(x), self.encoder_weight, self.b_enc)

    def encode(self, x: Tensor) -> Tensor:
        """[.., d_in] -> [.., d_sae] latent activations (inference)."""
        raise NotImplementedError

    def code_gain(self, latents: Tensor) -> Tensor:
        """[.., d_sae] -> [.., d_sae]: the derivative of each latent of a code ``encode(x)``
        with respect to its linear pre-activation (x − b_dec) · W_enc[:, j], so that
        ∂f_j/∂x = code_gain(f)_j · W_enc[:, j] (away from the thresholds). 1 where a latent
        fires and 0 elsewhere for every architecture whose active latents equal their
        pre-activations plus a constant."""
        return (latents > 0).to(latents.dtype)

    def decode(self, latents: Tensor) -> Tensor:
        """[.., d_sae] -> [.., d_out], without the skip term."""
        if latents.shape[-1] != self.d_sae:
            raise ToolkitError(f"this {self.name} SAE decodes codes of {self.d_sae} latents, got shape "
                               f"{list(latents.shape)}; pass what its encode returns")
        return latents @ self.W_dec + self.b_dec

    def add_skip(self, recon: Tensor, x: Tensor) -> Tensor:
        """recon + x @ W_skip.T for a skip transcoder; recon unchanged otherwise."""
        return recon + x @ self.W_skip.t() if self.W_skip is not None else recon

    def forward(self, x: Tensor) -> Tensor:
        """[.., d_in] -> [.., d_out] reconstruction of the output hook."""
        return self.add_skip(self.decode(self.encode(x)), x)

    def training_forward(self, x: Tensor, target: Tensor, ctx: StepContext) -> StepOutput:
        """One training pass on x [B, d_in] reconstructing target [B, d_out]."""
        raise NotImplementedError

    @torch.no_grad()
    def project_decoder_grad(self) -> None:
        """Remove the gradient component parallel to each unit-norm decoder row."""
        if self.unit_norm_decoder and self.W_dec.grad is not None:
            parallel = torch.einsum("sd,sd->s", self.W_dec.grad, self.W_dec)
            self.W_dec.grad.addcmul_(parallel[:, None], self.W_dec, value=-1.0)

    @torch.no_grad()
    def after_step(self) -> None:
        """Restore constraints after an optimizer step."""
        if self.unit_norm_decoder:
            self.W_dec.div_(torch.linalg.vector_norm(self.W_dec, dim=-1, keepdim=True).clamp_min(1e-8))

    def inference_state(self) -> dict[str, Tensor]:
        """SAELens-keyed weights for ``sae_weights.safetensors`` (contiguous copies)."""
        state = {k: v.detach().clone() for k, v in self.state_dict().items()}
        state["W_enc"] = state.pop("encoder_weight").t().contiguous()
        return state

    def load_inference_state(self, state: dict[str, Tensor]) -> None:
        """Load SAELens-keyed weights (as ``inference_state`` returns them)."""
        state = dict(state)
        state["encoder_weight"] = state.pop("W_enc").t()
        self.load_state_dict(state)

    def saelens_fields(self) -> dict:
        """Architecture-specific cfg.json fields (SAELens names)."""
        return {}
