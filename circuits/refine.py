"""Circuit refinement: change which nodes a circuit holds to raise its faithfulness at a fixed size.

Attribution scores each node by its effect in the *full* model. A circuit is judged with
everything *outside* it mean-ablated, where nodes interact: a kept node may only matter
together with an ablated one, and a kept error node, recomputed from an ablated upstream,
can carry the ablation's damage downstream. So the top nodes by attribution are a good start
but not, in general, the most faithful set of their size (docs/circuits.md, "Refinement").

Both searches below run on the discovery batch and use the circuit run with a 0/1 mask on
every node (value = mask · clean + (1 − mask) · mean): its forward pass is the circuit's exact
metric, and ∂m/∂mask is each node's attribution *in the circuit's context* — for a member the
first-order loss of dropping it, for a non-member the gain of adding it.

``gradient_search`` moves many nodes a step (straight-through, one forward and backward pass a
step). Every node has a score θ, +1 for members and −1 for the others at the start; each step
runs the circuit of the ``size`` highest scores, adds ∂m/∂mask (divided by its largest
magnitude, with momentum) to θ, so that nodes whose in-context attribution stays positive climb
into the circuit and members that hurt it fall out, and keeps the best circuit it has run.

``refine`` swaps one node a round, each swap checked by exact runs:

1. the gradient above at the current circuit;
2. the ``candidates`` members with the smallest gradient are each dropped alone, and the
   ``candidates`` non-members with the largest each added alone, in exact runs;
3. the pairs are ranked by the sum of their two exact gains, and the ``candidates`` best pairs
   are run exactly as swaps (drop one, add one): 3 × ``candidates`` runs a round, where trying
   every pair would take ``candidates``²;
4. the best swap is kept if it brings the metric closer to m(M) (below); if none does, the
   lists are doubled and the round tried again while they are shorter than ``widen`` ×
   ``candidates``, and then the search stops (``widen=1``: at once).

Both bring m(C) toward the full model's m(M) and not past it: they maximise m folded at m(M)
(m below it, 2·m(M) − m above it), so a circuit that overshoots, faithfulness above 1 by
leaving out the nodes that work against the behaviour, counts as less faithful, not more.

The gradient search covers more ground per pass; the swaps polish its result. In both the size
never changes and the returned circuit is the best seen. Evaluate the
result on held-out prompts: ``circuits.circuit.evaluate``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm import tqdm

from activations.errors import ToolkitError
from circuits.attribution import Metric, SplicedModel, logit_diff
from circuits.circuit import Masks, ablated_metric, count, mean_values
from circuits.datasets import PromptBatch


@dataclass
class Refinement:
    """The refined node set; the discovery metric m(C) of the start and of each better circuit
    found (after each kept swap, or each new best of the gradient search)."""

    masks: Masks
    metric_history: list[float]
    swaps: list[tuple[tuple[str, int], tuple[str, int]]]  # ((hook, dropped flat index), (hook, added flat index))


class _Flat:
    """Views a node set (hook -> mask of any shape) as one flat bool vector and back."""

    def __init__(self, masks: Masks):
        self.hooks = list(masks)
        self.shapes = [masks[h].shape for h in self.hooks]
        self.sizes = [masks[h].numel() for h in self.hooks]

    def flatten(self, masks: Masks) -> Tensor:
        return torch.cat([masks[h].flatten() for h in self.hooks])

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        return {h: part.view(shape) for h, part, shape in zip(self.hooks, flat.split(self.sizes), self.shapes)}

    def locate(self, index: int) -> tuple[str, int]:
        for hook, size in zip(self.hooks, self.sizes):
            if index < size:
                return hook, index
            index -= size
        raise IndexError(index)


def _mask_edit(mask: Tensor, fill: tuple[Tensor, Tensor]):
    """Float mask [d_sae + 1] or [T, d_sae + 1]: mask · value + (1 − mask) · mean."""
    def edit(f: Tensor, e: Tensor) -> tuple[Tensor, Tensor]:
        keep_f, keep_e = mask[..., :-1], mask[..., -1:]
        return f * keep_f + fill[0] * (1 - keep_f), e * keep_e + fill[1] * (1 - keep_e)
    return edit


def _context_gradient(spliced: SplicedModel, batch: PromptBatch, flat: _Flat, selected: Tensor,
                      means, metric: Metric, target: float) -> tuple[float, Tensor]:
    """The circuit ``selected``'s mean metric m (exact) and the gradient of m folded at
    ``target`` with respect to the node mask there: (m, [number of nodes])."""
    mask = selected.float().requires_grad_(True)
    parts = flat.unflatten(mask)
    logits, _ = spliced.run(batch.clean, {h: _mask_edit(parts[h], means[h]) for h in spliced.hooks})
    value = metric(logits, batch).mean()
    value.backward()
    m = float(value.detach())
    return m, mask.grad if m <= target else -mask.grad  # past m(M), back toward it


def _kicked(best: Tensor, grad: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """``best`` with ``n`` members, drawn at random, swapped for the ``n`` non-members whose
    in-context gradient there is largest: a new start away from the search's fixed point."""
    members, others = best.nonzero().flatten(), (~best).nonzero().flatten()
    n = min(n, len(members), len(others))
    kicked = best.clone()
    kicked[members[torch.randperm(len(members), generator=generator)[:n]]] = False
    kicked[others[grad[others].topk(n).indices]] = True
    return kicked


def _swapped(selected: Tensor, drop: int, add: int) -> Tensor:
    trial = selected.clone()
    trial[drop], trial[add] = False, True
    return trial


def _best_pairs(selected: Tensor, drops: list[int], adds: list[int], run, n: int,
                alone: dict[int, float]) -> list[tuple[int, int]]:
    """The ``n`` (drop, add) pairs whose single exact gains add up to the most: one run per
    drop (size − 1) and per add (size + 1) instead of one per pair. ``alone`` keeps those runs
    (node -> metric with it flipped) for a widened retry on the same circuit."""
    for index in drops + adds:
        if index not in alone:
            trial = selected.clone()
            trial[index] = not bool(selected[index])
            alone[index] = run(trial)
    pairs = [(drop, add) for drop in drops for add in adds]
    return sorted(pairs, key=lambda pair: alone[pair[0]] + alone[pair[1]], reverse=True)[:n]


def _folded(m: float, target: float) -> float:
    """``m`` folded at ``target``: equal below it, 2 · target − m above it."""
    return m if m <= target else 2 * target - m


def _start(spliced: SplicedModel, batch: PromptBatch, circuit: Masks, metric: Metric):
    """The discovery means, the flat view, the circuit as a flat mask, its size, and the full
    model's metric m(M) (every node kept); refuses a circuit a fixed-size search cannot change."""
    if set(circuit) != set(spliced.hooks):
        raise ToolkitError("the circuit's hooks differ from the spliced model's; refine a node set from select_nodes")
    flat = _Flat(circuit)
    selected = flat.flatten(circuit).clone()
    size = int(selected.sum())
    if size == 0 or size == selected.numel():
        raise ToolkitError("refinement swaps nodes in and out; the circuit must hold some nodes but not all")
    means = mean_values(spliced, batch)
    target = ablated_metric(spliced, batch, flat.unflatten(torch.ones_like(selected)), means, metric)
    return means, flat, selected, size, target


def gradient_search(spliced: SplicedModel, batch: PromptBatch, circuit: Masks, steps: int = 100, lr: float = 1.0,
                    momentum: float = 0.5, metric: Metric = logit_diff, progress: bool = False, kicks: int = 0,
                    kick_share: float = 0.3, seed: int = 0) -> Refinement:
    """Search circuits of ``circuit``'s size by straight-through gradient steps on node scores;
    see the module docstring. Returns the best circuit run (its mean ``metric`` on ``batch``
    closest to the full model's); ``metric_history`` holds each new best, ``swaps`` pairs the
    nodes it dropped with those it added."""
    if steps < 0 or lr <= 0 or not 0 <= momentum < 1:
        raise ToolkitError(f"the gradient search needs steps >= 0, lr > 0 and 0 <= momentum < 1, got {steps}, {lr} "
                           f"and {momentum}")
    if kicks < 0 or not 0 < kick_share < 1:
        raise ToolkitError(f"the gradient search needs kicks >= 0 and 0 < kick_share < 1, got {kicks} and {kick_share}")
    means, flat, start, size, target = _start(spliced, batch, circuit, metric)
    generator = torch.Generator().manual_seed(seed)
    selected, best, best_grad, history = start, start, None, []
    bar = tqdm(total=steps * (kicks + 1), desc="gradient search", unit="step", disable=not progress,
               dynamic_ncols=True)
    for round_ in range(kicks + 1):
        if round_ and best_grad is not None:
            selected = _kicked(best, best_grad, max(1, round(kick_share * size)), generator)
        theta, velocity = selected.float() * 2 - 1, torch.zeros(start.numel())
        for _ in range(steps):
            value, grad = _context_gradient(spliced, batch, flat, selected, means, metric, target)
            if not history or _folded(value, target) > _folded(history[-1], target):
                best, best_grad, history = selected, grad, history + [value]
            velocity = momentum * velocity + grad / grad.abs().max().clamp_min(1e-12)
            theta += lr * velocity
            selected = torch.zeros_like(start)
            selected[theta.topk(size).indices] = True
            bar.update()
            bar.set_postfix(metric=f"{history[-1]:.3f}")
    bar.close()
    if not history:  # no step: the start, measured
        history = [ablated_metric(spliced, batch, flat.unflatten(start), means, metric)]
    dropped, added = (start & ~best).nonzero().flatten(), (best & ~start).nonzero().flatten()
    swaps = [(flat.locate(int(d)), flat.locate(int(a))) for d, a in zip(dropped, added)]
    return Refinement(flat.unflatten(best), history, swaps)


def refine(spliced: SplicedModel, batch: PromptBatch, circuit: Masks, rounds: int = 50, candidates: int = 8,
           widen: int = 1, metric: Metric = logit_diff, progress: bool = False) -> Refinement:
    """Swap nodes of ``circuit`` (hook -> bool mask, as ``select_nodes`` gives) to bring the mean
    ``metric`` on ``batch``, with every other node mean-ablated, up to the full model's; see the
    module docstring. ``progress`` shows a bar of kept swaps with the metric on stderr."""
    if rounds < 0 or candidates < 1 or widen < 1:
        raise ToolkitError(f"refinement needs rounds >= 0, candidates >= 1 and widen >= 1, got {rounds}, "
                           f"{candidates} and {widen}")
    means, flat, selected, size, target = _start(spliced, batch, circuit, metric)

    def run(trial: Tensor) -> float:
        return ablated_metric(spliced, batch, flat.unflatten(trial), means, metric)
    current = run(selected)
    history, swaps = [current], []
    tried, grad, alone = candidates, None, {}
    bar = tqdm(total=rounds, desc="refining", unit="swap", disable=not progress, dynamic_ncols=True)
    bar.set_postfix(metric=f"{current:.3f}")
    while len(swaps) < rounds:
        if grad is None:  # a widened retry keeps the gradient and single runs of the same circuit
            grad, alone = _context_gradient(spliced, batch, flat, selected, means, metric, target)[1], {}
        members, others = selected.nonzero().flatten(), (~selected).nonzero().flatten()
        drops = members[grad[members].argsort()[:tried]].tolist()
        adds = others[grad[others].argsort(descending=True)[:tried]].tolist()
        pairs = _best_pairs(selected, drops, adds, lambda trial: _folded(run(trial), target), tried, alone)
        values = [run(_swapped(selected, drop, add)) for drop, add in pairs]
        best = max(range(len(pairs)), key=lambda i: _folded(values[i], target))
        if _folded(values[best], target) <= _folded(current, target):
            if tried >= candidates * widen:
                break
            tried *= 2  # stuck: look further down both rankings before giving up
            continue
        tried, grad = candidates, None
        best_swap = pairs[best]
        selected[best_swap[0]], selected[best_swap[1]] = False, True
        current = values[best]
        history.append(current)
        swaps.append((flat.locate(best_swap[0]), flat.locate(best_swap[1])))
        bar.update()
        bar.set_postfix(metric=f"{current:.3f}")
    bar.close()
    masks = flat.unflatten(selected)
    assert count(masks) == size
    return Refinement(masks, history, swaps)
