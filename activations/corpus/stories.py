"""Vignettes about one or two people, and short stories that mix names, world facts,
counting and arithmetic. No IOI or agreement frame is used here, so every name may appear."""

from __future__ import annotations

import random

from activations.corpus import world
from activations.corpus.lexicon import DAYS, FOODS, MONTHS, NUMBER_WORDS, OBJECTS, PLACES, scene

_VIGNETTES = (
    "{N} likes {food}. {N} eats {food} every day.",
    "{N} went to the {place}. At the {place}, {N} bought a {obj}.",
    "{N} is at the {place}. {N} is happy.",
    "{N} said hello. Then {N} sat down.",
    "{N} has a {obj}. The {obj} is very old.",
    "This is {N}. {N} lives near the {place}.",
    "{N} and {M} are friends.",
    "{N} and {M} like {food}.",
    "{N} read a book in the {place}.",
    "Every {day}, {N} walks to the {place}.",
    "{N} lost a {obj} and looked for it all day. In the evening {N} found it.",
    "{N} tossed a stone into the lake.",
    "Last week {N} visited the {place}.",
    "After lunch, {N} took a nap.",
    "Since it was {day}, {N} stayed at home.",
    "As the sun went down, {N} walked out of the {place}.",
    "{N} spent the day at the {place} and worked on a {obj}.",
    "{N} wanted to send a postcard from the {place}.",
    "Everyone agrees that {N} is kind. {N} thinks so too.",
)

_OPENINGS = ("On {day}, {N} went to {city}.", "One morning in {month}, {N} walked to {city}.",
             "{N} woke up early on {day} and took the road to {city}.")
_MIDDLES = ("There {N} met {P}, who works as a {job}.",
            "{P} had {a} {food} and {N} had {b}, so together they had {total}.",
            "{N} counted {k} coins: {count}.",
            "Near {city} they saw a {c}. The {c} lives in the {home} and eats {cfood}.")
_ENDINGS = ("Then {N} went home.", "It was a good day for {N}.", "{N} was tired but happy.",
            "In the evening {N} reached home again.")


def vignettes(rng: random.Random, names: tuple[str, ...]) -> str:
    """One to three vignettes or everyday scenes."""
    return " ".join((vignette if rng.random() < 0.5 else scene)(rng, names) for _ in range(rng.randint(1, 3)))


def vignette(rng: random.Random, names: tuple[str, ...]) -> str:
    n, m = rng.sample(names, 2)
    return rng.choice(_VIGNETTES).format(N=n, M=m, food=rng.choice(FOODS), place=rng.choice(PLACES),
                                         obj=rng.choice(OBJECTS), day=rng.choice(DAYS))


def story(rng: random.Random, names: tuple[str, ...]) -> str:
    """A protagonist visits a known person's city; every fact used is the world's true fact."""
    person = rng.choice(world.entities(world.PERSON, world.KNOWN))
    creature = rng.choice(world.entities(world.CREATURE, world.KNOWN))
    a, b, k = rng.randint(1, 9), rng.randint(1, 9), rng.randint(2, 6)
    fill = dict(N=rng.choice(names), P=person.name, day=rng.choice(DAYS), month=rng.choice(MONTHS),
                food=rng.choice(FOODS), a=a, b=b, total=a + b, k=NUMBER_WORDS[k],
                count=", ".join(NUMBER_WORDS[1:k + 1]), c=creature.name, cfood=creature.facts["food"],
                home=creature.facts["home"], **person.facts)
    middle = [t.format(**fill) for t in _MIDDLES] + [world.mention(rng, rng.choice(world.ENTITIES), names)]
    rng.shuffle(middle)
    parts = [rng.choice(_OPENINGS).format(**fill), *middle[:rng.randint(2, 4)], rng.choice(_ENDINGS).format(**fill)]
    return " ".join(parts)
