"""Interventions at TransformerLens hook points: SAE-feature ablation and steering.

An *edit* is a function acts [B, T, d] -> [B, T, d] at one hook (``edit.hook``).
``intervene(model, edits)`` attaches edits to the model's TransformerBridge for the body of
a ``with`` block and removes them on exit, also when the body raises; inside it,
``logits(model, tokens)`` and ``generate(...)`` run the edited model.

- ``FeatureAblation`` changes only the chosen latents a_f of an SAE and keeps its error
  term: h <- h + sum_f (a_f' - a_f) d_f, with d_f the decoder row and a_f' = 0 (``zero``),
  the feature's mean (``mean``), a fixed value (``clamp``) or r a_f (``rescale``, the
  h <- h + (r-1) a d of Laptev et al.; r = 0 removes the feature).
- ``Steering`` adds s d (d of unit norm) at chosen positions.
- ``Recorder`` reads activations under the other edits.

Both have ``control(generator)``: the same edit along random directions of equal norm.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from activations.errors import ToolkitError
from activations.source import check_count
from sae.architectures import SparseCoder

MODES = ("zero", "mean", "clamp", "rescale")
SCHEDULES = ("constant", "linear", "exponential")


def random_directions_like(directions: Tensor, generator: torch.Generator) -> Tensor:
    """Random directions [n, d] with the row norms of directions [n, d]."""
    rows = torch.randn(directions.shape, generator=generator)
    return rows * (directions.norm(dim=-1, keepdim=True) / rows.norm(dim=-1, keepdim=True))


def _select(acts: Tensor, positions: Sequence[int] | None) -> Tensor:
    """[B, T, 1] float mask of the positions to edit (None: all)."""
    mask = torch.zeros(acts.shape[1], 1, dtype=acts.dtype, device=acts.device)
    mask[list(positions) if positions is not None else slice(None)] = 1
    return mask.expand(acts.shape[0], -1, -1)


@dataclass
class FeatureAblation:
    """Set SAE latents ``features`` to a new value, keeping the SAE's error term.

    ``value`` is unused for ``zero``, the means [n] for ``mean``, the clamp value (float or
    [n]) for ``clamp`` and the factor r for ``rescale``.
    """

    sae: SparseCoder
    features: list[int]
    mode: str = "zero"
    value: float | Tensor = 0.0
    positions: Sequence[int] | None = None
    directions: Tensor | None = None
    """[n, d] used in place of the decoder rows (random controls); None: the decoder rows."""

    def __post_init__(self):
        if self.mode not in MODES:
            raise ToolkitError(f"unknown ablation mode '{self.mode}'; use one of {', '.join(MODES)}")
        if len(self.features) == 0:
            raise ToolkitError("no features to ablate: give at least one latent index")
        bad = [f for f in self.features if not 0 <= f < self.sae.d_sae]
        if bad:
            raise ToolkitError(f"features {bad} are out of range for an SAE with d_sae {self.sae.d_sae}")
        shape = torch.as_tensor(self.value).shape
        if shape not in (torch.Size([]), torch.Size([len(self.features)])):
            raise ToolkitError(f"the {self.mode} value must be one number or one per feature "
                               f"({len(self.features)}), got shape {tuple(shape)}")

    @property
    def hook(self) -> str:
        return self.sae.cfg.hook

    def decoder_rows(self) -> Tensor:
        """[n, d] directions the edit moves along."""
        return self.directions if self.directions is not None else self.sae.W_dec[self.features].detach()

    def __call__(self, acts: Tensor) -> Tensor:
        x = acts.float().to(self.sae.W_dec.device)
        a = self.sae.encode(x)[..., self.features]  # [B, T, n]
        value = torch.as_tensor(self.value, dtype=a.dtype, device=a.device)
        new = {"zero": torch.zeros_like(a), "mean": value.expand_as(a), "clamp": value.expand_as(a),
               "rescale": a * value}[self.mode]
        change = (new - a) * _select(a, self.positions)
        return acts + (change @ self.decoder_rows().to(a.device)).to(acts.device, acts.dtype)

    def control(self, generator: torch.Generator) -> FeatureAblation:
        return replace(self, directions=random_directions_like(self.sae.W_dec[self.features].detach(), generator))


@dataclass
class Steering:
    """Add ``scale`` times the unit ``direction`` [d] at ``hook`` and ``positions`` (None: all)."""

    hook: str
    direction: Tensor
    scale: float
    positions: Sequence[int] | None = None

    def __post_init__(self):
        self.direction = self.direction.detach().float() / self.direction.norm().clamp_min(1e-12)

    def __call__(self, acts: Tensor) -> Tensor:
        add = self.scale * self.direction.to(acts.device, acts.dtype)
        return acts + _select(acts, self.positions) * add

    def control(self, generator: torch.Generator) -> Steering:
        return replace(self, direction=random_directions_like(self.direction[None], generator)[0])


@dataclass
class Recorder:
    """An edit that changes nothing and keeps a copy of every acts [B, T, d] it sees at ``hook``."""

    hook: str
    seen: list[Tensor] = field(default_factory=list)

    def __call__(self, acts: Tensor) -> Tensor:
        self.seen.append(acts.detach().clone())
        return acts


def schedule(n: int, kind: str = "constant", decay: float = 0.5) -> list[float]:
    """Per-layer factors for steering n layers of a flow chain, first layer first.

    ``constant``: 1 each; ``linear``: 1 down to 1/n; ``exponential``: decay**i.
    """
    if kind not in SCHEDULES:
        raise ToolkitError(f"unknown steering schedule '{kind}'; use one of {', '.join(SCHEDULES)}")
    if n < 1:
        raise ToolkitError(f"a steering schedule needs at least one layer, got {n}")
    return {"constant": [1.0] * n, "linear": [(n - i) / n for i in range(n)],
            "exponential": [decay ** i for i in range(n)]}[kind]


def chain_steering(chain: list[tuple[str, Tensor]], scale: float, kind: str = "constant",
                   positions: Sequence[int] | None = None, decay: float = 0.5) -> list[Steering]:
    """Steerings along a flow chain [(hook, direction [d]), ...] in layer order, scaled by ``schedule``."""
    return [Steering(hook, direction, scale * w, positions)
            for (hook, direction), w in zip(chain, schedule(len(chain), kind, decay))]


def _as_hook(edit):
    def hook(act: Tensor, hook=None) -> Tensor:
        return edit(act.flatten(-2)).view_as(act) if act.dim() == 4 else edit(act)
    return hook


@contextmanager
def intervene(model, edits: Sequence) -> Iterator:
    """Attach ``edits`` to ``model``'s bridge for the ``with`` body; yields the model."""
    for edit in edits:
        width = model.hook_width(edit.hook)
        if isinstance(edit, Steering) and edit.direction.shape != (width,):
            raise ToolkitError(f"a steering direction at {edit.hook} must be a vector of width {width}, got shape "
                               f"{list(edit.direction.shape)}")
    with model.bridge.hooks(fwd_hooks=[(edit.hook, _as_hook(edit)) for edit in edits]):
        yield model


def ablate(model, sae: SparseCoder, features: list[int], mode: str = "zero", value: float | Tensor = 0.0,
           positions: Sequence[int] | None = None):
    """Context manager: ``FeatureAblation`` of ``features`` attached to ``model``."""
    return intervene(model, [FeatureAblation(sae, list(features), mode, value, positions)])


def steer(model, steerings: Sequence[Steering]):
    """Context manager: ``steerings`` attached to ``model``."""
    return intervene(model, steerings)


@torch.no_grad()
def logits(model, tokens: Tensor) -> Tensor:
    """Logits [B, T, vocab] of tokens [B, T] through the bridge (edited inside ``intervene``)."""
    return model.bridge(tokens.to(model.device)).float()


@torch.no_grad()
def feature_means(model, sae: SparseCoder, tokens: Tensor, batch_size: int = 16) -> Tensor:
    """Mean activation [d_sae] of every latent over tokens [n, T] (BOS position excluded)."""
    total = torch.zeros(sae.d_sae)
    for chunk in tokens.split(batch_size):
        acts = model.capture(chunk, [sae.cfg.hook])[sae.cfg.hook][:, 1:]
        total += sae.encode(acts.float().to(sae.W_dec.device)).sum((0, 1)).cpu()
    return total / (tokens.shape[0] * (tokens.shape[1] - 1))


@torch.no_grad()
def generate(model, prompt: str, max_new_tokens: int = 20, temperature: float = 0.0, seed: int = 0) -> str:
    """Continue ``prompt`` (greedy when temperature is 0), recomputing the full context each
    step so position-based edits see every position; returns the new text only."""
    check_count("max_new_tokens", max_new_tokens)
    tokens = model.to_tokens([prompt])
    gen = torch.Generator().manual_seed(seed)
    start = tokens.shape[1]
    for _ in range(max_new_tokens):
        last = logits(model, tokens)[0, -1].cpu()
        if temperature > 0:
            nxt = torch.multinomial(torch.softmax(last / temperature, -1), 1, generator=gen)
        else:
            nxt = last.argmax().view(1)
        tokens = torch.cat([tokens, nxt.view(1, 1)], dim=1)
        if int(nxt) == model.tokenizer.eos_token_id or tokens.shape[1] >= model.dims.n_ctx:
            break
    return model.tokenizer.decode(tokens[0, start:].tolist())
