"""Contrastive latents: ranking, density filter, AUROC; and on the tiny model, "unknown
entity" latents that separate held-out prompts and change how often the model answers."""

from __future__ import annotations

import pytest
import torch

from activations.corpus import entity_prompts, made_up_entity_prompts, never_asked_prompts
from activations.errors import ToolkitError
from activations.corpus.world import DONT_KNOW
from circuits.contrastive import (answer_rate, auroc, by_length, latent_activations, latent_steering,
                                  positions_from, rank_latents, score)
from circuits.interventions import Steering

HOOK = "blocks.2.hook_resid_post"
STEERING_SIZES = (2, 4, 8)  # top latents steered together
STEERING_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)  # steering scales, in units of the residual's norm


def test_rank_latents_orders_by_frequency_difference_and_drops_dense_ones():
    acts_a = torch.tensor([[1.0, 0, 2, 1], [1, 0, 3, 1], [0, 0, 1, 1]])
    acts_b = torch.tensor([[0.0, 1, 1, 1], [0, 0, 0, 1]])
    # frequency a: [2/3, 0, 1, 1]; b: [0, 1/2, 1/2, 1] -> differences [0.67, -0.5, 0.5, 0]
    assert rank_latents(acts_a, acts_b, torch.zeros(4)).tolist() == [0, 2, 3, 1]
    assert rank_latents(acts_a, acts_b, torch.tensor([0.5, 0, 0.05, 0]), max_density=0.1).tolist() == [2, 3, 1]
    assert score(acts_a, torch.tensor([0, 2])).tolist() == [3.0, 4.0, 1.0]
    # mean activation a: [2/3, 0, 2, 1]; b: [0, 1/2, 1/2, 1] -> differences [0.67, -0.5, 1.5, 0]
    assert rank_latents(acts_a, acts_b, torch.zeros(4), by="mean").tolist() == [2, 0, 3, 1]


def test_auroc_hand_cases():
    assert auroc(torch.tensor([3.0, 4]), torch.tensor([1.0, 2])) == 1.0
    assert auroc(torch.tensor([1.0, 2]), torch.tensor([3.0, 4])) == 0.0
    assert auroc(torch.tensor([1.0, 3]), torch.tensor([2.0, 2])) == 0.5
    assert auroc(torch.tensor([2.0]), torch.tensor([2.0])) == 0.5


@pytest.fixture(scope="module")
def model():
    from activations.models import load_model
    return load_model("tiny", device="cpu")


def test_latent_activations_group_prompts_by_length_without_reordering(model):
    from sae.architectures import ARCHITECTURES
    from sae.config import SAEConfig
    torch.manual_seed(0)
    sae = ARCHITECTURES["topk"](SAEConfig(architecture="topk", hook=HOOK, d_in=192, d_sae=64, k=4), 192).eval()
    prompts = [p["prompt"] for p in entity_prompts(6, True) + entity_prompts(6, False)]
    assert len(by_length(model, prompts)) > 1
    together = latent_activations(model, sae, prompts)
    one_by_one = torch.cat([latent_activations(model, sae, [p]) for p in prompts])
    assert torch.allclose(together, one_by_one, atol=1e-5)


def _prompts(items: list[dict]) -> list[str]:
    return [item["prompt"] for item in items]


def _pick_hook(model, tiny_saes) -> tuple[str, torch.Tensor, int, float]:
    """The residual-stream SAE, its top 8 latents, and the number of them (4 or 8) that best separate
    known entities from made-up ones the corpus never uses, as Ferrando et al. pick a layer;
    the latents are ranked on questions in training phrasings about known entities and about
    one half of the never-asked entities. Neither the other half nor a held-out phrasing plays
    a part. Until 2026-12-01 the ranking read the entities the model was taught to refuse
    (``entity_prompts(split="train")``): their top latents include ones for those very names,
    which fire on few never-asked entities and outrank the general ones with some dictionaries
    (docs/circuits.md, "Split unknown latents"). Validating on training-split unknowns
    saturates at 0.998-1.000 ("Across fixture seeds"). The last block's output is left out:
    steering there has no later layer to act through."""
    from sae.io import load_log_density, load_sae
    known = _prompts(entity_prompts(200, True, 0, "train"))
    unknown = _prompts(never_asked_prompts(200, 0, half=0, split="train"))
    known_val = _prompts(entity_prompts(100, True, 5, "train"))
    made_up = _prompts(made_up_entity_prompts(100, 5))
    best = None
    resid = sorted((h for h in tiny_saes if h.endswith("hook_resid_post")), key=lambda h: int(h.split(".")[1]))
    for hook in resid[:-1]:
        sae = load_sae(tiny_saes[hook])
        ranked = rank_latents(latent_activations(model, sae, unknown), latent_activations(model, sae, known),
                              10 ** load_log_density(tiny_saes[hook]), max_density=0.1)
        acts_made_up, acts_known = latent_activations(model, sae, made_up), latent_activations(model, sae, known_val)
        for n in (4, 8):
            val = auroc(score(acts_made_up, ranked[:n]), score(acts_known, ranked[:n]))
            if best is None or val > best[3]:
                best = (hook, ranked[:8], n, val)
    return best


@pytest.fixture(scope="module")
def unknown_latents(model, tiny_saes):
    from sae.io import load_sae
    hook, ranked, n, validation = _pick_hook(model, tiny_saes)
    return hook, ranked, n, validation, load_sae(tiny_saes[hook])


@pytest.mark.slow
def test_unknown_entity_latents_separate_heldout_prompts(model, unknown_latents):
    """Ferrando et al. on the tiny model: latents ranked on one half of the never-asked
    entities, in training phrasings, separate known entities from the other half, both in
    held-out phrasings."""
    hook, ranked, n, validation, sae = unknown_latents
    top = ranked[:n]
    known_test = _prompts(entity_prompts(100, True, 1, "heldout"))
    unknown_test = _prompts(never_asked_prompts(100, 1, half=1, split="heldout"))
    acts_known, acts_unknown = latent_activations(model, sae, known_test), latent_activations(model, sae, unknown_test)
    separation = auroc(score(acts_unknown, top), score(acts_known, top))
    print(f"{hook}: latents {top.tolist()}, validation AUROC {validation:.3f}, held-out AUROC {separation:.3f}")
    assert separation >= 0.9, (hook, top.tolist(), separation)


@pytest.mark.slow
def test_unknown_entity_latents_steer_answers(model, unknown_latents):
    """Adding the unknown-entity latents where the model reads the entity (from its name to
    the end of the question) makes the model refuse known entities, where random directions
    of the same number and norm at the same positions do not. How many of the top latents (2,
    4 or 8) and how far are picked together on calibration prompts the assertion does not use:
    which sums of top latents steer depends on which latents they hold, not on how well they
    separate (the shipped model's seed-0 dictionary at ``blocks.1``: its top 4 make at most 10%
    of the prompts refuse, its top 2 and top 8 93% and 100%; docs/circuits.md, "Steering,
    latent by latent")."""
    hook, ranked, _, _, sae = unknown_latents
    known_test = entity_prompts(100, True, 1, "heldout")
    prompts, calibration = known_test[:40], known_test[40:60]
    where = {p["prompt"]: positions_from(model, p["prompt"], p["entity"]) for p in known_test[:60]}
    norm = float(model.capture(model.to_tokens([prompts[0]["prompt"]]), [hook])[hook][0, -1].norm())

    def latents_at(n, scale):
        return lambda prompt: latent_steering(sae, ranked[:n].tolist(), scale, where[prompt])

    def rate(items, edits=()):
        return answer_rate(model, [p["prompt"] for p in items], DONT_KNOW, edits)

    n, scale = min(((n, norm * f) for n in STEERING_SIZES for f in STEERING_FACTORS),
                   key=lambda pick: rate(calibration, latents_at(*pick)))
    clean, steered = rate(prompts), rate(prompts, latents_at(n, scale))
    gen = torch.Generator().manual_seed(0)
    directions = [torch.randn(sae.d_in, generator=gen) for _ in range(n)]
    control = rate(prompts, lambda prompt: [Steering(hook, d, scale, where[prompt]) for d in directions])
    print(f"{hook}, top {n} latents: answer rate: clean {clean:.3f}, steered {steered:.3f}, "
          f"random directions {control:.3f} (scale {scale:.2f})")
    assert clean - steered >= 0.5 and clean - steered > clean - control + 0.5, (hook, n, clean, steered, control, scale)


def test_positions_from_covers_the_entity_to_the_end(model):
    prompt = "Q: In which city does Talnok live? A:"
    positions = positions_from(model, prompt, "Talnok")
    tokens = model.to_tokens([prompt])[0]
    assert positions[-1] == len(tokens) - 1
    assert model.tokenizer.decode(tokens[positions[0]:positions[0] + 3].tolist()).strip().startswith("Talnok")
    assert "Talnok" not in model.tokenizer.decode(tokens[:positions[0]].tolist())
    with pytest.raises(ToolkitError, match="does not occur"):
        positions_from(model, prompt, "Kelven")
