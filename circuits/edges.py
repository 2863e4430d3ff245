"""Edges between circuit nodes of adjacent submodules, by packed vector-Jacobian products.

Submodules of layer L, with R the residual stream before it (``blocks.L-1.hook_resid_post``,
or the embeddings ``blocks.0.hook_resid_pre`` for L = 0), are joined along direct paths:

    R -> attn_L;   R -> mlp_L (stop-grad attn_L);   attn_L -> mlp_L;
    R -> resid_L (stop-grad attn_L, mlp_L);   attn_L -> resid_L (stop-grad mlp_L);   mlp_L -> resid_L

A stop-gradient detaches the intermediate submodule's output, so only the direct path counts.
The weight of edge u -> d (Marks et al. 2024, eq. 4, attribution-patching form) is

    w(u, d) = mean over examples of  Σ ∇_d m · (∂d/∂u) · (u_clean − u_baseline),

summed over positions for summed nodes (an error node is the whole error vector).

``batched=True`` (the default) splits each downstream node's VJP into three parts:

1. the downstream SAE, in closed form: ∇_d m · ∂d/∂x at the downstream hook's input is
   ∇_d m · gain · W_enc[:, j] for a feature, and u − ((u W_decᵀ) ⊙ gain) W_encᵀ for an
   error node with gradient u (``downstream_vectors``);
2. the submodule, by autograd on one pass that starts at the upstream hook: the identity
   for residual-stream targets (no pass at all), and for MLP targets a map that acts on
   each (example, position) alone, so downstream nodes that are non-zero on disjoint sets
   of tokens (a feature fires on few of them) share one backward pass (``pack``); attention
   mixes positions, so each of its downstream nodes gets its own pass;
3. the upstream SAE, in closed form: the gradient g at x = decode(f) + e gives g · W_dec[i]
   for feature i and g for the error, projected only onto the selected upstream nodes
   (``_UpstreamProjection``).

``batched=False`` is the reference: one autograd backward per downstream node through the
spliced SAEs and the submodule. ``benchmarks/bench_edges.py`` times both and checks that they
agree. Only edges between selected nodes are computed and kept, as sparse COO tensors
[n_up_nodes, n_down_nodes] over each hook's flat node index (position × (d_sae + 1) + index
per position, or index when summed).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from circuits.attribution import Attribution, SplicedModel, hook_order
from circuits.datasets import PromptBatch
from sae.architectures import SparseCoder


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


def link_edges(spliced: SplicedModel, batch: PromptBatch, attribution: Attribution, link: Link,
               up_mask: Tensor, down_mask: Tensor, batched: bool = True, chunk: int = 64) -> Tensor:
    """Dense weights [n_down_selected, n_up_selected] of one link, rows/cols in flat-id order."""
    up_ids, down_ids = _node_ids(up_mask), _node_ids(down_mask)
    if not batched:
        if len(up_ids) == 0 or len(down_ids) == 0:
            return torch.zeros(len(down_ids), len(up_ids))
        return _looped_link_edges(spliced, batch, attribution, link, up_ids, down_ids)
    return down_edges(spliced, batch, attribution, [link], {link.up: up_mask, link.down: down_mask}, chunk)[link]


def down_edges(spliced: SplicedModel, batch: PromptBatch, attribution: Attribution, into: list[Link],
               masks: dict[str, Tensor], chunk: int = 64,
               cut: tuple[dict[str, Tensor], dict[str, Tensor]] | None = None) -> dict[Link, Tensor]:
    """Dense weights [n_down_selected, n_up_selected] of the links ``into`` one downstream hook,
    rows/cols in flat-id order, from one set of VJPs shared by all of them.

    ``cut``: ``spliced.cut(batch.clean, hooks)`` over hooks that include every link's up, down
    and stop hooks (one forward pass can serve all links); made here when not given.
    ``chunk``: downstream nodes whose VJP vectors are built at once (memory: chunk × N × T × d
    floats)."""
    down = into[0].down
    down_ids = _node_ids(masks[down])
    out = {link: torch.zeros(len(down_ids), len(_node_ids(masks[link.up]))) for link in into}
    live = [link for link in into if out[link].numel()]
    if not live:
        return out
    if cut is None:
        cut = spliced.cut(batch.clean, _cut_hooks(into))
    inputs, leaves = cut
    down_sae, x_down = spliced.saes[down], inputs[down]
    with torch.no_grad():
        f_down = down_sae.encode(x_down.to(down_sae.W_dec.dtype))
    kinds = {link: _segment_kind(leaves[link.up], x_down) for link in live}
    passes = [link for link in live if kinds[link] != "identity"]
    mode = "mixing" if any(kinds[link] == "mixing" for link in passes) else "per_token"
    project = {link: _UpstreamProjection(spliced.saes[link.up], attribution.deltas[link.up],
                                         _node_ids(masks[link.up]), attribution.per_position) for link in live}
    rows: dict[Link, list[Tensor]] = {link: [] for link in live}
    for start in range(0, len(down_ids), chunk):
        with torch.no_grad():
            v = downstream_vectors(down_sae, f_down, attribution.grads[down], down_ids[start:start + chunk],
                                   attribution.per_position).to(x_down.dtype)
        each, everywhere = torch.arange(len(v)), torch.ones(v.shape[:-1], dtype=torch.bool, device=v.device)
        with torch.no_grad():  # identity links: the VJP is v itself
            for link in live:
                if kinds[link] == "identity":
                    rows[link].append(project[link](v, each, everywhere))
        if passes:
            grads, owner, support = _vjps([leaves[link.up] for link in passes], x_down, v, mode)
            with torch.no_grad():
                for link, g in zip(passes, grads):
                    rows[link].append(project[link](g, owner, support))
    return {**out, **{link: torch.cat(parts).cpu() for link, parts in rows.items()}}


def _cut_hooks(found: list[Link]) -> list[str]:
    """Every up, down and stop hook of ``found``, in execution order: where ``SplicedModel.cut``
    must cut so that each link's gradient follows its direct path only."""
    return sorted({h for link in found for h in (link.up, link.down, *link.stop)}, key=hook_order)


def _segment_kind(x_up: Tensor, x_down: Tensor) -> str:
    """How the direct path from x_up to x_down [N, T, d] acts, probed with two VJPs:
    "identity" (the residual stream's own links), "per_token" (each output token depends on
    its own input token alone: the MLP's) or "mixing" (attention)."""
    generator = torch.Generator().manual_seed(0)  # leaves the caller's random state alone
    probe = torch.randn(x_down.shape, generator=generator, dtype=x_down.dtype).to(x_down.device)
    (g,) = torch.autograd.grad(x_down, x_up, grad_outputs=probe, retain_graph=True)
    if torch.equal(g, probe):
        return "identity"
    last = torch.zeros_like(x_down)
    last[:, -1] = probe[:, -1]  # every example's last token: attention there reads all earlier ones
    (g,) = torch.autograd.grad(x_down, x_up, grad_outputs=last, retain_graph=True)
    return "mixing" if g[:, :-1].any() else "per_token"


def _vjps(x_ups: list[Tensor], x_down: Tensor, v: Tensor, mode: str) -> tuple[list[Tensor], Tensor, Tensor]:
    """VJPs of the vectors v [K, N, T, d] from x_down back to each of ``x_ups``, as (grads,
    one [G, N, T, d] per x_up; owner [K]; support [K, N, T]): node k's result is
    grads[owner[k]] on the tokens support[k].

    "per_token" paths pack nodes with disjoint supports into one pass each. "mixing" paths
    give each node all tokens of its own VJP, ``is_grads_batched`` over slices small enough
    (≤ 2^18 floats) for it to beat a loop on a CPU."""
    if mode == "mixing":
        step = max(1, 2**18 // x_down.numel())
        parts = [torch.autograd.grad(x_down, x_ups, grad_outputs=v[i:i + step], retain_graph=True,
                                     is_grads_batched=True) for i in range(0, len(v), step)]
        grads = [torch.cat([part[u] for part in parts]) for u in range(len(x_ups))]
        return grads, torch.arange(len(v)), torch.ones(v.shape[:-1], dtype=torch.bool, device=v.device)
    support = v.ne(0).any(-1)
    groups = pack(support)
    parts = [torch.autograd.grad(x_down, x_ups, grad_outputs=v[members].sum(0), retain_graph=True)
             for members in groups]
    owner = torch.empty(len(v), dtype=torch.long)
    for group, members in enumerate(groups):
        owner[members] = group
    return [torch.stack([part[u] for part in parts]) for u in range(len(x_ups))], owner, support


def pack(support: Tensor) -> list[Tensor]:
    """Greedy packing of nodes with supports [K, N, T] into groups of pairwise disjoint
    supports, largest first: index tensors covering range(K) once."""
    sizes = support.flatten(1).sum(1)
    groups: list[list[int]] = []
    taken: list[Tensor] = []
    for k in sizes.argsort(descending=True, stable=True).tolist():
        for members, used in zip(groups, taken):
            if not (used & support[k]).any():
                members.append(k)
                used |= support[k]
                break
        else:
            groups.append([k])
            taken.append(support[k].clone())
    return [torch.tensor(sorted(members)) for members in groups]


def _positions(ids: Tensor, d_sae: int, n_positions: int, per_position: bool) -> tuple[Tensor, Tensor]:
    """Flat node ids -> (index within the hook (d_sae = error), position mask [K, T])."""
    if not per_position:
        return ids, torch.ones(len(ids), n_positions, device=ids.device)
    return ids % (d_sae + 1), torch.nn.functional.one_hot(ids // (d_sae + 1), n_positions).float()


def downstream_vectors(sae: SparseCoder, f: Tensor, grads: tuple[Tensor, Tensor], ids: Tensor,
                       per_position: bool) -> Tensor:
    """Per downstream node, ∇_node m · ∂node/∂x at its hook's input x: [K, N, T, d].

    In closed form from the SAE: a feature f_j = encode(x)_j has ∂f_j/∂x = gain_j · W_enc[:, j]
    (``SparseCoder.code_gain``), and the error e = x − decode(encode(x)) has
    uᵀ ∂e/∂x = u − ((u · W_decᵀ) ⊙ gain) · W_encᵀ. Equal to autograd through ``encode``."""
    lf, le = grads
    n_positions = le.shape[1]
    index, at = _positions(ids.to(le.device), sae.d_sae, n_positions, per_position)
    gain = sae.code_gain(f)
    out = torch.zeros(len(ids), *le.shape, dtype=le.dtype, device=le.device)
    feature = index < sae.d_sae
    if feature.any():
        js = index[feature]
        coef = (lf[..., js] * gain[..., js]).permute(2, 0, 1) * at[feature][:, None, :]  # [Kf, N, T]
        out[feature] = coef[..., None] * sae.encoder_weight[js][:, None, None, :]
    if not feature.all():
        error = le - ((le @ sae.W_dec.t()) * gain) @ sae.encoder_weight  # [N, T, d]
        out[~feature] = error[None] * at[~feature][:, None, :, None]
    return out


class _UpstreamProjection:
    """Edge weights onto the selected upstream nodes ``ids`` from gradients at the upstream
    hook's output x = decode(f) + e: ∂/∂f_i = g · W_dec[i] and ∂/∂e = g, times clean −
    baseline, summed over the downstream node's tokens and the upstream node's positions and
    averaged over examples."""

    def __init__(self, sae: SparseCoder, deltas: tuple[Tensor, Tensor], ids: Tensor, per_position: bool):
        delta_f, self.delta_e = deltas
        index, at = _positions(ids.to(delta_f.device), sae.d_sae, delta_f.shape[1], per_position)
        self.feature = index < sae.d_sae
        features, self.which = index[self.feature].unique(return_inverse=True)
        self.decoder = sae.W_dec[features].t()  # [d, F]
        self.delta_f = delta_f[..., features]  # [N, T, F]
        self.at_f, self.at_e = at[self.feature].t(), at[~self.feature].t()  # [T, n_up]

    def __call__(self, grads: Tensor, owner: Tensor, support: Tensor) -> Tensor:
        """grads [G, N, T, d], one per backward pass; downstream node k owns the tokens
        support[k] [N, T] of grads[owner[k]]. -> [K, n_up] weights."""
        n = grads.shape[1]
        rows = support.to(grads.dtype)
        out = torch.zeros(len(owner), len(self.feature), dtype=grads.dtype, device=grads.device)
        if self.feature.any():
            terms = (grads @ self.decoder) * self.delta_f  # [G, N, T, F]
            per_t = torch.einsum("knt,kntf->ktf", rows, terms[owner]) / n
            out[:, self.feature] = torch.einsum("ktu,tu->ku", per_t[:, :, self.which], self.at_f)
        if not self.feature.all():
            per_t = torch.einsum("knt,knt->kt", rows, (grads * self.delta_e).sum(-1)[owner]) / n
            out[:, ~self.feature] = per_t @ self.at_e
        return out


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


def _looped_link_edges(spliced: SplicedModel, batch: PromptBatch, attribution: Attribution, link: Link,
                       up_ids: Tensor, down_ids: Tensor) -> Tensor:
    """The reference: one autograd backward per downstream node through the spliced SAEs."""
    leaves: list[Tensor] = []

    def hold(f: Tensor, e: Tensor) -> tuple[Tensor, Tensor]:
        leaves.extend([f.detach().requires_grad_(True), e.detach().requires_grad_(True)])
        return leaves[0], leaves[1]

    _, nodes = spliced.run(batch.clean, {link.up: hold}, hooks=[link.up, link.down],
                           extra={h: _detach for h in link.stop}, stop_at=link.down)
    outputs = nodes[link.down]
    rows = []
    for start in range(0, len(down_ids), 64):  # grad outputs built 64 nodes at a time, to bound memory
        go = _grad_outputs(down_ids[start:start + 64], attribution.grads[link.down], attribution.per_position)
        for gf, ge in zip(*go):
            g_f, g_e = torch.autograd.grad(outputs, leaves, grad_outputs=(gf, ge), retain_graph=True)
            rows.append(_contributions(g_f[None], g_e[None], attribution.deltas[link.up],
                                       attribution.per_position)[:, up_ids])
    return torch.cat(rows)


def compute_edges(spliced: SplicedModel, batch: PromptBatch, attribution: Attribution, masks: dict[str, Tensor],
                  batched: bool = True, chunk: int = 64, threshold: float = 0.0) -> Edges:
    """Edges among the selected nodes of every link, keeping |weight| > ``threshold``."""
    found = links(spliced.hooks)
    if batched:
        cut = spliced.cut(batch.clean, _cut_hooks(found)) if found else None
        dense = {}
        for down in dict.fromkeys(link.down for link in found):
            into = [link for link in found if link.down == down]
            dense.update(down_edges(spliced, batch, attribution, into, masks, chunk, cut))
    else:
        dense = {link: link_edges(spliced, batch, attribution, link, masks[link.up], masks[link.down], False)
                 for link in found}
    weights = {}
    for link in found:
        up_ids, down_ids = _node_ids(masks[link.up]), _node_ids(masks[link.down])
        rows, cols = (dense[link].abs() > threshold).nonzero(as_tuple=True)
        indices = torch.stack([up_ids[cols], down_ids[rows]])
        shape = (masks[link.up].numel(), masks[link.down].numel())
        weights[(link.up, link.down)] = torch.sparse_coo_tensor(indices, dense[link][rows, cols], shape,
                                                                check_invariants=True).coalesce()
    return Edges(weights)
