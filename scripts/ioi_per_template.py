"""IOI accuracy per held-out template (100 prompts each) of a tiny-model checkpoint.

    python scripts/ioi_per_template.py [CHECKPOINT]    # default: the shipped one
"""

from __future__ import annotations

import random
import sys

from activations.corpus import ioi
from activations.corpus.lexicon import OBJECTS, PLACES
from activations.corpus.names import names_for
from activations.tiny.train import load_checkpoint, pair_accuracy


def template_examples(template: str, n: int, rng: random.Random) -> list[dict]:
    examples = []
    for _ in range(n):
        a, b = rng.sample(names_for("heldout", "ioi"), 2)
        io, s = (a, b) if rng.random() < 0.5 else (b, a)
        fill = dict(A=a, B=b, place=rng.choice(PLACES), obj=rng.choice(OBJECTS))
        examples.append({"clean_prefix": template.format(S=s, **fill), "clean_answer": " " + io,
                         "patch_prefix": template.format(S=io, **fill), "patch_answer": " " + s})
    return examples


def main(argv: list[str]) -> None:
    model, tokenizer = load_checkpoint(argv[0] if argv else "activations/tiny/checkpoint")
    model.eval()
    rng = random.Random(0)
    for template in ioi.HELDOUT_TEMPLATES:
        print(f"{pair_accuracy(model, tokenizer, template_examples(template, 100, rng)):.2f}  {template}")


if __name__ == "__main__":
    main(sys.argv[1:])
