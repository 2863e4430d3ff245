"""Whether a checkpoint's own activations separate never-asked from known entities, with no
dictionary: the "dense" row of ``scripts/unknown_entity_hooks.py`` for every block of any
checkpoints, at the question's last token and at the entity's last token.

    python scripts/entity_dense.py CKPT [CKPT ...]     # "tiny" for the shipped one

For each block's residual stream it takes the difference of the means of training-split
unknown and known entity prompts (as ``test_contrastive.py`` ranks latents) and prints the AUROC
along it of made-up names against known entities (the tests' validation; ``mu``) and of the
held-out never-asked entities against held-out known ones (what the test asserts on; ``ho``);
and, along a direction ranked on two thirds of the training-split unknown entities only, the
AUROC of the other third's prompts (another seed) against known ones (``split``): a validation
on entities the ranking never saw, that touches no held-out entity.
docs/circuits.md, "Entity phrasings and strangers (level 12)", quotes it.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from activations.corpus import entity_prompts, world  # noqa: E402
from activations.errors import ToolkitError  # noqa: E402
from activations.models import load_model  # noqa: E402
from circuits.contrastive import auroc, dense_direction  # noqa: E402
from unknown_entity_hooks import entity_prompt_sets, residuals  # noqa: E402


def validation_entities() -> set[str]:
    """A third of each type's training-split unknown entities (a fixed draw)."""
    rng, chosen = random.Random("entity-split"), set()
    for etype in (world.PERSON, world.CITY, world.CREATURE):
        names = sorted(e.name for e in world.entities(etype, world.UNKNOWN_TRAIN))
        chosen |= set(rng.sample(names, len(names) // 3))
    return chosen


def main(checkpoints: list[str]) -> None:
    if not checkpoints:
        sys.exit("usage: python scripts/entity_dense.py CKPT [CKPT ...]  (a checkpoint folder, or tiny)")
    sets = entity_prompt_sets()
    held = validation_entities()
    sets["unknown_rank"] = [p for p in entity_prompts(300, False, 0, "train") if p["entity"] not in held]
    sets["unknown_val"] = [p for p in entity_prompts(300, False, 5, "train") if p["entity"] in held]
    for ckpt in checkpoints:
        try:
            model = load_model(ckpt, device="cpu")
        except (ToolkitError, OSError) as err:
            sys.exit(f"error: {err}")
        hooks = [f"blocks.{layer}.hook_resid_post" for layer in range(model.dims.n_layers)]
        with torch.no_grad():
            for position in ("last", "entity"):
                resid = {name: residuals(model, items, hooks, position) for name, items in sets.items()}
                cells = []
                for layer, hook in enumerate(hooks):
                    d = dense_direction(resid["unknown"][hook], resid["known"][hook])
                    made_up = auroc(resid["made_up"][hook] @ d, resid["known_val"][hook] @ d)
                    heldout = auroc(resid["unknown_test"][hook] @ d, resid["known_test"][hook] @ d)
                    d = dense_direction(resid["unknown_rank"][hook], resid["known"][hook])
                    split = auroc(resid["unknown_val"][hook] @ d, resid["known_val"][hook] @ d)
                    cells.append(f"L{layer} mu {made_up:.3f} split {split:.3f} ho {heldout:.3f}")
                print(f"{Path(ckpt).name:12s} {position:6s} " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
