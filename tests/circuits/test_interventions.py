"""Interventions: exact edits, hooks removed afterwards, steering schedules, generation and
effect measures; and the SVA demonstration on the tiny model's SAEs."""

from __future__ import annotations

import pytest
import torch

from activations.errors import ToolkitError
from activations.models import load_model
from circuits.effects import logit_diff, measure, standard_metrics, target_prob
from circuits.interventions import (FeatureAblation, Recorder, Steering, chain_steering, feature_means, generate,
                                    intervene, logits, schedule)
from sae.architectures import ARCHITECTURES
from sae.config import SAEConfig

HOOK = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def model():
    return load_model("tiny", device="cpu")


@pytest.fixture(scope="module")
def sae():
    torch.manual_seed(0)
    coder = ARCHITECTURES["topk"](SAEConfig(architecture="topk", hook=HOOK, d_in=192, d_sae=256, k=8), 192)
    return coder.eval()


@pytest.fixture(scope="module")
def tokens(model):
    return model.to_tokens(["Q: In which city does Torara live? A:", "Q: In which city does Peloth live? A:"])


def _attached(model) -> int:
    bridge_hooks = sum(len(hp.fwd_hooks) + len(hp.bwd_hooks) for hp in model.bridge.hook_points())
    torch_hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks)
                      for net in (model.bridge, model.hf_model) for m in net.modules())
    return bridge_hooks + torch_hooks


def test_hooks_are_gone_after_the_block_even_on_error(model, sae, tokens):
    clean = logits(model, tokens)  # the bridge's own layer-norm hooks attach on its first pass
    before = _attached(model)
    with intervene(model, [FeatureAblation(sae, [1, 2], "clamp", 50.0)]):
        assert _attached(model) > before
        assert not torch.allclose(logits(model, tokens), clean)
    assert _attached(model) == before
    with pytest.raises(RuntimeError, match="boom"):
        with intervene(model, [Steering(HOOK, torch.ones(192), 10.0)]):
            raise RuntimeError("boom")
    assert _attached(model) == before
    assert torch.equal(logits(model, tokens), clean)


def test_ablation_changes_only_the_chosen_features(model, sae, tokens):
    acts = model.capture(tokens, [HOOK])[HOOK]
    a = sae.encode(acts)
    feats = [int(i) for i in a[0, 3].nonzero()[:2, 0]]
    d = sae.W_dec[feats].detach()
    removed = FeatureAblation(sae, feats, "zero", positions=[3])(acts) - acts
    assert torch.allclose(removed[:, 3], -(a[:, 3, feats] @ d), atol=1e-5)
    assert removed[:, [0, 1, 2, 4]].abs().max() == 0
    assert torch.allclose(FeatureAblation(sae, feats, "rescale", 0.0)(acts), FeatureAblation(sae, feats)(acts))
    assert torch.equal(FeatureAblation(sae, feats, "rescale", 1.0)(acts), acts)
    doubled = FeatureAblation(sae, feats, "rescale", 3.0)(acts) - acts  # h + (r-1) a d
    assert torch.allclose(doubled, 2.0 * (a[..., feats] @ d), atol=1e-5)
    clamped = FeatureAblation(sae, feats, "clamp", 7.0)(acts) - acts
    assert torch.allclose(clamped, (7.0 - a[..., feats]) @ d, atol=1e-4)
    means = torch.tensor([0.5, 1.5])
    mean = FeatureAblation(sae, feats, "mean", means)(acts) - acts
    assert torch.allclose(mean, (means - a[..., feats]) @ d, atol=1e-4)
    with pytest.raises(ToolkitError, match="ablation mode"):
        FeatureAblation(sae, feats, "erase")
    with pytest.raises(ToolkitError, match="out of range"):
        FeatureAblation(sae, [256])


def test_edit_at_a_position_leaves_earlier_logits_alone(model, sae, tokens):
    clean = logits(model, tokens)
    with intervene(model, [FeatureAblation(sae, list(range(256)), "clamp", 3.0, positions=[5])]):
        edited = logits(model, tokens)
    assert torch.allclose(edited[:, :5], clean[:, :5], atol=1e-4)
    assert (edited[:, 5:] - clean[:, 5:]).abs().max() > 1e-2


def test_steering_adds_s_times_the_unit_direction_where_asked(model, tokens):
    direction = torch.randn(192, generator=torch.Generator().manual_seed(1)) * 4.0
    record = Recorder("blocks.2.hook_resid_pre")  # the same activations as blocks.1.hook_resid_post
    with intervene(model, [record]):
        logits(model, tokens)
    with intervene(model, [Steering(HOOK, direction, 2.5, positions=[2, 4]), record]):
        logits(model, tokens)
    delta = record.seen[1] - record.seen[0]
    unit = direction / direction.norm()
    assert torch.allclose(delta[:, [2, 4]], (2.5 * unit).expand(2, 2, -1), atol=1e-4)
    assert delta[:, [0, 1, 3]].abs().max() == 0


def test_schedules_and_chain_steering():
    assert schedule(4, "constant") == [1, 1, 1, 1]
    assert schedule(4, "linear") == [1.0, 0.75, 0.5, 0.25]
    assert schedule(3, "exponential", 0.5) == [1.0, 0.5, 0.25]
    chain = [(f"blocks.{i}.hook_resid_post", torch.randn(8)) for i in range(3)]
    edits = chain_steering(chain, 6.0, "exponential")
    assert [e.scale for e in edits] == [6.0, 3.0, 1.5] and [e.hook for e in edits] == [h for h, _ in chain]
    with pytest.raises(ToolkitError, match="schedule"):
        schedule(3, "cosine")


def test_controls_have_equal_norm_and_random_direction(sae):
    gen = torch.Generator().manual_seed(0)
    edit = FeatureAblation(sae, [3, 4])
    control = edit.control(gen)
    assert torch.allclose(control.decoder_rows().norm(dim=-1), edit.decoder_rows().norm(dim=-1))
    assert (control.decoder_rows() * edit.decoder_rows()).sum(-1).abs().max() < 0.5
    steer = Steering(HOOK, torch.randn(192), 3.0)
    assert steer.control(gen).direction.norm() == pytest.approx(1.0, abs=1e-5)


def test_steered_generation_differs_and_is_deterministic(model):
    prompt = "Q: What work does Savric do? A:"
    clean = generate(model, prompt, 6)
    assert clean == generate(model, prompt, 6)
    direction = model.hf_model.lm_head.weight[model.tokenizer.encode(" fish")[0]].detach()
    with intervene(model, [Steering("blocks.3.hook_resid_post", direction, 60.0)]):
        steered = generate(model, prompt, 6)
    assert steered != clean and "fish" in steered


def test_effect_measures_report_clean_edited_and_controls(model, sae, tokens):
    right, wrong = torch.tensor([5, 6]), torch.tensor([7, 8])
    fake = torch.zeros(2, 3, 10)
    fake[0, -1, 5], fake[1, -1, 8] = 2.0, 1.0
    assert logit_diff(right, wrong)(fake) == pytest.approx((2.0 - 1.0) / 2)
    assert target_prob(torch.tensor([5, 5]))(fake) == pytest.approx(
        float((fake[0, -1].softmax(-1)[5] + fake[1, -1].softmax(-1)[5]) / 2))
    named = {**standard_metrics(tokens, model), "ld": logit_diff(right, wrong)}
    report = measure(model, [FeatureAblation(sae, [0, 1, 2], "clamp", 40.0)], tokens, named, n_controls=3)
    assert report["kl"]["clean"] == pytest.approx(0.0, abs=1e-6)
    assert report["kl"]["effect"] > 0 and len(report["kl"]["controls"]) == 3
    assert report["ce"]["clean"] == pytest.approx(float(torch.nn.functional.cross_entropy(
        logits(model, tokens)[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())), rel=1e-5)


def test_feature_means_match_direct_average(model, sae, tokens):
    means = feature_means(model, sae, tokens)
    direct = sae.encode(model.capture(tokens, [HOOK])[HOOK][:, 1:]).mean((0, 1))
    assert torch.allclose(means, direct, atol=1e-5)


@pytest.mark.slow
def test_ablating_a_plural_subject_feature_lowers_the_plural_verb_preference(model, tiny_saes):
    """Demonstration: the latent that fires most more on plural than on singular subjects
    (training-split prompts, last position) is zero-ablated on held-out plural prompts; the
    logit difference plural verb − singular verb falls, further than under every
    random-direction control of equal norm."""
    import random

    from activations.corpus.agreement import sva_prompt
    from circuits.contrastive import latent_activations, rank_latents
    from sae.io import load_log_density, load_sae
    hook = "blocks.1.hook_resid_post"
    sae = load_sae(tiny_saes[hook])
    rng = random.Random(0)
    train = [sva_prompt(rng, "train") for _ in range(300)]
    plural = latent_activations(model, sae, [p[0] for p in train if p[3]])
    singular = latent_activations(model, sae, [p[0] for p in train if not p[3]])
    feature = int(rank_latents(plural, singular, 10 ** load_log_density(tiny_saes[hook]))[0])
    test = [sva_prompt(rng, "heldout") for _ in range(300)]
    test = [p for p in test if p[3]]
    length = max({len(model.tokenizer.encode(p[0])) for p in test},
                 key=lambda n: sum(len(model.tokenizer.encode(p[0])) == n for p in test))
    test = [p for p in test if len(model.tokenizer.encode(p[0])) == length][:48]
    tokens = model.to_tokens([p[0] for p in test])
    right = torch.tensor([model.tokenizer.encode(" " + p[2].plural)[0] for p in test])
    wrong = torch.tensor([model.tokenizer.encode(" " + p[2].singular)[0] for p in test])
    report = measure(model, [FeatureAblation(sae, [feature])], tokens, {"ld": logit_diff(right, wrong)},
                     n_controls=8)["ld"]
    assert report["clean"] > 0, report
    assert report["effect"] < 0 and report["effect"] < min(c - report["clean"] for c in report["controls"]), report


def test_sae_steer_prints_generations_and_metrics_and_refuses_bad_input(tmp_path, sae, capsys):
    from sae.cli import main
    from sae.io import save_sae
    folder = save_sae(sae, tmp_path / "sae", metadata={"model_name": "tiny"})
    args = ["steer", "--sae", str(folder), "--feature", "3", "--scale", "40", "--prompt",
            "Q: What work does Savric do? A:",
            "--max-new-tokens", "4", "--target", " tailor", "--contexts", "2", "--controls", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    for label in ("clean:", "steered:", "random:", "p_target: clean", "ce: clean", "kl: clean"):
        assert label in out, out
    assert main([*args, "--positions", "from:Savric"]) == 0  # steer from the entity to the end
    assert "steered:" in capsys.readouterr().out
    assert main([*args, "--positions", "from:Kelven"]) == 2
    assert "does not occur in the prompt" in capsys.readouterr().err
    assert main(["steer", "--sae", str(tmp_path / "missing"), "--feature", "3", "--scale", "1", "--prompt", "x"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: ")
    assert main([*args[:4], "9999", *args[5:]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: feature 9999 is out of range") and "\n" not in err
    for bad, words in ((["--target", " went to the store"], "give one token"), (["--positions", "999"], "outside"),
                       (["--scale", "nan"], "not a finite number"), (["--controls", "0"], "at least 1")):
        assert main([*args, *bad]) == 2
        captured = capsys.readouterr()
        err = captured.err.strip()
        assert err.startswith("error: ") and words in err and "\n" not in err, err
        assert captured.out == "", "a bad argument must stop the run before it prints anything"
