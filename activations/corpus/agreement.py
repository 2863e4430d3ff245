"""Subject-verb agreement (SVA) sentences, as in Marks et al. 2024.

A frame places a subject noun ``{S}`` (singular or plural) before the verb, optionally with
an attractor noun ``{A}`` of random number inside a prepositional phrase ("pp") or a
relative clause ("rc"); "simple" frames have no attractor. The verb must agree with the
subject, never with the attractor. Held-out frames never occur in the training stream;
name slots ``{N}`` follow the IOI name split (``names.names_for(split, "ioi")``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

from activations.corpus import curriculum
from activations.corpus.lexicon import FOODS, PLACES
from activations.corpus.names import names_for

KINDS = ("simple", "pp", "rc")
PERSON, ANIMAL, THING = "person", "animal", "thing"
ANIMATE = (PERSON, ANIMAL)
ANY = (PERSON, ANIMAL, THING)

# (singular, plural) per class.
NOUNS: dict[str, tuple[tuple[str, str], ...]] = {
    PERSON: (("boy", "boys"), ("girl", "girls"), ("man", "men"), ("woman", "women"),
             ("child", "children"), ("teacher", "teachers"), ("farmer", "farmers"),
             ("doctor", "doctors"), ("student", "students"), ("friend", "friends"),
             ("king", "kings"), ("queen", "queens"), ("baby", "babies"), ("singer", "singers"),
             ("player", "players"), ("writer", "writers"), ("pilot", "pilots"),
             ("neighbor", "neighbors")),
    ANIMAL: (("dog", "dogs"), ("cat", "cats"), ("bird", "birds"), ("horse", "horses"),
             ("fox", "foxes"), ("mouse", "mice"), ("rabbit", "rabbits"), ("duck", "ducks"),
             ("goat", "goats"), ("sheep", "sheep"), ("wolf", "wolves"), ("frog", "frogs")),
    THING: (("key", "keys"), ("box", "boxes"), ("table", "tables"), ("car", "cars"),
            ("door", "doors"), ("window", "windows"), ("chair", "chairs"), ("lamp", "lamps"),
            ("bottle", "bottles"), ("picture", "pictures"), ("bridge", "bridges"),
            ("clock", "clocks"), ("cabinet", "cabinets"), ("shelf", "shelves"),
            ("wall", "walls"), ("boat", "boats"), ("coat", "coats"), ("tower", "towers")),
}
# "sheep" has one form for both numbers, so it is never a subject.
_SUBJECT_NOUNS = {c: tuple(p for p in pairs if p[0] != p[1]) for c, pairs in NOUNS.items()}

ADJECTIVES: tuple[str, ...] = ("old", "new", "small", "big", "young", "little", "tall", "red",
                               "blue", "green", "brown", "white", "quiet", "heavy")
PREPOSITIONS: tuple[str, ...] = ("to", "of", "near", "behind", "beside", "under", "above",
                                 "with", "from", "for", "by", "on", "next to")
NAME_PREPOSITIONS: tuple[str, ...] = ("with", "near", "behind", "for", "from", "beside")

# Past-tense verbs inside relative clauses, by the class of the noun they act on.
RC_VERBS: dict[str, tuple[str, ...]] = {
    THING: ("saw", "found", "liked", "bought", "cleaned", "moved", "fixed", "painted", "watched"),
    ANIMAL: ("saw", "liked", "found", "helped", "chased", "loved", "fed", "called", "followed",
             "watched"),
    PERSON: ("saw", "liked", "met", "helped", "loved", "called", "followed", "watched", "knew",
             "visited"),
}

_BE_WORDS = {PERSON: ("happy", "tired", "busy", "kind", "late", "ready", "here", "at the {place}"),
             ANIMAL: ("hungry", "tired", "small", "quiet", "asleep", "loud", "here", "in the {place}"),
             THING: ("old", "new", "broken", "clean", "heavy", "ready", "here", "in the {place}")}
_HAVE_WORDS = {PERSON: ("a new coat", "many friends", "a big family", "no time"),
               ANIMAL: ("a long tail", "soft fur", "sharp teeth", "a warm nest"),
               THING: ("a small crack", "a red handle", "a long history", "a strange mark")}


@dataclass(frozen=True)
class Verb:
    """An agreeing verb: both forms are single tokens after a space."""

    singular: str
    plural: str
    subjects: tuple[str, ...]
    objects: dict[str, tuple[str, ...]] | tuple[str, ...]  # what may follow, by subject class

    def follow(self, rng: random.Random, cls: str) -> str:
        options = self.objects[cls] if isinstance(self.objects, dict) else self.objects
        return rng.choice(options).format(place=rng.choice(PLACES), food=rng.choice(FOODS))


_ADJ = {PERSON: ("happy", "tired", "kind", "busy"), ANIMAL: ("hungry", "tired", "calm", "happy"),
        THING: ("old", "new", "clean", "broken")}
VERBS: tuple[Verb, ...] = (
    Verb("is", "are", ANY, _BE_WORDS),
    Verb("was", "were", ANY, _BE_WORDS),
    Verb("has", "have", ANY, _HAVE_WORDS),
    Verb("seems", "seem", ANY, _ADJ),
    Verb("looks", "look", ANY, _ADJ),
    Verb("runs", "run", ANIMATE, ("fast", "to the {place}", "every morning")),
    Verb("sleeps", "sleep", ANIMATE, ("all day", "at night", "in the {place}")),
    Verb("likes", "like", ANIMATE, ("{food}", "the {place}")),
    Verb("wants", "want", ANIMATE, ("some {food}", "to go home")),
    Verb("eats", "eat", ANIMATE, ("{food}", "a lot")),
    Verb("walks", "walk", ANIMATE, ("home", "to the {place}")),
    Verb("sings", "sing", (PERSON,), ("well", "every morning", "a song")),
    Verb("knows", "know", (PERSON,), ("the way", "the answer", "the song")),
    Verb("works", "work", (PERSON,), ("hard", "at the {place}")),
    Verb("stands", "stand", (THING,), ("near the door", "in the corner")),
    Verb("belongs", "belong", (THING,), ("to the {place}", "to the school")),
    Verb("needs", "need", (THING,), ("some paint", "a good clean")),
    Verb("costs", "cost", (THING,), ("a lot", "ten coins", "very little")),
)


@dataclass(frozen=True)
class Frame:
    """A prefix ending right before the verb.

    ``subject``/``attractor``: the noun classes allowed in ``{S}``/``{A}``. ``patient``: which
    noun the relative-clause verb ``{v}`` acts on ("S" or "A"), so the verb fits it.
    """

    kind: str
    text: str
    subject: tuple[str, ...] = ANY
    attractor: tuple[str, ...] = ANY
    patient: str = "S"


TRAIN_FRAMES: tuple[Frame, ...] = (
    Frame("simple", "The {S}"),
    Frame("simple", "The {adj} {S}"),
    Frame("simple", "I think the {S}"),
    Frame("simple", "She said that the {S}"),
    Frame("simple", "My {S}"),
    Frame("simple", "Our {adj} {S}"),
    Frame("simple", "{N} says that the {S}"),
    Frame("simple", "He thinks that the {S}"),
    Frame("simple", "We all know that the {S}"),
    Frame("simple", "It is clear that the {adj} {S}"),
    Frame("simple", "Today the {S}"),
    Frame("pp", "The {S} {p} the {A}"),
    Frame("pp", "The {adj} {S} {p} the {A}"),
    Frame("pp", "My {S} {p} the {A}"),
    Frame("pp", "The {S} {pn} {N}"),
    Frame("rc", "The {S} that the {A} {v}", ANY, ANIMATE, "S"),
    Frame("rc", "The {S} that {v} the {A}", ANIMATE, ANY, "A"),
    Frame("rc", "The {S} who the {A} {v}", (PERSON,), ANIMATE, "S"),
    Frame("rc", "The {S} who {v} the {A}", (PERSON,), ANY, "A"),
    Frame("rc", "The {S} that {N} {v}", ANY, (PERSON,), "S"),
    Frame("rc", "The {adj} {S} that the {A} {v}", ANY, ANIMATE, "S"),
)

# Composed training "simple" frames: a lead-in (often with its own subject, singular or
# plural) before "the {S}", so that the model learns that the embedded subject sets the
# number of the verb. A share of the training "simple" prompts use one (half, at the full
# curriculum level); none spells a held-out frame.
SIMPLE_LEADINS: tuple[str, ...] = (
    "Everybody knows that", "Nobody thinks that", "Somebody told me that", "The teacher says that",
    "My parents think that", "They all say that", "The king believes that", "Each child knows that",
    "Her friends said that", "It seems that", "Last night", "This morning", "Of course", "Maybe",
    "Mom says that", "The doctors think that", "One of us said that", "He told them that",
    "We heard that", "The old man says that", "Two girls said that", "The farmer knows that",
    "Anyone can see that", "People say that", "In the {place}", "At the {place}",
)


def composed_simple_frames() -> tuple[Frame, ...]:
    """Every composed "simple" training frame: each lead-in before "the {S}" and "the {adj} {S}"."""
    return tuple(Frame("simple", f"{lead} the {noun}") for lead in SIMPLE_LEADINS
                 for noun in ("{S}", "{adj} {S}"))

# Composed training "pp" frames (level 6): determiners and possessives before a subject
# followed by a prepositional phrase, most with a name inside it, so that the model learns
# that the noun after the determiner, not the name, sets the verb's number. "Our" is left
# out: "Our {S} {pn} {N}" is a held-out frame.
PP_DETERMINERS: tuple[str, ...] = ("My", "Your", "His", "Her", "Their", "The")
# Level 9 adds possessors, which mark no number either ("Anna's {S} {pn} {N}"): every draw of
# level 8 learned the rule after "The", but some missed it after the held-out "Our"
# (docs/tiny_model.md, "What varies between draws"). {M} is a training IOI name.
PP_POSSESSORS: tuple[str, ...] = ("{M}'s", "The old man's", "The teacher's", "My friend's", "Mom's",
                                  "The farmer's")


def composed_pp_frames() -> tuple[Frame, ...]:
    """Every composed "pp" training frame at the current curriculum level."""
    return _composed_pp_frames(curriculum.current().sva_pp_possessors)


@lru_cache(maxsize=None)
def _composed_pp_frames(possessors: bool) -> tuple[Frame, ...]:  # built once per mix, not per prompt
    shapes = ("{S} {pn} {N}", "{adj} {S} {pn} {N}", "{S} {p} the {A}")
    determiners = PP_DETERMINERS + (PP_POSSESSORS if possessors else ())
    return tuple(Frame("pp", f"{det} {shape}") for det in determiners for shape in shapes)


HELDOUT_FRAMES: tuple[Frame, ...] = (
    Frame("simple", "Everyone agrees that the {S}"),
    Frame("simple", "Yesterday she said that the {S}"),
    Frame("simple", "I know that the {adj} {S}"),
    Frame("pp", "The {S} {p} the {adj} {A}"),
    Frame("pp", "Our {S} {pn} {N}"),
    Frame("rc", "The {S} that the {adj} {A} {v}", ANY, ANIMATE, "S"),
    Frame("rc", "The {S} who {N} {v}", (PERSON,), (PERSON,), "S"),
)


def frames_for(split: str, kind: str = "all") -> tuple[Frame, ...]:
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', not {split!r}")
    if kind not in KINDS + ("all",):
        raise ValueError(f"kind must be one of {KINDS + ('all',)}, not {kind!r}")
    frames = TRAIN_FRAMES if split == "train" else HELDOUT_FRAMES
    return tuple(f for f in frames if kind in ("all", f.kind))


def sva_prompt(rng: random.Random, split: str, kind: str = "all") -> tuple[str, str, Verb, bool, str]:
    """One agreement prompt: (prefix, prefix with the subject's number flipped, verb,
    subject is plural, subject class)."""
    frame = rng.choice(frames_for(split, kind))
    level = curriculum.current()
    if split == "train" and frame.kind == "simple" and rng.random() < level.sva_composed_share:
        frame = rng.choice(composed_simple_frames())
    if split == "train" and frame.kind == "pp" and level.sva_pp_composed_share \
            and rng.random() < level.sva_pp_composed_share:
        frame = rng.choice(composed_pp_frames())
    cls = rng.choice(frame.subject)
    subject = rng.choice(_SUBJECT_NOUNS[cls])
    plural = rng.random() < 0.5
    a_cls = rng.choice(frame.attractor)
    fill = dict(A=rng.choice(NOUNS[a_cls])[rng.random() < 0.5], adj=rng.choice(ADJECTIVES),
                p=rng.choice(PREPOSITIONS), pn=rng.choice(NAME_PREPOSITIONS),
                N=rng.choice(names_for(split, "ioi")), place=rng.choice(PLACES),
                v=rng.choice(RC_VERBS[cls if frame.patient == "S" else a_cls]))
    if "{M}" in frame.text:  # drawn only here, so that the other levels' draws stay as they were
        fill["M"] = rng.choice(names_for(split, "ioi"))
    verb = rng.choice([v for v in VERBS if cls in v.subjects])
    prefix = frame.text.format(S=subject[plural], **fill)
    flipped = frame.text.format(S=subject[not plural], **fill)
    return prefix, flipped, verb, plural, cls


def agreement_document(rng: random.Random, split: str) -> str:
    """One to three complete agreement sentences."""
    sentences = []
    for _ in range(rng.choice((1, 2, 3))):
        prefix, _, verb, plural, cls = sva_prompt(rng, split)
        form = verb.plural if plural else verb.singular
        sentences.append(f"{prefix} {form} {verb.follow(rng, cls)}.")
    return " ".join(sentences)


def sva_examples(n: int, seed: int = 0, split: str = "heldout", kind: str = "all") -> list[dict]:
    """``n`` clean/patch agreement pairs; the patch flips the subject's number."""
    rng = random.Random(f"sva-examples:{seed}:{split}:{kind}")
    examples = []
    for _ in range(n):
        prefix, flipped, verb, plural, _ = sva_prompt(rng, split, kind)
        right, wrong = (verb.plural, verb.singular) if plural else (verb.singular, verb.plural)
        examples.append({"clean_prefix": prefix, "clean_answer": " " + right,
                         "patch_prefix": flipped, "patch_answer": " " + wrong})
    return examples
