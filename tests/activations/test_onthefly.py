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


class _MovingRows(OnTheFlySource):
    """The shuffle buffer stated plainly: permute the rows themselves, serve the first half,
    put fresh rows in front of the rest. OnTheFlySource must serve exactly these batches."""

    def batches(self, batch_size, hooks=None, seed=0, epochs=None):
        gen = torch.Generator().manual_seed(seed)
        half = max(batch_size, self.buffer_tokens // 2 // batch_size * batch_size)
        for _ in range(epochs):
            perm = torch.randperm(len(self._buffer["token_ids"]), generator=gen)
            self._buffer = {k: v[perm] for k, v in self._buffer.items()}
            for i in range(0, half, batch_size):
                yield {k: v[i:i + batch_size] for k, v in self._buffer.items()}
            fresh = self._harvest(half)
            self._buffer = {k: torch.cat([fresh[k], v[half:]]) for k, v in self._buffer.items()}


def test_the_buffer_serves_what_moving_the_rows_would(toy_gpt2_dir, tmp_path):
    """Shuffling indices instead of rows changes no batch, across rounds, calls and seeds
    (a batch that stops a round early included)."""
    text = tmp_path / "t.txt"
    text.write_text("\n\n".join(f"a cat sat {i} times on the mat by the door" for i in range(300)))
    model = load_model(toy_gpt2_dir, device="cpu")
    kwargs = dict(dataset=str(text), context=16, buffer_tokens=1000, batch_contexts=4)
    fast, plain = OnTheFlySource(model, HOOKS, **kwargs), _MovingRows(model, HOOKS, **kwargs)
    for batch_size, seed, epochs in ((96, 0, 3), (128, 5, 2), (600, 1, 2)):
        for got, want in zip(fast.batches(batch_size, seed=seed, epochs=epochs),
                             plain.batches(batch_size, seed=seed, epochs=epochs), strict=True):
            assert set(got) == set(want)
            for key in want:
                assert torch.equal(got[key], want[key]), key
    stopped = fast.batches(64, seed=2)
    next(stopped)
    later = plain.batches(64, seed=2, epochs=1)
    next(later)  # both stop after one batch of a round; the next call must agree
    for got, want in zip(fast.batches(64, seed=3, epochs=2), plain.batches(64, seed=3, epochs=2), strict=True):
        assert all(torch.equal(got[key], want[key]) for key in want)


def test_exclude_bos_serves_every_other_position_and_no_bos(toy_gpt2_dir, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("\n\n".join(f"the dog ran {i} times to the park" for i in range(200)))
    model = load_model(toy_gpt2_dir, device="cpu")
    source = OnTheFlySource(model, HOOKS, dataset=str(text), context=16, buffer_tokens=960, batch_contexts=8,
                            exclude_bos=True)
    contexts = TokenData(DatasetSpec(str(text), 0, 16), model.tokenizer).contexts(200)
    bos = source.data.bos
    assert (contexts[:, 0] == bos).all()  # so leaving BOS out drops position 0 at least
    (batch,) = list(source.batches(480, seed=0, epochs=1))
    seq, pos = batch["sequence_ids"], batch["positions"]
    assert (batch["token_ids"] != bos).all() and (pos > 0).all()
    assert (contexts[seq, pos] == batch["token_ids"]).all()
    acts = model.capture(contexts[seq], HOOKS)
    torch.testing.assert_close(acts[HOOKS[0]][torch.arange(len(seq)), pos], batch[HOOKS[0]])
    rows = {(s, p) for s, p in zip(source._buffer["sequence_ids"].tolist(), source._buffer["positions"].tolist())}
    assert len(rows) == 960  # after a round: 960 distinct (context, position) pairs, none harvested twice
