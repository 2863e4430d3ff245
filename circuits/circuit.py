"""Circuits: node selection by threshold, and faithfulness and completeness by mean ablation.

A node set is a dict hook -> bool mask shaped like that hook's scores ([T, d_sae + 1] per
position or [d_sae + 1] summed, last column the error node). Thresholds on |score|:

- ``absolute``: |score| ≥ value;
- ``relative``: |score| ≥ value × the largest |score| of any node;
- ``topk``: the ``int(value)`` nodes of largest |score| (ties broken by order).

Evaluating a node set C runs the spliced model with every node *outside* C set to its mean
over the patch prompts (per position, over the prompts that reach the position), while
nodes in C are recomputed from the ablated upstream activations (as in Marks et al. 2024):

    faithfulness = (m(C) − m(∅)) / (m(M) − m(∅)),
    completeness = (m(M∖C) − m(∅)) / (m(M) − m(∅)),

with M all nodes and m the mean metric over the examples.
"""

from __future__ import annotations

import torch
from torch import Tensor

from activations.errors import ToolkitError
from circuits.attribution import Edit, Metric, SplicedModel, logit_diff
from circuits.datasets import PromptBatch

Masks = dict[str, Tensor]
MODES = ("absolute", "relative", "topk")


def select_nodes(scores: dict[str, Tensor], mode: str, value: float) -> Masks:
    """hook -> bool mask of the nodes passing the threshold (see the module docstring)."""
    if mode not in MODES:
        raise ToolkitError(f"unknown threshold '{mode}'; use one of {', '.join(MODES)}")
    if not scores:
        raise ToolkitError("select_nodes got no scores; pass attribution.scores (hook -> node scores)")
    if not value >= 0 or value == float("inf") or (mode == "relative" and value > 1):
        raise ToolkitError(f"threshold value {value} is out of range for a {mode} threshold")
    hooks = list(scores)
    flat = torch.cat([scores[h].abs().flatten() for h in hooks])
    if mode == "absolute":
        keep = flat >= value
    elif mode == "relative":
        keep = flat >= value * flat.max()
    else:
        keep = torch.zeros_like(flat, dtype=torch.bool)
        keep[flat.topk(min(int(value), flat.numel())).indices] = True
    masks, start = {}, 0
    for h in hooks:
        n = scores[h].numel()
        masks[h] = keep[start:start + n].view(scores[h].shape)
        start += n
    return masks


def count(masks: Masks) -> int:
    return int(sum(m.sum() for m in masks.values()))


def complement(masks: Masks) -> Masks:
    return {h: ~m for h, m in masks.items()}


@torch.no_grad()
def mean_values(spliced: SplicedModel, batch: PromptBatch) -> dict[str, tuple[Tensor, Tensor]]:
    """hook -> (mean f [T, d_sae], mean e [T, d]) over the patch prompts, per position, over
    the prompts that reach it: padding (a repeated BOS, whose activations are outliers) would
    otherwise leak into the means of the longer prompts' last positions."""
    return {h: (batch.mean_over_prompts(f), batch.mean_over_prompts(e))
            for h, (f, e) in spliced.values(batch.patch).items()}


def keep_edit(mask: Tensor, fill: tuple[Tensor, Tensor]) -> Edit:
    """Keep the nodes in ``mask`` ([T, d_sae + 1] or [d_sae + 1]); set the others to ``fill``
    (f-part broadcastable to [N, T, d_sae], e-part to [N, T, d])."""
    def edit(f: Tensor, e: Tensor) -> tuple[Tensor, Tensor]:
        keep_f, keep_e = mask[..., :-1], mask[..., -1:]
        return torch.where(keep_f, f, fill[0]), torch.where(keep_e, e, fill[1])
    return edit


@torch.no_grad()
def ablated_metric(spliced: SplicedModel, batch: PromptBatch, keep: Masks,
                   means: dict[str, tuple[Tensor, Tensor]], metric: Metric = logit_diff) -> float:
    """Mean metric with every node outside ``keep`` mean-ablated."""
    edits = {h: keep_edit(keep[h], means[h]) for h in spliced.hooks}
    return float(metric(spliced.run(batch.clean, edits)[0], batch).mean())


def evaluate(spliced: SplicedModel, batch: PromptBatch, circuit: Masks, metric: Metric = logit_diff,
             means: dict[str, tuple[Tensor, Tensor]] | None = None) -> dict[str, float]:
    """Faithfulness and completeness of ``circuit`` on ``batch``, with m(M), m(∅), m(C), m(M∖C)."""
    means = means if means is not None else mean_values(spliced, batch)
    full = {h: torch.ones_like(m) for h, m in circuit.items()}
    empty = complement(full)
    m_full, m_empty = (ablated_metric(spliced, batch, s, means, metric) for s in (full, empty))
    m_circuit = ablated_metric(spliced, batch, circuit, means, metric)
    m_rest = ablated_metric(spliced, batch, complement(circuit), means, metric)
    span = m_full - m_empty
    if abs(span) < 1e-9:
        raise ToolkitError("the model's metric does not change when every node is ablated; faithfulness is undefined")
    return {"faithfulness": (m_circuit - m_empty) / span, "completeness": (m_rest - m_empty) / span,
            "m_full": m_full, "m_empty": m_empty, "m_circuit": m_circuit, "m_complement": m_rest,
            "n_nodes": count(circuit)}


def faithfulness_curve(spliced: SplicedModel, batch: PromptBatch, scores: dict[str, Tensor], sizes: list[int],
                       metric: Metric = logit_diff,
                       means: dict[str, tuple[Tensor, Tensor]] | None = None) -> list[dict[str, float]]:
    """Faithfulness and completeness of the top-k circuit for each k in ``sizes``."""
    means = means if means is not None else mean_values(spliced, batch)
    return [{"size": k, **evaluate(spliced, batch, select_nodes(scores, "topk", k), metric, means)} for k in sizes]
