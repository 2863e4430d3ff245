"""IOI accuracy per held-out template (100 prompts each) of a tiny-model checkpoint.

    python scripts/ioi_per_template.py [CHECKPOINT]    # default: the shipped one
"""

from __future__ import annotations

import random
import sys

from activations.corpus import ioi
from activations.tiny.train import load_checkpoint, pair_accuracy


def template_examples(template: str, n: int, rng: random.Random) -> list[dict]:
    return [ioi.as_example(*ioi.fill_template(rng, template, "heldout")) for _ in range(n)]


def main(argv: list[str]) -> None:
    model, tokenizer = load_checkpoint(argv[0] if argv else "activations/tiny/checkpoint")
    model.eval()
    rng = random.Random(0)
    for template in ioi.HELDOUT_TEMPLATES:
        print(f"{pair_accuracy(model, tokenizer, template_examples(template, 100, rng)):.2f}  {template}")


if __name__ == "__main__":
    main(sys.argv[1:])
