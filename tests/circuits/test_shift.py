"""SHIFT on the embedded model: ablating the probe's gender features raises balanced accuracy."""

from __future__ import annotations

import pytest

from circuits.attribution import SplicedModel
from circuits.commands.circuit import load_saes
from circuits.datasets import shift_examples
from circuits.shift import encode_texts, pooled, probe_attribution, select_by_cue, shift, train_probe

HOOK = "blocks.3.hook_resid_post"


@pytest.mark.xfail(strict=True, reason="known shortfall (issue 5): SHIFT moves balanced probe accuracy 0.50 -> 0.52 (cue accuracy 1.00 -> 0.92, 28 features ablated), target +0.1")
@pytest.mark.slow
def test_shift_removes_the_spurious_cue(tiny_saes):
    from activations.models import load_model
    model = load_model("tiny", device="cpu")
    spliced = SplicedModel(model, load_saes(next(iter(tiny_saes.values())).parent))
    train = encode_texts(model, shift_examples(96, seed=0))
    test = encode_texts(model, shift_examples(96, seed=1, balanced=True))
    judge = encode_texts(model, shift_examples(32, seed=2, balanced=True))
    probe = train_probe(pooled(spliced, train, HOOK)[0], train.label)
    scores = probe_attribution(spliced, train, HOOK, probe)
    ablated = select_by_cue(spliced, judge, HOOK, scores, top=50)
    result = shift(spliced, train, test, HOOK, ablated)
    print("SHIFT:", result)
    assert result["n_ablated"] > 0
    assert result["accuracy_after"] >= result["accuracy_before"] + 0.1
    assert result["cue_accuracy_after"] < result["cue_accuracy_before"]
