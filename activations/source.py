"""The ActivationSource interface: what every trainer and analysis consumes.

Two implementations serve it: ``activations.store.StoreSource`` (memory-mapped shards on
disk) and ``activations.onthefly.OnTheFlySource`` (harvest into a RAM shuffle buffer).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class ActivationSource(Protocol):
    """A stream of shuffled activation batches for one or more hook points.

    Attributes:
        model_name: the model the activations come from (``"tiny"``, ``"gpt2"``, a path).
        hooks: hook names available, TransformerLens naming.
        widths: hook name -> activation width d.
        mean_norm: hook name -> mean L2 norm of the activations (for normalisation).
    """

    model_name: str
    hooks: list[str]
    widths: dict[str, int]
    mean_norm: dict[str, float]

    def batches(
        self, batch_size: int, hooks: list[str] | None = None, seed: int = 0, epochs: int | None = None
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Yield dicts hook -> float32 tensor [batch_size, d], rows shuffled with ``seed``.

        Every dict in one call holds the *same tokens* for all requested hooks, so a
        transcoder can pair an input hook with an output hook. ``epochs=None`` repeats
        forever (a new seeded order per epoch); otherwise stops after that many passes.
        Extra keys ``token_ids``, ``sequence_ids`` (context index in the dataset stream) and
        ``positions`` [batch] int64 say where each row comes from.
        """
        ...
