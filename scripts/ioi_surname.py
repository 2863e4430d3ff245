"""Surname IOI accuracy of tiny-model checkpoints: does the model use the repeat?

    python scripts/ioi_surname.py activations/tiny/checkpoint RUN2 [...]

Curriculum level 11's sentences name both people in full and the subject again by surname
alone ("When Mary Grace and John Owen went to the store, Owen gave a drink to" -> " Mary"),
so suppressing the subject's token cannot give the answer: the model has to find where the
surname was said before and leave out the person it belongs to (docs/circuits.md, "IOI").
For 200 prompts with training names and 200 with held-out names (seed 1), it prints the share
whose indirect object's first name outscores the subject's, and the mean logit margin.
"""

from __future__ import annotations

import random
import re

import torch
from checkpoint_script import need_folders, print_table, run

from activations.corpus import ioi
from activations.tiny.train import load_checkpoint, next_token_logits

N_PROMPTS = 200


def surname_examples(split: str, n: int = N_PROMPTS, seed: int = 1) -> list[tuple[str, str, str]]:
    """(prefix, the indirect object's first name, the subject's first name) triples."""
    rng = random.Random(seed)
    known = set(ioi.names_for(split, "ioi"))
    examples = []
    for _ in range(n):
        sentence = ioi.surname_sentence(rng, split)
        prefix, _, io = sentence.rpartition(" ")
        names = [w for w in re.findall(r"[A-Za-z]+", prefix) if w in known]  # A, its surname, B, its surname, S2
        s = names[names.index(names[-1]) - 1]  # the first name said before the subject's surname
        examples.append((prefix, io, s))
    return examples


@torch.no_grad()
def margins(model, tokenizer, examples: list[tuple[str, str, str]]) -> torch.Tensor:
    logits = next_token_logits(model, tokenizer, [prefix for prefix, _, _ in examples])
    first = lambda name: tokenizer.encode(" " + name, add_special_tokens=False)[0]
    rows = torch.arange(len(examples))
    right = torch.tensor([first(io) for _, io, _ in examples])
    wrong = torch.tensor([first(s) for _, _, s in examples])
    return logits[rows, right] - logits[rows, wrong]


def main(folders: list[str]) -> None:
    need_folders(folders)
    torch.set_num_threads(2)
    models = [load_checkpoint(folder) for folder in folders]
    for model, _ in models:
        model.eval()

    def row(split: str) -> tuple[str, list[str]]:
        examples = surname_examples(split)
        cells = []
        for model, tokenizer in models:
            m = margins(model, tokenizer, examples)
            cells.append(f"{(m > 0).float().mean().item():.3f} ({m.mean().item():.1f})")
        return f"{split} names, {len(examples)} prompts", cells

    print_table("surname IOI, logit(IO) > logit(S) (mean margin)", folders, map(row, ("train", "heldout")))


if __name__ == "__main__":
    run(main, __doc__)
