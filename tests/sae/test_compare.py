"""Comparing dictionaries: blockwise matching, shared features, split families, their check
on activations, two seeds that recover one dictionary, and the `sae compare` command."""

from __future__ import annotations

import json

import pytest
import torch

from activations.errors import ToolkitError
from sae.architectures import ARCHITECTURES
from sae.cli import main
from sae.compare import best_matches, compare, firing_agreement
from sae.config import SAEConfig, load_config
from sae.data import TensorSource
from sae.io import save_sae
from sae.trainer import Trainer
from tests.sae.synthetic import IN_HOOK, sparse_dictionary_data

D = 32


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True)


def _relu_sae(encoder: torch.Tensor, decoder: torch.Tensor, bias: torch.Tensor | None = None, hook: str = IN_HOOK,
              model: str = "tiny"):
    """A ReLU SAE whose latents are relu(x @ encoder.T + bias) and whose decoder rows are ``decoder``."""
    sae = ARCHITECTURES["relu"](SAEConfig(architecture="relu", hook=hook, d_in=D, d_sae=len(decoder)), D)
    with torch.no_grad():
        sae.encoder_weight.copy_(encoder)
        sae.b_enc.copy_(torch.zeros(len(decoder)) if bias is None else bias)
        sae.b_dec.zero_()
        sae.W_dec.copy_(decoder)
    sae.metadata = {"model_name": model}
    return sae.eval()


def _basis(n: int) -> torch.Tensor:
    return torch.eye(D)[:n]


def _split_pair():
    """A: basis features 0..11. B: A's features 1..11 (rescaled, shuffled), and feature 0
    split in two children along e20: one fires where x20 > 0, the other where x20 < 0."""
    a = _relu_sae(_basis(12), _basis(12))
    e = torch.eye(D)
    kids = [e[0] + 0.5 * e[20], e[0] - 0.5 * e[20]]
    order = torch.randperm(11, generator=torch.Generator().manual_seed(0)) + 1
    rows = [e[i] * 2.0 for i in order.tolist()] + kids
    bias = torch.tensor([0.0] * 11 + [-0.9, -0.9])
    encoder = torch.stack([e[i] for i in order.tolist()] + [e[0] + e[20], e[0] - e[20]])
    b = _relu_sae(encoder, torch.stack(rows), bias)
    return a, b, order


def _split_tokens(n: int = 600) -> torch.Tensor:
    """Tokens of A's features 1..11 alone, and tokens of feature 0 with x20 = +-0.5."""
    gen = torch.Generator().manual_seed(1)
    x = torch.zeros(n, D)
    which = torch.randint(0, 12, (n,), generator=gen)
    x[torch.arange(n), which] = 0.5 + torch.rand(n, generator=gen)
    zero = which == 0
    x[zero, 0] = 1.0
    x[zero, 20] = torch.where(torch.rand(int(zero.sum()), generator=gen) < 0.5, 0.5, -0.5)
    return x


@pytest.mark.parametrize("block", [1, 3, 7, 1000])
def test_blockwise_matching_equals_dense(block):
    gen = torch.Generator().manual_seed(1)
    t, s = _unit(torch.randn(50, 16, generator=gen)), _unit(torch.randn(37, 16, generator=gen))
    value, index = best_matches(t, s, block)
    dense = t @ s.T
    assert torch.equal(index, dense.argmax(1))
    assert torch.allclose(value, dense.max(1).values)


def test_an_sae_shares_every_feature_with_itself_and_splits_none():
    sae = _relu_sae(_unit(torch.randn(40, D)), _unit(torch.randn(40, D)))
    result = compare(sae, sae)
    assert torch.equal(result.shared, torch.stack([torch.arange(40)] * 2, dim=1))
    assert result.families() == {}
    summary = result.summary()
    assert summary["shared_share_a"] == summary["shared_share_b"] == 1.0 and summary["a_in_b"]["median"] > 0.999


def test_shared_features_follow_a_permutation_and_ignore_decoder_norms_and_a_split_is_a_family():
    a, b, order = _split_pair()
    result = compare(a, b, threshold=0.7, child_threshold=0.5)
    pairs = {int(i): int(j) for i, j in result.shared}
    for j, i in enumerate(order.tolist()):  # A's feature i is B's feature j, at twice the norm
        assert pairs[i] == j and result.a_cos[i] == pytest.approx(1.0)
    assert result.families() == {0: [11, 12]}  # both children at cosine 1/sqrt(1.25)
    assert result.b_cos[11] == pytest.approx(1.25 ** -0.5)
    # a stricter threshold drops the split feature's match (0.894) but no exact one
    assert 0 not in {int(i) for i, _ in compare(a, b, threshold=0.95).shared}
    assert compare(a, b, child_threshold=0.95).families() == {}


def test_chance_is_isotropic_even_for_an_sae_still_at_its_initialisation():
    """The chance row's random directions are never an SAE's own start (an SAE initialised after
    torch.manual_seed(s) draws randn(d_sae, d)), so chance stays near sqrt(2 ln n / d)."""
    from sae.architectures.base import random_directions
    saes = []
    for seed in (0, 1, 20_231_010):
        torch.manual_seed(seed)
        start = random_directions(256, D, 1.0)
        saes.append(_relu_sae(start, start))
    for sae in saes:
        chance = compare(sae, saes[1] if sae is saes[0] else saes[0]).chance
        assert 0.4 < float(chance.median()) < 0.75  # sqrt(2 ln 256 / 32) = 0.59
        assert float(chance.max()) < 0.95


def test_only_mutual_best_matches_are_shared():
    """Two features of A nearest to B's one feature: only the closer is shared with it."""
    e = torch.eye(D)
    near = _unit(torch.stack([e[0], e[0] + 0.3 * e[1], e[2]]))
    a, b = _relu_sae(near, near), _relu_sae(e[[0, 2]], e[[0, 2]])
    result = compare(a, b, threshold=0.7)
    assert result.a_match.tolist() == [0, 0, 1] and result.a_cos[1] > 0.7
    assert result.shared.tolist() == [[0, 0], [2, 1]]


def test_firing_agreement_confirms_a_real_split_and_refutes_unrelated_children():
    a, b, order = _split_pair()
    source = TensorSource({IN_HOOK: _split_tokens()})
    result = compare(a, b)
    agree = firing_agreement(result, a, b, source, n_tokens=600, batch_size=200)  # one epoch, every row once
    assert agree["n_tokens"] == 600
    shared = result.shared.tolist()
    corr = dict(zip(map(tuple, shared), agree["correlation"].tolist()))
    for j, i in enumerate(order.tolist()):  # identical latents up to scale
        assert corr[(i, j)] == pytest.approx(1.0, abs=1e-6)
    assert agree["recall"].tolist() == [1.0] and agree["precision"].tolist() == [1.0]
    fired_parent = int(agree["fired_a"][0])
    assert fired_parent == int(agree["fired_b"][11]) + int(agree["fired_b"][12]) > 0  # the children share it out

    # one child reads another feature: half the parent's firings have a child, and the
    # children's firings are the parent's on the first child's tokens only
    x = _split_tokens()
    e = torch.eye(D)
    encoder = b.encoder_weight.detach().clone()
    encoder[12] = e[6]
    half = _relu_sae(encoder, b.W_dec.detach(), torch.tensor([0.0] * 11 + [-0.9, 0.0]))
    agree = firing_agreement(compare(a, half), a, half, source, n_tokens=600, batch_size=200)  # one epoch, every row once
    up, sixes = int(((x[:, 0] > 0) & (x[:, 20] > 0)).sum()), int((x[:, 6] > 0).sum())
    assert agree["recall"].item() == pytest.approx(up / int((x[:, 0] > 0).sum()))
    assert agree["precision"].item() == pytest.approx(up / (up + sixes))

    # children whose encoders read other features: the decoders still make a family, the activations do not
    encoder = b.encoder_weight.detach().clone()
    encoder[11], encoder[12] = e[5], e[6]
    unrelated = _relu_sae(encoder, b.W_dec.detach(), torch.zeros(13))
    agree = firing_agreement(compare(a, unrelated), a, unrelated, source, n_tokens=600, batch_size=200)  # one epoch, every row once
    assert agree["recall"].tolist() == [0.0] and agree["precision"].tolist() == [0.0]


def test_two_seeds_that_recover_one_dictionary_share_its_features(tmp_path):
    """Trained on a known dictionary in superposition, two seeds' TopK SAEs find the same
    features, by decoder and by activation; an SAE of random directions shares none."""
    acts, _ = sparse_dictionary_data(50_000, d=D, n_features=128, p_active=0.03, seed=0)
    source = TensorSource({IN_HOOK: acts})
    saes = []
    for seed in (0, 1):
        cfg = load_config(None, {"out": str(tmp_path / f"s{seed}"), "hook": IN_HOOK, "d_sae": 128, "k": 4,
                                 "tokens": 400_000, "batch_size": 512, "warmup_steps": 10, "checkpoint_every": 0,
                                 "dead_window": 20_000, "seed": seed})
        trainer = Trainer(cfg, source)
        trainer.fit()
        saes.append(trainer.coders[0].sae.eval())
    result = compare(*saes)
    agree = firing_agreement(result, *saes, source, n_tokens=20_000)
    print(result.summary(), float(agree["correlation"].median()))
    assert result.summary()["shared_share_a"] >= 0.7  # 0.82 measured
    assert float(agree["correlation"].median()) >= 0.9
    noise = _relu_sae(_unit(torch.randn(128, D)), _unit(torch.randn(128, D)), model="in-memory")
    assert compare(saes[0], noise).summary()["shared"] <= 3


def test_compare_refuses_dictionaries_of_other_spaces_and_models():
    a = _relu_sae(_basis(4), _basis(4))
    other_model = _relu_sae(_basis(4), _basis(4), model="gpt2")
    with pytest.raises(ToolkitError, match="different models"):
        compare(a, other_model)
    z = ARCHITECTURES["relu"](SAEConfig(architecture="relu", hook="blocks.0.attn.hook_z", d_in=D, d_sae=4), D)
    z.metadata = {"model_name": "tiny"}
    with pytest.raises(ToolkitError, match="different spaces"):
        compare(a, z)
    with pytest.raises(ToolkitError, match="not a cosine"):
        compare(a, a, threshold=1.5)


def _saved(folder, sae):
    return save_sae(sae, folder, metadata={"model_name": "in-memory", "hook_name": IN_HOOK})


def test_sae_compare_prints_the_split_and_writes_json(tmp_path, capsys, monkeypatch):
    a, b, order = _split_pair()
    fa, fb = _saved(tmp_path / "a", a), _saved(tmp_path / "b", b)
    assert main(["compare", str(fa), str(fb), "--tokens", "0", "--json", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    assert "A 0 -> 2 children: 11 (0.89), 12 (0.89)" in out and "shared (mutual best match, cosine >= 0.7): 12" in out
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["families"] == [{"a": 0, "children": [11, 12]}]
    assert {(r["a"], r["b"]) for r in data["shared"]} >= {(i, j) for j, i in enumerate(order.tolist())}
    assert data["a_best"]["index"][order[0]] == 0 and len(data["b_best"]["cosine"]) == 13

    # with a store: the activation check lands in both outputs
    monkeypatch.setattr("sae.commands.compare.open_source",
                        lambda *args, **kw: TensorSource({IN_HOOK: _split_tokens()}, "in-memory"))
    assert main(["compare", str(fa), str(fb), "--acts", "store", "--tokens", "600", "--batch-size", "200",
                 "--json", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    assert "[recall 1.000, precision 1.000]" in out and "over 600 tokens: Pearson correlation median 1.000" in out
    family = json.loads((tmp_path / "c.json").read_text())["families"][0]
    assert family["recall"] == family["precision"] == 1.0


@pytest.mark.parametrize("argv, message", [
    (["--threshold", "2"], "--threshold 2.0 is not a cosine"),
    (["--tokens", "-5"], "--tokens"),
    (["--families", "-1"], "--families"),
])
def test_sae_compare_refuses_bad_numbers_in_one_line(tmp_path, capsys, argv, message):
    a, b, _ = _split_pair()
    fa, fb = _saved(tmp_path / "a", a), _saved(tmp_path / "b", b)
    assert main(["compare", str(fa), str(fb), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_sae_compare_refuses_a_run_folder_of_several_saes(tmp_path, capsys):
    a, b, _ = _split_pair()
    _saved(tmp_path / "run" / "saes" / "a", a), _saved(tmp_path / "run" / "saes" / "b", b)
    assert main(["compare", str(tmp_path / "run"), str(tmp_path / "run" / "saes" / "a"), "--tokens", "0"]) == 2
    assert "holds 2 SAEs; pass one of them" in capsys.readouterr().err
