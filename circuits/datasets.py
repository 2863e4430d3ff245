"""Behaviour datasets for circuit discovery, in Marks et al. 2024's clean/patch form.

One example is a JSON object::

    {"clean_prefix": "The boys near the dog", "clean_answer": " are",
     "patch_prefix": "The boy near the dog",  "patch_answer": " is"}

The behaviour is "prefer ``clean_answer`` after ``clean_prefix``"; the patch prefix is the
counterfactual whose own answer is ``patch_answer``. A user dataset is a ``.json`` file
holding a list of such objects or a ``.jsonl`` file with one object per line. Built-in
datasets come from the embedded tinyworld generator: ``ioi``, ``ioi_abc``, ``sva_simple``,
``sva_pp`` (agreement across a prepositional phrase) and ``sva_rc`` (across a relative clause).
``ioi``'s patch prompt repeats the other name ("A and B ..., A gave ... to" against "..., B
gave ... to"), so both prompts hold a repeat and the circuit shows which name is repeated;
``ioi_abc``'s patch prompt has a third name instead ("..., C gave ... to", Wang et al. 2022's
ABC prompts; its patch answer is the clean subject, so m(patch) measures no preference), so
the circuit shows the repeat itself.

``tokenize_pairs`` turns examples into a ``PromptBatch``: prompts are right-padded (a causal
model never looks right, so padding changes nothing at real positions), each answer must be
one token, and clean and patch prompts must have the same token length (so positions line up
for patching), and each prompt must fit in the model's context; examples that break these
rules are dropped (``PromptBatch.dropped`` counts them by reason; ``sae circuit`` prints it),
and none left is an error.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from activations.errors import ToolkitError
from activations.source import check_count

FIELDS = ("clean_prefix", "clean_answer", "patch_prefix", "patch_answer")
BUILTIN = ("ioi", "ioi_abc", "sva_simple", "sva_pp", "sva_rc")


def builtin_examples(name: str, n: int, seed: int = 0, split: str = "heldout") -> list[dict]:
    """``n`` examples of a built-in behaviour; ``split`` is the generator's template split."""
    from activations.corpus import ioi_examples, sva_examples
    if name == "ioi":
        return ioi_examples(n, seed=seed, split=split)
    if name == "ioi_abc":
        return [_abc(example, seed, i, split) for i, example in enumerate(ioi_examples(n, seed=seed, split=split))]
    if name.startswith("sva_") and name[4:] in ("simple", "pp", "rc"):
        return sva_examples(n, seed=seed, split=split, kind=name[4:])
    raise ToolkitError(f"unknown dataset '{name}'; use one of {', '.join(BUILTIN)} or a .json/.jsonl file")


def _abc(example: dict, seed: int, index: int, split: str) -> dict:
    """An IOI example whose patch prompt has a third name where the clean one repeats S."""
    from activations.corpus.names import HELDOUT_NAMES, TRAIN_NAMES
    clean, patch = example["clean_prefix"].split(" "), example["patch_prefix"].split(" ")
    (s2,) = [i for i, (a, b) in enumerate(zip(clean, patch)) if a != b]
    subject = clean[s2].rstrip(",.")
    names = [name for name in (HELDOUT_NAMES if split == "heldout" else TRAIN_NAMES)
             if name not in example["clean_prefix"]]
    third = random.Random(f"abc:{seed}:{index}").choice(names)
    patch = clean[:s2] + [clean[s2].replace(subject, third)] + clean[s2 + 1:]
    return {"clean_prefix": example["clean_prefix"], "clean_answer": example["clean_answer"],
            "patch_prefix": " ".join(patch), "patch_answer": " " + subject}


def read_examples(path: str | Path) -> list[dict]:
    """Examples from a user ``.json`` (a list) or ``.jsonl`` (one object a line) file, checked."""
    path = Path(path)
    if not path.is_file():
        raise ToolkitError(f"dataset file '{path}' {'is a folder' if path.is_dir() else 'does not exist'}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ToolkitError(f"dataset file '{path}' is not UTF-8 text; convert it to UTF-8") from None
    if path.suffix == ".jsonl":
        return _checked_rows(path, [_json_line(path, number, line)
                                    for number, line in enumerate(text.splitlines(), 1) if line.strip()])
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as err:
        raise ToolkitError(f"dataset file '{path}' is not valid JSON: {err}") from err
    return _checked_rows(path, rows)


def _json_line(path: Path, number: int, line: str):
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise ToolkitError(f"line {number} of dataset file '{path}' is not valid JSON: {err.msg} (column "
                           f"{err.colno})") from None


def _checked_rows(path: Path, rows) -> list[dict]:
    if not isinstance(rows, list) or not rows:
        raise ToolkitError(f"dataset file '{path}' must hold a non-empty list of examples")
    for i, row in enumerate(rows):
        missing = [f for f in FIELDS if not isinstance(row, dict) or not isinstance(row.get(f), str)]
        if missing:
            raise ToolkitError(f"example {i} of '{path}' lacks string field(s) {', '.join(missing)}")
    return rows


def load_examples(name_or_path: str, n: int = 64, seed: int = 0, split: str = "heldout") -> list[dict]:
    """A built-in dataset by name, or a user file (its first ``n`` examples)."""
    check_count("n", n)
    if name_or_path in BUILTIN:
        return builtin_examples(name_or_path, n, seed, split)
    if name_or_path.endswith((".json", ".jsonl")):
        return read_examples(name_or_path)[:n]
    raise ToolkitError(f"unknown dataset '{name_or_path}'; use one of {', '.join(BUILTIN)} or a .json/.jsonl file")


def train_test_split(examples: list[dict], test_fraction: float = 0.5, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """A seeded shuffle cut into (train, test); discovery uses train, evaluation test. A train
    example that repeats a test example's prompts (the generator can draw one twice) is
    dropped, so that the test half stays held out."""
    if not 0 < test_fraction < 1 or len(examples) < 2:
        raise ToolkitError("a train/test split needs at least two examples and 0 < test fraction < 1")
    order = list(range(len(examples)))
    random.Random(f"split:{seed}").shuffle(order)
    n_test = max(1, min(len(examples) - 1, round(len(examples) * test_fraction)))
    test = [examples[i] for i in order[:n_test]]
    seen = {(e["clean_prefix"], e["patch_prefix"]) for e in test}
    train = [examples[i] for i in order[n_test:] if (examples[i]["clean_prefix"], examples[i]["patch_prefix"]) not in seen]
    if not train:
        raise ToolkitError("every discovery example repeats a held-out one; draw more examples")
    return train, test


@dataclass
class PromptBatch:
    """Tokenised clean/patch pairs.

    clean, patch: [N, T] token ids, right-padded; last: [N] index of each prompt's final token
    (the same for clean and patch); clean_answer, patch_answer: [N] answer token ids;
    ``dropped``: reason -> number of the given examples left out (see ``tokenize_pairs``).
    """

    clean: Tensor
    patch: Tensor
    last: Tensor
    clean_answer: Tensor
    patch_answer: Tensor
    examples: list[dict]
    dropped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.clean.shape[0]

    def real(self) -> Tensor:
        """[N, T] bool: the prompt's own positions (False on the right padding)."""
        return torch.arange(self.clean.shape[1])[None, :] <= self.last[:, None]

    def mean_over_prompts(self, x: Tensor) -> Tensor:
        """Per position, the mean of ``x`` [N, T, ...] over the prompts that reach that position
        (padding never enters; a position no prompt reaches gets 0)."""
        real = self.real().to(x.dtype)
        real = real.view(*real.shape, *([1] * (x.dim() - 2)))
        return (x * real).sum(0) / real.sum(0).clamp(min=1)

    def take(self, rows: slice | Tensor) -> PromptBatch:
        rows_list = range(len(self))[rows] if isinstance(rows, slice) else rows.tolist()
        return PromptBatch(self.clean[rows], self.patch[rows], self.last[rows], self.clean_answer[rows],
                           self.patch_answer[rows], [self.examples[i] for i in rows_list])


def _single_token(tokenizer, text: str) -> int | None:
    ids = tokenizer.encode(text)
    return ids[0] if len(ids) == 1 else None


def tokenize_pairs(model, examples: list[dict], width: int = 0, pad_id: int | None = None) -> PromptBatch:
    """Tokenise (BOS first) the usable examples into a ``PromptBatch`` of at least ``width``
    positions; see the module docstring."""
    tok, bos = model.tokenizer, model.bos_token_id
    rows, dropped = [], {}
    for ex in examples:
        clean = [bos] + tok.encode(ex["clean_prefix"])
        patch = [bos] + tok.encode(ex["patch_prefix"])
        answers = _single_token(tok, ex["clean_answer"]), _single_token(tok, ex["patch_answer"])
        reason = ("an answer is not one token" if None in answers else
                  "the two answers are the same token" if answers[0] == answers[1] else
                  "clean and patch prefixes differ in length" if len(clean) != len(patch) else
                  f"longer than the model's {model.dims.n_ctx}-token context" if len(clean) > model.dims.n_ctx else None)
        if reason:
            dropped[reason] = dropped.get(reason, 0) + 1
        else:
            rows.append((clean, patch, answers, ex))
    if not rows:
        raise ToolkitError("no usable example: answers must be single, different tokens and clean and patch "
                           "prefixes must tokenise to the same length, within the model's context")
    width = max(width, max(len(r[0]) for r in rows))
    pad = bos if pad_id is None else pad_id

    def padded(ids: list[int]) -> list[int]:
        return ids + [pad] * (width - len(ids))

    return PromptBatch(torch.tensor([padded(r[0]) for r in rows]), torch.tensor([padded(r[1]) for r in rows]),
                       torch.tensor([len(r[0]) - 1 for r in rows]), torch.tensor([r[2][0] for r in rows]),
                       torch.tensor([r[2][1] for r in rows]), [r[3] for r in rows], dropped)


# SHIFT (Marks et al. 2024, section 4): a profession task with gender as the spurious cue.
FEMALE_NAMES = ("Mary", "Anna", "Sarah", "Emma", "Lucy", "Kate", "Laura", "Alice", "Julia", "Lisa", "Rose", "Grace")
MALE_NAMES = ("John", "James", "Tom", "David", "Paul", "Mark", "Peter", "Adam", "Daniel", "Henry", "Jack", "Kevin")
PROFESSIONS = ("doctor", "farmer")
_BIOS = ("{N} is a {P}. {S} {D} every day with {p} friends.",
         "{N} works as a {P}, and {s} {D} with {p} friends.",
         "Everyone knows {N}. {S} is a {P} who {D} with {p} friends.",
         "{N} was a {P} for years. {S} {D} in the morning with {p} friends.")
# What each profession does: bios describe the work as well as naming it, as real ones do. With
# the profession in a single word, the ambiguous-set probe read gender alone (balanced accuracy
# exactly 0.50), leaving SHIFT nothing to recover. Each bio names the gender twice besides the
# name (a pronoun and a possessive), as real bios do: with the pronoun alone, the level-8
# model's ambiguous-set probe read profession more than gender (balanced accuracy 0.77, gender
# 0.73) and there was no spurious cue to remove; with both it is 0.68 / 0.82. (A second
# sentence, "She is happy.", gave 0.63 / 0.87, but SHIFT + retrain then reached 0.62 on one
# fixture seed of two: docs/circuits.md, SHIFT.)
_DUTIES = (("treats the sick", "visits the hospital", "gives medicine to patients", "works at the clinic"),
           ("feeds the cows", "works in the fields", "grows wheat and corn", "drives the tractor"))


def shift_examples(n: int, seed: int = 0, balanced: bool = False) -> list[dict]:
    """``n`` short bios {"text", "label": profession (0 doctor, 1 farmer), "cue": gender
    (0 female, 1 male)}. Ambiguous (``balanced=False``): label == cue on every example, so a
    probe may read either; balanced: the four (label, cue) groups equally often."""
    rng = random.Random(f"shift:{seed}:{balanced}")
    rows = []
    for i in range(n):
        label = i % 2
        cue = (i // 2) % 2 if balanced else label
        name = rng.choice(MALE_NAMES if cue else FEMALE_NAMES)
        subject = "He" if cue else "She"
        text = rng.choice(_BIOS).format(N=name, P=PROFESSIONS[label], S=subject, s=subject.lower(),
                                        p="his" if cue else "her", D=rng.choice(_DUTIES[label]))
        rows.append({"text": text, "label": label, "cue": cue})
    return rows
