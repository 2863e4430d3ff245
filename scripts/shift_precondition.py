"""SHIFT's precondition on tiny-model checkpoints: does a probe trained on the ambiguous bios lean on gender?

    python scripts/shift_precondition.py activations/tiny/checkpoint RUN2 [...]

``test_shift_removes_the_spurious_cue`` needs the probe trained on 256 ambiguous bios (profession
== gender; ``shift_examples(256, seed=0)``) to read profession below 0.75 and gender above 0.75
on 384 balanced bios (seed 1): otherwise there is no bias for SHIFT to remove. The probe reads
exact activations at ``blocks.3.hook_resid_post`` mean-pooled over real tokens (the SAE's
reconstruction plus its error), so this depends on the model alone and can be checked in
seconds, before training any dictionary (docs/circuits.md, "SHIFT").
"""

from __future__ import annotations

import torch
from checkpoint_script import need_folders, print_table, run

from activations.models import load_model
from circuits.datasets import shift_examples
from circuits.shift import Texts, encode_texts, real_token_mean, train_probe

HOOK = "blocks.3.hook_resid_post"


@torch.no_grad()
def pooled_exact(model, texts: Texts) -> torch.Tensor:
    return real_token_mean(model.capture(texts.tokens, [HOOK])[HOOK].float(), texts)


def measure(folder: str) -> str:
    model = load_model(folder, device="cpu")
    train = encode_texts(model, shift_examples(256, seed=0))
    test = encode_texts(model, shift_examples(384, seed=1, balanced=True))
    probe = train_probe(pooled_exact(model, train), train.label)
    x = pooled_exact(model, test)
    return f"{probe.accuracy(x, test.label):.3f} / {probe.accuracy(x, test.cue):.3f}"


def main(folders: list[str]) -> None:
    need_folders(folders)
    torch.set_num_threads(2)
    print_table("probe before, balanced bios: profession / gender (needs < 0.75 / > 0.75)", folders,
                [("", [measure(f) for f in folders])])


if __name__ == "__main__":
    run(main, __doc__)
