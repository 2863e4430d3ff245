"""Harvest activations of many hooks in one forward pass into a crash-safe store.

``harvest(HarvestConfig(...))`` runs the model over the dataset's packed contexts, stopping
each forward pass after the deepest hook, and writes shards in a background thread so the
model never waits on the disk (on CUDA: activations are cast on the GPU, copied to pinned
host buffers asynchronously, and the writer waits on a CUDA event). Under ``torchrun`` each
rank harvests shards ``rank, rank + world, ...`` of the same plan and rank 0 writes the one
manifest, so the store is identical to a single-process run.
"""

from __future__ import annotations

import ctypes
import math
import os
import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_bytes

from activations import store as st
from activations.data import EMBEDDED, DatasetSpec, TokenData
from activations.errors import ToolkitError
from activations.hooks import parse_hooks
from activations.models import LoadedModel, load_model

JOURNAL_GLOB = "progress-rank*.json"
# Every file a store folder may hold, its atomic-write temp files included; --overwrite
# deletes only these, and only when the folder holds nothing else.
_STORE_FILE = re.compile(r"(shard-\d{6,}\.safetensors|manifest\.json|progress-rank\d+\.json)(\.tmp)?")
MAX_TOKENS = 10**12  # far beyond any real harvest; larger counts are typing mistakes
_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


@dataclass
class HarvestConfig:
    """What to harvest and where. ``dtype`` is the store's; ``model_dtype`` the forward pass's."""

    model: str = "tiny"
    hooks: list[str] = field(default_factory=lambda: ["blocks.1.hook_resid_post"])
    tokens: int = 2_000_000
    out: str = "acts"
    dataset: str = EMBEDDED
    seed: int = 0
    context: int | None = None
    text_field: str = "text"
    dtype: str = "float16"
    model_dtype: str | None = None
    batch_contexts: int = 32
    shard_tokens: int = 16_384
    exclude_bos: bool = False
    device: str = "auto"
    resume: bool = False
    overwrite: bool = False
    progress: bool = True


@dataclass
class _Rank:
    rank: int = 0
    world: int = 1

    @classmethod
    def from_env(cls) -> _Rank:
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def harvest(cfg: HarvestConfig, model: LoadedModel | None = None) -> Path:
    """Harvest ``cfg.tokens`` tokens of every hook in ``cfg.hooks`` into ``cfg.out``; returns the folder.

    Every argument is checked and the dataset's first context read before ``cfg.out`` is
    touched, so bad input leaves an existing store, or an absent folder, as it was.
    """
    check_config(cfg)
    mmap_large_allocations()
    ranks = _init_distributed()
    device = f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if ranks.world > 1 and torch.cuda.is_available() else cfg.device
    model = model or load_model(cfg.model, device=device, dtype=cfg.model_dtype)
    hooks = [p.name for p in parse_hooks(cfg.hooks, model.dims.n_layers)]
    plan = _plan(cfg, model, hooks)
    data = TokenData(DatasetSpec(**plan["dataset"]), model.tokenizer)
    contexts = _opened(data.iter_contexts())
    out = Path(cfg.out)
    if ranks.rank == 0:
        _prepare_folder(out, plan, cfg)
    ranks.barrier()
    done = _completed_shards(out)
    missing = sorted(set(range(plan["n_shards"])) - set(done))
    mine = missing[ranks.rank::ranks.world]
    on_written = _manifest_updater(out, plan, done) if ranks.world == 1 else _journal_updater(out, ranks.rank)
    writer = _ShardWriter(out, on_written)
    try:
        _harvest_shards(model, cfg, plan, hooks, data, contexts, mine, writer, show=cfg.progress and ranks.rank == 0)
    finally:
        writer.close()
    ranks.barrier()
    if ranks.rank == 0:
        _finalize(out, plan)
    ranks.barrier()
    return out


def check_config(cfg: HarvestConfig) -> None:
    """Refuse settings that cannot make a store, before anything is loaded or written."""
    if cfg.dtype not in st.STORE_DTYPES:
        raise ToolkitError(f"unknown store dtype '{cfg.dtype}'; use one of {', '.join(st.STORE_DTYPES)}")
    if not 0 < cfg.tokens <= MAX_TOKENS:
        raise ToolkitError(f"--tokens must be between 1 and {MAX_TOKENS:,}, got {cfg.tokens}")
    for flag, value in (("--batch-contexts", cfg.batch_contexts), ("--shard-tokens", cfg.shard_tokens)):
        if value <= 0:
            raise ToolkitError(f"{flag} must be positive, got {value}")


def _opened(contexts: Iterator[list[int]]) -> Iterator[list[int]]:
    """``contexts`` with its first item already read, so that a dataset that cannot be opened
    or holds no text fails here, before the store folder is touched."""
    first = next(contexts)
    return chain([first], contexts)


def mmap_large_allocations(threshold: int = 16 << 20) -> None:
    """Make glibc serve allocations above ``threshold`` bytes with mmap.

    Shard buffers are tens of MB, allocated in one thread and freed in another; with glibc's
    default dynamic threshold they end up on fragmented heaps and RSS grows with the token
    count (2.2 GB after 0.5M tokens of the embedded model). mmapped buffers go back to the OS
    when freed, keeping RSS flat. The threshold stays above per-batch activations, which are
    reused quickly and would otherwise pay page faults on every forward pass. A no-op where
    glibc is absent.
    """
    try:
        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, threshold)
    except (OSError, AttributeError):
        pass


def _init_distributed() -> _Rank:
    ranks = _Rank.from_env()
    if ranks.world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend=backend)
    return ranks


def _plan(cfg: HarvestConfig, model: LoadedModel, hooks: list[str]) -> dict:
    context = cfg.context if cfg.context is not None else min(128, model.dims.n_ctx)
    if not 2 <= context <= model.dims.n_ctx:
        raise ToolkitError(f"context length {context} is outside 2..{model.dims.n_ctx} for model '{model.name}'")
    per_context = context - 1 if cfg.exclude_bos else context
    n_contexts = math.ceil(cfg.tokens / per_context)
    per_shard = max(1, cfg.shard_tokens // context)
    return {
        "format": st.FORMAT, "format_version": st.FORMAT_VERSION, "model": model.name,
        "model_checkpoint": model.checkpoint,
        "hooks": {h: {"d": model.hook_width(h), "basis": model.hook_point(h).basis} for h in hooks},
        "dtype": cfg.dtype,
        "dataset": DatasetSpec(cfg.dataset, cfg.seed, context, cfg.text_field).to_json(),
        "exclude_bos": cfg.exclude_bos, "contexts_per_shard": per_shard, "n_contexts": n_contexts,
        "n_shards": math.ceil(n_contexts / per_shard), "requested_tokens": cfg.tokens,
    }


def _prepare_folder(out: Path, plan: dict, cfg: HarvestConfig) -> None:
    """Create, resume or (when asked) replace the store; never silently overwrite another one."""
    if out.exists() and not out.is_dir():
        raise ToolkitError(f"--out '{out}' is a file; pass a folder for the store")
    if cfg.overwrite and out.exists():
        _clear_store(out)
    elif (out / st.MANIFEST).is_file():
        existing = st.read_manifest(out)
        if st.plan_of(existing) != st.plan_of(plan):
            diff = [k for k in st.PLAN_FIELDS if existing.get(k) != plan.get(k)]
            raise ToolkitError(f"'{out}' holds a different activation store (differs in {', '.join(diff)}); "
                               "choose another --out or pass --overwrite to replace it")
        if not cfg.resume:
            state = "complete" if existing.get("complete") else "incomplete"
            raise ToolkitError(f"'{out}' already holds this ({state}) store; pass --resume to finish it "
                               "or --overwrite to harvest it again")
        for tmp in out.glob("*.tmp"):
            if _STORE_FILE.fullmatch(tmp.name):
                tmp.unlink()
        return
    elif out.exists() and any(out.iterdir()):
        raise ToolkitError(f"'{out}' exists, is not empty and holds no {st.MANIFEST}; "
                           "choose an empty or new --out folder")
    out.mkdir(parents=True, exist_ok=True)
    st.write_json(out / st.MANIFEST, {**plan, "complete": False, "shards": []})


def _clear_store(out: Path) -> None:
    """Delete the store in ``out``, or nothing at all when the folder holds anything else."""
    entries = list(out.iterdir())
    foreign = [p.name for p in entries if not (p.is_file() and _STORE_FILE.fullmatch(p.name))]
    if foreign:
        raise ToolkitError(f"'{out}' holds files that are not part of an activation store "
                           f"({', '.join(sorted(foreign)[:3])}); --overwrite only replaces stores, "
                           "choose another --out")
    for path in entries:
        path.unlink()


def _completed_shards(out: Path) -> dict[int, dict]:
    """Shard records from the manifest and any rank journals, for files that are intact."""
    records = {r["index"]: r for r in st.read_manifest(out).get("shards", [])}
    for journal in out.glob(JOURNAL_GLOB):
        records.update({r["index"]: r for r in st.read_journal(journal)})
    intact = {}
    for index, record in records.items():
        path = out / record["file"]
        if path.is_file() and path.stat().st_size == record["bytes"]:
            intact[index] = record
    return intact


def _manifest_updater(out: Path, plan: dict, done: dict[int, dict]):
    records = dict(done)

    def update(record: dict) -> None:
        records[record["index"]] = record
        shards = [records[i] for i in sorted(records)]
        st.write_json(out / st.MANIFEST, {**plan, "complete": False, "shards": shards})
    return update


def _journal_updater(out: Path, rank: int):
    path = out / f"progress-rank{rank}.json"
    records: list[dict] = st.read_journal(path) if path.is_file() else []

    def update(record: dict) -> None:
        records.append(record)
        st.write_json(path, {"shards": records})
    return update


def _finalize(out: Path, plan: dict) -> None:
    """Merge journals, check every shard is present, add per-hook statistics, mark complete."""
    records = _completed_shards(out)
    absent = sorted(set(range(plan["n_shards"])) - set(records))
    if absent:
        raise ToolkitError(f"store '{out}' is missing shards {absent[:5]} after harvesting; run again with --resume")
    shards = [records[i] for i in range(plan["n_shards"])]
    stats = _merge_stats(out, shards, list(plan["hooks"]))
    total = sum(s["n_tokens"] for s in shards)
    st.write_json(out / st.MANIFEST, {**plan, "complete": True, "total_tokens": total, "stats": stats,
                                      "shards": shards})
    for journal in out.glob(JOURNAL_GLOB):
        journal.unlink()


def _merge_stats(out: Path, shards: list[dict], hooks: list[str]) -> dict:
    from safetensors import safe_open
    sums = {h: {"sum": 0.0, "sum_norm": 0.0, "sum_sq_norm": 0.0} for h in hooks}
    for record in shards:
        with safe_open(out / record["file"], framework="pt") as f:
            for h in hooks:
                for key in sums[h]:
                    sums[h][key] = sums[h][key] + f.get_tensor(f"stats.{h}.{key}")
    n = sum(s["n_tokens"] for s in shards)
    stats = {}
    for h in hooks:
        mean = sums[h]["sum"] / n
        mean_sq_norm = float(sums[h]["sum_sq_norm"] / n)
        stats[h] = {"mean": mean.tolist(), "mean_norm": float(sums[h]["sum_norm"] / n),
                    "mean_sq_norm": mean_sq_norm,
                    "variance": mean_sq_norm - float(mean.square().sum())}
    return stats


def _harvest_shards(model: LoadedModel, cfg: HarvestConfig, plan: dict, hooks: list[str], data: TokenData,
                    contexts: Iterator[list[int]], indices: list[int], writer: _ShardWriter, show: bool) -> None:
    from tqdm.auto import tqdm
    per_shard, n_contexts = plan["contexts_per_shard"], plan["n_contexts"]
    planned = sum(min(per_shard, n_contexts - i * per_shard) for i in indices) * plan["dataset"]["context"]
    bar = tqdm(total=planned, unit="tok", unit_scale=True, desc="harvest", disable=not show)
    shards = _shard_tokens(contexts, indices, per_shard, n_contexts)
    for index, first, tokens in prefetched(shards):  # the next shard's text is made during this forward
        writer.submit(index, _shard_tensors(model, tokens, first, hooks, plan, cfg.batch_contexts, data.bos))
        bar.update(tokens.numel())
    bar.close()


def _shard_tokens(stream: Iterator[list[int]], indices: list[int], per_shard: int,
                  n_contexts: int) -> Iterator[tuple[int, int, torch.Tensor]]:
    """(shard index, first context, tokens [n, T]) of each shard in ``indices`` (ascending)."""
    position = 0
    for index in indices:
        first = index * per_shard
        count = min(per_shard, n_contexts - first)
        rows = list(islice(stream, first - position, first - position + count))
        position = first + count
        yield index, first, torch.tensor(rows, dtype=torch.long)


def prefetched(items: Iterator, depth: int = 1) -> Iterator:
    """``items``, produced by a background thread up to ``depth`` ahead of the consumer; an
    exception in the producer is raised in the consumer."""
    pending: queue.Queue = queue.Queue(maxsize=depth)
    end = object()

    def produce() -> None:
        try:
            for item in items:
                pending.put(item)
        except BaseException as err:  # handed to the consumer, which re-raises it
            pending.put(err)
            return
        pending.put(end)

    threading.Thread(target=produce, daemon=True, name="harvest-prefetch").start()
    while (item := pending.get()) is not end:
        if isinstance(item, BaseException):
            raise item
        yield item


def _shard_tensors(model: LoadedModel, tokens: torch.Tensor, first: int, hooks: list[str], plan: dict,
                   batch_contexts: int, bos: int) -> tuple[dict[str, torch.Tensor], torch.cuda.Event | None]:
    """Activations of one shard's contexts [n, T] as flat rows, plus the event to wait on (CUDA)."""
    n, length = tokens.shape
    keep = tokens != bos if plan["exclude_bos"] else torch.ones_like(tokens, dtype=torch.bool)
    dtype = st.STORE_DTYPES[plan["dtype"]]
    cuda = model.device.type == "cuda"
    n_rows = int(keep.sum())
    out = {h: torch.empty(n_rows, plan["hooks"][h]["d"], dtype=dtype, pin_memory=cuda) for h in hooks}
    row = 0
    for start in range(0, n, batch_contexts):
        batch = tokens[start:start + batch_contexts]
        # row indices are computed on the host, so selecting rows never makes the GPU sync
        index = keep[start:start + batch_contexts].reshape(-1).nonzero().squeeze(1)
        select = None if len(index) == batch.numel() else index.to(model.device, non_blocking=cuda)
        acts = model.capture(batch, hooks)
        for h in hooks:
            flat = acts[h].reshape(-1, acts[h].shape[-1])
            flat = flat if select is None else flat.index_select(0, select)
            out[h][row:row + len(index)].copy_(flat.to(dtype), non_blocking=cuda)
        row += len(index)
    event = None
    if cuda:
        event = torch.cuda.Event()
        event.record()
    positions = torch.arange(length, dtype=torch.int32).expand(n, length)
    sequences = torch.arange(first, first + n, dtype=torch.int64)[:, None].expand(n, length)
    out["token_ids"] = tokens.to(torch.int32).reshape(-1)[keep.reshape(-1)]
    out["positions"] = positions.reshape(-1)[keep.reshape(-1)].contiguous()
    out["sequence_ids"] = sequences.reshape(-1)[keep.reshape(-1)].contiguous()
    return out, event


class _ShardWriter:
    """Background thread: checks, summarises and atomically writes shards in submission order."""

    def __init__(self, out: Path, on_written):
        self.out, self.on_written = out, on_written
        self.jobs: queue.Queue = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="shard-writer", daemon=True)
        self.thread.start()

    def submit(self, index: int, payload) -> None:
        self._raise_if_failed()
        self.jobs.put((index, payload))

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            if self.error is None:
                try:
                    self._write(*job)
                except BaseException as err:  # re-raised in the harvesting thread
                    self.error = err

    def _write(self, index: int, payload) -> None:
        tensors, event = payload
        if event is not None:
            event.synchronize()
        name = st.shard_name(index)
        hooks = [k for k in tensors if k.startswith("blocks.") or k.startswith("hook_")]
        for h in hooks:
            tensors.update(_shard_stats(h, tensors[h], name))
        data = safetensors_bytes(tensors)
        st.atomic_write_bytes(self.out / name, data)
        self.on_written({"index": index, "file": name, "n_tokens": len(tensors["token_ids"]),
                         "bytes": len(data), "sha256": st.sha256_bytes(data)})


def _shard_stats(hook: str, acts: torch.Tensor, file: str) -> dict[str, torch.Tensor]:
    """Per-shard sums for the manifest statistics; refuses non-finite activations.

    Sums run in float32 (pairwise, ~1e-7 relative over a shard) and are kept in float64
    across shards. A NaN or inf anywhere makes the column sums or the sum of squared norms
    non-finite, so checking those replaces a separate pass over the shard (12× less CPU time
    than float64 sums plus ``isfinite`` over every value, and it runs beside the forward pass).
    """
    x = acts.float()
    norms = torch.linalg.vector_norm(x, dim=-1)
    total, sum_sq_norm = x.sum(0).double(), norms.double().square().sum()
    if not (torch.isfinite(total).all() and torch.isfinite(sum_sq_norm)):
        raise ToolkitError(f"activations of {hook} contain NaN or inf in {file}; the model produced "
                           "non-finite values, harvest with --model-dtype float32")
    return {f"stats.{hook}.sum": total,
            f"stats.{hook}.sum_norm": norms.sum(dtype=torch.float64).reshape(1),
            f"stats.{hook}.sum_sq_norm": sum_sq_norm.reshape(1)}
