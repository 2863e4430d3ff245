"""Short two-person dialogues. Each speaker addresses the *other* one by name, the same
"pick the name that is not the current subject" logic as IOI, so names follow the IOI split
(``names.names_for(split, "ioi")``)."""

from __future__ import annotations

import random

from activations.corpus.lexicon import FOODS, OBJECTS, PLACES
from activations.corpus.names import names_for

# Each turn is (speaker, line); "{X}" in a line is the listener, always the other speaker.
_OPENINGS = ("Hi, {X}!", "Good morning, {X}.", "Hello, {X}! How are you?", "{X}, are you there?",
             "Nice to see you, {X}.", "Good evening, {X}.")
_MIDDLES = ("I am fine, thank you, {X}.", "{X}, can you pass me the {obj}?", "Here you are, {X}.",
            "Do you want some {food}, {X}?", "Shall we go to the {place}, {X}?",
            "Thank you for the {obj}, {X}.", "You are welcome, {X}.", "Yes, {X}, that sounds good.",
            "Not today, {X}. Maybe tomorrow.", "{X}, I found your {obj} at the {place}.")
_CLOSINGS = ("See you tomorrow, {X}!", "Bye, {X}!", "Take care, {X}.", "Good night, {X}.")


def dialogue(rng: random.Random, split: str) -> str:
    """Two to five alternating turns, one per line: "Mary: Hi, John!"."""
    a, b = rng.sample(names_for(split, "ioi"), 2)
    lines = [rng.choice(_OPENINGS)] + rng.sample(_MIDDLES, rng.randint(0, 3)) + [rng.choice(_CLOSINGS)]
    turns = []
    for i, line in enumerate(lines):
        speaker, listener = (a, b) if i % 2 == 0 else (b, a)
        text = line.format(X=listener, obj=rng.choice(OBJECTS), food=rng.choice(FOODS), place=rng.choice(PLACES))
        turns.append(f"{speaker}: {text}")
    return "\n".join(turns)
