"""Edges between circuit nodes of adjacent submodules, by batched vector-Jacobian products.

Submodules of layer L, with R the residual stream before it (``blocks.L-1.hook_resid_post``,
or the embeddings ``blocks.0.hook_resid_pre`` for L = 0), are joined along direct paths:

    R -> attn_L;   R -> mlp_L (stop-grad attn_L);   attn_L -> mlp_L;
    R -> resid_L (stop-grad attn_L, mlp_L);   attn_L -> resid_L (stop-grad mlp_L);   mlp_L -> resid_L

A stop-gradient detaches the intermediate submodule's output, so only the direct path counts.
The weight of edge u -> d (Marks et al. 2024, eq. 4, attribution-patching form) is

    w(u, d) = mean over examples of  Σ ∇_d m · (∂d/∂u) · (u_clean − u_baseline),

summed over positions for summed nodes (an error node is the whole error vector). Each
downstream node is one VJP; ``batched=True`` stacks ``chunk`` of them into one backward pass
(``torch.autograd.grad(..., is_grads_batched=True)``), ``batched=False`` runs one backward per
node (the reference the benchmark compares against). Only edges between selected nodes are
computed and kept, as sparse COO tensors [n_up_nodes, n_down_nodes] over each hook's flat node
index (position × (d_sae + 1) + index per position, or index when summed).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from circuits.attribution import Attribution, SplicedModel
from circuits.datasets import PromptBatch


@dataclass(frozen=True)
class Link:
    """One pair of adjacent submodules: upstream hook, downstream hook, detached hooks between."""

    up: str
    down: str
    stop: tuple[str, ...]


def links(hooks: list[str]) -> list[Link]:
    """Direct-path links among the node ``hooks`` (see the module docstring)."""
    present = set(hooks)
    layers = sorted({int(h.split(".")[1]) for h in hooks})
    out = []
    for layer in layers:
        resid_in = f"blocks.{layer - 1}.hook_resid_post" if layer > 0 else "blocks.0.hook_resid_pre"
        attn, mlp, resid = (f"blocks.{layer}.{s}" for s in ("hook_attn_out", "hook_mlp_out", "hook_resid_post"))
        for up, down, stop in ((resid_in, attn, ()), (resid_in, mlp, (attn,)), (attn, mlp, ()),
                               (resid_in, resid, (attn, mlp)), (attn, resid, (mlp,)), (mlp, resid, ())):
            if up in present and down in present:
                out.append(Link(up, down, stop))
    return out


@dataclass
class Edges:
    """Sparse edge weights: (up hook, down hook) -> COO [n_up_nodes, n_down_nodes]."""

    weights: dict[tuple[str, str], Tensor]

    def nnz(self) -> int:
        return sum(w._nnz() for w in self.weights.values())


def _detach(x: Tensor) -> Tensor:
    return x.detach()


def _node_ids(mask: Tensor) -> Tensor:
    return mask.flatten().nonzero().squeeze(1)


def _grad_outputs(ids: Tensor, left: tuple[Tensor, Tensor], per_position: bool) -> tuple[Tensor, Tensor]:
    """Per downstream node, the gradient to feed its (f [N, T, d_sae], e [N, T, d]):
    [K, N, T, d_sae] and [K, N, T, d]."""
    lf, le = left
    d_sae = lf.shape[-1]
    go_f = torch.zeros(len(ids), *lf.shape, dtype=lf.dtype)
    go_e = torch.zeros(len(ids), *le.shape, dtype=le.dtype)
    for k, flat in enumerate(ids.tolist()):
        t, index = divmod(flat, d_sae + 1) if per_position else (None, flat)
        t = slice(None) if t is None else t
        if index == d_sae:
            go_e[k, :, t] = le[:, t]
        else:
            go_f[k, :, t, index] = lf[:, t, index]
    return go_f, go_e


def _contributions(g_f: Tensor, g_e: Tensor, delta: tuple[Tensor, Tensor], per_position: bool) -> Tensor:
    """Edge weights [K, n_up_nodes_flat] from upstream gradients g_f [K, N, T, d_sae], g_e [K, N, T, d]."""
    n = g_f.shape[1]
    w = torch.cat([(g_f * delta[0]).sum(1), (g_e * delta[1]).sum((1, -1))[..., None]], dim=-1) / n
    return w.flatten(1) if per_position else w.sum(1)


def link_edges(spliced: SplicedModel, batch: PromptBatch, attribution: Attribution, link: Link,
               up_mask: Tensor, down_mask: Tensor, batched: bool = True, chunk: int = 64) -> Tensor:
    """Dense weights [n_down_selected, n_up_selected] of one link, rows/cols in flat-id order."""
    up_ids, down_ids = _node_ids(up_mask), _node_ids(down_mask)
    if len(up_ids) == 0 or len(down_ids) == 0:
        return torch.zeros(len(down_ids), len(up_ids))
    leaves: list[Tensor] = []

    def hold(f: Tensor, e: Tensor) -> tuple[Tensor, Tensor]:
        leaves.extend([f.detach().requires_grad_(True), e.detach().requires_grad_(True)])
        return leaves[0], leaves[1]

    _, nodes = spliced.run(batch.clean, {link.up: hold}, hooks=[link.up, link.down],
                           extra={h: _detach for h in link.stop}, stop_at=link.down)
    outputs = nodes[link.down]
    rows = []
    for start in range(0, len(down_ids), chunk):
        go = _grad_outputs(down_ids[start:start + chunk], attribution.grads[link.down], attribution.per_position)
        if batched:
            g_f, g_e = torch.autograd.grad(outputs, leaves, grad_outputs=go, is_grads_batched=True, retain_graph=True)
        else:
            pairs = [torch.autograd.grad(outputs, leaves, grad_outputs=(gf, ge), retain_graph=True)
                     for gf, ge in zip(*go)]
            g_f, g_e = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
        rows.append(_contributions(g_f, g_e, attribution.deltas[link.up], attribution.per_position)[:, up_ids])
    return torch.cat(rows)


def compute_edges(spliced: SplicedModel, batch: PromptBatch, attribution: Attribution, masks: dict[str, Tensor],
                  batched: bool = True, chunk: int = 64, threshold: float = 0.0) -> Edges:
    """Edges among the selected nodes of every link, keeping |weight| > ``threshold``."""
    weights = {}
    for link in links(spliced.hooks):
        dense = link_edges(spliced, batch, attribution, link, masks[link.up], masks[link.down], batched, chunk)
        up_ids, down_ids = _node_ids(masks[link.up]), _node_ids(masks[link.down])
        rows, cols = (dense.abs() > threshold).nonzero(as_tuple=True)
        indices = torch.stack([up_ids[cols], down_ids[rows]])
        shape = (masks[link.up].numel(), masks[link.down].numel())
        weights[(link.up, link.down)] = torch.sparse_coo_tensor(indices, dense[rows, cols], shape, check_invariants=True).coalesce()
    return Edges(weights)
