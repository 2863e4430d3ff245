"""The ActivationSource interface: what every trainer and analysis consumes.

Two implementations serve it: ``activations.store.StoreSource`` (memory-mapped shards on
disk) and ``activations.onthefly.OnTheFlySource`` (harvest into a RAM shuffle buffer).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import torch

from activations.errors import ToolkitError


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


def check_count(name: str, value, most: int | None = None, fix: str = "") -> None:
    """Refuse ``value`` of argument ``name`` unless it is a positive whole number, at most
    ``most`` (``fix`` then says how to make room)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ToolkitError(f"{name} must be a positive whole number, got {value!r}")
    if most is not None and value > most:
        raise ToolkitError(f"{name} {value} is more than the {most} rows available; {fix}")


def batch_hooks(hooks: list[str] | str | None, served: list[str]) -> list[str]:
    """The hooks a batch holds: ``hooks`` (a list or one comma-separated string), default all
    of ``served``; each must be one of ``served``."""
    if isinstance(hooks, str):
        hooks = [h.strip() for h in hooks.split(",") if h.strip()]
    hooks = list(hooks or served)
    missing = [h for h in hooks if h not in served]
    if missing:
        raise ToolkitError(f"these activations have no hook '{missing[0]}'; ask for some of: {', '.join(served)}")
    return hooks
