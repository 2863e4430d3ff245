"""Which features two dictionaries share, and how one dictionary's features split in another.

Two sparse coders writing to one basis (two seeds of a recipe, two widths, two
architectures) are compared feature by feature through their unit decoder directions, the
comparison of Bricken et al. (2023, "feature splitting") and Paulo & Belrose (2025, "SAEs
trained on the same data learn different features"):

- **best match**: each feature's most similar feature (cosine of unit decoder rows) in the
  other dictionary, both ways;
- **shared**: a mutual best match (each is the other's most similar feature) whose cosine
  is at least ``threshold``;
- **families**: each feature of B is the child of its best match in A when their cosine is
  at least ``child_threshold``; an A feature with two or more children is *split* in B.

Decoder geometry alone can mislead (two directions can be close and fire on different
tokens), so ``firing_agreement`` checks the matches on activations: the Pearson correlation
of each shared pair's activations over the same tokens, and, for each family, how often a
child fires where the parent fires (recall) and the parent fires where a child fires
(precision). A split that the activations confirm has both near 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from activations.errors import ToolkitError
from activations.hooks import parse_hook
from activations.source import ActivationSource, check_count
from sae.architectures import SparseCoder

CUTS = (0.5, 0.7, 0.9)
"""Cosines at which the share of features with a match is reported."""
CHANCE_SEED = 20_231_010
"""Seed of the random directions behind ``Comparison.chance``."""


@torch.no_grad()
def best_matches(targets: Tensor, sources: Tensor, block: int = 2048) -> tuple[Tensor, Tensor]:
    """For each unit row of targets [n, d], its most similar row of sources [m, d].

    Returns (cosine [n], index [n]). Works through [block, block] similarity tiles.
    """
    best = torch.full((targets.shape[0],), -2.0)
    index = torch.zeros(targets.shape[0], dtype=torch.long)
    for t0 in range(0, targets.shape[0], block):
        rows = targets[t0:t0 + block]
        for s0 in range(0, sources.shape[0], block):
            value, arg = (rows @ sources[s0:s0 + block].T).max(dim=1)
            better = value > best[t0:t0 + block]
            best[t0:t0 + block] = torch.where(better, value, best[t0:t0 + block])
            index[t0:t0 + block] = torch.where(better, arg + s0, index[t0:t0 + block])
    return best, index


def unit_rows(matrix: Tensor) -> Tensor:
    """[n, d] rows scaled to unit norm (a zero row stays zero)."""
    return matrix / matrix.norm(dim=1, keepdim=True).clamp_min(1e-12)


def unit_decoder(sae: SparseCoder) -> Tensor:
    """The coder's decoder rows [d_sae, d_out] scaled to unit norm, float32 on the CPU."""
    return unit_rows(sae.W_dec.detach().float().cpu())


def check_cosine(name: str, value: float) -> None:
    """Refuse a threshold that no cosine can be compared with."""
    if not -1.0 <= value <= 1.0:
        raise ToolkitError(f"{name} {value} is not a cosine; pass a value in [-1, 1]")


def check_comparable(a: SparseCoder, b: SparseCoder) -> None:
    """Refuse coders whose decoders write to different spaces; the error names both hooks."""
    hook_a, hook_b = a.cfg.output_hook, b.cfg.output_hook
    if a.d_out != b.d_out or parse_hook(hook_a, 10**6).basis != parse_hook(hook_b, 10**6).basis:
        raise ToolkitError(f"the SAEs write to different spaces ({hook_a}, width {a.d_out}; {hook_b}, width "
                           f"{b.d_out}); compare dictionaries of one basis, e.g. two SAEs of one hook")
    first, second = (getattr(s, "metadata", {}).get("model_name") for s in (a, b))
    if first and second and first != second:
        from activations.models import same_model
        if not same_model(first, second):
            raise ToolkitError(f"the SAEs come from different models ({first}, {second}); their features "
                               "cannot be compared")


@dataclass
class Comparison:
    """Decoder-geometry comparison of dictionary A [n_a features] with B [n_b]."""

    a_cos: Tensor
    """[n_a] cosine of each A feature's best match in B."""
    a_match: Tensor
    """[n_a] index of that match in B."""
    b_cos: Tensor
    """[n_b] cosine of each B feature's best match in A."""
    b_match: Tensor
    """[n_b] index of that match in A."""
    threshold: float
    child_threshold: float
    chance: Tensor
    """[n_a] cosine of each A feature's best match among n_b random unit directions: what
    the best matches would be if B knew nothing of A (in d dimensions, about
    sqrt(2 ln n_b / d))."""
    agreement: dict = field(default_factory=dict)
    """``firing_agreement``'s results, when activations were read."""

    @property
    def shared(self) -> Tensor:
        """[P, 2] (A index, B index) of the mutual best matches with cosine >= threshold."""
        a = torch.arange(len(self.a_cos))
        mutual = (self.b_match[self.a_match] == a) & (self.a_cos >= self.threshold)
        return torch.stack([a[mutual], self.a_match[mutual]], dim=1)

    def families(self) -> dict[int, list[int]]:
        """A feature -> its children in B (cosine >= child_threshold), most similar first;
        only A features with two or more children (the split ones)."""
        keep = (self.b_cos >= self.child_threshold).nonzero().squeeze(1)
        order = keep[torch.argsort(self.b_cos[keep], descending=True)]
        children: dict[int, list[int]] = {}
        for child in order.tolist():
            children.setdefault(int(self.b_match[child]), []).append(child)
        return {parent: kids for parent, kids in sorted(children.items()) if len(kids) >= 2}

    def summary(self) -> dict:
        """Shares and medians of the comparison (JSON-ready)."""
        families = self.families()
        shared = self.shared
        return {
            "n_a": len(self.a_cos), "n_b": len(self.b_cos),
            "threshold": self.threshold, "child_threshold": self.child_threshold,
            "a_in_b": _distribution(self.a_cos), "b_in_a": _distribution(self.b_cos),
            "a_in_random": _distribution(self.chance),
            "shared": len(shared), "shared_share_a": len(shared) / len(self.a_cos),
            "shared_share_b": len(shared) / len(self.b_cos),
            "split": len(families), "children": sum(len(k) for k in families.values()),
        }


def _distribution(cos: Tensor) -> dict:
    return {"median": float(cos.median()), **{f">={cut}": float((cos >= cut).float().mean()) for cut in CUTS}}


def compare(a: SparseCoder, b: SparseCoder, threshold: float = 0.7, child_threshold: float = 0.5) -> Comparison:
    """Match the features of ``a`` and ``b`` by decoder cosine (see the module docstring)."""
    check_comparable(a, b)
    check_cosine("threshold", threshold)
    check_cosine("child_threshold", child_threshold)
    da, db = unit_decoder(a), unit_decoder(b)
    a_cos, a_match = best_matches(da, db)
    b_cos, b_match = best_matches(db, da)
    gen = torch.Generator().manual_seed(CHANCE_SEED)
    random = torch.randn(db.shape[1], db.shape[0], generator=gen).T  # never an SAE's randn(d_sae, d) start
    chance, _ = best_matches(da, unit_rows(random))
    return Comparison(a_cos, a_match, b_cos, b_match, threshold, child_threshold, chance)


class _Agreement:
    """Running firing statistics of the shared pairs and the families over token batches."""

    def __init__(self, pairs: Tensor, families: dict[int, list[int]], n_a: int, n_b: int):
        self.pairs = pairs
        self.parents = torch.tensor(list(families), dtype=torch.long)
        self.children = torch.tensor([c for kids in families.values() for c in kids], dtype=torch.long)
        self.family_of = torch.tensor([i for i, kids in enumerate(families.values()) for _ in kids], dtype=torch.long)
        self.sums = torch.zeros(5, len(pairs), dtype=torch.float64)  # Σa, Σb, Σa², Σb², Σab
        self.fired = (torch.zeros(n_a, dtype=torch.long), torch.zeros(n_b, dtype=torch.long))
        self.family = torch.zeros(3, len(families), dtype=torch.long)  # parent, any child, both
        self.n = 0

    def update(self, za: Tensor, zb: Tensor) -> None:
        """Add one batch of latents za [N, n_a], zb [N, n_b]."""
        za, zb = za.float().cpu(), zb.float().cpu()
        x, y = za[:, self.pairs[:, 0]].double(), zb[:, self.pairs[:, 1]].double()
        self.sums += torch.stack([x.sum(0), y.sum(0), (x * x).sum(0), (y * y).sum(0), (x * y).sum(0)])
        self.fired[0].add_((za > 0).sum(0))
        self.fired[1].add_((zb > 0).sum(0))
        parent = za[:, self.parents] > 0
        child = torch.zeros(len(za), len(self.parents)).index_add_(1, self.family_of, (zb[:, self.children] > 0).float()) > 0
        self.family += torch.stack([parent.sum(0), child.sum(0), (parent & child).sum(0)])
        self.n += len(za)

    def correlations(self) -> Tensor:
        """[P] Pearson correlation of each pair over the tokens seen (NaN where one never varies)."""
        sa, sb, saa, sbb, sab = self.sums
        cov = sab - sa * sb / self.n
        var = (saa - sa * sa / self.n) * (sbb - sb * sb / self.n)
        return torch.where(var > 0, cov / var.clamp_min(1e-300).sqrt(), torch.full_like(var, float("nan"))).float()

    def result(self) -> dict:
        parent, child, both = self.family.double()
        return {"n_tokens": self.n, "correlation": self.correlations(),
                "fired_a": self.fired[0], "fired_b": self.fired[1],
                "recall": torch.where(parent > 0, both / parent.clamp_min(1), torch.nan).float(),
                "precision": torch.where(child > 0, both / child.clamp_min(1), torch.nan).float()}


@torch.no_grad()
def firing_agreement(comparison: Comparison, a: SparseCoder, b: SparseCoder, source: ActivationSource,
                     n_tokens: int, batch_size: int = 4096, seed: int = 1) -> dict:
    """Check ``comparison``'s matches on the first ``n_tokens`` tokens of ``source``.

    Returns ``n_tokens``; ``correlation`` [P], the Pearson correlation of each shared pair's
    activations (``comparison.shared`` order); ``fired_a`` [n_a] and ``fired_b`` [n_b], each
    latent's firing count; and, per split family (``comparison.families()`` order),
    ``recall`` (share of the parent's firings on which a child fires) and ``precision``
    (share of the children's firings on which the parent fires). Also stored on
    ``comparison.agreement``.
    """
    check_count("n_tokens", n_tokens)
    for sae in (a, b):
        if sae.cfg.hook not in source.hooks:
            raise ToolkitError(f"the activations have no hook {sae.cfg.hook}, which this SAE reads; available "
                               f"hooks: {', '.join(source.hooks)}")
        if source.widths[sae.cfg.hook] != sae.d_in:
            raise ToolkitError(f"the SAE reads width {sae.d_in} at {sae.cfg.hook} but the activations have "
                               f"{source.widths[sae.cfg.hook]}; they come from another model")
    running = _Agreement(comparison.shared, comparison.families(), len(comparison.a_cos), len(comparison.b_cos))
    hooks = list(dict.fromkeys((a.cfg.hook, b.cfg.hook)))
    for batch in source.batches(batch_size, hooks=hooks, seed=seed):
        batch = {h: acts[: n_tokens - running.n] for h, acts in batch.items()}
        running.update(a.encode(batch[a.cfg.hook].to(a.W_dec.device)), b.encode(batch[b.cfg.hook].to(b.W_dec.device)))
        if running.n >= n_tokens:
            break
    comparison.agreement = running.result()
    return comparison.agreement
