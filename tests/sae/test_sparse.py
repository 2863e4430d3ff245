"""The hand-written sparse kernels against dense autograd."""

import pytest
import torch

from sae.architectures.batchtopk import batch_topk
from sae.sparse import SparseLatents, group_by_latent, sparse_decode, sparse_encode, uniform_crow

B, D_IN, D_SAE, D_OUT, K = 9, 6, 13, 5, 3


def topk_select(pre):
    values, indices = pre.topk(K, sorted=False)
    return values.relu().flatten(), indices.flatten(), uniform_crow(pre.shape[0], K, pre.device)


def params(d_out, gen):
    kw = dict(dtype=torch.float64, requires_grad=True)
    return (torch.randn(D_SAE, D_IN, generator=gen, **kw), torch.randn(D_SAE, generator=gen, **kw),
            torch.randn(D_IN, generator=gen, **kw), torch.randn(D_SAE, d_out, generator=gen, **kw))


@pytest.mark.parametrize("d_out, use_b_dec", [(D_IN, True), (D_OUT, False)])
@pytest.mark.parametrize("select", [topk_select, lambda pre: batch_topk(pre, K)])
def test_gradients_match_dense_autograd(d_out, use_b_dec, select):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(B, D_IN, dtype=torch.float64, generator=gen, requires_grad=True)
    target = torch.randn(B, d_out, dtype=torch.float64, generator=gen)
    weight, b_enc, b_dec, W_dec = params(d_out, gen)
    b_in = b_dec if use_b_dec else None

    latents = sparse_encode(x, weight, b_enc, b_in, select)
    out = sparse_decode(latents, W_dec)
    ((out - target) ** 2).sum().backward()
    ours = [t.grad.clone() for t in (x, weight, b_enc, b_dec, W_dec) if t.grad is not None]
    for t in (x, weight, b_enc, b_dec, W_dec):
        t.grad = None

    pre = (x - b_dec if use_b_dec else x) @ weight.t() + b_enc
    values, indices, crow = select(pre.detach())
    rows = torch.repeat_interleave(torch.arange(B), crow.diff())
    mask = torch.zeros_like(pre).index_put((rows, indices), torch.ones_like(values))
    dense = torch.relu(pre) * mask
    ((dense @ W_dec - target) ** 2).sum().backward()
    reference = [t.grad.clone() for t in (x, weight, b_enc, b_dec, W_dec) if t.grad is not None]

    assert torch.allclose(latents.to_dense(), dense, atol=1e-12)
    assert len(ours) == len(reference) == (5 if use_b_dec else 4)
    for a, b in zip(ours, reference):
        assert torch.allclose(a, b, atol=1e-10)


def test_group_by_latent_transposes_the_pattern():
    indices = torch.tensor([4, 1, 1, 0, 4, 2])
    crow = torch.tensor([0, 2, 3, 6])  # rows: [4, 1], [1], [0, 4, 2]
    rows, order, col_ptr = group_by_latent(indices, crow, 5)
    assert col_ptr.tolist() == [0, 1, 3, 4, 4, 6]
    assert indices[order].tolist() == [0, 1, 1, 2, 4, 4]
    assert rows.tolist() == [2, 0, 1, 2, 0, 2]


def test_batch_topk_is_exact_also_when_one_row_dominates():
    gen = torch.Generator().manual_seed(1)
    pre = torch.randn(8, 40, generator=gen)
    pre[3] += 10.0  # row 3 holds far more than 2k of the batch's top 8·k entries
    for k in (1, 3):
        values, indices, crow = batch_topk(pre, k)
        expected = torch.relu(pre).flatten().topk(8 * k).values
        assert torch.equal(values.sort().values, expected.sort().values)
        rows = torch.repeat_interleave(torch.arange(8), crow.diff())
        assert torch.equal(pre[rows, indices], values)
        assert crow.diff()[3] > 2 * k


def test_to_dense_places_values():
    latents = SparseLatents(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2, 0, 1]), torch.tensor([0, 1, 1, 3]), 3)
    assert latents.to_dense().tolist() == [[0, 0, 1], [0, 0, 0], [2, 3, 0]]
