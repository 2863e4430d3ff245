"""IOI accuracy per held-out template (100 prompts each) of a tiny-model checkpoint.

    python scripts/ioi_per_template.py [CHECKPOINT]    # default: the shipped one

For templates that begin with a name, it also splits the accuracy by where the indirect
object (IO) stands: first word of the prompt (a token without a leading space, unlike the
answer) or second. The training templates that begin with a name follow, with held-out
names, as the reference.
"""

from __future__ import annotations

import random

from activations.corpus import ioi
from activations.tiny.train import load_checkpoint, pair_accuracy


def template_examples(template: str, n: int, rng: random.Random) -> list[dict]:
    return [ioi.as_example(*ioi.fill_template(rng, template, "heldout")) for _ in range(n)]


def report(model, tokenizer, template: str, rng: random.Random) -> str:
    examples = template_examples(template, 100, rng)
    line = f"{pair_accuracy(model, tokenizer, examples):.2f}  {template}"
    if template.startswith("{A}"):
        io_first = [e["clean_prefix"].startswith(e["clean_answer"].strip() + " ") for e in examples]
        first = [e for e, f in zip(examples, io_first) if f]
        second = [e for e, f in zip(examples, io_first) if not f]
        line += (f"\n      IO first word: {pair_accuracy(model, tokenizer, first):.2f} ({len(first)}), "
                 f"IO second: {pair_accuracy(model, tokenizer, second):.2f} ({len(second)})")
    return line


def main(argv: list[str]) -> None:
    model, tokenizer = load_checkpoint(argv[0] if argv else "activations/tiny/checkpoint")
    model.eval()
    rng = random.Random(0)
    for template in ioi.HELDOUT_TEMPLATES:
        print(report(model, tokenizer, template, rng))
    print("training templates that begin with a name, held-out names:")
    for template in (t for t in ioi.TRAIN_TEMPLATES if t.startswith("{A}")):
        print(report(model, tokenizer, template, rng))


if __name__ == "__main__":
    from checkpoint_script import run
    run(main, __doc__)
