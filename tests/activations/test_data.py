import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from transformers import AutoTokenizer

from activations.data import DatasetSpec, TokenData, iter_texts
from activations.errors import ToolkitError

DOCS = [f"document number {i} says the cat sat {i % 7} times" for i in range(40)]


def _write_all(folder):
    txt = folder / "d.txt"
    txt.write_text("\n\n".join(DOCS) + "\n")
    jsonl = folder / "d.jsonl"
    jsonl.write_text("".join(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(DOCS)))
    parquet = folder / "d.parquet"
    pq.write_table(pa.table({"text": DOCS}), parquet)
    return [txt, jsonl, parquet]


def test_local_files_yield_every_document_once_per_epoch(tmp_path):
    for path in _write_all(tmp_path):
        stream = iter_texts(DatasetSpec(str(path), seed=3))
        first_epoch = [next(stream) for _ in DOCS]
        assert sorted(first_epoch) == sorted(DOCS), path.suffix
        assert first_epoch != DOCS  # shuffled
        second_epoch = [next(stream) for _ in DOCS]
        assert sorted(second_epoch) == sorted(DOCS) and second_epoch != first_epoch



def test_a_folder_serves_every_dataset_file_in_it(tmp_path):
    """A folder (a downloaded hub dataset's shards, say) is every .txt/.jsonl/.parquet file in
    it and its subfolders, each document once per epoch, in a seeded order; hidden folders and
    other files are left out."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.txt").write_text("\n\n".join(DOCS[:15]) + "\n")
    (tmp_path / "b" / "deep").mkdir(parents=True)
    (tmp_path / "b" / "deep" / "two.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS[15:30]))
    pq.write_table(pa.table({"text": DOCS[30:]}), tmp_path / "three.parquet")
    (tmp_path / "README.md").write_text("not a document")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "stale.txt").write_text("a hidden file's text")
    stream = iter_texts(DatasetSpec(str(tmp_path), seed=3))
    first, second = [next(stream) for _ in DOCS], [next(stream) for _ in DOCS]
    assert sorted(first) == sorted(DOCS) == sorted(second) and first != second
    again = iter_texts(DatasetSpec(str(tmp_path), seed=3))
    assert [next(again) for _ in DOCS] == first
    other = iter_texts(DatasetSpec(str(tmp_path), seed=4))
    assert [next(other) for _ in DOCS] != first
    (tmp_path / "empty" / ".git").mkdir(parents=True)
    (tmp_path / "empty" / ".git" / "x.txt").write_text("hidden")
    with pytest.raises(ToolkitError, match="dataset folder '.*empty' holds no .txt, .jsonl or .parquet file"):
        next(iter_texts(DatasetSpec(str(tmp_path / "empty"))))

def test_order_is_fixed_by_seed(tmp_path):
    path = _write_all(tmp_path)[0]
    take = lambda seed: [next(s) for s in [iter_texts(DatasetSpec(str(path), seed=seed))] for _ in range(20)]
    assert take(1) == take(1)
    assert take(1) != take(2)


def test_contexts_are_packed_with_bos(tmp_path, toy_gpt2_dir):
    tokenizer = AutoTokenizer.from_pretrained(toy_gpt2_dir)
    path = _write_all(tmp_path)[1]
    data = TokenData(str(path), tokenizer, context=16, seed=0)
    block = data.contexts(30)
    assert block.shape == (30, 16)
    assert (block[:, 0] == tokenizer.bos_token_id).all()
    # the bodies, concatenated, are the documents' tokens joined by end-of-text, in stream order
    body = block[:, 1:].reshape(-1).tolist()
    stream = iter_texts(DatasetSpec(str(path), seed=0))
    expected = []
    while len(expected) < len(body):
        expected += tokenizer.encode(next(stream)) + [tokenizer.eos_token_id]
    assert body == expected[:len(body)]
    assert data.contexts(5, start=10).tolist() == block[10:15].tolist()


def test_bad_sources_give_one_line_errors(tmp_path):
    with pytest.raises(ToolkitError, match="does not exist"):
        next(iter_texts(DatasetSpec(str(tmp_path / "missing.jsonl"))))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"body": "x"}\n')
    with pytest.raises(ToolkitError, match=r"bad.jsonl:1 .*'text' field"):
        next(iter_texts(DatasetSpec(str(bad))))
    with pytest.raises(ToolkitError, match="no column 'content'"):
        next(iter_texts(DatasetSpec(str(_write_all(tmp_path)[2]), text_field="content")))


def test_unreachable_hub_dataset_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(ToolkitError, match="cannot open dataset 'nobody/no-such-dataset'"):
        next(iter_texts(DatasetSpec("nobody/no-such-dataset")))
