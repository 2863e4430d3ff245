"""Data-parallel training across processes started by ``torchrun``.

Every rank reads the same global batch (the sources are seeded, so they yield identical
batches everywhere), trains on its own contiguous slice of it, and averages gradients with
an all-reduce before clipping and the optimizer step. Because each coder's loss is a mean
over tokens and the slices are equal, the averaged gradient is the gradient of the global
batch, so the weights follow a single-process run with the same global batch (up to float
summation order). Dead-latent counters are summed over ranks, so they agree too; the first
batch (initialisation) and dead-latent resampling see the whole global batch on every rank.

Coders that select over the batch (BatchTopK, Matryoshka) select over each rank's slice, as
sparsify and SAELens do; they do not match a single process exactly.

gloo on CPU, NCCL on CUDA (each rank on ``cuda:LOCAL_RANK``). Only rank 0 writes the run
folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import Tensor

from activations.errors import ToolkitError


class DataParallel:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0):
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank

    @classmethod
    def from_env(cls, device: torch.device) -> DataParallel:
        """Join the process group torchrun describes in the environment, if any."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def check_batch(self, batch_size: int) -> None:
        if batch_size % self.world_size:
            raise ToolkitError(f"batch_size {batch_size} does not split evenly over {self.world_size} processes; "
                               f"choose a multiple of {self.world_size}")

    def local_slice(self, batch: Tensor) -> Tensor:
        """This rank's contiguous share of a global batch [B, d] -> [B / world_size, d]."""
        return batch.chunk(self.world_size)[self.rank] if self.active else batch

    def average_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Replace each gradient by its mean over ranks (one flat all-reduce)."""
        if not self.active:
            return
        grads = [p.grad for p in params if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def sum_(self, tensor: Tensor) -> Tensor:
        """All-reduce ``tensor`` in place (sum over ranks) and return it."""
        if self.active:
            dist.all_reduce(tensor)
        return tensor

    def all_finite(self, value: Tensor) -> bool:
        """Whether ``value`` is finite on every rank (each rank gets the same answer)."""
        finite = torch.isfinite(value.detach()).all().to(torch.float32).reshape(1)
        if self.active:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        return bool(finite.item())

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def close(self) -> None:
        if self.active and dist.is_initialized():
            dist.destroy_process_group()
