"""The on-disk activation store: crash-safe writing, verified memory-mapped reading.

Layout (docs/activations.md describes every field)::

    acts/
      manifest.json               the plan (model, hooks, dtype, dataset, shard size) and the
                                  shards written so far [{index, file, n_tokens, sha256}];
                                  per-hook statistics once complete
      shard-000000.safetensors    one tensor per hook [n, d], plus token_ids [n] int32,
                                  sequence_ids [n] int64, positions [n] int32, and per-shard
                                  statistics stats.<hook>.{sum [d], sum_norm [1], sum_sq_norm [1]}

Shard ``i`` always holds contexts ``i·C .. (i+1)·C−1`` of the dataset's seeded stream, so a
shard's bytes depend only on the plan and ``i``: resuming, or splitting the work across
ranks, gives the same files as one uninterrupted run.

Writes go to a temporary file, are fsynced and renamed, and only then recorded in the
manifest (also written atomically). Reading checks each shard's size and SHA-256 before use
and names the bad file when either is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import torch

from activations.errors import ToolkitError
from activations.source import batch_hooks, check_count

FORMAT = "sae-toolkit-activations"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
STORE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# The manifest fields that define the store's contents; resuming requires them all equal.
PLAN_FIELDS = ("format", "format_version", "model", "hooks", "dtype", "dataset", "exclude_bos",
               "contexts_per_shard", "n_contexts", "n_shards")
_ST_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
              "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "U8": torch.uint8}


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.safetensors"


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        handle = open(tmp, "wb")
    except OSError as err:  # name the file asked for, not its temporary neighbour
        raise OSError(err.errno, err.strerror, str(path)) from None
    try:
        with handle as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # an error (not a kill) leaves no partial file beside the old one
        raise
    fsync_dir(path.parent)


def write_json(path: Path, obj: dict) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1) + "\n").encode())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(folder: str | Path) -> dict:
    """Load and sanity-check ``manifest.json``; one-line errors for a missing, foreign or damaged one."""
    if Path(folder).is_file():
        raise ToolkitError(f"'{folder}' is a file; pass the activation store folder that holds "
                           f"{MANIFEST} ('{Path(folder).parent}')")
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ToolkitError(f"no {MANIFEST} in '{folder}': it is not an activation store; "
                           "create one with `sae harvest --out DIR`")
    manifest = _read_json_object(path, "the store is damaged, harvest it again")
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise ToolkitError(f"'{path}' is not a version-{FORMAT_VERSION} {FORMAT} manifest; harvest the store again")
    problem = manifest_problem(manifest)
    if problem:
        raise ToolkitError(f"'{path}' is damaged: {problem}; harvest the store again")
    return manifest


def read_journal(path: Path) -> list[dict]:
    """The shard records of a rank's ``progress-rank{r}.json``; one-line errors for a damaged one."""
    fix = "delete it and run `sae harvest ... --resume`"
    journal = _read_json_object(path, fix)
    problem = _fields_problem(journal, {"shards": list}) or _records_problem(journal["shards"])
    if problem:
        raise ToolkitError(f"'{path}' is damaged: {problem}; {fix}")
    return journal["shards"]


def _read_json_object(path: Path, fix: str) -> dict:
    """The JSON object in ``path``; a one-line error ending in ``fix`` when it is not one."""
    try:
        obj = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ToolkitError(f"'{path}' is not valid JSON ({err}); {fix}") from err
    if not isinstance(obj, dict):
        raise ToolkitError(f"'{path}' holds {_JSON_NAMES[type(obj)]}, not a JSON object; {fix}")
    return obj


_NUMBER = (int, float)
_JSON_NAMES = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number",
               bool: "true or false", type(None): "null"}
_MANIFEST_FIELDS = {"model": str, "hooks": dict, "dtype": str, "dataset": dict, "exclude_bos": bool,
                    "contexts_per_shard": int, "n_contexts": int, "n_shards": int, "complete": bool,
                    "shards": list}
_DATASET_FIELDS = {"name": str, "seed": int, "context": int}
_HOOK_FIELDS = {"d": int, "basis": str}
_RECORD_FIELDS = {"index": int, "file": str, "n_tokens": int, "bytes": int, "sha256": str}
_STATS_FIELDS = {"mean": list, "mean_norm": _NUMBER, "mean_sq_norm": _NUMBER, "variance": _NUMBER}


def manifest_problem(manifest: dict) -> str | None:
    """What is wrong with the shape of a manifest (the first missing or mistyped field), or None."""
    problem = (_fields_problem(manifest, _MANIFEST_FIELDS)
               or _fields_problem(manifest["dataset"], _DATASET_FIELDS, "dataset.")
               or next((p for h, info in manifest["hooks"].items()
                        if (p := _fields_problem(info, _HOOK_FIELDS, f"hooks.{h}."))), None)
               or _records_problem(manifest["shards"]))
    if problem:
        return problem
    if manifest["dtype"] not in STORE_DTYPES:
        return f"field 'dtype' is '{manifest['dtype']}', not one of {', '.join(STORE_DTYPES)}"
    if not manifest["complete"]:
        return None
    stats = manifest.get("stats")
    return (_fields_problem(manifest, {"total_tokens": int, "stats": dict})
            or next((p for h in manifest["hooks"]
                     if (p := _fields_problem(stats.get(h), _STATS_FIELDS, f"stats.{h}."))), None))


def _records_problem(records: list) -> str | None:
    return next((p for i, r in enumerate(records) if (p := _fields_problem(r, _RECORD_FIELDS, f"shards[{i}]."))),
                None)


def _fields_problem(obj, fields: dict, prefix: str = "") -> str | None:
    """The first of ``fields`` (name: type) that ``obj`` lacks or holds with another type, described."""
    if not isinstance(obj, dict):
        return f"field '{prefix.rstrip('.')}' is missing or not an object"
    for name, kind in fields.items():
        value = obj.get(name)
        if value is None:
            return f"field '{prefix}{name}' is missing"
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            expected = "a number" if kind is _NUMBER else _JSON_NAMES[kind]
            return f"field '{prefix}{name}' is {_JSON_NAMES[type(value)]}, not {expected}"
    return None


def plan_of(manifest: dict) -> dict:
    return {k: manifest.get(k) for k in PLAN_FIELDS}


def mmap_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Memory-map a safetensors file: tensors are views of the page cache, nothing is copied.

    Raises ToolkitError naming the file when its header is unreadable or the file is truncated.
    """
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            if header_len > size - 8:
                raise ValueError("header longer than file")
            header = json.loads(f.read(header_len))
        header.pop("__metadata__", None)
        end = max((info["data_offsets"][1] for info in header.values()), default=0)
    except (struct.error, ValueError, KeyError, TypeError) as err:
        raise ToolkitError(f"shard '{path}' is corrupt (unreadable header); harvest again with --resume "
                           "after deleting it") from err
    if 8 + header_len + end != size:
        raise ToolkitError(f"shard '{path}' is truncated or padded ({size} bytes, header says "
                           f"{8 + header_len + end}); delete it and run `sae harvest --resume`")
    raw = torch.from_file(str(path), shared=False, size=size, dtype=torch.uint8)
    base = 8 + header_len
    tensors = {}
    for name, info in header.items():
        start, stop = info["data_offsets"]
        chunk = raw[base + start: base + stop]
        dtype = _ST_DTYPES.get(info["dtype"])
        if dtype is None:
            raise ToolkitError(f"shard '{path}' holds tensor '{name}' of dtype {info['dtype']}, which no store "
                               "writes; the file is not a shard, delete it and run `sae harvest ... --resume`")
        try:
            view = chunk.view(dtype)
        except RuntimeError:  # unaligned: fall back to a copy
            view = chunk.clone().view(dtype)
        tensors[name] = view.reshape(info["shape"])
    return tensors


class ActivationStore:
    """Read access to a complete store: memory-mapped shards and random row access.

    Args:
        folder: the store directory.
        verify: check each shard's SHA-256 against the manifest the first time it is opened.
    """

    def __init__(self, folder: str | Path, verify: bool = True):
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        if not self.manifest.get("complete"):
            done = len(self.manifest.get("shards", []))
            raise ToolkitError(f"store '{self.folder}' is incomplete ({done} of {self.manifest['n_shards']} "
                               "shards); finish it with `sae harvest ... --resume`")
        self.verify = verify
        self.shards = sorted(self.manifest["shards"], key=lambda s: s["index"])
        self.hooks = list(self.manifest["hooks"])
        self.widths = {h: info["d"] for h, info in self.manifest["hooks"].items()}
        self.model_name = self.manifest["model"]
        stats = self.manifest["stats"]
        self.mean_norm = {h: stats[h]["mean_norm"] for h in self.hooks}
        self.n_tokens = sum(s["n_tokens"] for s in self.shards)
        self._offsets = torch.tensor([0] + [s["n_tokens"] for s in self.shards]).cumsum(0)
        self._verified: set[int] = set()

    def check_model(self, model_name: str) -> None:
        """Refuse to serve activations made from a different model (aliases of one model, such
        as SAELens's "gpt2-small" for a store of "gpt2", are the same model)."""
        from activations.models import same_model
        if not same_model(model_name, self.model_name):
            raise ToolkitError(f"store '{self.folder}' was harvested from model '{self.model_name}', "
                               f"not '{model_name}'; harvest a store for '{model_name}'")

    def check_hooks(self, hooks: list[str]) -> None:
        missing = [h for h in hooks if h not in self.widths]
        if missing:
            raise ToolkitError(f"store '{self.folder}' has no hook '{missing[0]}'; it holds: {', '.join(self.hooks)}")

    def mean(self, hook: str) -> torch.Tensor:
        """Mean activation vector [d] (float32) over the whole store."""
        self.check_hooks([hook])
        return torch.tensor(self.manifest["stats"][hook]["mean"], dtype=torch.float32)

    def shard(self, position: int) -> dict[str, torch.Tensor]:
        """Memory-mapped tensors of the ``position``-th shard (by index order), verified once."""
        record = self.shards[position]
        path = self.folder / record["file"]
        if not path.is_file():
            raise ToolkitError(f"shard '{path}' listed in the manifest is missing; run `sae harvest --resume`")
        tensors = mmap_safetensors(path)
        if self.verify and position not in self._verified:
            if sha256_file(path) != record["sha256"]:
                raise ToolkitError(f"shard '{path}' is corrupt (SHA-256 differs from the manifest); "
                                   "delete it and run `sae harvest ... --resume`")
            self._verified.add(position)
        return tensors

    def rows(self, hook: str, index: torch.Tensor) -> torch.Tensor:
        """Rows ``index`` [n] (global token positions) of ``hook`` as float32 [n, d]."""
        self.check_hooks([hook])
        index = torch.as_tensor(index, dtype=torch.long)
        if index.numel() and (index.min() < 0 or index.max() >= self.n_tokens):
            raise ToolkitError(f"row index out of range for store '{self.folder}' with {self.n_tokens} tokens")
        out = torch.empty(len(index), self.widths[hook], dtype=torch.float32)
        shard_of = torch.searchsorted(self._offsets, index, right=True) - 1
        for position in shard_of.unique().tolist():
            mask = shard_of == position
            local = index[mask] - self._offsets[position]
            out[mask] = self.shard(position)[hook][local].float()
        return out

    def iter_shards(self, order: list[int] | None = None) -> Iterator[dict[str, torch.Tensor]]:
        for position in order if order is not None else range(len(self.shards)):
            yield self.shard(position)


class StoreSource:
    """``ActivationSource`` over an activation store: shuffled batches across shards.

    Each epoch visits the shards in a seeded random order, ``window`` shards at a time; the
    rows of a window are shuffled together, so memory holds at most ``window`` shards.
    """

    def __init__(self, folder: str | Path, window: int = 4, verify: bool = True):
        self.store = ActivationStore(folder, verify=verify)
        self.model_name = self.store.model_name
        self.hooks = self.store.hooks
        self.widths = self.store.widths
        self.mean_norm = self.store.mean_norm
        self.window = max(1, window)

    def batches(self, batch_size: int, hooks: list[str] | None = None, seed: int = 0,
                epochs: int | None = None) -> Iterator[dict[str, torch.Tensor]]:
        if epochs is not None:
            check_count("epochs", epochs)
        most = None if epochs is None else self.store.n_tokens * epochs  # a finite read holds this many rows
        check_count("batch_size", batch_size, most, f"lower it, or read more than {epochs} epoch(s)")
        hooks = batch_hooks(hooks, self.hooks)
        n_shards = len(self.store.shards)
        epoch = 0
        carry: dict[str, torch.Tensor] | None = None
        while epochs is None or epoch < epochs:
            gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            order = torch.randperm(n_shards, generator=gen).tolist()
            for start in range(0, n_shards, self.window):
                window = self._load_window(order[start:start + self.window], hooks)
                perm = torch.randperm(len(window["token_ids"]), generator=gen)
                window = {k: v[perm] for k, v in window.items()}
                if carry is not None:
                    window = {k: torch.cat([carry[k], window[k]]) for k in window}
                n_full = len(window["token_ids"]) // batch_size * batch_size
                for i in range(0, n_full, batch_size):
                    yield {k: v[i:i + batch_size] for k, v in window.items()}
                carry = {k: v[n_full:] for k, v in window.items()}
            epoch += 1

    def _load_window(self, positions: list[int], hooks: list[str]) -> dict[str, torch.Tensor]:
        parts = [self.store.shard(p) for p in positions]
        window = {h: torch.cat([part[h] for part in parts]).float() for h in hooks}
        for h in hooks:
            if not torch.isfinite(window[h]).all():
                files = ", ".join(self.store.shards[p]["file"] for p in positions)
                raise ToolkitError(f"activations of {h} contain NaN or inf in one of {files}; harvest again "
                                   "in float32 (--dtype float32)")
        for key in ("token_ids", "sequence_ids", "positions"):
            window[key] = torch.cat([part[key] for part in parts]).long()
        return window
