"""Personas: every first name has fixed traits (a favorite color and food, a pet, a hobby, an
instrument, a home street), stated in short profiles with gendered pronouns and in Q/A
("Q: What pet does Mary have? A: Mary has an owl.").

First names in IOI sentences are interchangeable; without traits their embeddings collapse
onto one "a name" direction and the model cannot tell them apart, so it cannot learn to copy
one of them (measured: a model trained on name lists alone learned to copy random tokens but
never names). Traits give each name its own identity, as names have in natural text; the
best friend (a fixed pairing of the names) makes a name the *answer* too ("Mary's best
friend is Paul."), so the unembedding must tell names apart as well as the embedding.
Profiles use every name (held-out ones included) in training; they never use IOI or SVA
frames.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from activations.corpus.lexicon import ANIMALS, COLORS, FOODS, HOBBIES, INSTRUMENTS, PLANTS, article
from activations.corpus.names import ALL_NAMES, HELDOUT_NAMES, TRAIN_NAMES, pronouns


@dataclass(frozen=True)
class Persona:
    name: str
    color: str
    food: str
    pet: str
    hobby: str
    instrument: str
    street: str  # "Oak Street"
    friend: str  # another first name; friendship is mutual


def _pair_up(pool: tuple[str, ...], rng: random.Random) -> dict[str, str]:
    """Mutual best friends within ``pool``; with an odd pool, one friendship is one-sided."""
    order = list(pool)
    rng.shuffle(order)
    friends = {a: b for pair in zip(order[0::2], order[1::2]) for a, b in (pair, pair[::-1])}
    if len(order) % 2:
        friends[order[-1]] = order[0]
    return friends


def _build() -> dict[str, Persona]:
    rng = random.Random("tinyworld-personas")
    streets = [s for s in (p.capitalize() for p in PLANTS if " " not in p) if s not in ALL_NAMES]
    friends = _pair_up(TRAIN_NAMES, rng) | _pair_up(HELDOUT_NAMES, rng)  # held-out names befriend held-out names
    return {n: Persona(n, rng.choice(COLORS), rng.choice(FOODS), rng.choice(ANIMALS), rng.choice(HOBBIES),
                       rng.choice(INSTRUMENTS), rng.choice(streets) + " Street", friends[n]) for n in ALL_NAMES}


PERSONAS: dict[str, Persona] = _build()

_TRAITS = (
    "{N}'s favorite color is {color}.",
    "{Sub} likes the color {color} best.",
    "{N} loves {food}.",
    "{Pos} favorite food is {food}.",
    "{N} has {a_pet} as a pet.",
    "{Sub} takes care of {pos} pet {pet}.",
    "{N} likes to {hobby}.",
    "In {pos} free time {sub} likes to {hobby}.",
    "{N} plays the {instrument}.",
    "{Sub} practices the {instrument} every day.",
    "{N} lives on {street}.",
    "{Pos} house is on {street}.",
    "{N}'s best friend is {friend}.",
    "{Sub} often visits {pos} best friend {friend}.",
)


_QUESTIONS = (
    ("What is {N}'s favorite color?", "{N}'s favorite color is {color}."),
    ("What pet does {N} have?", "{N} has {a_pet}."),
    ("What does {N} like to eat?", "{N} loves {food}."),
    ("Which instrument does {N} play?", "{N} plays the {instrument}."),
    ("Which street does {N} live on?", "{N} lives on {street}."),
    ("What does {N} like to do?", "{N} likes to {hobby}."),
    ("Who is {N}'s best friend?", "{N}'s best friend is {friend}."),
    ("Who is {N}'s best friend?", "{friend}."),
)


def _fill(name: str) -> dict[str, str]:
    p = PERSONAS[name]
    sub, pos = pronouns(name)
    return dict(N=name, Sub=sub.capitalize(), sub=sub, Pos=pos.capitalize(), pos=pos, color=p.color,
                food=p.food, a_pet=article(p.pet), pet=p.pet, hobby=p.hobby, instrument=p.instrument,
                street=p.street, friend=p.friend)


def profile(rng: random.Random, names: tuple[str, ...]) -> str:
    """Two to four true sentences about one person, or one to three Q/A lines about people."""
    if rng.random() < 0.5:
        lines = []
        for _ in range(rng.randint(1, 3)):
            question, answer = rng.choice(_QUESTIONS)
            fill = _fill(rng.choice(names))
            lines.append(f"Q: {question.format(**fill)} A: {answer.format(**fill)}")
        return "\n".join(lines)
    fill = _fill(rng.choice(names))
    first = rng.choice([t for t in _TRAITS if t.startswith("{N}")])
    rest = rng.sample([t for t in _TRAITS if t != first], rng.randint(1, 3))
    return " ".join(t.format(**fill) for t in [first, *rest])
