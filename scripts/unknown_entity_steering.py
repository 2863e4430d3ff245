"""Why steering with the unknown-entity latents does or does not make the model refuse: the
test's steering (``test_unknown_entity_latents_steer_answers``) over every hook, number of
latents, single latent and scale, with what the steered continuations are.

    python scripts/unknown_entity_steering.py [--model tiny|CKPT] --saes SAES [--latents 8] [--layers 0,1,2]

SAES is a folder of SAE folders (``scripts/train_fixture.py``'s ``OUT/saes``, or
``scripts/fixture_path.py N``). For each residual-stream SAE of blocks 0-2 it ranks latents as
the test does (firing-frequency difference, the first half of the never-asked entities in
training phrasings against known entities) and prints the validation AUROC the test picks the
hook by, then, on the test's 40 known held-out prompts, steered from the entity's first token
to the prompt's end: the share of greedy continuations that refuse ("I do not know."), name
the entity's right answer, or do neither, for the top 1, 2, 4 and 8 latents together, for each
of the top ``--latents`` alone, and for random directions, each at 0.25-4 times the norm of
the residual at the last position (the test's scales). Also the mean of each top latent's
activation on never-asked prompts, in units of that norm: how far the model itself moves
along the latent.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from activations.corpus import entity_prompts, made_up_entity_prompts, never_asked_prompts  # noqa: E402
from activations.corpus.world import DONT_KNOW  # noqa: E402
from activations.models import load_model  # noqa: E402
from circuits.contrastive import (auroc, continuations, latent_activations, latent_steering,  # noqa: E402
                                  positions_from, rank_latents, refuses, score)
from circuits.interventions import Steering  # noqa: E402
from sae.io import load_log_density, load_sae  # noqa: E402

FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)


def outcomes(model, items, edits) -> tuple[float, float, float]:
    """Shares of continuations that refuse, answer right, or do neither, under ``edits(prompt)``."""
    texts = continuations(model, prompts_of(items), edits)
    refused = [refuses(text, DONT_KNOW) for text in texts]
    right = sum(not r and item["answer"] in text for r, item, text in zip(refused, items, texts))
    n = len(items)
    return sum(refused) / n, right / n, (n - sum(refused) - right) / n


def prompts_of(items):
    return [item["prompt"] for item in items]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--saes", required=True, type=Path)
    parser.add_argument("--latents", type=int, default=8)
    parser.add_argument("--layers", default="0,1,2", help="residual-stream SAEs to try, by block")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_model(args.model, device="cpu")
    known, unknown = prompts_of(entity_prompts(200, True, 0, "train")), prompts_of(never_asked_prompts(200, 0, 0, "train"))
    known_val, made_up = prompts_of(entity_prompts(100, True, 5, "train")), prompts_of(made_up_entity_prompts(100, 5))
    test = entity_prompts(100, True, 1, "heldout")[:40]
    where = {p["prompt"]: positions_from(model, p["prompt"], p["entity"]) for p in test}
    print("clean: refused %.3f, right %.3f, neither %.3f" % outcomes(model, test, lambda p: []))
    for layer in map(int, args.layers.split(",")):
        hook = f"blocks.{layer}.hook_resid_post"
        folder = next(args.saes.glob(hook + "-*"))
        sae = load_sae(folder)
        acts_unknown = latent_activations(model, sae, unknown)
        ranked = rank_latents(acts_unknown, latent_activations(model, sae, known),
                              10 ** load_log_density(folder), max_density=0.1)
        top = ranked[:args.latents].tolist()
        acts_made_up, acts_known = latent_activations(model, sae, made_up), latent_activations(model, sae, known_val)
        norm = float(model.capture(model.to_tokens([test[0]["prompt"]]), [hook])[hook][0, -1].norm())
        val = {n: auroc(score(acts_made_up, ranked[:n]), score(acts_known, ranked[:n])) for n in (4, 8)}
        mean_on_unknown = acts_unknown[:, top].mean(0) / norm
        print(f"\n{hook}: top latents {top}; validation AUROC n4 {val[4]:.3f}, n8 {val[8]:.3f}; "
              f"residual norm {norm:.1f}")
        print("  mean activation on never-asked prompts / norm: "
              + ", ".join(f"{i}: {a:.2f}" for i, a in zip(top, mean_on_unknown.tolist())))
        sets = {f"top {n}": top[:n] for n in (1, 2, 4, 8) if n <= len(top)}
        sets.update({f"latent {i}": [i] for i in top})
        print("  refused / right / neither at scale factor " + "  ".join(f"{f:>14}" for f in FACTORS))
        for name, latents in sets.items():
            row = [outcomes(model, test, lambda p, s=norm * f: latent_steering(sae, latents, s, where[p]))
                   for f in FACTORS]
            print(f"  {name:>12}: " + "  ".join("%.2f/%.2f/%.2f" % r for r in row))
        gen = torch.Generator().manual_seed(0)
        directions = [torch.randn(sae.d_in, generator=gen) for _ in range(4)]
        row = [outcomes(model, test, lambda p, s=norm * f: [Steering(hook, d, s, where[p]) for d in directions])
               for f in FACTORS]
        print(f"  {'random 4':>12}: " + "  ".join("%.2f/%.2f/%.2f" % r for r in row))


if __name__ == "__main__":
    main()
