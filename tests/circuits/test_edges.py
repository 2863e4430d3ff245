"""Edges: the direct-path links, packed VJPs equal to one backward per node (trained TopK SAEs
and random SAEs of every architecture), the closed-form SAE Jacobians against autograd, the
probe that tells identity, per-token and mixing paths apart, packing, a closed-form check of
the stop-gradients, and sparse storage."""

from __future__ import annotations

import pytest
import torch

from circuits.attribution import SplicedModel, attribute
from circuits.circuit import select_nodes
from circuits.commands.circuit import load_saes
from circuits.datasets import load_examples, tokenize_pairs
from circuits.edges import Link, _segment_kind, compute_edges, downstream_vectors, link_edges, links, pack
from sae.architectures import ARCHITECTURES, build
from sae.config import SAEConfig

CODERS = sorted(ARCHITECTURES)


def random_coder(architecture: str, hook: str, d: int, seed: int):
    """A random SAE whose gains are not all 1 (gated: random r_mag) and that fires sparsely."""
    torch.manual_seed(seed)
    sae = build(SAEConfig(architecture=architecture, hook=hook, d_sae=256, k=8).resolved(d, d), d)
    with torch.no_grad():
        if hasattr(sae, "r_mag"):
            sae.r_mag.normal_(0, 0.5)
        if hasattr(sae, "threshold"):
            sae.threshold.fill_(0.3)
        if hasattr(sae, "b_gate"):
            sae.b_gate.fill_(-0.3)
        if architecture == "relu":
            sae.b_enc.fill_(-0.3)
    return sae


@pytest.fixture(scope="module")
def setup(tiny_saes):
    from activations.models import load_model
    model = load_model("tiny", device="cpu")
    spliced = SplicedModel(model, load_saes(next(iter(tiny_saes.values())).parent))
    batch = tokenize_pairs(model, load_examples("sva_pp", 8, seed=2))
    attribution = attribute(spliced, batch, "atp")
    return spliced, batch, attribution, select_nodes(attribution.scores, "topk", 60)


def test_links_follow_marks_et_al():
    hooks = ["blocks.0.hook_resid_pre", "blocks.0.hook_attn_out", "blocks.0.hook_mlp_out", "blocks.0.hook_resid_post",
             "blocks.1.hook_attn_out", "blocks.1.hook_mlp_out", "blocks.1.hook_resid_post"]
    found = links(hooks)
    assert len(found) == 12
    assert Link("blocks.0.hook_resid_post", "blocks.1.hook_resid_post",
                ("blocks.1.hook_attn_out", "blocks.1.hook_mlp_out")) in found
    assert Link("blocks.0.hook_resid_pre", "blocks.0.hook_mlp_out", ("blocks.0.hook_attn_out",)) in found
    assert not any(link.up == "blocks.0.hook_resid_pre" and link.down.startswith("blocks.1") for link in found)


@pytest.mark.parametrize("per_position", [False, True])
def test_batched_vjps_equal_one_backward_per_node(setup, per_position):
    """Summed and per-position nodes, error nodes included on both sides of every link."""
    spliced, batch, attribution, masks = setup
    if per_position:
        attribution = attribute(spliced, batch, "atp", per_position=True)
        masks = select_nodes(attribution.scores, "topk", 60)
    masks = {hook: mask.clone() for hook, mask in masks.items()}  # the fixture's stay as they are
    for mask in masks.values():
        mask[..., -1] = True  # every error node (per position: at every position)
    batched = compute_edges(spliced, batch, attribution, masks, batched=True, chunk=7)
    looped = compute_edges(spliced, batch, attribution, masks, batched=False)
    assert batched.weights.keys() == looped.weights.keys() and batched.nnz() > 0
    for key in batched.weights:
        torch.testing.assert_close(batched.weights[key].to_dense(), looped.weights[key].to_dense(),
                                   atol=1e-6, rtol=1e-5)


def test_stop_gradients_leave_only_the_direct_path(setup):
    """Embeddings -> resid_post 0 with attn and MLP detached is the identity map, so the edge
    weight has a closed form: mean_b Σ_t ∇f_d · 1[active] · (W_enc_d[i] · W_dec_u[j]) · Δf_u."""
    spliced, batch, attribution, masks = setup
    up, down = "blocks.0.hook_resid_pre", "blocks.0.hook_resid_post"
    link = next(k for k in links(spliced.hooks) if (k.up, k.down) == (up, down))
    up_mask = torch.zeros_like(masks[up])
    down_mask = torch.zeros_like(masks[down])
    with torch.no_grad():
        f_d = spliced.values(batch.clean)[down][0]
    # link_edges orders rows and columns by node id, so sort the chosen features the same way
    features = f_d.sum((0, 1)).topk(3).indices.sort().values  # downstream features that fire
    down_mask[features] = True
    up_feats = attribution.deltas[up][0].abs().sum((0, 1)).topk(4).indices.sort().values
    up_mask[up_feats] = True
    up_mask[-1] = True  # the error node
    got = link_edges(spliced, batch, attribution, link, up_mask, down_mask)
    enc_d, dec_u = spliced.saes[down].encoder_weight, spliced.saes[up].W_dec
    left = attribution.grads[down][0] * (f_d > 0)  # [N, T, d_sae]
    delta_f, delta_e = attribution.deltas[up]
    n = len(batch)
    for row, i in enumerate(features.tolist()):
        expected = [float((left[..., i] * (delta_f[..., j] * (enc_d[i] @ dec_u[j]))).sum() / n) for j in up_feats]
        expected.append(float((left[..., i] * (delta_e @ enc_d[i])).sum() / n))
        torch.testing.assert_close(got[row], torch.tensor(expected), atol=1e-4, rtol=1e-3)
    full = link_edges(spliced, batch, attribution, Link(up, down, ()), up_mask, down_mask)
    assert not torch.allclose(full, got, atol=1e-4)  # without stop-gradients, other paths count


def test_edges_are_sparse_over_selected_nodes(setup):
    spliced, batch, attribution, masks = setup
    edges = compute_edges(spliced, batch, attribution, masks, threshold=1e-3)
    for (up, down), weight in edges.weights.items():
        assert weight.is_sparse and weight.shape == (masks[up].numel(), masks[down].numel())
        u, d = weight.indices()
        assert masks[up].flatten()[u].all() and masks[down].flatten()[d].all()
        assert (weight.values().abs() > 1e-3).all()


@pytest.mark.parametrize("architecture", CODERS)
def test_closed_form_sae_jacobians_equal_autograd(architecture):
    """downstream_vectors = the VJP of (f, e) = (encode(x), x − decode(encode(x))) at x, for a
    feature and an error node, summed and per position."""
    sae = random_coder(architecture, "blocks.0.hook_resid_post", 12, seed=1)
    sae.requires_grad_(False)
    x = torch.randn(3, 5, 12, requires_grad=True)
    f = sae.encode(x)
    e = x - sae.decode(f)
    lf, le = torch.randn_like(f), torch.randn_like(e)
    live = int((f > 0).sum((0, 1)).argmax())
    assert (f[..., live] > 0).any() and (f == 0).any()
    for per_position, ids in ((False, [live, sae.d_sae]), (True, [2 * (sae.d_sae + 1) + live, 4 * (sae.d_sae + 1) + sae.d_sae])):
        got = downstream_vectors(sae, f.detach(), (lf, le), torch.tensor(ids), per_position)
        for k, flat in enumerate(ids):
            t, index = divmod(flat, sae.d_sae + 1) if per_position else (slice(None), flat)
            go_f, go_e = torch.zeros_like(f), torch.zeros_like(e)
            if index == sae.d_sae:
                go_e[:, t] = le[:, t]
            else:
                go_f[:, t, index] = lf[:, t, index]
            (want,) = torch.autograd.grad((f, e), x, grad_outputs=(go_f, go_e), retain_graph=True)
            torch.testing.assert_close(got[k], want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("architecture", CODERS)
def test_packed_edges_equal_one_backward_per_node_for_every_architecture(architecture):
    from activations.models import load_model
    model = load_model("tiny", device="cpu")
    hooks = ["blocks.0.hook_resid_post", "blocks.1.hook_attn_out", "blocks.1.hook_mlp_out", "blocks.1.hook_resid_post"]
    d = model.dims.d_model
    spliced = SplicedModel(model, {h: random_coder(architecture, h, d, seed=i) for i, h in enumerate(hooks)})
    batch = tokenize_pairs(model, load_examples("sva_pp", 4, seed=3))
    attribution = attribute(spliced, batch, "atp", per_position=True)
    masks = select_nodes(attribution.scores, "topk", 40)
    for mask in masks.values():
        mask[..., -1] = True
    masks["blocks.1.hook_attn_out"][:] = False  # a hook with no node: its links have no edges
    packed = compute_edges(spliced, batch, attribution, masks, chunk=5)
    looped = compute_edges(spliced, batch, attribution, masks, batched=False)
    assert len(packed.weights) == 6 and packed.nnz() > 0
    assert packed.weights[("blocks.1.hook_attn_out", "blocks.1.hook_mlp_out")]._nnz() == 0
    for key in packed.weights:
        torch.testing.assert_close(packed.weights[key].to_dense(), looped.weights[key].to_dense(), atol=1e-6, rtol=1e-5)


def test_probe_tells_identity_per_token_and_mixing_paths_apart(setup):
    spliced, batch, _, _ = setup
    hooks = ["blocks.0.hook_resid_post", "blocks.1.hook_attn_out", "blocks.1.hook_mlp_out", "blocks.1.hook_resid_post"]
    inputs, leaves = spliced.cut(batch.clean, hooks)
    kind = {(u, d): _segment_kind(leaves[u], inputs[d]) for u, d in
            [(hooks[0], hooks[1]), (hooks[0], hooks[2]), (hooks[1], hooks[2]), (hooks[0], hooks[3]),
             (hooks[1], hooks[3]), (hooks[2], hooks[3])]}
    assert list(kind.values()) == ["mixing", "per_token", "per_token", "identity", "identity", "identity"]


def test_pack_groups_nodes_with_disjoint_supports():
    torch.manual_seed(0)
    support = torch.rand(30, 4, 6) < 0.15
    groups = pack(support)
    assert sorted(torch.cat(groups).tolist()) == list(range(30))
    for members in groups:
        assert (support[members].sum(0) <= 1).all()  # no token owned twice
    assert len(groups) < 30  # sparse supports share passes
    assert len(pack(torch.ones(5, 2, 3, dtype=torch.bool))) == 5  # dense ones cannot
