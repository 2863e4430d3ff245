"""Edges: the direct-path links, batched VJPs equal to one backward per node, a closed-form
check of the stop-gradients, and sparse storage."""

from __future__ import annotations

import pytest
import torch

from circuits.attribution import SplicedModel, attribute
from circuits.circuit import select_nodes
from circuits.commands.circuit import load_saes
from circuits.datasets import load_examples, tokenize_pairs
from circuits.edges import Link, compute_edges, link_edges, links


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
