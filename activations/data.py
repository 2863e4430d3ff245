"""Token data: text sources, tokenised and packed into fixed-length contexts.

A dataset is named by one string:

- ``"tinyworld"``: the embedded generator (``activations.corpus``), infinite;
- a local file: ``.txt`` (documents separated by blank lines), ``.jsonl`` (one JSON object
  per line, text in ``text_field``) or ``.parquet`` (column ``text_field``);
- a local folder: every such file in it and its subfolders (a downloaded hub dataset's
  ``data/*.parquet`` shards, say), read in a seeded file order each epoch;
- anything else: a HuggingFace dataset name (``Skylion007/openwebtext``,
  ``NeelNanda/pile-10k``), streamed.

Contexts are ``context`` tokens long and start with BOS; documents are joined with the
tokenizer's end-of-text token. The order is a deterministic function of ``seed``: local
files and hub datasets are shuffled document-wise with a seeded buffer, and finite sources
repeat with a fresh order per epoch.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path

import torch

from activations.errors import ToolkitError

EMBEDDED = "tinyworld"
LOCAL_SUFFIXES = (".txt", ".jsonl", ".parquet")
_SHUFFLE_BUFFER = 10_000
_TOKENIZE_BATCH = 256


@dataclass(frozen=True)
class DatasetSpec:
    """Everything that fixes a token stream; recorded in the activation store's manifest."""

    name: str = EMBEDDED
    seed: int = 0
    context: int = 128
    text_field: str = "text"
    split: str = "train"

    def to_json(self) -> dict:
        return asdict(self)


def iter_texts(spec: DatasetSpec) -> Iterator[str]:
    """Yield documents of the dataset in the seeded order, forever."""
    if spec.name == EMBEDDED:
        from activations.corpus import iter_documents
        yield from iter_documents(seed=spec.seed, split=spec.split)
        return
    path = Path(spec.name).expanduser()
    if path.is_dir():
        files = _folder_files(path)
        yield from _repeat_epochs(lambda rng: (doc for f in _shuffled(files, rng)
                                               for doc in _read_local(f, spec.text_field)), spec.seed, str(path))
        return
    if path.suffix in LOCAL_SUFFIXES or path.exists():
        yield from _repeat_epochs(lambda rng: _read_local(path, spec.text_field), spec.seed, str(path))
        return
    yield from _repeat_epochs(lambda rng: _stream_hub(spec), spec.seed, spec.name)


def _folder_files(folder: Path) -> list[Path]:
    """The dataset files in ``folder`` and its subfolders (hidden ones left out), sorted."""
    files = sorted(p for p in folder.rglob("*") if p.suffix in LOCAL_SUFFIXES and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise ToolkitError(f"dataset folder '{folder}' holds no .txt, .jsonl or .parquet file; pass a folder of "
                           "them, one such file, or a HuggingFace dataset name")
    return files


def _shuffled(files: list[Path], rng: random.Random) -> list[Path]:
    order = list(files)
    rng.shuffle(order)
    return order


def _repeat_epochs(open_docs, seed: int, label: str) -> Iterator[str]:
    """``open_docs(rng)`` once per epoch, shuffled with a buffer; ``rng`` is the epoch's own."""
    epoch = 0
    while True:
        n = 0
        for doc in _buffer_shuffle(open_docs(random.Random(f"{seed}:{epoch}:files")),
                                   random.Random(f"{seed}:{epoch}")):
            n += 1
            yield doc
        if n == 0:
            raise ToolkitError(f"dataset '{label}' holds no text documents; check the file and --text-field")
        epoch += 1


def _buffer_shuffle(docs: Iterator[str], rng: random.Random) -> Iterator[str]:
    """Shuffle a stream with a bounded buffer: deterministic for a given ``rng`` seed."""
    buffer: list[str] = []
    for doc in docs:
        if len(buffer) < _SHUFFLE_BUFFER:
            buffer.append(doc)
            continue
        i = rng.randrange(len(buffer))
        yield buffer[i]
        buffer[i] = doc
    rng.shuffle(buffer)
    yield from buffer


def _read_local(path: Path, text_field: str) -> Iterator[str]:
    if not path.is_file():
        raise ToolkitError(f"dataset file '{path}' does not exist; pass an existing .txt, .jsonl or .parquet file "
                           f"or a folder of them, '{EMBEDDED}', or a HuggingFace dataset name")
    if path.suffix not in LOCAL_SUFFIXES:
        raise ToolkitError(f"dataset file '{path}' has an unsupported type; use .txt, .jsonl or .parquet")
    try:
        if path.suffix == ".txt":
            yield from _txt_documents(path)
        elif path.suffix == ".jsonl":
            yield from _jsonl_documents(path, text_field)
        else:
            yield from _parquet_documents(path, text_field)
    except UnicodeDecodeError as err:
        raise ToolkitError(f"dataset file '{path}' is not UTF-8 text ({err.reason}); "
                           "convert it to UTF-8") from err


def _txt_documents(path: Path) -> Iterator[str]:
    lines: list[str] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                lines.append(line.rstrip("\n"))
            elif lines:
                yield "\n".join(lines)
                lines = []
    if lines:
        yield "\n".join(lines)


def _jsonl_documents(path: Path, text_field: str) -> Iterator[str]:
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                text = json.loads(line)[text_field]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ToolkitError(f"{path}:{number} is not a JSON object with a '{text_field}' "
                                   "field; fix the line or pass --text-field") from err
            if text:
                yield str(text)


def _parquet_documents(path: Path, text_field: str) -> Iterator[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    try:
        table = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise ToolkitError(f"dataset file '{path}' is not a readable parquet file ({err}); "
                           "check the file or pass a .txt or .jsonl file") from err
    if text_field not in table.schema_arrow.names:
        raise ToolkitError(f"{path} has no column '{text_field}' (columns: "
                           f"{', '.join(table.schema_arrow.names)}); pass --text-field")
    for batch in table.iter_batches(columns=[text_field], batch_size=1024):
        yield from (str(t) for t in batch.column(0).to_pylist() if t)


def _stream_hub(spec: DatasetSpec) -> Iterator[str]:
    import datasets
    try:
        stream = datasets.load_dataset(spec.name, split=spec.split, streaming=True)
    except Exception as err:  # datasets raises many types for unreachable / unknown names
        raise ToolkitError(f"cannot open dataset '{spec.name}': it is not '{EMBEDDED}', not a local "
                           f".txt/.jsonl/.parquet file, and the HuggingFace hub could not serve it "
                           f"({type(err).__name__}); check the name and your connection") from err
    for example in stream:
        if spec.text_field not in example:
            raise ToolkitError(f"dataset '{spec.name}' has no field '{spec.text_field}' (fields: "
                               f"{', '.join(example)}); pass --text-field")
        if example[spec.text_field]:
            yield example[spec.text_field]


class TokenData:
    """Packed token contexts [context] from a dataset, each starting with BOS.

    Args:
        spec: the dataset, seed and context length (or pass ``dataset=...`` etc.).
        tokenizer: a HuggingFace tokenizer.
    """

    def __init__(self, dataset: str | DatasetSpec = EMBEDDED, tokenizer=None, context: int = 128,
                 seed: int = 0, text_field: str = "text", split: str = "train"):
        self.spec = dataset if isinstance(dataset, DatasetSpec) else DatasetSpec(
            dataset, seed, context, text_field, split)
        if self.spec.context < 2:
            raise ToolkitError(f"context length {self.spec.context} is too short; use at least 2")
        self.tokenizer = tokenizer
        eos = tokenizer.eos_token_id
        self.bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
        self.separator = eos if eos is not None else self.bos
        if self.bos is None:
            raise ToolkitError("the tokenizer has neither a BOS nor an EOS token; set one before harvesting")

    def iter_contexts(self) -> Iterator[list[int]]:
        """Yield token-id lists of length ``context``, forever, in the seeded order."""
        body = self.spec.context - 1
        buffer: list[int] = []
        texts = iter_texts(self.spec)
        while True:
            batch = list(islice(texts, _TOKENIZE_BATCH))
            for ids in self.tokenizer(batch, add_special_tokens=False)["input_ids"]:
                buffer.extend(ids)
                buffer.append(self.separator)
            while len(buffer) >= body:
                yield [self.bos] + buffer[:body]
                del buffer[:body]

    def contexts(self, n: int, start: int = 0) -> torch.Tensor:
        """Contexts ``start .. start+n-1`` of the stream as a LongTensor [n, context]."""
        rows = list(islice(self.iter_contexts(), start, start + n))
        return torch.tensor(rows, dtype=torch.long)
