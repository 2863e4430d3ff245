"""Sparse encode and decode with hand-written gradients, for the top-k family of coders.

In a TopK training step the encoder's dense matmul is the only unavoidable dense work. Here
everything else touches just the active latents:

- ``sparse_encode``: pre-activations ``(x − b_dec) @ W_enc + b_enc``, then a selection rule
  keeps a few entries per row, returned as ``SparseLatents`` (compressed rows). The backward
  pass builds W_enc's gradient from the active entries only: an embedding bag over the
  batch, grouped by latent. b_dec's gradient comes from b_enc's, through one mat-vec.
- ``sparse_decode``: an embedding bag over the decoder rows of the active latents. Its
  backward computes the activations' gradients as sampled dot products and W_dec's
  gradient as another embedding bag grouped by latent.

Gradients are dense tensors shaped like the parameters (rows of inactive latents are zero),
so any optimizer works unchanged. The encoder weight is latent-major, [d_sae, d_in], as
``SparseCoder.encoder_weight`` stores it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

Selection = tuple[Tensor, Tensor, Tensor]  # values [nnz], indices [nnz], crow [B + 1]


@dataclass
class SparseLatents:
    """Latent activations of a batch in compressed-row form.

    Row b's active latents are ``indices[crow[b]:crow[b + 1]]`` with activations
    ``values[crow[b]:crow[b + 1]]``. Entries may hold 0 (selected but not firing).
    ``by_latent`` is the same pattern grouped by latent (see ``group_by_latent``), kept so
    the backward passes sort the batch once.
    """

    values: Tensor  # [nnz] float
    indices: Tensor  # [nnz] int64, latent ids in [0, d_sae)
    crow: Tensor  # [n_rows + 1] int64
    d_sae: int
    by_latent: tuple[Tensor, Tensor, Tensor] | None = None

    @property
    def n_rows(self) -> int:
        return self.crow.numel() - 1

    def to_dense(self) -> Tensor:
        """[n_rows, d_sae] activations (zeros where inactive)."""
        dense = self.values.new_zeros(self.n_rows, self.d_sae)
        return dense.index_put((row_ids(self.crow, self.indices.numel()), self.indices), self.values)


def uniform_crow(n_rows: int, per_row: int, device: torch.device) -> Tensor:
    """Row pointers [n_rows + 1] for exactly ``per_row`` entries in each row."""
    return torch.arange(0, n_rows * per_row + 1, per_row, device=device)


def row_ids(crow: Tensor, nnz: int) -> Tensor:
    """[nnz] the row of each entry of a compressed-row pattern."""
    return torch.repeat_interleave(torch.arange(crow.numel() - 1, device=crow.device), crow.diff(),
                                   output_size=nnz)


_caller_threads: list[int] = []  # thread counts one_thread() replaced, outermost first


@contextmanager
def one_thread():
    """Run small or memory-bound work on one CPU thread.

    Bookkeeping proportional to the active entries takes about a millisecond per operation
    on one thread, and element-wise passes over the parameters are limited by memory
    bandwidth; split across two cores that other processes also use, both spend most of
    their time waiting for the second thread (10-100x for the small ones).
    """
    _caller_threads.append(torch.get_num_threads())
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(_caller_threads.pop())


@contextmanager
def all_threads():
    """Inside ``one_thread``, give dense work back the threads the outermost caller had."""
    current = torch.get_num_threads()
    torch.set_num_threads(_caller_threads[0] if _caller_threads else current)
    try:
        yield
    finally:
        torch.set_num_threads(current)


def group_by_latent(indices: Tensor, crow: Tensor, d_sae: int) -> tuple[Tensor, Tensor, Tensor]:
    """Transpose compressed rows into compressed columns.

    Returns ``(rows [nnz], order [nnz], col_ptr [d_sae + 1])``: latent j's entries are
    ``order[col_ptr[j]:col_ptr[j + 1]]`` (positions into ``indices``), from batch rows
    ``rows[col_ptr[j]:col_ptr[j + 1]]``.
    """
    with one_thread():
        order = torch.sort(indices, stable=True).indices
    col_ptr = torch.zeros(d_sae + 1, dtype=torch.long, device=indices.device)
    torch.cumsum(torch.bincount(indices, minlength=d_sae), 0, out=col_ptr[1:])
    return row_ids(crow, indices.numel())[order], order, col_ptr


def _weighted_rows_by_latent(weights: Tensor, by_latent: tuple[Tensor, Tensor, Tensor], vectors: Tensor) -> Tensor:
    """[d_sae, d] with row j = Σ over latent j's entries e of weights[e] · vectors[row of e]."""
    rows, order, col_ptr = by_latent
    return F.embedding_bag(rows, vectors, col_ptr, mode="sum", per_sample_weights=weights[order],
                           include_last_offset=True)


class _SparseEncode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, b_enc: Tensor, b_dec: Tensor | None,
                select: Callable[[Tensor], Selection]):
        x_in = x if b_dec is None else x - b_dec
        with all_threads():  # the one dense product
            values, indices, crow = select(torch.addmm(b_enc, x_in, weight.t()))
        with one_thread():
            values = values.to(weight.dtype)  # the encoder may have run in bf16 autocast
            by_latent = group_by_latent(indices, crow, weight.shape[0])
        ctx.save_for_backward(x_in, weight, values, indices, crow, *by_latent)
        ctx.has_b_dec = b_dec is not None
        ctx.mark_non_differentiable(indices, crow, *by_latent)
        return values, indices, crow, *by_latent

    @staticmethod
    @one_thread()
    def backward(ctx, grad_values: Tensor, *_grad_index_tensors):
        x_in, weight, values, indices, crow, *by_latent = ctx.saved_tensors
        grad_pre = grad_values * (values > 0)  # ReLU: selected entries at 0 pass no gradient
        d_sae = weight.shape[0]
        grad_weight = _weighted_rows_by_latent(grad_pre, by_latent, x_in.to(grad_pre.dtype))
        grad_b_enc = grad_pre.new_zeros(d_sae).index_add_(0, indices, grad_pre)
        grad_b_dec = -(grad_b_enc @ weight) if ctx.has_b_dec else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = F.embedding_bag(indices, weight, crow, mode="sum", per_sample_weights=grad_pre,
                                     include_last_offset=True)
        return grad_x, grad_weight, grad_b_enc, grad_b_dec, None


class _SparseDecode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values: Tensor, indices: Tensor, crow: Tensor, W_dec: Tensor, b_dec: Tensor | None,
                *by_latent: Tensor):
        ctx.save_for_backward(values, indices, crow, W_dec, *by_latent)
        ctx.has_b_dec = b_dec is not None
        out = F.embedding_bag(indices, W_dec, crow, mode="sum", per_sample_weights=values,
                              include_last_offset=True)
        return out.add_(b_dec) if b_dec is not None else out

    @staticmethod
    @one_thread()
    def backward(ctx, grad_out: Tensor):
        values, indices, crow, W_dec, *by_latent = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore")
            pattern = torch.sparse_csr_tensor(crow, indices, values.detach(), (crow.numel() - 1, W_dec.shape[0]),
                                              check_invariants=False)
        grad_values = torch.sparse.sampled_addmm(pattern, grad_out, W_dec.t(), beta=0.0).values()
        grad_W_dec = _weighted_rows_by_latent(values.detach(), by_latent, grad_out)
        grad_b_dec = grad_out.sum(0) if ctx.has_b_dec else None
        return grad_values, None, None, grad_W_dec, grad_b_dec, None, None, None


def sparse_encode(x: Tensor, weight: Tensor, b_enc: Tensor, b_dec: Tensor | None,
                  select: Callable[[Tensor], Selection]) -> SparseLatents:
    """Encode x [B, d_in] keeping the entries ``select`` picks from the pre-activations.

    ``weight`` is the latent-major encoder [d_sae, d_in]. ``select(pre [B, d_sae]) ->
    (values, indices, crow)`` returns ReLU'd activations in compressed-row form. ``b_dec``
    [d_in] is subtracted from x first when given. Gradients reach the weight, b_enc and
    b_dec through the selected entries only.
    """
    values, indices, crow, *by_latent = _SparseEncode.apply(x, weight, b_enc, b_dec, select)
    return SparseLatents(values, indices, crow, weight.shape[0], tuple(by_latent))


def sparse_decode(latents: SparseLatents, W_dec: Tensor, b_dec: Tensor | None = None) -> Tensor:
    """[B, d_out]: each row's Σ of activation × decoder row [d_sae, d_out], plus b_dec if given."""
    by_latent = latents.by_latent or group_by_latent(latents.indices, latents.crow, latents.d_sae)
    values = latents.values.to(W_dec.dtype)  # autocast may have produced them in bf16
    return _SparseDecode.apply(values, latents.indices, latents.crow, W_dec, b_dec, *by_latent)
