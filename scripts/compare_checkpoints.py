"""Issue 2's held-out metrics of tiny-model checkpoints, side by side, as the tests measure them.

    python scripts/compare_checkpoints.py activations/tiny/checkpoint RUN2 [...]

For each checkpoint: IOI on held-out templates and names (``corpus.ioi_examples(300, seed)``,
seeds 1/2/3; the tests use seed 1), agreement simple / across PP / across RC on held-out
frames (``corpus.sva_examples``, the same seeds), known entities answered and unknown ones
refused (40 prompts each), and the held-out loss (the training summary's number of contexts).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from checkpoint_script import need_folders, print_table, run

from activations import corpus
from activations.tiny.train import answer_entities, heldout_loss, load_checkpoint, pair_accuracy

SEEDS = (1, 2, 3)


def measure(folder: str) -> dict:
    model, tokenizer = load_checkpoint(folder)
    model.eval()
    contexts = json.loads((Path(folder) / "training_summary.json").read_text())["config"]["eval_contexts"]
    rates = lambda examples: " / ".join(f"{pair_accuracy(model, tokenizer, e):.3f}" for e in examples)
    row = {"ioi": rates([corpus.ioi_examples(300, seed=s) for s in SEEDS])}
    for kind in ("simple", "pp", "rc"):
        row[f"agreement {kind}"] = rates([corpus.sva_examples(300, seed=s, kind=kind) for s in SEEDS])
    known = answer_entities(model, tokenizer, corpus.entity_prompts(40, known=True, seed=1))
    unknown = answer_entities(model, tokenizer, corpus.entity_prompts(40, known=False, seed=1))
    row["known answered / unknown refused"] = f"{known['answered_right']:.3f} / {unknown['refused']:.3f}"
    row["held-out loss"] = f"{heldout_loss(model, tokenizer, contexts, seed=0):.3f}"
    return row


def main(folders: list[str]) -> None:
    need_folders(folders)
    torch.set_num_threads(2)
    rows = {folder: measure(folder) for folder in folders}
    metrics = next(iter(rows.values()))
    print_table("metric (seeds 1 / 2 / 3)", folders, ((m, [rows[f][m] for f in folders]) for m in metrics))


if __name__ == "__main__":
    run(main, __doc__)
