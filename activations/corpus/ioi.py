"""Indirect object identification (IOI) sentences, as in Wang et al. 2022.

A template introduces two names ``{A}`` and ``{B}``, repeats one of them as the subject
``{S}``, and ends right before the indirect object: the name that was *not* repeated.
``HELDOUT_TEMPLATES`` never occur in the training stream; their names come from
``HELDOUT_NAMES`` (see ``names.py``).
"""

from __future__ import annotations

import random

from activations.corpus.lexicon import OBJECTS, PLACES
from activations.corpus.names import names_for

TRAIN_TEMPLATES: tuple[str, ...] = (
    "When {A} and {B} went to the {place}, {S} gave a {obj} to",
    "When {A} and {B} got a {obj} at the {place}, {S} decided to give it to",
    "While {A} and {B} were working at the {place}, {S} gave a {obj} to",
    "While {A} and {B} were walking to the {place}, {S} handed a {obj} to",
    "After {A} and {B} left the {place}, {S} gave a {obj} to",
    "Then, {A} and {B} went to the {place}. {S} gave a {obj} to",
    "Then, {A} and {B} had a long talk at the {place}. Afterwards, {S} said goodbye to",
    "Afterwards, {A} and {B} went to the {place}. {S} brought a {obj} for",
    "{A} and {B} found a {obj} at the {place}. {S} gave it to",
    "{A} and {B} were at the {place}. {S} showed the {obj} to",
    "At the {place}, {A} and {B} found a {obj}. Then {S} threw it to",
    "Yesterday, {A} and {B} visited the {place}, and {S} bought a {obj} for",
    "When {A} met {B} at the {place}, {S} gave a {obj} to",
    "Today {A} and {B} cleaned the {place}. Later {S} passed a {obj} to",
    "{A} and {B} had a lot of fun at the {place}. {S} sent a {obj} to",
    "Once {A} and {B} arrived at the {place}, {S} offered a {obj} to",
    "On the way to the {place}, {A} and {B} stopped, and {S} gave a {obj} to",
    "{A} and {B} were thinking about the {place}. {S} wanted to give a {obj} to",
    "Before {A} and {B} went home from the {place}, {S} lent a {obj} to",
    "{A} and {B} sat in the {place} for a while. Then {S} read a story to",
)

# Composed training prompts: an opener that introduces {A} and {B}, then an action of {S}
# towards the indirect object. Hundreds of combinations teach the model that IOI does not
# depend on the wording; none of them spells a held-out template (see the test).
OPENERS: tuple[str, ...] = (
    "When {A} and {B} went to the {place},", "While {A} and {B} were at the {place},",
    "After {A} and {B} arrived at the {place},", "Then, {A} and {B} went to the {place}.",
    "{A} and {B} were at the {place}.", "Later that day, {A} and {B} met at the {place}.",
    "In the morning, {A} and {B} walked to the {place}.", "{A} and {B} had lunch at the {place}, and then",
    "Because {A} and {B} were at the {place},", "The day {A} and {B} went to the {place},",
    "{A} and {B} stayed at the {place} all day. Later", "Once {A} and {B} got to the {place},",
)
ACTIONS: tuple[str, ...] = (
    "{S} gave a {obj} to", "{S} gave the {obj} to", "{S} handed a {obj} to", "{S} brought a {obj} for",
    "{S} showed the {obj} to", "{S} threw a {obj} to", "{S} sold a {obj} to", "{S} lent a {obj} to",
    "{S} offered a {obj} to", "{S} bought a {obj} for", "{S} made a {obj} for", "{S} said goodbye to",
    "{S} waved to", "{S} read a story to", "{S} sent a {obj} to", "{S} returned the {obj} to",
    "{S} wanted to give a {obj} to", "{S} explained the plan to", "{S} sang a song for",
    "{S} took a photo of", "{S} smiled at", "{S} talked to",
)

HELDOUT_TEMPLATES: tuple[str, ...] = (
    "After lunch, {A} and {B} went to the {place}. {S} handed the {obj} to",
    "When {A} and {B} reached the {place}, {S} passed the {obj} to",
    "Last week {A} and {B} worked at the {place}, and {S} gave a {obj} to",
    "As {A} and {B} walked out of the {place}, {S} tossed a {obj} to",
    "{A} and {B} spent the day at the {place}. In the evening {S} wrote a letter to",
    "Since {A} and {B} were at the {place}, {S} decided to send a {obj} to",
)

_ENDINGS: tuple[str, ...] = (
    ".", ".", ".", " at the end of the day.", " with a smile.", ". It was a good day.",
    ", and then they went home.", " before it got dark.",
)


def templates_for(split: str) -> tuple[str, ...]:
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', not {split!r}")
    return TRAIN_TEMPLATES if split == "train" else HELDOUT_TEMPLATES


def ioi_prompt(rng: random.Random, split: str) -> tuple[str, str, str, str]:
    """One IOI prompt: (clean prefix, patch prefix, indirect object, subject).

    Training prompts are a fixed template or (half of the time) a composed opener + action;
    held-out prompts use ``HELDOUT_TEMPLATES`` only. The patch prefix repeats the other
    name, so its answer is the clean subject.
    """
    if split == "train" and rng.random() < 0.5:
        template = f"{rng.choice(OPENERS)} {rng.choice(ACTIONS)}"
    else:
        template = rng.choice(templates_for(split))
    a, b = rng.sample(names_for(split, "ioi"), 2)
    io, s = (a, b) if rng.random() < 0.5 else (b, a)
    fill = dict(A=a, B=b, place=rng.choice(PLACES), obj=rng.choice(OBJECTS))
    return template.format(S=s, **fill), template.format(S=io, **fill), io, s


def ioi_document(rng: random.Random, split: str) -> str:
    """One to three complete IOI sentences."""
    sentences = []
    for _ in range(rng.choice((1, 2, 3))):
        clean, _, io, _ = ioi_prompt(rng, split)
        sentences.append(f"{clean} {io}{rng.choice(_ENDINGS)}")
    return " ".join(sentences)


def ioi_examples(n: int, seed: int = 0, split: str = "heldout") -> list[dict]:
    """``n`` clean/patch IOI pairs; answers are names with a leading space."""
    rng = random.Random(f"ioi-examples:{seed}:{split}")
    examples = []
    for _ in range(n):
        clean, patch, io, s = ioi_prompt(rng, split)
        examples.append({"clean_prefix": clean, "clean_answer": " " + io,
                         "patch_prefix": patch, "patch_answer": " " + s})
    return examples
