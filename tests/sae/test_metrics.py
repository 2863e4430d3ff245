"""Every metric against a case computed by hand."""

import math

import pytest
import torch

from sae import metrics
from sae.sparse import SparseLatents

LATENTS = torch.tensor([[0.0, 1.5, 0.0, 2.0],
                        [0.0, 0.0, 0.0, 0.0],
                        [1.0, 1.0, 1.0, 0.0]])


def sparse_form(dense: torch.Tensor) -> SparseLatents:
    rows, cols = dense.nonzero(as_tuple=True)
    crow = torch.zeros(dense.shape[0] + 1, dtype=torch.long)
    crow[1:] = torch.bincount(rows, minlength=dense.shape[0]).cumsum(0)
    return SparseLatents(dense[rows, cols], cols, crow, dense.shape[1])


def test_l0_counts_nonzero_latents_per_token():
    assert metrics.l0(LATENTS).item() == pytest.approx(5 / 3)  # 2 + 0 + 3 active, 3 tokens
    assert metrics.l0(sparse_form(LATENTS)).item() == pytest.approx(5 / 3)


def test_firing_counts_per_latent_dense_and_sparse_agree():
    assert metrics.firing_counts(LATENTS).tolist() == [1, 2, 1, 1]
    assert metrics.firing_counts(sparse_form(LATENTS)).tolist() == [1, 2, 1, 1]


def test_fvu_is_about_the_mean_not_zero():
    x = torch.tensor([[1.0, 0.0], [3.0, 0.0]])  # mean (2, 0): Σ‖x − mean‖² = 2 (about zero it would be 10)
    assert metrics.fvu(x, torch.tensor([[2.0, 0.0], [2.0, 0.0]])) == pytest.approx(1.0)
    assert metrics.fvu(x, torch.tensor([[1.0, 1.0], [3.0, 0.0]])) == pytest.approx(0.5)
    assert metrics.explained_variance(x, torch.tensor([[1.0, 1.0], [3.0, 0.0]])) == pytest.approx(0.5)


def test_streamed_fvu_equals_fvu_over_all_tokens():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(100, 5, generator=gen) + 3.0
    x_hat = x + 0.3 * torch.randn(100, 5, generator=gen)
    stats = metrics.ReconstructionStats()
    for start in range(0, 100, 30):
        stats.update(x[start:start + 30], x_hat[start:start + 30])
    assert stats.fvu == pytest.approx(metrics.fvu(x, x_hat), rel=1e-12)
    expected = float(((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
    assert stats.fvu == pytest.approx(expected, rel=1e-6)


def test_next_token_ce_by_hand():
    tokens = torch.tensor([[0, 1, 0]])
    logits = torch.tensor([[[0.0, math.log(3.0)], [0.0, 0.0], [5.0, -5.0]]])  # last position unused
    expected = (math.log(4 / 3) + math.log(2.0)) / 2  # p(1) = 3/4, then p(0) = 1/2
    assert metrics.next_token_ce(logits, tokens) == pytest.approx(expected)


def test_next_token_kl_by_hand():
    clean = torch.tensor([[[0.0, 0.0]]])  # p = (1/2, 1/2)
    patched = torch.tensor([[[math.log(3.0), 0.0]]])  # q = (3/4, 1/4)
    assert metrics.next_token_kl(clean, patched) == pytest.approx(0.5 * math.log(4 / 3))
    assert metrics.next_token_kl(clean, clean) == pytest.approx(0.0, abs=1e-7)


def test_loss_recovered_scores():
    assert metrics.ce_loss_recovered(ce_clean=2.0, ce_sae=2.5, ce_zero=4.0) == pytest.approx(0.75)
    assert metrics.ce_loss_recovered(ce_clean=2.0, ce_sae=2.0, ce_zero=4.0) == pytest.approx(1.0)
    assert metrics.kl_recovered(kl_sae=0.1, kl_zero=0.4) == pytest.approx(0.75)
    assert math.isnan(metrics.ce_loss_recovered(2.0, 2.0, 2.0))


def test_dead_and_dense_fractions_over_a_window():
    counts = torch.tensor([0, 3, 0, 1])  # over a window of 10 tokens
    assert metrics.dead_fraction(counts) == 0.5
    assert metrics.dense_fraction(counts, 10, threshold=0.1) == 0.25  # only 3/10 > 0.1
    assert metrics.feature_density(counts, 10).tolist() == pytest.approx([0.0, 0.3, 0.0, 0.1])


def test_log10_density_and_its_histogram():
    counts = torch.tensor([0, 10, 1, 100])
    assert metrics.log10_density(counts, 100).tolist() == pytest.approx([-10.0, -1.0, -2.0, 0.0])
    hist, edges = metrics.density_histogram(counts, 100, bins=10)
    assert len(edges) == 11 and edges[0] == -10.0 and edges[-1] == 0.0
    assert sum(hist) == 4 and hist[0] == 1 and hist[-1] == 2  # -1 and 0 fall in the top bin [-1, 0]
