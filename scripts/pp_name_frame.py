"""Where agreement across a PP fails: the held-out frame "Our {S} {pn} {N}", split by its parts.

    python scripts/pp_name_frame.py activations/tiny/checkpoint RUN2 [...]

Takes the held-out PP examples of seeds 1/2/3 (``corpus.sva_examples(300, seed, kind="pp")``)
that end in a name (the frame "Our {S} {pn} {N}", with held-out names) and measures the
agreement accuracy of each checkpoint on them as they are, with "The" for "Our", with a
training name for the held-out one, and with both. docs/tiny_model.md ("What varies between
draws") has what it printed.
"""

from __future__ import annotations

import random

import torch
from checkpoint_script import need_folders, print_table, run

from activations import corpus
from activations.corpus.names import names_for
from activations.tiny.train import load_checkpoint, pair_accuracy


def name_frame_examples() -> list[dict]:
    examples = [e for seed in (1, 2, 3) for e in corpus.sva_examples(300, seed=seed, kind="pp")]
    return [e for e in examples if e["clean_prefix"].split()[-1][0].isupper()]


def replaced(example: dict, first: str | None = None, last: str | None = None) -> dict:
    words = example["clean_prefix"].split()
    words[0], words[-1] = first or words[0], last or words[-1]
    return {**example, "clean_prefix": " ".join(words)}


def main(folders: list[str]) -> None:
    need_folders(folders)
    torch.set_num_threads(2)
    examples = name_frame_examples()
    rng = random.Random(0)
    train_names = [rng.choice(names_for("train", "ioi")) for _ in examples]
    variants = {
        '"Our", held-out name (as tested)': examples,
        '"The", held-out name': [replaced(e, first="The") for e in examples],
        '"Our", training name': [replaced(e, last=n) for e, n in zip(examples, train_names)],
        '"The", training name': [replaced(e, first="The", last=n) for e, n in zip(examples, train_names)],
    }
    models = {folder: load_checkpoint(folder) for folder in folders}
    for model, _ in models.values():
        model.eval()
    rows = ((label, [f"{pair_accuracy(*models[f], batch):.3f}" for f in folders]) for label, batch in variants.items())
    print_table(f"{len(examples)} name-PP prompts", folders, rows)


if __name__ == "__main__":
    run(main, __doc__)
