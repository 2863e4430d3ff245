"""Effect measures of an intervention, each against random-direction controls of equal norm.

A metric maps logits [B, T, vocab] to one number. ``measure`` runs the clean model, the
edited model and ``n_controls`` copies of the edit along random directions of equal norm
(``edit.control``), so an effect reads as "edited − clean" next to the spread of
"control − clean". One forward pass per condition serves every metric.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from circuits.interventions import intervene, logits
from sae import metrics

Metric = Callable[[Tensor], float]


def logit_diff(right: Tensor, wrong: Tensor, position: int = -1) -> Metric:
    """Mean logit(right) − logit(wrong) at ``position``; right, wrong: token ids [B]."""
    def metric(out: Tensor) -> float:
        last = out[:, position]
        rows = torch.arange(last.shape[0])
        return float((last[rows, right] - last[rows, wrong]).mean())
    return metric


def target_prob(target: Tensor, position: int = -1) -> Metric:
    """Mean probability of token ids target [B] at ``position``."""
    def metric(out: Tensor) -> float:
        probs = out[:, position].softmax(-1)
        return float(probs[torch.arange(probs.shape[0]), target].mean())
    return metric


def next_token_ce(tokens: Tensor) -> Metric:
    """Next-token cross-entropy (nats) on tokens [B, T]."""
    return lambda out: metrics.next_token_ce(out, tokens.to(out.device))


def kl_from(clean: Tensor) -> Metric:
    """Mean next-token KL(clean ‖ edited) against clean logits [B, T, vocab]."""
    return lambda out: metrics.next_token_kl(clean.to(out.device), out)


def _report(clean: float, edited: float, controls: list[float]) -> dict:
    ctrl = torch.tensor(controls) - clean
    std = float(ctrl.std()) if len(controls) > 1 else 0.0
    effect = edited - clean
    return {"clean": clean, "edited": edited, "effect": effect, "controls": controls,
            "control_effect_mean": float(ctrl.mean()), "control_effect_std": std,
            "z": (effect - float(ctrl.mean())) / std if std > 0 else None}


@torch.no_grad()
def measure(model, edits: Sequence, tokens: Tensor, named: dict[str, Metric], n_controls: int = 8,
            seed: int = 0) -> dict[str, dict]:
    """Metric name -> {clean, edited, effect, controls, control_effect_mean/std, z} on tokens [B, T]."""
    gen = torch.Generator().manual_seed(seed)
    clean = logits(model, tokens)
    with intervene(model, edits):
        edited = logits(model, tokens)
    controls = []
    for _ in range(n_controls):
        with intervene(model, [edit.control(gen) for edit in edits]):
            controls.append(logits(model, tokens))
    return {name: _report(fn(clean), fn(edited), [fn(c) for c in controls]) for name, fn in named.items()}


def standard_metrics(clean_tokens: Tensor, model) -> dict[str, Metric]:
    """CE on held-out tokens and KL from the clean model there, for ``measure``."""
    return {"ce": next_token_ce(clean_tokens), "kl": kl_from(logits(model, clean_tokens))}
