"""``ActivationSource`` that harvests as it goes, through a RAM shuffle buffer (no disk)."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice

import torch

from activations.data import EMBEDDED, DatasetSpec, TokenData
from activations.hooks import parse_hooks
from activations.models import LoadedModel, load_model
from activations.source import batch_hooks, check_count

_WHERE = ["token_ids", "sequence_ids", "positions"]


class OnTheFlySource:
    """Harvest ``hooks`` from ``model`` on demand and serve shuffled batches.

    The buffer holds ``buffer_tokens`` rows per hook (float32). Each round the buffer is
    shuffled, its first half is served, and those rows are replaced by fresh activations, so
    every batch mixes tokens from many contexts. ``mean_norm`` is measured on the first fill.
    The shuffle moves indices, not rows: ``_order[j]`` is the storage row of buffer row ``j``,
    so a round copies only the rows it serves and the fresh ones.

    Args:
        model: a ``LoadedModel`` or a name for ``load_model``.
        hooks: hook names (TransformerLens naming).
        dataset, seed, context, text_field: the token stream (see ``activations.data``).
        exclude_bos: drop BOS / end-of-text positions.
    """

    def __init__(self, model: LoadedModel | str, hooks: list[str] | str, dataset: str = EMBEDDED,
                 seed: int = 0, context: int = 128, buffer_tokens: int = 1 << 16,
                 batch_contexts: int = 32, exclude_bos: bool = False, text_field: str = "text"):
        for name, value in (("buffer_tokens", buffer_tokens), ("batch_contexts", batch_contexts)):
            check_count(name, value)
        self.model = load_model(model) if isinstance(model, str) else model
        self.model_name = self.model.name
        self.hooks = [p.name for p in parse_hooks(hooks, self.model.dims.n_layers)]
        self.widths = {h: self.model.hook_width(h) for h in self.hooks}
        context = min(context, self.model.dims.n_ctx)
        self.data = TokenData(DatasetSpec(dataset, seed, context, text_field), self.model.tokenizer)
        self.buffer_tokens, self.batch_contexts, self.exclude_bos = buffer_tokens, batch_contexts, exclude_bos
        self._contexts = self.data.iter_contexts()
        self._next_context = 0
        self._buffer = self._harvest(buffer_tokens)
        self._order = torch.arange(len(self._buffer["token_ids"]))
        self.mean_norm = {h: float(self._buffer[h].norm(dim=-1).mean()) for h in self.hooks}

    def batches(self, batch_size: int, hooks: list[str] | None = None, seed: int = 0,
                epochs: int | None = None) -> Iterator[dict[str, torch.Tensor]]:
        """Shuffled batches forever (the stream is endless, so ``epochs`` counts buffer halves)."""
        check_count("batch_size", batch_size, self.buffer_tokens, "lower batch_size or raise buffer_tokens")
        hooks = batch_hooks(hooks, self.hooks)
        gen = torch.Generator().manual_seed(seed)
        half = max(batch_size, self.buffer_tokens // 2 // batch_size * batch_size)
        rounds = 0
        while epochs is None or rounds < epochs:
            self._order = self._order[torch.randperm(len(self._order), generator=gen)]
            for i in range(0, half, batch_size):
                rows = self._order[i:i + batch_size]
                yield {k: self._buffer[k][rows] for k in hooks + _WHERE}
            fresh, served = self._harvest(half), self._order[:half]
            for k, v in self._buffer.items():
                v[served] = fresh[k]
            rounds += 1

    def _harvest(self, n_rows: int) -> dict[str, torch.Tensor]:
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in self.hooks + _WHERE}
        got = 0
        while got < n_rows:
            tokens = torch.tensor(list(islice(self._contexts, self.batch_contexts)), dtype=torch.long)
            keep = (tokens != self.data.bos).reshape(-1) if self.exclude_bos else None

            def kept(rows: torch.Tensor) -> torch.Tensor:  # no copy when every row is kept
                return rows if keep is None else rows[keep.to(rows.device)]

            acts = self.model.capture(tokens, self.hooks)
            for h in self.hooks:
                parts[h].append(kept(acts[h].reshape(-1, self.widths[h])).float().cpu())
            n, length = tokens.shape
            first, self._next_context = self._next_context, self._next_context + n
            parts["token_ids"].append(kept(tokens.reshape(-1)))
            parts["sequence_ids"].append(kept(torch.arange(first, first + n)[:, None].expand(n, length).reshape(-1)))
            parts["positions"].append(kept(torch.arange(length).expand(n, length).reshape(-1)))
            got += len(parts["token_ids"][-1])
        return {k: torch.cat(v)[:n_rows] for k, v in parts.items()}
