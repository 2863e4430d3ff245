"""Behaviour datasets, the SAE-spliced model and node attribution (AtP, IG, exact patching)."""

from __future__ import annotations

import json

import pytest
import torch

from activations.corpus.names import ALL_NAMES
from activations.errors import ToolkitError
from circuits.attribution import SplicedModel, attribute, check_against_patching, logit_diff, rank_correlation
from circuits.commands.circuit import load_saes
from circuits.datasets import (BUILTIN, load_examples, read_examples, shift_examples, tokenize_pairs,
                               train_test_split)

RESID_CUTS = ["blocks.0.hook_resid_pre"] + [f"blocks.{layer}.hook_resid_post" for layer in range(4)]


@pytest.fixture(scope="module")
def model():
    from activations.models import load_model
    torch.manual_seed(0)
    return load_model("tiny", device="cpu")


@pytest.fixture(scope="module")
def spliced(model, tiny_saes):
    return SplicedModel(model, load_saes(next(iter(tiny_saes.values())).parent))


@pytest.fixture(scope="module")
def sva(model):
    return tokenize_pairs(model, load_examples("sva_pp", 24, seed=3))


def test_builtin_datasets_tokenise_with_single_token_answers(model):
    for name in BUILTIN:
        batch = tokenize_pairs(model, load_examples(name, 16))
        assert len(batch) >= 8, name
        rows = torch.arange(len(batch))
        assert (batch.clean[rows, batch.last] != model.bos_token_id).all()  # last is a real token
        assert (batch.clean_answer != batch.patch_answer).all()


def test_abc_prompts_replace_the_repeat_with_a_third_name(model):
    """ioi_abc keeps ioi's clean prompts; its patch prompt names someone new where the clean
    one repeats the subject, and its patch answer is that subject."""
    ioi, abc = load_examples("ioi", 24, seed=2), load_examples("ioi_abc", 24, seed=2)
    names = set(ALL_NAMES)
    for plain, new in zip(ioi, abc):
        assert new["clean_prefix"] == plain["clean_prefix"] and new["clean_answer"] == plain["clean_answer"]
        clean, patch = new["clean_prefix"].split(" "), new["patch_prefix"].split(" ")
        (where,) = [i for i, (a, b) in enumerate(zip(clean, patch)) if a != b]
        third = patch[where].rstrip(",.")
        assert third in names and third not in clean and new["patch_answer"] == " " + clean[where].rstrip(",.")
        assert " " + third != new["clean_answer"] and clean.count(clean[where]) == 2
    batch = tokenize_pairs(model, abc)
    assert len(batch) == len(abc)  # same token length: positions line up for patching


def test_user_json_and_jsonl_give_the_same_batch(model, tmp_path):
    examples = load_examples("ioi", 6)
    (tmp_path / "d.json").write_text(json.dumps(examples))
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(e) for e in examples))
    a, b = (tokenize_pairs(model, read_examples(tmp_path / f)) for f in ("d.json", "d.jsonl"))
    assert torch.equal(a.clean, b.clean) and torch.equal(a.patch_answer, b.patch_answer)
    assert torch.equal(a.clean, tokenize_pairs(model, examples).clean)


@pytest.mark.parametrize("name, text, words", [("bad.json", "{]", "not valid JSON"),
                                               ("bad.json", "[]", "non-empty list"),
                                               ("bad.json", '[{"clean_prefix": "a"}]', "clean_answer"),
                                               ("bad.jsonl", '{"a": 1}\n\n{oops\n', "line 3 of"),
                                               ("bad.json", b"\xff\xfe[", "not UTF-8")])
def test_bad_user_dataset_is_one_line_error(tmp_path, name, text, words):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ToolkitError, match=words) as err:
        read_examples(path)
    assert "\n" not in str(err.value)


def test_split_is_disjoint_and_covers_everything():
    examples = load_examples("sva_pp", 20)
    assert len({json.dumps(e) for e in examples}) == 20
    train, test = train_test_split(examples, 0.25, seed=1)
    assert len(test) == 5 and len(train) == 15
    assert sorted(map(json.dumps, train + test)) == sorted(map(json.dumps, examples))


def test_split_drops_discovery_examples_that_repeat_a_held_out_one():
    examples = load_examples("sva_pp", 20)
    repeated = examples + [examples[0]] * 6  # the generator can draw one example twice
    train, test = train_test_split(repeated, 0.25, seed=0)
    assert examples[0] in test  # so an unfiltered split would put copies on both sides
    key = lambda e: (e["clean_prefix"], e["patch_prefix"])
    assert not {key(e) for e in train} & {key(e) for e in test}
    assert {key(e) for e in train + test} == {key(e) for e in examples}  # nothing else is lost


def test_shift_examples_cue_is_spurious_only_when_ambiguous():
    ambiguous, balanced = shift_examples(40, 0), shift_examples(40, 0, balanced=True)
    assert all(r["label"] == r["cue"] for r in ambiguous)
    groups = [sum(1 for r in balanced if (r["label"], r["cue"]) == g) for g in ((0, 0), (0, 1), (1, 0), (1, 1))]
    assert groups == [10, 10, 10, 10]
    from circuits.datasets import _DUTIES, PROFESSIONS
    for r in balanced:  # each bio names its profession, describes its work, and never the other's
        assert PROFESSIONS[r["label"]] in r["text"] and PROFESSIONS[1 - r["label"]] not in r["text"]
        assert any(d in r["text"] for d in _DUTIES[r["label"]]) and not any(d in r["text"] for d in _DUTIES[1 - r["label"]])
        words = set(r["text"].lower().replace(".", " ").replace(",", " ").split())
        cue, other = ({"he", "his"}, {"she", "her"}) if r["cue"] else ({"she", "her"}, {"he", "his"})
        assert cue <= words and not other & words  # the cue twice besides the name: pronoun, possessive


def test_spliced_forward_reproduces_the_model_exactly(model, spliced, sva):
    with torch.no_grad():
        logits, nodes = spliced.run(sva.clean)
        identity = model.forward(sva.clean, {h: (lambda x: x) for h in spliced.hooks})
        plain = model.forward(sva.clean)
        acts = model.capture(sva.clean, spliced.hooks)
    assert torch.equal(logits, identity)
    torch.testing.assert_close(logits, plain, atol=1e-4, rtol=1e-4)
    for hook, (f, e) in nodes.items():  # recon + error is the activation
        torch.testing.assert_close(spliced.saes[hook].decode(f) + e, acts[hook], atol=1e-4, rtol=1e-5)
        assert (f > 0).sum(-1).max() <= 16


def test_ig_is_complete_at_every_residual_cut(spliced, sva):
    """Σ of a full cut's IG scores = m(clean) − m(patch), up to the 10-step quadrature."""
    attribution = attribute(spliced, sva, "ig", steps=10)
    assert attribution.total > 1.0
    for hook in RESID_CUTS:
        assert float(attribution.scores[hook].sum()) == pytest.approx(attribution.total, rel=0.05), hook


def test_per_position_scores_sum_to_summed_scores_and_zero_baseline_uses_clean(spliced, sva):
    summed = attribute(spliced, sva, "atp")
    per_pos = attribute(spliced, sva, "atp", per_position=True)
    zero = attribute(spliced, sva, "atp", baseline="zero")
    hook = "blocks.1.hook_mlp_out"
    assert per_pos.scores[hook].shape == (sva.clean.shape[1], spliced.d_sae(hook) + 1)
    torch.testing.assert_close(per_pos.scores[hook].sum(0), summed.scores[hook], atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        f, e = spliced.values(sva.clean)[hook]
    assert torch.equal(zero.deltas[hook][0], f) and torch.equal(zero.deltas[hook][1], e)
    padded = torch.arange(sva.clean.shape[1])[None] > sva.last[:, None]  # right padding never matters
    assert float(summed.grads[hook][0][padded].abs().max()) == 0.0


def test_user_metric_replaces_the_logit_difference(spliced, sva):
    default = attribute(spliced, sva, "atp")
    flipped = attribute(spliced, sva, "atp", metric=lambda logits, batch: -logit_diff(logits, batch))
    hook = "blocks.2.hook_attn_out"
    torch.testing.assert_close(flipped.scores[hook], -default.scores[hook])


def test_ig_agrees_with_activation_patching_on_top_50_nodes(spliced, sva):
    """Issue 5's target: IG (10 steps) ranks the 50 top nodes like exact activation patching
    (the fixture SAEs: Spearman 0.975, Pearson 0.987; 0.95-0.96 with other seeds: docs/circuits.md)."""
    check = check_against_patching(spliced, sva, attribute(spliced, sva, "ig", steps=10), 50)
    print(f"IG vs activation patching on the top 50 nodes: Spearman {check['spearman']:.3f}, "
          f"Pearson {check['pearson']:.3f}")
    assert check["spearman"] >= 0.9


def test_rank_correlation_gives_ties_their_average_rank():
    # ranks (0, 1.5, 1.5, 3) against (0, 2, 1, 3): covariance 4.5, variances 4.5 and 5
    rho = rank_correlation(torch.tensor([1.0, 2.0, 2.0, 3.0]), torch.tensor([10.0, 30.0, 20.0, 40.0]))
    assert rho == pytest.approx(4.5 / (4.5 * 5) ** 0.5)
    assert rank_correlation(torch.tensor([3.0, 1.0, 2.0]), torch.tensor([-1.0, 5.0, 0.0])) == pytest.approx(-1.0)
    with pytest.raises(ToolkitError, match="equal length"):
        rank_correlation(torch.tensor([1.0, 2.0]), torch.tensor([1.0]))


@pytest.mark.parametrize("per_position", [False, True])
def test_patching_check_patches_the_top_nodes_of_the_estimate(spliced, sva, per_position):
    """The checked nodes are the estimate's largest |score| in order, and each exact value is
    m(clean) − m(that one node set to its patch value), recomputed here by hand."""
    attribution = attribute(spliced, sva, "atp", per_position=per_position)
    check = check_against_patching(spliced, sva, attribution, 12)
    flat = torch.cat([s.abs().flatten() for s in attribution.scores.values()])
    assert [abs(n["estimate"]) for n in check["nodes"]] == pytest.approx(flat.topk(12).values.tolist())
    patch = spliced.values(sva.patch)
    with torch.no_grad():
        m_clean = logit_diff(spliced.run(sva.clean)[0], sva)
    kinds = set()
    for node in check["nodes"]:
        hook, feature, t = node["hook"], node["feature"], node["position"]
        at = slice(None) if t is None else t
        index = spliced.d_sae(hook) if feature is None else feature
        assert node["estimate"] == pytest.approx(float(attribution.scores[hook][(index,) if t is None else (t, index)]))
        kinds.add(feature is None)

        def edit(f, e, hook=hook, feature=feature, at=at):
            f, e = f.clone(), e.clone()
            if feature is None:
                e[:, at] = patch[hook][1][:, at]
            else:
                f[:, at, feature] = patch[hook][0][:, at, feature]
            return f, e
        with torch.no_grad():
            patched = logit_diff(spliced.run(sva.clean, {hook: edit}, hooks=[hook])[0], sva)
        assert node["exact"] == pytest.approx(float((m_clean - patched).mean()), abs=1e-4)
    assert kinds == {True, False}, "the top nodes should include feature and error nodes"
    assert -1.0 <= check["spearman"] <= 1.0 and check["spearman"] > 0.5  # AtP tracks patching here
    # a metric no node moves: every exact effect is 0, so there is no correlation (None, not NaN)
    flat_metric = lambda logits, batch: logits[:, 0, 0] * 0
    none = check_against_patching(spliced, sva, attribution, 4, metric=flat_metric)
    assert none["spearman"] is None and none["pearson"] is None and {n["exact"] for n in none["nodes"]} == {0.0}


def test_bad_inputs_are_toolkit_errors(spliced, sva):
    with pytest.raises(ToolkitError, match="method"):
        attribute(spliced, sva, "shap")
    with pytest.raises(ToolkitError, match="baseline"):
        attribute(spliced, sva, "atp", baseline="mean")
    with pytest.raises(ToolkitError, match="unknown dataset"):
        load_examples("winogrande")
