"""The document stream: a seeded mixture of every generator in this package."""

from __future__ import annotations

import random
from collections.abc import Iterator

from activations.corpus import stories
from activations.corpus.agreement import agreement_document
from activations.corpus.dialogue import dialogue
from activations.corpus.ioi import ioi_document
from activations.corpus.lists import repeated_list
from activations.corpus.misc import misc_document
from activations.corpus.people import profile
from activations.corpus.names import names_for
from activations.corpus.world import world_document

# kind -> share of documents
MIXTURE: dict[str, float] = {"ioi": 0.3, "agreement": 0.15, "profile": 0.15, "world": 0.1,
                             "dialogue": 0.08, "lists": 0.08, "vignette": 0.06, "story": 0.04,
                             "misc": 0.04}


def _document(kind: str, rng: random.Random, split: str) -> str:
    if kind == "ioi":
        return ioi_document(rng, split)
    if kind == "agreement":
        return agreement_document(rng, split)
    if kind == "world":
        return world_document(rng, split)
    if kind == "dialogue":
        return dialogue(rng, split)
    names = names_for(split, "other")
    if kind == "vignette":
        return stories.vignettes(rng, names)
    if kind == "story":
        return stories.story(rng, names)
    if kind == "lists":
        return repeated_list(rng, names)
    if kind == "profile":
        return profile(rng, names)
    return misc_document(rng, names)


def iter_tagged_documents(seed: int = 0, split: str = "train") -> Iterator[tuple[str, str]]:
    """Yield (kind, document) forever; kinds are the keys of ``MIXTURE``."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', not {split!r}")
    rng = random.Random(f"tinyworld:{seed}:{split}")
    kinds, weights = list(MIXTURE), list(MIXTURE.values())
    while True:
        kind = rng.choices(kinds, weights)[0]
        yield kind, _document(kind, rng, split)


def iter_documents(seed: int = 0, split: str = "train") -> Iterator[str]:
    """Yield documents forever; the same ``seed`` and ``split`` give the same stream."""
    for _, doc in iter_tagged_documents(seed, split):
        yield doc
