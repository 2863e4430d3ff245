"""Node attribution in an SAE-spliced model (Marks et al. 2024, section 2).

At every node hook the activation x [N, T, d] is split into SAE features f = encode(x)
[N, T, d_sae] and an error e = x − decode(f) [N, T, d]: each feature is a node, and the
error vector at each (hook, position) is one more node. Node scores are stored as one
tensor per hook with the error node as the last column: [T, d_sae + 1] per position, or
[d_sae + 1] summed over positions.

A node's score estimates its indirect effect IE = m(clean) − m(node := baseline), averaged
over examples, where the baseline is the node's value on the patch prompt ("counterfactual")
or zero ("zero"): positive scores mark nodes that carry the behaviour. Estimators:

- ``atp``: attribution patching, ∇m(clean) · (clean − baseline); one forward and backward.
- ``ig``: integrated gradients, the gradient averaged at ``steps`` midpoints on the straight
  line from baseline to clean, one hook at a time (all steps batched into one pass).
- ``exact``: activation patching of the given nodes, batched (the ground truth for tests).

``check_against_patching`` patches the top nodes of an attribution exactly and reports how
well the estimate ranks them (Spearman): a check of the estimator on the user's own behaviour.

The metric defaults to the logit difference clean − patch answer at each prompt's last
position; any ``metric(logits [N, T, vocab], batch) -> [N]`` may replace it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from activations.errors import ToolkitError
from circuits.datasets import PromptBatch
from sae.architectures import SparseCoder

Metric = Callable[[Tensor, PromptBatch], Tensor]
Edit = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
"""(f [N, T, d_sae], e [N, T, d]) -> replacement (f, e) at one hook."""
_SITES = ("hook_resid_pre", "hook_attn_out", "hook_mlp_out", "hook_resid_post")


class _Stop(Exception):
    """Ends a spliced pass early (``SplicedModel.run(stop_at=...)``)."""


def logit_diff(logits: Tensor, batch: PromptBatch) -> Tensor:
    """logit(clean answer) − logit(patch answer) at each prompt's last position: [N]."""
    last = logits[torch.arange(logits.shape[0]), batch.last.to(logits.device)]
    rows = torch.arange(last.shape[0])
    return last[rows, batch.clean_answer.to(last.device)] - last[rows, batch.patch_answer.to(last.device)]


def hook_order(hook: str) -> tuple[int, int]:
    """Execution order of a node hook: (layer, site rank)."""
    parts = hook.split(".")
    if len(parts) != 3 or parts[0] != "blocks" or parts[2] not in _SITES:
        raise ToolkitError(f"'{hook}' is not a circuit node hook; use blocks.L.hook_resid_pre/attn_out/mlp_out/resid_post")
    return int(parts[1]), _SITES.index(parts[2])


class SplicedModel:
    """A model with SAEs spliced in at their hooks, keeping each SAE's error term.

    ``saes``: hook name -> coder (input hook = output hook). Left alone, a hook returns its
    activation x = decode(f) + e unchanged, so the logits equal ``model.forward`` with identity
    patches exactly; the gradient g reaching x gives the nodes' gradients, f and e being
    independent inputs of decode(f) + e: ∂m/∂f = g @ W_decᵀ and ∂m/∂e = g (``run(grads=...)``).
    """

    def __init__(self, model, saes: dict[str, SparseCoder]):
        for hook, sae in saes.items():
            if sae.cfg.hook != hook or sae.cfg.output_hook != hook:
                raise ToolkitError(f"the SAE for '{hook}' reads '{sae.cfg.hook}'; circuits need SAEs at their own hooks")
            if sae.d_in != model.hook_width(hook):
                raise ToolkitError(f"the SAE for '{hook}' has d_in {sae.d_in} but the model's width there is "
                                   f"{model.hook_width(hook)}")
            sae.requires_grad_(False)
        self.model = model
        self.saes = dict(sorted(saes.items(), key=lambda kv: hook_order(kv[0])))
        self.hooks = list(self.saes)
        model.bridge.requires_grad_(False)

    def d_sae(self, hook: str) -> int:
        return self.saes[hook].d_sae

    def split(self, hook: str, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x [N, T, d] -> (f [N, T, d_sae], x̂ [N, T, d], e [N, T, d])."""
        sae = self.saes[hook]
        f = sae.encode(x.to(sae.W_dec.dtype))
        x_hat = sae.decode(f).to(x.dtype)
        return f, x_hat, x - x_hat

    def run(self, tokens: Tensor, edits: dict[str, Edit] | None = None, hooks: list[str] | None = None,
            extra: dict[str, Callable[[Tensor], Tensor]] | None = None, stop_at: str | None = None,
            grads: dict[str, Tensor] | None = None) -> tuple[Tensor | None, dict[str, tuple[Tensor, Tensor]]]:
        """Logits [N, T, vocab] and hook -> (f, e) as used, splicing ``hooks`` (default all).

        ``edits`` replace (f, e) at their hooks; ``extra`` are plain patches at other hooks
        (e.g. stop-gradients). ``stop_at``: end the pass right after splicing that hook (logits
        are then None). ``grads``: filled by the backward pass with hook -> ∂m/∂x [N, T, d].
        """
        edits = edits or {}
        nodes: dict[str, tuple[Tensor, Tensor]] = {}

        def splice(hook: str) -> Callable[[Tensor], Tensor]:
            def patch(x: Tensor) -> Tensor:
                if torch.is_grad_enabled() and not x.requires_grad:
                    x = x.detach().requires_grad_(True)
                f, _, e = self.split(hook, x)
                if hook in edits:
                    f, e = edits[hook](f, e)
                    out = self.saes[hook].decode(f).to(x.dtype) + e
                else:
                    out = x.clone()
                if grads is not None and out.requires_grad:
                    out.register_hook(lambda g, hook=hook: grads.__setitem__(hook, g))
                nodes[hook] = (f, e)
                if hook == stop_at:
                    raise _Stop
                return out
            return patch

        patches = {h: splice(h) for h in (self.hooks if hooks is None else hooks)}
        try:
            return self.model.forward(tokens, {**(extra or {}), **patches}), nodes
        except _Stop:
            return None, nodes

    def cut(self, tokens: Tensor, hooks: list[str]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """One unspliced pass cut at ``hooks``: (inputs, leaves), hook -> [N, T, d].

        Each hook records the activation reaching it (``inputs``, still attached to the
        leaves upstream of it) and passes on a fresh leaf of equal value (``leaves``). The
        gradient of ``inputs[d]`` with respect to ``leaves[u]`` is then the direct path from
        u to d that avoids every other cut hook. The pass ends at the last of the hooks."""
        inputs: dict[str, Tensor] = {}
        leaves: dict[str, Tensor] = {}
        last = max(hooks, key=hook_order)

        def cut_at(hook: str) -> Callable[[Tensor], Tensor]:
            def patch(x: Tensor) -> Tensor:
                inputs[hook] = x
                if hook == last:
                    raise _Stop
                leaves[hook] = x.detach().requires_grad_(True)
                return leaves[hook]
            return patch

        try:
            self.model.forward(tokens, {h: cut_at(h) for h in hooks})
        except _Stop:
            pass
        return inputs, leaves

    @torch.no_grad()
    def values(self, tokens: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        """hook -> (f [N, T, d_sae], e [N, T, d]) of an unedited run."""
        return self.run(tokens)[1]


@dataclass
class Attribution:
    """Node scores of one behaviour.

    scores, activations: hook -> [T, d_sae + 1] (per position) or [d_sae + 1] (summed); the
    last column is the error node. Scores are mean IE over examples; activations are mean
    clean feature activations (error: mean error norm) over examples (and real positions when
    summed). grads, deltas: hook -> (f-part [N, T, d_sae], e-part [N, T, d]) of ∇m and of
    clean − baseline, kept for edges. ``total``: mean m(clean) − m(baseline everywhere).
    """

    scores: dict[str, Tensor]
    activations: dict[str, Tensor]
    grads: dict[str, tuple[Tensor, Tensor]]
    deltas: dict[str, tuple[Tensor, Tensor]]
    per_position: bool
    total: float


def _baselines(spliced: SplicedModel, batch: PromptBatch, baseline: str) -> dict[str, tuple[Tensor, Tensor]]:
    if baseline == "counterfactual":
        return spliced.values(batch.patch)
    if baseline == "zero":
        return {h: (torch.zeros_like(f), torch.zeros_like(e)) for h, (f, e) in spliced.values(batch.clean).items()}
    raise ToolkitError(f"unknown baseline '{baseline}'; use counterfactual or zero")


def node_effect(grad_f: Tensor, grad_e: Tensor, delta_f: Tensor, delta_e: Tensor, per_position: bool) -> Tensor:
    """Per-node grad·delta averaged over examples: [T, d_sae + 1] or [d_sae + 1]."""
    scores = torch.cat([grad_f * delta_f, (grad_e * delta_e).sum(-1, keepdim=True)], dim=-1).mean(0)
    return scores if per_position else scores.sum(0)


def _activations(f: Tensor, e: Tensor, batch: PromptBatch, per_position: bool) -> Tensor:
    acts = torch.cat([f, e.norm(dim=-1, keepdim=True)], dim=-1)
    if per_position:
        return batch.mean_over_prompts(acts)
    real = batch.real().to(acts)  # [N, T]
    return (acts * real[..., None]).sum((0, 1)) / real.sum()


def attribute(spliced: SplicedModel, batch: PromptBatch, method: str = "ig", steps: int = 10,
              baseline: str = "counterfactual", per_position: bool = False, metric: Metric = logit_diff) -> Attribution:
    """Score every node of ``spliced`` for ``metric`` on ``batch``; see the module docstring."""
    if method not in ("atp", "ig"):
        raise ToolkitError(f"unknown attribution method '{method}'; use atp or ig")
    if steps < 1:
        raise ToolkitError("integrated gradients need at least one step")
    base = _baselines(spliced, batch, baseline)
    x_grads: dict[str, Tensor] = {}
    logits, clean = spliced.run(batch.clean, grads=x_grads)
    m_clean = metric(logits, batch)
    m_clean.sum().backward()
    grads = {h: (x_grads[h] @ spliced.saes[h].W_dec.t(), x_grads[h]) for h in clean}
    clean = {h: (f.detach(), e.detach()) for h, (f, e) in clean.items()}
    deltas = {h: (clean[h][0] - base[h][0], clean[h][1] - base[h][1]) for h in clean}
    if method == "ig":
        grads = {h: _ig_grads(spliced, batch, h, clean[h], base[h], steps, metric) for h in spliced.hooks}
    with torch.no_grad():
        m_base = metric(spliced.run(batch.clean, {h: (lambda f, e, b=base[h]: b) for h in spliced.hooks})[0], batch)
        scores = {h: node_effect(*grads[h], *deltas[h], per_position) for h in spliced.hooks}
        acts = {h: _activations(*clean[h], batch, per_position) for h in spliced.hooks}
    return Attribution(scores, acts, grads, deltas, per_position, float((m_clean.detach() - m_base).mean()))


def _ig_grads(spliced: SplicedModel, batch: PromptBatch, hook: str, clean: tuple[Tensor, Tensor],
              base: tuple[Tensor, Tensor], steps: int, metric: Metric) -> tuple[Tensor, Tensor]:
    """Mean gradient of ``metric`` at (f, e) of ``hook`` along baseline -> clean: ([N, T, d_sae], [N, T, d])."""
    n = len(batch)
    alphas = ((torch.arange(steps, dtype=clean[0].dtype) + 0.5) / steps).view(steps, 1, 1, 1)
    points = [(b + alphas * (c - b)).flatten(0, 1).requires_grad_(True) for c, b in zip(clean, base)]
    repeated = batch.take(torch.arange(n).repeat(steps))
    logits, _ = spliced.run(repeated.clean, {hook: lambda f, e: tuple(points)}, hooks=[hook])
    metric(logits, repeated).sum().backward()
    return tuple(p.grad.view(steps, n, *p.shape[1:]).mean(0) for p in points)


@torch.no_grad()
def patch_effects(spliced: SplicedModel, batch: PromptBatch, nodes: list[tuple[str, int, int | None]],
                  baseline: str = "counterfactual", metric: Metric = logit_diff, chunk: int = 16) -> Tensor:
    """Exact IE [len(nodes)] of setting each node (hook, index, position or None for all
    positions; index d_sae is the error) to its baseline, by activation patching."""
    base = _baselines(spliced, batch, baseline)
    m_clean = metric(spliced.run(batch.clean)[0], batch)
    effects = []
    for start in range(0, len(nodes), chunk):
        group = nodes[start:start + chunk]
        effects.extend(_patch_group(spliced, batch, group, base, m_clean, metric))
    return torch.tensor(effects)


def _patch_group(spliced, batch, group, base, m_clean, metric) -> list[float]:
    n, k = len(batch), len(group)
    repeated = batch.take(torch.arange(n).repeat(k))
    by_hook: dict[str, list[tuple[int, int, int | None]]] = {}
    for slot, (hook, index, position) in enumerate(group):
        by_hook.setdefault(hook, []).append((slot, index, position))

    def edit_for(hook: str) -> Edit:
        def edit(f: Tensor, e: Tensor) -> tuple[Tensor, Tensor]:
            f, e = f.clone().view(k, n, *f.shape[1:]), e.clone().view(k, n, *e.shape[1:])
            bf, be = base[hook]
            for slot, index, position in by_hook[hook]:
                t = slice(None) if position is None else position
                if index == f.shape[-1]:
                    e[slot, :, t] = be[:, t]
                else:
                    f[slot, :, t, index] = bf[:, t, index]
            return f.flatten(0, 1), e.flatten(0, 1)
        return edit

    logits, _ = spliced.run(repeated.clean, {h: edit_for(h) for h in by_hook}, hooks=list(by_hook))
    patched = metric(logits, repeated).view(k, n)
    return (m_clean[None] - patched).mean(1).tolist()


def top_nodes(attribution: Attribution, n: int) -> list[tuple[str, int, int | None, float]]:
    """The ``n`` nodes of largest |score|, largest first: (hook, index, position or None when
    summed, score); index d_sae is the hook's error node."""
    hooks = list(attribution.scores)
    flat = torch.cat([attribution.scores[h].flatten() for h in hooks])
    ends = torch.tensor([attribution.scores[h].numel() for h in hooks]).cumsum(0)
    nodes = []
    for k in flat.abs().topk(min(n, flat.numel())).indices.tolist():
        slot = int(torch.searchsorted(ends, k, right=True))
        hook, local = hooks[slot], k - (int(ends[slot - 1]) if slot else 0)
        width = attribution.scores[hook].shape[-1]
        position, index = divmod(local, width) if attribution.per_position else (None, local)
        nodes.append((hook, index, position, float(flat[k])))
    return nodes


def _pearson(a: Tensor, b: Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.double(), b.double()]))[0, 1])


def rank_correlation(a: Tensor, b: Tensor) -> float:
    """Spearman's rho of two 1-D tensors: the Pearson correlation of their ranks, ties given
    their average rank."""
    def ranks(x: Tensor) -> Tensor:
        first = torch.empty(len(x), dtype=torch.float64)
        first[x.argsort()] = torch.arange(len(x), dtype=torch.float64)
        _, group = torch.unique(x, return_inverse=True)
        total = torch.zeros(int(group.max()) + 1, dtype=torch.float64).index_add_(0, group, first)
        return (total / torch.bincount(group).double())[group]
    if len(a) != len(b) or len(a) < 2:
        raise ToolkitError(f"a rank correlation needs two series of equal length >= 2, not {len(a)} and {len(b)}")
    return _pearson(ranks(a), ranks(b))


def check_against_patching(spliced: SplicedModel, batch: PromptBatch, attribution: Attribution, top: int = 50,
                           baseline: str = "counterfactual", metric: Metric = logit_diff) -> dict:
    """Patch the ``top`` nodes of ``attribution`` exactly (with the baseline it used) and
    compare: {"n", "spearman", "pearson", "nodes": [{hook, feature (None: error), position,
    estimate, exact}]}."""
    if top < 2:
        raise ToolkitError(f"checking against patching needs at least 2 nodes, not {top}")
    nodes = top_nodes(attribution, top)
    exact = patch_effects(spliced, batch, [(h, i, t) for h, i, t, _ in nodes], baseline, metric)
    estimate = torch.tensor([score for *_, score in nodes])
    defined = lambda r: r if math.isfinite(r) else None  # all-equal values: no correlation (and JSON has no NaN)
    return {"n": len(nodes), "spearman": defined(rank_correlation(estimate, exact)),
            "pearson": defined(_pearson(estimate, exact)),
            "nodes": [{"hook": h, "feature": None if i == spliced.d_sae(h) else i, "position": t,
                       "estimate": score, "exact": float(x)} for (h, i, t, score), x in zip(nodes, exact)]}
