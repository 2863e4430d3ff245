"""Contrastive latents (Ferrando et al. 2024, "Do I know this entity?").

Two prompt sets (say, questions about known and about unknown entities) are run through
the model; an SAE reads one hook at one position of each prompt. Latents are ranked by the
difference of their firing frequencies between the sets, after dropping latents that fire
on more than ``max_density`` of ordinary tokens (dense latents separate everything a bit
and mean nothing). The top latents score new prompts (``score``, ``auroc``) and steer the
model (``circuits.interventions.Steering`` along their decoder directions), best at the
positions where the model reads the entity: from its first token to the end of the prompt
(``positions_from``).

``contrast`` does the whole comparison for one SAE: rank on one part of the prompts, and check
on the other how well the top latents separate the sets, beside the same check along the
difference of the hook's mean activations (no dictionary), which says how much of a shortfall
is the model's. ``prompt_set`` reads a set from a file or names a built-in one (``sae contrast``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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
def hook_activations(model, hook: str, prompts: list[str], position: int = -1) -> Tensor:
    """The model's activations [n_prompts, d] at ``hook`` and ``position`` of each prompt
    (-1: its last token; BOS is position 0)."""
    if not prompts:
        raise ToolkitError("no prompts given")
    groups = by_length(model, prompts)
    shortest = min(tokens.shape[1] for _, tokens in groups)
    if not -shortest <= position < shortest:
        raise ToolkitError(f"position {position} is outside the shortest prompt's {shortest} tokens (BOS included); "
                           f"give 0..{shortest - 1}, or -1..-{shortest} from the end")
    out = torch.zeros(len(prompts), model.hook_width(hook))
    for idx, tokens in groups:
        out[idx] = model.capture(tokens, [hook])[hook][:, position].float().cpu()
    return out


@torch.no_grad()
def latent_activations(model, sae: SparseCoder, prompts: list[str], position: int = -1) -> Tensor:
    """Latent activations [n_prompts, d_sae] at ``position`` of each prompt (-1: its last token)."""
    acts = hook_activations(model, sae.cfg.hook, prompts, position)
    return sae.encode(acts.to(sae.W_dec.device)).cpu()


def rank_latents(acts_a: Tensor, acts_b: Tensor, density: Tensor, max_density: float = 0.1,
                 by: str = "frequency") -> Tensor:
    """Latent indices [d_sae'] sorted by firing frequency (or, ``by="mean"``, mean activation)
    in set a minus set b, best first.

    acts_a [n_a, d_sae], acts_b [n_b, d_sae]; density [d_sae]: each latent's firing rate on
    ordinary tokens (fraction); latents above ``max_density`` are left out.
    """
    if by not in ("frequency", "mean"):
        raise ValueError(f"rank latents by 'frequency' or 'mean', not {by!r}")
    a, b = (acts_a > 0, acts_b > 0) if by == "frequency" else (acts_a, acts_b)
    diff = a.float().mean(0) - b.float().mean(0)
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


def dense_direction(acts_a: Tensor, acts_b: Tensor) -> Tensor:
    """[d] the difference of the two sets' mean activations: the dictionary-free reading."""
    return acts_a.mean(0) - acts_b.mean(0)


@dataclass
class Contrast:
    """What ``contrast`` found for one SAE. Frequencies are on the ranking prompts; the AUROCs
    (set a above set b) on the evaluation prompts, empty when there are none."""
    hook: str
    position: int
    ranked: Tensor  # latent indices, best first, denser latents left out
    freq_a: Tensor  # [d_sae] fraction of set a's ranking prompts on which each latent fires
    freq_b: Tensor
    density: Tensor | None  # [d_sae] firing rate on ordinary tokens, when the SAE folder has it
    max_density: float
    counts: dict[str, int]  # rank_a, rank_b, eval_a, eval_b
    auroc_top: dict[int, float] = field(default_factory=dict)  # n -> AUROC of the top n latents' summed activation
    dense_auroc: float | None = None  # AUROC along ``dense_direction`` of the ranking prompts

    def rows(self, n: int) -> list[dict]:
        """The top ``n`` latents, each with its frequencies, their difference and its density."""
        return [{"latent": int(i), "freq_a": float(self.freq_a[i]), "freq_b": float(self.freq_b[i]),
                 "difference": float(self.freq_a[i] - self.freq_b[i]),
                 "density": None if self.density is None else float(self.density[i])}
                for i in self.ranked[:n]]


def contrast(model, sae: SparseCoder, rank_a: list[str], rank_b: list[str], eval_a: list[str] = (),
             eval_b: list[str] = (), density: Tensor | None = None, max_density: float = 0.1,
             tops: Sequence[int] = (1, 4, 8), position: int = -1) -> Contrast:
    """Rank ``sae``'s latents on ``rank_a`` against ``rank_b`` (``rank_latents``; without
    ``density`` nothing is left out) and, when evaluation prompts are given, the AUROC of the
    top n latents for each n in ``tops`` and of the dense direction."""
    hook = sae.cfg.hook
    raw = {name: hook_activations(model, hook, list(prompts), position)
           for name, prompts in (("rank_a", rank_a), ("rank_b", rank_b), ("eval_a", eval_a), ("eval_b", eval_b))
           if prompts}
    latents = {name: sae.encode(x.to(sae.W_dec.device)).cpu() for name, x in raw.items()}
    keep = torch.zeros(sae.d_sae) if density is None else density.float().cpu()
    ranked = rank_latents(latents["rank_a"], latents["rank_b"], keep, max_density)
    if not len(ranked):
        raise ToolkitError(f"every latent of the SAE on {hook} fires on more than {max_density:g} of ordinary "
                           "tokens; raise the density limit (--max-density)")
    result = Contrast(hook, position, ranked, (latents["rank_a"] > 0).float().mean(0),
                      (latents["rank_b"] > 0).float().mean(0), density, max_density,
                      {name: len(x) for name, x in raw.items()} | {k: 0 for k in ("eval_a", "eval_b") if k not in raw})
    if "eval_a" in raw and "eval_b" in raw:
        for n in sorted({n for n in tops if 0 < n <= len(ranked)}):
            top = ranked[:n]
            result.auroc_top[n] = auroc(score(latents["eval_a"], top), score(latents["eval_b"], top))
        direction = dense_direction(raw["rank_a"], raw["rank_b"])
        result.dense_auroc = auroc(raw["eval_a"] @ direction, raw["eval_b"] @ direction)
    return result


def _builtin_sets() -> dict[str, Callable[[int, int], list[dict]]]:
    from activations.corpus import entity_prompts, made_up_entity_prompts, never_asked_prompts
    return {"entities:known": lambda n, seed: entity_prompts(n, True, seed, "train"),
            "entities:unknown": lambda n, seed: entity_prompts(n, False, seed, "train"),
            "entities:known-heldout": lambda n, seed: entity_prompts(n, True, seed, "heldout"),
            "entities:never-asked": lambda n, seed: entity_prompts(n, False, seed, "heldout"),
            "entities:never-asked-a": lambda n, seed: never_asked_prompts(n, seed, 0, "train"),
            "entities:never-asked-b": lambda n, seed: never_asked_prompts(n, seed, 1, "heldout"),
            "entities:made-up": lambda n, seed: made_up_entity_prompts(n, seed)}


BUILTIN_SETS = tuple(_builtin_sets())  # known and unknown (refused in training) entities in training phrasings;
# known ones and never-asked ones in held-out phrasings; one half of the never-asked entities in
# training phrasings (-a) and the other half in held-out phrasings (-b); made-up names the corpus never uses


def _prompt_of(item, where: str) -> str:
    prompt = item.get("prompt") if isinstance(item, dict) else item
    if not isinstance(prompt, str) or not prompt.strip():
        raise ToolkitError(f"{where} is not a prompt: give a non-empty string or an object with a \"prompt\" string")
    return prompt


def prompt_set(spec: str, n: int = 200, seed: int = 0) -> list[str]:
    """The prompts ``spec`` names: a built-in set (``BUILTIN_SETS``; ``n`` prompts drawn with
    ``seed``), or a file: .txt (a prompt per non-blank line), .jsonl (a JSON string or
    {"prompt": ...} per line) or .json (a list of those)."""
    builtins = _builtin_sets()
    if spec in builtins:
        return [item["prompt"] for item in builtins[spec](n, seed)]
    path = Path(spec)
    if not path.is_file():
        raise ToolkitError(f"prompt set '{spec}' is neither a file nor a built-in set ({', '.join(BUILTIN_SETS)})")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".txt":
        prompts = [line for line in text.splitlines() if line.strip()]
    elif path.suffix == ".jsonl":
        prompts = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    item = json.loads(line)
                except ValueError as err:
                    raise ToolkitError(f"{path} line {number} is not JSON ({err})") from None
                prompts.append(_prompt_of(item, f"{path} line {number}"))
    elif path.suffix == ".json":
        try:
            items = json.loads(text)
        except ValueError as err:
            raise ToolkitError(f"{path} is not JSON ({err})") from None
        if not isinstance(items, list):
            raise ToolkitError(f"{path} must hold a JSON list of prompts")
        prompts = [_prompt_of(item, f"{path} item {i}") for i, item in enumerate(items)]
    else:
        raise ToolkitError(f"{path}: give prompts as .txt (one per line), .jsonl or .json")
    if not prompts:
        raise ToolkitError(f"{path} holds no prompts")
    return prompts


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


def continuations(model, prompts: list[str], edits: Sequence | Callable[[str], Sequence] = (),
                  max_new_tokens: int = 6) -> list[str]:
    """Greedy continuations of ``prompts`` under ``edits`` (the same for every prompt, or a
    function of the prompt)."""
    out = []
    for prompt in prompts:
        with intervene(model, list(edits(prompt) if callable(edits) else edits)):
            out.append(generate(model, prompt, max_new_tokens))
    return out


def refuses(continuation: str, refusal: str) -> bool:
    """Whether ``continuation`` starts like ``refusal`` (its first 8 characters)."""
    return continuation.strip().startswith(refusal.strip()[:8])


def answer_rate(model, prompts: list[str], refusal: str, edits: Sequence | Callable[[str], Sequence] = (),
                max_new_tokens: int = 6) -> float:
    """Fraction of greedy continuations that do not start with ``refusal``, under ``edits``
    (the same for every prompt, or a function of the prompt)."""
    texts = continuations(model, prompts, edits, max_new_tokens)
    return sum(not refuses(text, refusal) for text in texts) / len(prompts)
