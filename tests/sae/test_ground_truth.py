"""A TopK SAE recovers a known dictionary from activations built in superposition."""

import json

import pytest
import torch

from sae.config import load_config
from sae.trainer import Trainer
from sae.data import TensorSource
from tests.sae.synthetic import IN_HOOK, sparse_dictionary_data


def test_topk_recovers_a_dictionary_in_superposition(tmp_path):
    # 128 unit-norm features in 32 dimensions (4x more features than dimensions), each token
    # the sum of ~4 of them. (The data's generator is offset from the SAE's seed: with the same
    # seed the SAE would start at the answer; tests/sae/synthetic.py.) At 100k tokens the mean
    # best cosine is still 0.68-0.70 over six seeds; at 400k it is 0.94-0.96.
    acts, features = sparse_dictionary_data(50_000, d=32, n_features=128, p_active=0.03, seed=0)
    cfg = load_config(None, {"out": str(tmp_path / "run"), "hook": IN_HOOK, "d_sae": 128, "k": 4,
                             "tokens": 400_000, "batch_size": 512, "warmup_steps": 10, "checkpoint_every": 0,
                             "dead_window": 20_000})
    trainer = Trainer(cfg, TensorSource({IN_HOOK: acts}))
    assert trainer.coders[0].decoder_start_cos() == pytest.approx(1.0)
    trainer.fit()
    logged = [json.loads(line)["decoder_start_cos"] for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert logged[0] > 0.99 and logged[-1] == pytest.approx(trainer.coders[0].decoder_start_cos())
    assert logged[-1] < 0.5  # the dictionary it found is far from the random one it started from
    decoder = trainer.coders[0].sae.W_dec.detach()
    decoder = decoder / decoder.norm(dim=-1, keepdim=True)
    max_cosine = (features @ decoder.t()).max(dim=1).values  # best-matching latent per true feature
    assert max_cosine.mean() >= 0.9 and (max_cosine >= 0.9).float().mean() >= 0.75
    torch.manual_seed(cfg.seed * 7919)  # how the trainer seeds its first coder's initialisation
    initial = torch.nn.functional.normalize(torch.randn(128, 32), dim=-1)
    assert (features @ initial.t()).max(dim=1).values.mean() < 0.7  # it did not start at the answer
    # and a random dictionary of the same size does not come close
    random_dirs = torch.nn.functional.normalize(torch.randn(128, 32), dim=-1)
    assert (features @ random_dirs.t()).max(dim=1).values.mean() < 0.7
