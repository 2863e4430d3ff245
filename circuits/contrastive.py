"""Contrastive latents (Ferrando et al. 2024, "Do I know this entity?").

Two prompt sets (say, questions about known and about unknown entities) are run through
the model; an SAE reads one hook at one position of each prompt. Latents are ranked by the
difference of their firing frequencies between the sets, after dropping latents that fire
on more than ``max_density`` of ordinary tokens (dense latents separate everything a bit
and mean nothing). The top latents score new prompts (``score``, ``auroc``) and steer the
model (``circuits.interventions.Steering`` along their decoder directions), best at the
positions where the model reads the entity: from its first token to the end of the prompt
(``positions_from``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from activations.errors import ToolkitError
from circuits.interventions import Steering, generate, intervene
from sae.architectures import SparseCoder


def by_length(model, prompts: list[str]) -> list[tuple[list[int], Tensor]]:
    """Prompts grouped by token length: [(prompt indices, tokens [b, T])]."""
    groups: dict[int, list[int]] = defaultdict(list)
    encoded = [model.tokenizer.encode(p) for p in prompts]
    for i, ids in enumerate(encoded):
        groups[len(ids)].append(i)
    return [(idx, model.to_tokens([prompts[i] for i in idx])) for idx in groups.values()]


@torch.no_grad()
def latent_activations(model, sae: SparseCoder, prompts: list[str], position: int = -1) -> Tensor:
    """Latent activations [n_prompts, d_sae] at ``position`` of each prompt (-1: its last token)."""
    if not prompts:
        raise ToolkitError("no prompts given")
    out = torch.zeros(len(prompts), sae.d_sae)
    for idx, tokens in by_length(model, prompts):
        acts = model.capture(tokens, [sae.cfg.hook])[sae.cfg.hook][:, position]
        out[idx] = sae.encode(acts.float().to(sae.W_dec.device)).cpu()
    return out


def rank_latents(acts_a: Tensor, acts_b: Tensor, density: Tensor, max_density: float = 0.1) -> Tensor:
    """Latent indices [d_sae'] sorted by firing frequency in set a minus set b, best first.

    acts_a [n_a, d_sae], acts_b [n_b, d_sae]; density [d_sae]: each latent's firing rate on
    ordinary tokens (fraction); latents above ``max_density`` are left out.
    """
    diff = (acts_a > 0).float().mean(0) - (acts_b > 0).float().mean(0)
    keep = torch.nonzero(density <= max_density).squeeze(1)
    return keep[diff[keep].argsort(descending=True, stable=True)]


def score(acts: Tensor, latents: Tensor) -> Tensor:
    """[n] summed activation of ``latents`` in acts [n, d_sae]."""
    return acts[:, latents].sum(1)


def auroc(positive: Tensor, negative: Tensor) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    greater = (positive[:, None] > negative[None, :]).float().mean()
    ties = (positive[:, None] == negative[None, :]).float().mean()
    return float(greater + 0.5 * ties)


def latent_steering(sae: SparseCoder, latents: list[int], scale: float, positions=None) -> list[Steering]:
    """One ``Steering`` per latent along its decoder direction at the SAE's hook."""
    return [Steering(sae.cfg.hook, sae.W_dec[i].detach(), scale, positions) for i in latents]


def positions_from(model, prompt: str, text: str) -> list[int]:
    """Token positions of ``prompt`` (BOS first, as ``model.to_tokens``) from the first token of
    ``text`` (say, an entity's name) to the prompt's end."""
    if text not in prompt:
        raise ToolkitError(f"'{text}' does not occur in the prompt '{prompt}'")
    head = prompt[:prompt.index(text)].rstrip()
    full, before = model.to_tokens([prompt])[0], model.to_tokens([head])[0]
    if not torch.equal(full[:len(before)], before):
        raise ToolkitError(f"'{text}' does not start at a token boundary of '{prompt}'")
    return list(range(len(before), len(full)))


def answer_rate(model, prompts: list[str], refusal: str, edits: Sequence | Callable[[str], Sequence] = (),
                max_new_tokens: int = 6) -> float:
    """Fraction of greedy continuations that do not start with ``refusal``, under ``edits``
    (the same for every prompt, or a function of the prompt)."""
    answered = 0
    for prompt in prompts:
        with intervene(model, list(edits(prompt) if callable(edits) else edits)):
            answered += not generate(model, prompt, max_new_tokens).strip().startswith(refusal.strip()[:8])
    return answered / len(prompts)
