import torch

from activations.data import DatasetSpec, TokenData
from activations.models import load_model
from activations.onthefly import OnTheFlySource
from activations.source import ActivationSource

HOOKS = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_pre"]


def test_on_the_fly_serves_true_shuffled_activations(toy_gpt2_dir, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("\n\n".join(f"the dog ran {i} times to the park" for i in range(200)))
    model = load_model(toy_gpt2_dir, device="cpu")
    source = OnTheFlySource(model, HOOKS, dataset=str(text), context=16, buffer_tokens=1024, batch_contexts=8)
    assert isinstance(source, ActivationSource)
    assert source.widths == {h: 64 for h in HOOKS} and all(v > 0 for v in source.mean_norm.values())
    batches = list(source.batches(128, seed=0, epochs=3))
    assert len(batches) == 12 and all(b[HOOKS[0]].shape == (128, 64) for b in batches)
    contexts = TokenData(DatasetSpec(str(text), 0, 16), model.tokenizer).contexts(200)
    for b in batches[:2] + batches[-2:]:
        seq, pos = b["sequence_ids"], b["positions"]
        assert len(set(seq.tolist())) > 8  # mixes many contexts
        assert (contexts[seq, pos] == b["token_ids"]).all()
        acts = model.capture(contexts[seq], HOOKS)
        for hook in HOOKS:
            torch.testing.assert_close(acts[hook][torch.arange(len(seq)), pos], b[hook])
    # resid_post of block 0 is resid_pre of block 1
    torch.testing.assert_close(batches[0][HOOKS[0]], batches[0][HOOKS[1]])
