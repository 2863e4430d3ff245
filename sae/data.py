"""Where activations and tokens come from: the only place ``sae`` reaches into ``activations``
for stores, on-the-fly harvesting, models and token data; and ``TensorSource`` for
activations already in memory."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from activations.errors import ToolkitError
from activations.source import ActivationSource, batch_hooks, check_count


class TensorSource:
    """An ``ActivationSource`` over in-memory tensors: hook -> [n_tokens, d], the same tokens
    in every hook's rows. Batches are seeded shuffles, epoch after epoch."""

    def __init__(self, acts: dict[str, torch.Tensor], model_name: str = "in-memory"):
        shapes = {h: tuple(a.shape) for h, a in acts.items()}
        if not acts or any(len(s) != 2 or s[0] != next(iter(shapes.values()))[0] for s in shapes.values()):
            raise ToolkitError(f"TensorSource needs hook -> [n_tokens, d] tensors with the same n_tokens, got "
                               f"shapes {shapes}")
        self.acts = acts
        self.model_name = model_name
        self.hooks = list(acts)
        self.widths = {h: a.shape[1] for h, a in acts.items()}
        self.mean_norm = {h: float(a.norm(dim=-1).mean()) for h, a in acts.items()}

    def batches(self, batch_size: int, hooks: list[str] | None = None, seed: int = 0,
                epochs: int | None = None) -> Iterator[dict[str, torch.Tensor]]:
        hooks = batch_hooks(hooks, self.hooks)
        n_tokens = next(iter(self.acts.values())).shape[0]
        check_count("batch_size", batch_size, n_tokens, "lower batch_size or pass more rows")
        gen = torch.Generator().manual_seed(seed)
        epoch = 0
        while epochs is None or epoch < epochs:
            order = torch.randperm(n_tokens, generator=gen)
            for start in range(0, n_tokens - batch_size + 1, batch_size):
                rows = order[start:start + batch_size]
                yield {h: self.acts[h][rows] for h in hooks}
            epoch += 1


def open_source(acts: str, model: str, hooks: list[str], dataset: str = "tinyworld", seed: int = 0,
                context: int = 128, buffer_tokens: int = 1 << 17) -> ActivationSource:
    """The activation store at ``acts``, or (``acts`` empty) an on-the-fly harvest of ``model``."""
    if acts:
        from activations.store import StoreSource
        return StoreSource(acts)
    from activations.onthefly import OnTheFlySource
    return OnTheFlySource(model, hooks, dataset=dataset, seed=seed, context=context, buffer_tokens=buffer_tokens)


def check_source_model(source: ActivationSource, model_name: str) -> None:
    """Refuse activations harvested from another model than ``model_name``."""
    store = getattr(source, "store", None)
    if store is not None:
        store.check_model(model_name)


def model_for(source: ActivationSource, name: str = ""):
    """The ``LoadedModel`` behind ``source`` (or named ``name``), for splicing evaluations."""
    if not name and hasattr(source, "model"):
        return source.model
    from activations.models import load_model
    return load_model(name or source.model_name)


def check_context(model, context: int) -> None:
    """Refuse contexts longer than ``model`` can read."""
    if context > model.dims.n_ctx:
        raise ToolkitError(f"context = {context} is longer than model '{model.name}' reads ({model.dims.n_ctx} "
                           f"tokens); set context to at most {model.dims.n_ctx}")


def eval_contexts(model, dataset: str, context: int, n: int, seed: int) -> torch.Tensor:
    """[n, context] token ids from ``dataset``, each row starting with BOS."""
    from activations.data import TokenData
    return TokenData(dataset, model.tokenizer, context=context, seed=seed).contexts(n)
