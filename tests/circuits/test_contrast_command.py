"""``sae contrast`` and what it is built on: prompt sets from files and built-ins, ``contrast``
on a dictionary with a planted latent, and the command on the tests' fixture SAEs."""

from __future__ import annotations

import json
import re

import pytest
import torch

from activations.errors import ToolkitError
from circuits.contrastive import contrast, hook_activations, prompt_set
from sae.cli import main

HOOK = "blocks.2.hook_resid_post"
CATS = [f"My {n} cats sat on the {w}." for n in ("two", "three", "four", "five", "six") for w in ("mat", "bed", "wall")]
DOGS = [f"The dog ran to the {w} with {n} friends." for n in ("two", "three", "four", "five", "six")
        for w in ("park", "lake", "hill")]


def test_prompt_sets_come_from_txt_jsonl_json_and_built_ins(tmp_path):
    (tmp_path / "a.txt").write_text("first prompt\n\n  \nsecond prompt\n")
    (tmp_path / "a.jsonl").write_text('{"prompt": "first prompt"}\n\n"second prompt"\n')
    (tmp_path / "a.json").write_text(json.dumps([{"prompt": "first prompt", "label": 1}, "second prompt"]))
    for suffix in ("txt", "jsonl", "json"):
        assert prompt_set(str(tmp_path / f"a.{suffix}")) == ["first prompt", "second prompt"]
    known = prompt_set("entities:known", 5, seed=3)
    assert len(known) == 5 and all(p.startswith("Q:") for p in known)
    assert known == prompt_set("entities:known", 5, seed=3) != prompt_set("entities:known", 5, seed=4)
    assert set(prompt_set("entities:made-up", 20)).isdisjoint(prompt_set("entities:unknown", 200))
    from activations.corpus.world import UNKNOWN_HELDOUT, entities
    never_asked = [e.name for e in entities(group=UNKNOWN_HELDOUT)]
    halves = [{name for name in never_asked for p in prompt_set(f"entities:never-asked-{half}", 100)
               if re.search(rf"\b{name}\b", p)} for half in "ab"]
    assert halves[0] and halves[1] and not halves[0] & halves[1]


@pytest.mark.parametrize("name, content, message", [
    ("missing.txt", None, "neither a file nor a built-in set"),
    ("bad.jsonl", '{"prompt": "ok"}\n{"prompt": \n', "line 2 is not JSON"),
    ("noprompt.jsonl", '{"text": "no prompt key"}\n', 'line 1 is not a prompt'),
    ("empty.txt", "\n\n", "holds no prompts"),
    ("dict.json", '{"prompt": "x"}', "must hold a JSON list"),
    ("prompts.csv", "a,b\n", "give prompts as .txt"),
])
def test_bad_prompt_sets_are_named_in_one_line(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_text(content)
    with pytest.raises(ToolkitError, match=message) as err:
        prompt_set(str(tmp_path / name))
    assert "\n" not in str(err.value)


@pytest.fixture(scope="module")
def model():
    from activations.models import load_model
    return load_model("tiny", device="cpu")


def _planted_sae(model, direction: torch.Tensor, threshold: float, latent: int):
    """A ReLU SAE of 16 latents whose only live latent reads ``direction`` above ``threshold``."""
    from sae.architectures import ARCHITECTURES
    from sae.config import SAEConfig
    d = model.hook_width(HOOK)
    sae = ARCHITECTURES["relu"](SAEConfig(architecture="relu", hook=HOOK, d_in=d, d_sae=16), d).eval()
    with torch.no_grad():
        sae.encoder_weight.zero_()
        sae.b_dec.zero_()
        sae.b_enc.fill_(-1.0)
        sae.encoder_weight[latent] = direction
        sae.b_enc[latent] = -threshold
    return sae


def test_contrast_ranks_a_planted_latent_first_and_scores_it_on_held_out_prompts(model):
    """A latent that reads the cats-minus-dogs direction above the midpoint fires on cat
    prompts and not on dog prompts: it must rank first, fire on (nearly) every cat prompt and
    no dog one, and separate held-out prompts as well as the dense direction does."""
    rank_a, eval_a, rank_b, eval_b = CATS[:10], CATS[10:], DOGS[:10], DOGS[10:]
    acts_a, acts_b = hook_activations(model, HOOK, rank_a), hook_activations(model, HOOK, rank_b)
    direction = acts_a.mean(0) - acts_b.mean(0)
    midpoint = float((acts_a.mean(0) + acts_b.mean(0)) @ direction) / 2
    result = contrast(model, _planted_sae(model, direction, midpoint, 11), rank_a, rank_b, eval_a, eval_b,
                      density=torch.full((16,), 0.01), tops=(1, 4))
    assert int(result.ranked[0]) == 11
    assert result.freq_a[11] >= 0.9 and result.freq_b[11] == 0
    assert result.rows(1)[0] == {"latent": 11, "freq_a": float(result.freq_a[11]), "freq_b": 0.0,
                                 "difference": float(result.freq_a[11]), "density": pytest.approx(0.01)}
    assert result.dense_auroc >= 0.95 and result.auroc_top[1] >= 0.95
    assert result.counts == {"rank_a": 10, "rank_b": 10, "eval_a": 5, "eval_b": 5}
    # the density filter leaves the planted latent out when it is "dense"
    dense = torch.full((16,), 0.01)
    dense[11] = 0.5
    filtered = contrast(model, _planted_sae(model, direction, midpoint, 11), rank_a, rank_b, density=dense)
    assert 11 not in filtered.ranked.tolist() and not filtered.auroc_top and filtered.dense_auroc is None
    with pytest.raises(ToolkitError, match="every latent of the SAE on blocks.2.hook_resid_post fires on more"):
        contrast(model, _planted_sae(model, direction, midpoint, 11), rank_a, rank_b, density=torch.ones(16))


def test_positions_outside_the_shortest_prompt_are_refused(model):
    with pytest.raises(ToolkitError, match="outside the shortest prompt"):
        hook_activations(model, HOOK, ["short", "a much longer prompt than that"], position=4)
    first = hook_activations(model, HOOK, ["short", "a much longer prompt than that"], position=1)
    assert first.shape == (2, model.hook_width(HOOK))


@pytest.mark.slow
def test_contrast_command_on_the_fixture_finds_unknown_entity_latents(tiny_saes, tmp_path, capsys):
    """On the tests' fixture SAE, unknown (refused in training) against known entities: the
    listed latents are sorted by frequency difference, the top ones fire on most unknown
    prompts, and on held-out prompts about the same entities they separate the sets."""
    out = tmp_path / "contrast.json"
    assert main(["contrast", "--sae", str(tiny_saes[HOOK]), "--a", "entities:unknown", "--b", "entities:known",
                 "--n", "120", "--top", "8", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ranked on 90 + 90 prompts; evaluated on 30 + 30" in text and "no dictionary" in text
    record = json.loads(out.read_text())
    diffs = [row["difference"] for row in record["latents"]]
    assert len(diffs) == 8 and diffs == sorted(diffs, reverse=True)
    assert all(row["density"] <= 0.1 for row in record["latents"])
    assert record["latents"][0]["freq_a"] - record["latents"][0]["freq_b"] > 0.5
    assert record["auroc_top"]["8"] > 0.9 and record["dense_auroc"] > 0.9
    assert record["hook"] == HOOK and record["counts"]["eval_a"] == 30


def test_contrast_command_errors_are_one_line(tmp_path, capsys):
    from sae.architectures import ARCHITECTURES
    from sae.config import SAEConfig
    from sae.io import save_sae
    sae = ARCHITECTURES["topk"](SAEConfig(architecture="topk", hook=HOOK, d_in=192, d_sae=32, k=4), 192)
    folder = save_sae(sae, tmp_path / "sae", metadata={"model_name": "tiny"})
    (tmp_path / "few.txt").write_text("only one prompt\n")
    cases = [(["--a", str(tmp_path / "few.txt"), "--b", "entities:known"], "has 1 prompts: too few to hold out"),
             (["--a", "entities:unknown", "--b", "entities:known", "--holdout", "1"], "--holdout 1.0 must be"),
             (["--a", "entities:unknown", "--b", "entities:known", "--test-a", "entities:never-asked"],
              "give both --test-a and --test-b"),
             (["--a", "nowhere.txt", "--b", "entities:known"], "'nowhere.txt' is neither a file nor a built-in set"),
             (["--a", "entities:unknown", "--b", "entities:known", "--n", "8", "--position", "40"],
              "position 40 is outside the shortest prompt")]
    for flags, message in cases:
        assert main(["contrast", "--sae", str(folder), *flags]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert main(["contrast", "--sae", str(tmp_path / "no-sae"), "--a", "entities:unknown", "--b", "entities:known"]) == 2
    assert "no-sae" in capsys.readouterr().err


def test_contrast_refuses_an_sae_of_another_width(tmp_path, capsys):
    from sae.architectures import ARCHITECTURES
    from sae.config import SAEConfig
    from sae.io import save_sae
    sae = ARCHITECTURES["topk"](SAEConfig(architecture="topk", hook=HOOK, d_in=64, d_sae=32, k=4), 64)
    folder = save_sae(sae, tmp_path / "sae", metadata={"model_name": "tiny"})
    assert main(["contrast", "--sae", str(folder), "--a", "entities:unknown", "--b", "entities:known", "--n", "8"]) == 2
    assert "has d_in 64 but tiny has width 192 there; it belongs to another model" in capsys.readouterr().err
