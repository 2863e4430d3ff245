"""SHIFT on the embedded model: ablating the probe's gender features raises balanced accuracy."""

from __future__ import annotations

import pytest
import torch

from circuits.attribution import SplicedModel
from circuits.commands.circuit import load_saes
from circuits.datasets import shift_examples
from activations.errors import ToolkitError
from circuits.shift import (encode_texts, pooled, probe_attribution, real_token_means, select_by_cue, shift,
                           train_probe)

HOOK = "blocks.3.hook_resid_post"


@pytest.mark.slow
def test_shift_removes_the_spurious_cue(tiny_saes):
    """Ablating the automatically selected gender features (to their means) raises the
    unchanged probe's balanced profession accuracy and lowers how well it tracks gender."""
    from activations.models import load_model
    model = load_model("tiny", device="cpu")
    spliced = SplicedModel(model, load_saes(next(iter(tiny_saes.values())).parent))
    train = encode_texts(model, shift_examples(96, seed=0))
    test = encode_texts(model, shift_examples(384, seed=1, balanced=True))
    judge = encode_texts(model, shift_examples(32, seed=2, balanced=True))
    probe = train_probe(pooled(spliced, train, HOOK)[0], train.label)
    scores = probe_attribution(spliced, train, HOOK, probe)
    ablated = select_by_cue(spliced, judge, HOOK, scores)
    result = shift(spliced, train, test, HOOK, ablated)
    print("SHIFT:", result)
    assert result["n_ablated"] > 0
    assert result["accuracy_before"] < 0.75 and result["cue_accuracy_before"] > 0.75  # the probe leans on gender
    assert result["accuracy_after"] >= result["accuracy_before"] + 0.05  # 384 examples: +19 net
    assert result["cue_accuracy_after"] <= result["cue_accuracy_before"] - 0.05


def test_ablated_features_take_the_fill_values(tiny_saes):
    from activations.models import load_model
    model = load_model("tiny", device="cpu")
    spliced = SplicedModel(model, load_saes(next(iter(tiny_saes.values())).parent))
    texts = encode_texts(model, shift_examples(8, seed=4))
    means = real_token_means(pooled(spliced, texts, HOOK)[1], texts)
    ablated = {h: means[h].topk(k).indices.tolist() for h, k in (("blocks.0.hook_resid_pre", 2), (HOOK, 1))}
    assert all((means[h][i] > 0).all() for h, i in ablated.items())  # a zero fill would differ
    for fill in (means, None):
        _, nodes = pooled(spliced, texts, HOOK, ablated, fill=fill)
        for hook, indices in ablated.items():
            f = nodes[hook][0][..., indices]
            want = means[hook][indices] if fill else torch.zeros(len(indices))
            torch.testing.assert_close(f, want.expand_as(f))
    with pytest.raises(ToolkitError, match="fill"):
        shift(spliced, texts, texts, HOOK, ablated, fill="median")
