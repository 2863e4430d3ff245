"""Synthetic activation sources for the sae tests: known sparse dictionaries in superposition."""

from __future__ import annotations

import torch

from sae.data import TensorSource

IN_HOOK = "blocks.0.hook_resid_post"
OUT_HOOK = "blocks.1.hook_mlp_out"
DATA_SEED_OFFSET = 1_000_003


def sparse_dictionary_data(n_tokens: int, d: int, n_features: int, p_active: float, seed: int = 0,
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """(acts [n_tokens, d], features [n_features, d]): each token is a sum of independently
    active unit-norm features (probability p_active each) with magnitudes in [0.5, 1.5].

    The generator is offset from ``seed``: an SAE initialised after ``torch.manual_seed(s)``
    draws its decoder as ``torch.randn(d_sae, d)``, which for s == seed would be the very
    dictionary to recover, and a recovery test would pass from the first step."""
    gen = torch.Generator().manual_seed(DATA_SEED_OFFSET + seed)
    features = torch.randn(n_features, d, generator=gen)
    features /= features.norm(dim=-1, keepdim=True)
    active = torch.rand(n_tokens, n_features, generator=gen) < p_active
    magnitudes = 0.5 + torch.rand(n_tokens, n_features, generator=gen)
    return (active * magnitudes) @ features, features


def synthetic_source(n_tokens: int = 8192, d: int = 32, n_features: int = 64, p_active: float = 0.05,
                     seed: int = 0, transcoder: bool = False) -> TensorSource:
    """Sparse-dictionary activations at IN_HOOK (x 3, to test normalisation); with
    ``transcoder``, OUT_HOOK holds a fixed linear map of them plus a ReLU nonlinearity."""
    acts, _ = sparse_dictionary_data(n_tokens, d, n_features, p_active, seed)
    hooks = {IN_HOOK: acts * 3.0}
    if transcoder:
        gen = torch.Generator().manual_seed(seed + 1)
        hooks[OUT_HOOK] = torch.relu(acts @ torch.randn(d, d + 8, generator=gen)) / d ** 0.5
    return TensorSource(hooks)
