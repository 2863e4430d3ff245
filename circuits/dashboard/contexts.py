"""Context windows around chosen tokens, with one feature's activation on every token.

A request is (feature, global row). Its window is the rows ``before`` tokens before to
``after`` tokens after it that belong to the same sequence (shards hold whole sequences).
Requests are served shard by shard; each shard's needed rows are encoded once, in chunks,
so memory stays at one chunk of latents [chunk, d_sae] whatever the number of requests.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from activations.store import ActivationStore
from sae.architectures import SparseCoder


@dataclass
class Context:
    """A window of one sequence: token ids [T], the feature's activations [T] on them, the
    index of the requested token inside the window, and where that token sits in the store."""

    token_ids: list[int]
    activations: list[float]
    focus: int
    sequence_id: int
    position: int


@torch.no_grad()
def gather_contexts(store: ActivationStore, hook: str, sae: SparseCoder, feature: Tensor, row: Tensor,
                    before: int, after: int, chunk: int = 4096) -> list[Context]:
    """One ``Context`` per request (``feature`` [n], global ``row`` [n]), in request order."""
    out: list[Context | None] = [None] * len(row)
    offsets = torch.tensor([0] + [s["n_tokens"] for s in store.shards]).cumsum(0)
    shard_of = torch.searchsorted(offsets, row.contiguous(), right=True) - 1
    for position in shard_of.unique().tolist():
        which = (shard_of == position).nonzero().squeeze(1)
        tensors = store.shard(position)
        local = row[which] - offsets[position]
        for i, context in zip(which.tolist(), _windows(tensors, hook, sae, feature[which], local,
                                                       before, after, chunk)):
            out[i] = context
    return out


def _windows(tensors: dict[str, Tensor], hook: str, sae: SparseCoder, feature: Tensor, local: Tensor,
             before: int, after: int, chunk: int) -> list[Context]:
    seq, tok, pos = tensors["sequence_ids"], tensors["token_ids"], tensors["positions"]
    window = local[:, None] + torch.arange(-before, after + 1)  # [m, W]
    inside = (window >= 0) & (window < len(seq))
    window = window.clamp(0, len(seq) - 1)
    inside &= seq[window] == seq[local][:, None]
    needed, inverse = torch.unique(window[inside], return_inverse=True)
    wanted = feature[:, None].expand_as(window)[inside]
    values = torch.zeros(len(inverse))
    order = torch.argsort(inverse)
    bounds = torch.searchsorted(inverse[order], torch.arange(0, len(needed) + chunk, chunk))
    for c, start in enumerate(range(0, len(needed), chunk)):
        latents = sae.encode(tensors[hook][needed[start:start + chunk]].float())
        pick = order[bounds[c]:bounds[c + 1]]
        values[pick] = latents[inverse[pick] - start, wanted[pick]]
    acts = torch.zeros(window.shape)
    acts[inside] = values
    contexts = []
    for m, (mask, ids, act) in enumerate(zip(inside.tolist(), tok[window].tolist(), acts.tolist())):
        kept = [j for j, ok in enumerate(mask) if ok]
        contexts.append(Context([ids[j] for j in kept], [act[j] for j in kept], kept.index(before),
                                int(seq[local[m]]), int(pos[local[m]])))
    return contexts
