"""Repeated lists (roll calls, shopping lists, word drills): the second copy of a list is
predictable only by looking back, which teaches copying and induction early in training."""

from __future__ import annotations

import random

from activations.corpus.lexicon import ANIMALS, COLORS, FOODS, OBJECTS, PLANTS

_FORMS = (
    ("Roll call: {items}. Again: {items}.", "names"),
    ("The team is {items}. Once more, the team is {items}.", "names"),
    ("Guests: {items}. The guests were {items}.", "names"),
    ("Shopping list: {items}. At the market I bought {items}.", "foods"),
    ("In the box: {items}. Out of the box came {items}.", "objects"),
    ("At the zoo we saw {items}. At home we drew {items}.", "animals"),
    ("Say it twice: {items}. {items}.", "words"),
)
_WORDS = ANIMALS + COLORS + PLANTS


def repeated_list(rng: random.Random, names: tuple[str, ...]) -> str:
    form, pool_name = rng.choice(_FORMS)
    pool = {"names": names, "foods": FOODS, "objects": OBJECTS, "animals": ANIMALS, "words": _WORDS}[pool_name]
    items = rng.sample(pool, rng.randint(3, 6))
    return form.format(items=", ".join(items[:-1]) + " and " + items[-1])
