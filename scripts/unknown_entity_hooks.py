"""Unknown-entity latents (Ferrando et al.) at every hook of a circuit fixture: validation
against held-out separation, to see whether any validation picks the hook that transfers.

    python scripts/unknown_entity_hooks.py [--seed 0 | --saes RUN/saes] [--position last|entity]
                                           [--model tiny|CKPT] [--ranking never-asked|refused] [--latents N]

For each residual-stream SAE of blocks 0–2 (the ones ``test_contrastive.py`` chooses from) and
its top latents, ranked as the test ranks them (one half of the never-asked entities against
known ones, training phrasings; ``--ranking refused``: the entities the model was taught to
refuse, as until 2026-12-01), it prints the AUROC against known entities (training split,
another seed) of: training-split unknown entities (the test's validation until 2026-11-28),
made-up names that never occur in the corpus (``made_up_entity_prompts``; its validation
since), and the held-out never-asked entities the test asserts on. ``--position entity`` reads the latents at the entity's last token
instead of the prompt's last one. Each hook's "dense" row scores prompts along the difference of
the residual's means (unknown minus known, training split) instead of latents: what the model's
own activations allow at that hook, with no dictionary, so that a low held-out AUROC there is the
model's and not the SAE's; its "recon" and "error" rows do the same on the SAE's reconstruction
and on what it leaves out. The latent rows rank by frequency difference (as the test) and then
("mean") by mean-activation difference, for 4, 8, 16 and 32 latents. ``--latents N`` adds, per
hook, the top N latents by frequency difference with the share of each prompt set each one fires
on: a latent that covers only some unknown entities (one entity type, or the training
phrasings) shows there. ``--model`` reads a checkpoint folder instead of the embedded model,
with ``--saes`` from ``scripts/train_fixture.py``. docs/circuits.md ("Across fixture seeds",
"Dictionaries at the default learning rate", "Entity phrasings and strangers", "Split unknown
latents") quotes it; before 2026-12-01 it ranked as ``--ranking refused`` does, and its held-out
column was every never-asked entity.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from activations.corpus import entity_prompts, made_up_entity_prompts, never_asked_prompts  # noqa: E402
from activations.models import load_model  # noqa: E402
from circuits.contrastive import auroc, dense_direction, rank_latents, score  # noqa: E402
from fixture_path import fixture_saes  # noqa: E402
from sae.io import load_log_density, load_sae  # noqa: E402


def residuals(model, items: list[dict], hooks: list[str], position: str) -> dict[str, torch.Tensor]:
    """{hook: [n, d]} at each prompt's last token, or at its entity's last token."""
    out: dict[str, list[torch.Tensor]] = {h: [] for h in hooks}
    for item in items:
        t = -1
        if position == "entity":
            end = item["prompt"].index(item["entity"]) + len(item["entity"])
            t = model.to_tokens([item["prompt"][:end]]).shape[1] - 1
        acts = model.capture(model.to_tokens([item["prompt"]]), hooks)
        for h in hooks:
            out[h].append(acts[h][0, t])
    return {h: torch.stack(v) for h, v in out.items()}


def entity_prompt_sets(ranking: str = "refused") -> dict[str, list[dict]]:
    """The prompt sets both entity scripts read: ranking (training phrasings), validation
    (another seed; made-up names) and the held-out sets the test asserts on. ``ranking``
    "refused" ranks on the entities the model was taught to refuse and tests on every
    never-asked one (the test until 2026-12-01); "never-asked" ranks on one half of the
    never-asked entities and tests on the other (``never_asked_prompts``; the test since)."""
    sets = {"known": entity_prompts(200, True, 0, "train"), "unknown": entity_prompts(200, False, 0, "train"),
            "known_val": entity_prompts(100, True, 5, "train"), "unknown_val": entity_prompts(100, False, 5, "train"),
            "made_up": made_up_entity_prompts(100, 5),
            "known_test": entity_prompts(100, True, 1, "heldout"), "unknown_test": entity_prompts(100, False, 1, "heldout")}
    if ranking == "never-asked":
        sets |= {"refused": sets["unknown"], "unknown": never_asked_prompts(200, 0, 0, "train"),
                 "unknown_test": never_asked_prompts(100, 1, 1, "heldout")}
    return sets


COVERAGE = {"refused": "refused (train)", "unknown": "unknown (train)", "known": "known (train)",
            "made_up": "made-up", "unknown_test": "unknown (held-out)", "known_test": "known (held-out)"}


def print_coverage(hook: str, acts: dict[str, torch.Tensor], latents: torch.Tensor) -> None:
    """For each latent, the share of each prompt set's prompts it fires on."""
    print(f"{hook}: top {len(latents)} latents by frequency difference, share of prompts each fires on")
    columns = [name for name in COVERAGE if name in acts]
    print("latent  " + "  ".join(f"{COVERAGE[name]:>18s}" for name in columns))
    for latent in latents.tolist():
        shares = [float((acts[name][:, latent] > 0).float().mean()) for name in columns]
        print(f"{latent:6d}  " + "  ".join(f"{x:18.2f}" for x in shares))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--saes", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=None, help="fixture seed whose cached SAEs to use (default 0)")
    parser.add_argument("--position", choices=("last", "entity"), default="last")
    parser.add_argument("--model", default="tiny", help='"tiny" or a checkpoint folder (with --saes trained on it)')
    parser.add_argument("--ranking", choices=("refused", "never-asked"), default="never-asked",
                        help="rank on refused entities (the test until 2026-12-01) or on half of the never-asked ones")
    parser.add_argument("--latents", type=int, default=0, help="list each hook's top N latents and what they fire on")
    args = parser.parse_args()
    root = args.saes or fixture_saes(args.seed)
    model = load_model(args.model, device="cpu")
    hooks = [f"blocks.{layer}.hook_resid_post" for layer in range(3)]
    sets = entity_prompt_sets(args.ranking)
    with torch.no_grad():
        resid = {name: residuals(model, items, hooks, args.position) for name, items in sets.items()}
        print(f"{root}, latents read at the {args.position} token, ranked on {args.ranking} entities")
        print("hook                      latents  train-split  made-up  held-out")
        pairs = (("unknown_val", "known_val"), ("made_up", "known_val"), ("unknown_test", "known_test"))
        for hook in hooks:
            folder = next(root.glob(hook + "-*"))
            sae = load_sae(folder)
            recon = {name: sae.decode(sae.encode(r[hook].float())) for name, r in resid.items()}
            parts = {"dense": {name: r[hook] for name, r in resid.items()}, "recon": recon,
                     "error": {name: resid[name][hook] - recon[name] for name in resid}}
            for label, part in parts.items():
                direction = dense_direction(part["unknown"], part["known"])
                dense = [auroc(part[u] @ direction, part[k] @ direction) for u, k in pairs]
                print(f"{hook:26s} {label:>7s}  " + "  ".join(f"{x:9.3f}" for x in dense))
            acts = {name: sae.encode(r[hook].float()) for name, r in resid.items()}
            density = 10 ** load_log_density(folder)
            by_frequency = rank_latents(acts["unknown"], acts["known"], density, max_density=0.1)
            by_mean = rank_latents(acts["unknown"], acts["known"], density, max_density=0.1, by="mean")
            for label, ranked in (("", by_frequency), (" mean", by_mean)):
                for n in (4, 8, 16, 32):
                    top = ranked[:n]
                    separation = [auroc(score(acts[u], top), score(acts[k], top)) for u, k in pairs]
                    print(f"{hook:26s} {str(n) + label:>7s}  " + "  ".join(f"{x:9.3f}" for x in separation))
            if args.latents:
                print_coverage(hook, acts, by_frequency[:args.latents])


if __name__ == "__main__":
    main()
