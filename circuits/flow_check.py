"""Activation check of data-free flow: do matched predecessors fire together with a feature?

For each classified feature j, the predecessors its class names (``persists``: the residual
one; ``processed_*``: the residual one and the module; ``created_*``: the module;
``unexplained``: the most similar of the three) are checked on real tokens. A class's
agreement is the share of tokens on which all of them are active, among the tokens where j
is active (pooled over the class's features). The control replaces each predecessor by a
random feature of the same dictionary, so agreement well above the control means the
decoder-space match is also a match in use.
"""

from __future__ import annotations

import torch
from torch import Tensor

from circuits.flow import CLASSES, FlowLayer, LayerFlow
from sae.io import load_sae

_USES = {"persists": (0,), "processed_attn": (0, 1), "processed_mlp": (0, 2), "created_attn": (1,),
         "created_mlp": (2,)}
"""Class -> predecessor columns (``SOURCES`` order) that must co-fire."""


@torch.no_grad()
def active_masks(model, block: FlowLayer, tokens: Tensor, batch_size: int = 16) -> list[Tensor]:
    """[N, d_sae] bool firing masks of resid_in, attn, mlp, resid_out on tokens [n, T] (BOS dropped)."""
    dicts = [*block.sources(), block.resid_out]
    saes = [load_sae(d.folder) for d in dicts]
    masks: list[list[Tensor]] = [[] for _ in dicts]
    for chunk in tokens.split(batch_size):
        acts = model.capture(chunk, list(dict.fromkeys(d.hook for d in dicts)))
        for out, d, sae in zip(masks, dicts, saes):
            out.append(sae.encode(acts[d.hook][:, 1:].float().flatten(0, 1)) > 0)
    return [torch.cat(m) for m in masks]


def _columns(flow: LayerFlow) -> Tensor:
    """[d_sae, 3] bool: which predecessor columns each feature's class uses."""
    uses = torch.zeros(flow.classes.shape[0], 3, dtype=torch.bool)
    for name, cols in _USES.items():
        rows = flow.classes == CLASSES.index(name)
        for c in cols:
            uses[rows, c] = True
    unexplained = flow.classes == CLASSES.index("unexplained")
    uses[unexplained, flow.similarity[unexplained].argmax(dim=1)] = True
    return uses


def _agreement(masks: list[Tensor], index: Tensor, uses: Tensor) -> tuple[Tensor, Tensor]:
    """Per feature: tokens where it fires [d_sae], and where its used predecessors fire too [d_sae]."""
    target = masks[3]
    together = target.clone()
    for c in range(3):
        pred = masks[c][:, index[:, c]]  # [N, d_sae]
        together &= pred | ~uses[:, c]
    return target.sum(0), together.sum(0)


def activation_agreement(model, block: FlowLayer, flow: LayerFlow, tokens: Tensor, seed: int = 0) -> dict:
    """Class -> {features, firings, agreement, control} for one block, on tokens [n, T]."""
    masks = active_masks(model, block, tokens)
    uses = _columns(flow)
    fired, together = _agreement(masks, flow.index, uses)
    gen = torch.Generator().manual_seed(seed)
    random_index = torch.stack([torch.randint(m.shape[1], (flow.index.shape[0],), generator=gen)
                                for m in masks[:3]], dim=1)
    _, control = _agreement(masks, random_index, uses)
    report = {}
    for i, name in enumerate(CLASSES):
        rows = (flow.classes == i) & (fired > 0)
        n = int(fired[rows].sum())
        report[name] = {"features": int(rows.sum()), "firings": n,
                        "agreement": float(together[rows].sum()) / n if n else None,
                        "control": float(control[rows].sum()) / n if n else None}
    return report
