"""A small fictional world: invented people, cities and creatures, some with known facts.

Every entity has facts (a person's city and job, a city's region, a creature's food and
home), but only *known* entities' facts are ever written. Entities come in three groups:

- ``known``: facts appear in statements ("Varnok lives in Belloc.") and in Q/A text
  ("Q: Where does Varnok live? A: Varnok lives in Belloc.").
- ``unknown_train``: mentioned without facts; in training, questions about them are
  answered "A: I do not know."
- ``unknown_heldout``: mentioned without facts in training, never asked about there.

``made_up_entity_prompts`` asks about a fourth kind, names built the same way that the
corpus never uses.

Questions come in training phrasings and held-out phrasings (``QUESTIONS``); held-out
phrasings appear only in the held-out stream and in ``entity_prompts(split="heldout")``.
Curriculum level 12 adds to training text only: fresh names (``fresh_names``) in half the
refusals and mentions, and ``MORE_QUESTIONS``' phrasings in Q/A.
The world is fixed: it does not depend on any stream seed.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from activations.corpus import curriculum
from activations.corpus.lexicon import DAYS
from activations.corpus.names import ALL_NAMES, names_for

PERSON, CITY, CREATURE = "person", "city", "creature"
KNOWN, UNKNOWN_TRAIN, UNKNOWN_HELDOUT = "known", "unknown_train", "unknown_heldout"
DONT_KNOW = "I do not know."

JOBS = ("baker", "tailor", "painter", "miner", "sailor", "potter", "hunter", "weaver", "builder",
        "fisher", "healer", "guard", "cook", "merchant", "smith", "gardener", "shepherd", "carpenter")
REGIONS = ("north", "south", "east", "west")
CREATURE_FOODS = ("berries", "fish", "leaves", "seeds", "roots", "insects", "honey", "grass",
                  "mushrooms", "nuts")
HABITATS = ("forest", "river", "mountains", "desert", "caves", "swamp", "hills", "sea")

# group sizes: known, unknown_train, unknown_heldout
_SIZES = {PERSON: (48, 16, 16), CITY: (16, 6, 6), CREATURE: (12, 5, 5)}
_SYLLABLES = {
    PERSON: (("Var", "Quil", "Des", "Mor", "Tal", "Bren", "Kor", "Sel", "Fen", "Hald", "Jor", "Lun",
              "Nim", "Orv", "Pel", "Ris", "Thar", "Ulm", "Wes", "Yor", "Zan", "Cal", "Dov", "Gar",
              "Kel", "Mav", "Rav", "Sav", "Tor", "Vel"),
             ("nok", "len", "sa", "ric", "wen", "dor", "ith", "ara", "ven", "mar", "ulf", "ine",
              "oth", "isa", "ek", "ory", "el", "ia", "us", "und")),
    CITY: (("Bel", "Ash", "Cor", "Dun", "Fal", "Hol", "Kes", "Lor", "Mir", "Nor", "Pell", "Quen",
            "Rim", "Sten", "Tarn", "Ul", "Wyn", "Yar"),
           ("loc", "ford", "mere", "holt", "wick", "dale", "burg", "haven", "moor", "stead",
            "port", "crest")),
    CREATURE: (("glim", "zor", "snib", "wum", "flor", "trak", "quib", "mog", "drel", "piff", "skav",
                "vorn", "blen", "crom", "hux"),
               ("met", "ble", "ling", "kin", "wort", "dra", "pip", "ux", "nel", "gar")),
}


@dataclass(frozen=True)
class Entity:
    """``name`` as written in text (creatures in lower case, "the glimmet")."""

    name: str
    type: str
    group: str
    facts: dict[str, str]


@dataclass(frozen=True)
class Question:
    attribute: str
    text: str  # with {E}
    answer: str  # with {E} and {value}


QUESTIONS: dict[str, dict[str, tuple[Question, ...]]] = {
    "train": {
        PERSON: (Question("city", "Where does {E} live?", "{E} lives in {value}."),
                 Question("city", "Which city does {E} live in?", "{E} lives in {value}."),
                 Question("city", "Where is the home of {E}?", "{E} lives in {value}."),
                 Question("job", "What does {E} do?", "{E} is a {value}."),
                 Question("job", "What is the job of {E}?", "{E} is a {value}."),
                 Question("job", "What does {E} do for work?", "{E} is a {value}.")),
        CITY: (Question("region", "Where is {E}?", "{E} is in the {value}."),
               Question("region", "In which part of the land is {E}?", "{E} is in the {value}.")),
        CREATURE: (Question("food", "What does the {E} eat?", "The {E} eats {value}."),
                   Question("food", "What food does the {E} eat?", "The {E} eats {value}."),
                   Question("home", "Where does the {E} live?", "The {E} lives in the {value}."),
                   Question("home", "Where can you find the {E}?", "The {E} lives in the {value}.")),
    },
    "heldout": {
        PERSON: (Question("city", "In which city does {E} live?", "{E} lives in {value}."),
                 Question("job", "What work does {E} do?", "{E} is a {value}.")),
        CITY: (Question("region", "Which part of the land is {E} in?", "{E} is in the {value}."),),
        CREATURE: (Question("food", "What does the {E} like to eat?", "The {E} eats {value}."),
                   Question("home", "Where can the {E} be found?", "The {E} lives in the {value}.")),
    },
}

# More training phrasings, written only at curriculum level 12 (none is a held-out one or
# shares its frame): with 2-6 phrasings per type a model learns them one by one, and the
# held-out ones then read as strange for known and unknown entities alike.
MORE_QUESTIONS: dict[str, tuple[Question, ...]] = {
    PERSON: (Question("city", "Which town is {E} in?", "{E} lives in {value}."),
             Question("city", "Do you know where {E} lives?", "{E} lives in {value}."),
             Question("city", "What is the city of {E}?", "{E} lives in {value}."),
             Question("city", "Where would I find {E}?", "{E} lives in {value}."),
             Question("job", "What is the trade of {E}?", "{E} is a {value}."),
             Question("job", "How does {E} earn a living?", "{E} is a {value}."),
             Question("job", "What does {E} do all day?", "{E} is a {value}.")),
    CITY: (Question("region", "Where in the land is {E}?", "{E} is in the {value}."),
           Question("region", "Which region is {E} in?", "{E} is in the {value}."),
           Question("region", "Where does {E} lie?", "{E} is in the {value}.")),
    CREATURE: (Question("food", "What is the food of the {E}?", "The {E} eats {value}."),
               Question("food", "What do you feed the {E}?", "The {E} eats {value}."),
               Question("home", "Where is the home of the {E}?", "The {E} lives in the {value}."),
               Question("home", "In what place does the {E} live?", "The {E} lives in the {value}.")),
}

_STATEMENTS = {
    PERSON: ("{E} lives in {city}.", "{E} is a {job} from {city}.", "{E} works as a {job} in {city}.",
             "In {city}, {E} works as a {job}.", "{E} is a {job}.", "{E}, the {job}, lives in {city}."),
    CITY: ("{E} is a city in the {region}.", "{E} lies in the {region}.",
           "The city of {E} is in the {region}."),
    CREATURE: ("The {E} is a creature that lives in the {home}.", "The {E} eats {food}.",
               "A {E} lives in the {home} and eats {food}.", "In the {home} you can find the {E}."),
}
# Mentions carry no facts, so they are safe for every group.
_MENTIONS = {
    PERSON: ("{E} waved at {N}.", "A letter from {E} came on {day}.", "Someone called {E} knocked on the door.",
             "{N} talked about {E} at dinner.", "The name {E} was on the list.", "{N} once met {E}."),
    CITY: ("{N} heard a song about {E}.", "The name {E} was on an old map.",
           "{N} once wrote a poem about {E}.", "A traveler spoke of {E}."),
    CREATURE: ("A child drew a {E}.", "There is an old story about a {E}.",
               "{N} saw a picture of a {E}.", "Nobody in the room had a {E}."),
}


def _build_world() -> tuple[Entity, ...]:
    rng = random.Random("tinyworld-entities")
    taken = set(ALL_NAMES)
    built: list[Entity] = []
    for etype in (CITY, CREATURE, PERSON):  # cities first: people live in known cities
        sizes = _SIZES[etype]
        first, second = _SYLLABLES[etype]
        names = rng.sample(sorted({a + b for a in first for b in second} - taken), sum(sizes))
        taken.update(names)
        groups = [KNOWN] * sizes[0] + [UNKNOWN_TRAIN] * sizes[1] + [UNKNOWN_HELDOUT] * sizes[2]
        cities = [e.name for e in built if e.type == CITY and e.group == KNOWN]
        for name, group in zip(names, groups):
            built.append(Entity(name, etype, group, _facts(rng, etype, cities)))
    return tuple(built)


def _facts(rng: random.Random, etype: str, cities: list[str]) -> dict[str, str]:
    if etype == PERSON:
        return {"city": rng.choice(cities), "job": rng.choice(JOBS)}
    if etype == CITY:
        return {"region": rng.choice(REGIONS)}
    return {"food": rng.choice(CREATURE_FOODS), "home": rng.choice(HABITATS)}


ENTITIES: tuple[Entity, ...] = _build_world()


def entities(etype: str | None = None, group: str | None = None) -> list[Entity]:
    return [e for e in ENTITIES if etype in (None, e.type) and group in (None, e.group)]


# Fresh names (curriculum level 12) pair a type's first syllables with another type's second ones.
_FRESH_SECONDS = {PERSON: CREATURE, CITY: CREATURE, CREATURE: PERSON}


@functools.cache
def fresh_names(etype: str) -> list[str]:
    """Names for ``etype`` built from its first syllables and another type's second ones
    ("Varmet", "Belkin", "glimnok"), none an entity's, a person's or a made-up prompt's: the
    strangers that curriculum level 12's training text asks about and refuses."""
    first = _SYLLABLES[etype][0]
    same_type = {a + b for a in first for b in _SYLLABLES[etype][1]}
    taken = set(ALL_NAMES) | {e.name for e in ENTITIES} | same_type
    return sorted({a + b for a in first for b in _SYLLABLES[_FRESH_SECONDS[etype]][1]} - taken)


def _stranger(rng: random.Random, etype: str, group: str | None) -> Entity:
    """At a curriculum level with fresh names, in training text: a fresh name (no facts) for
    ``world_fresh_share`` of the draws of an entity of ``group`` (unknown_train or any);
    otherwise one of the world's."""
    share = curriculum.current().world_fresh_share
    if share and rng.random() < share:
        return Entity(rng.choice(fresh_names(etype)), etype, UNKNOWN_TRAIN, {})
    return rng.choice(entities(etype, group))


def _pick_type(rng: random.Random) -> str:
    return rng.choices((PERSON, CITY, CREATURE), weights=(6, 2, 2))[0]


def _ask(rng: random.Random, entity: Entity, split: str, more: bool = False) -> tuple[str, Question]:
    """A question in one of ``split``'s phrasings (and ``MORE_QUESTIONS``' when ``more``)."""
    phrasings = QUESTIONS[split][entity.type] + (MORE_QUESTIONS[entity.type] if more else ())
    q = rng.choice(phrasings)
    return f"Q: {q.text.format(E=entity.name)} A:", q


def qa_pair(rng: random.Random, entity: Entity, split: str) -> str:
    """A question and its answer: the fact for known entities, a refusal otherwise (in more
    phrasings in training text at curriculum levels that ask for them)."""
    prompt, q = _ask(rng, entity, split, more=split == "train" and curriculum.current().world_more_questions)
    if entity.group != KNOWN:
        return f"{prompt} {DONT_KNOW}"
    return f"{prompt} {_capital(q.answer.format(E=entity.name, value=entity.facts[q.attribute]))}"


def fact_statement(rng: random.Random, entity: Entity) -> str:
    """A sentence stating a known entity's facts."""
    if entity.group != KNOWN:
        raise ValueError(f"{entity.name} is not a known entity; its facts are never written")
    return _capital(rng.choice(_STATEMENTS[entity.type]).format(E=entity.name, **entity.facts))


def mention(rng: random.Random, entity: Entity, names: tuple[str, ...]) -> str:
    """A sentence naming the entity without stating any of its facts."""
    return rng.choice(_MENTIONS[entity.type]).format(E=entity.name, N=rng.choice(names), day=rng.choice(DAYS))


def _capital(text: str) -> str:
    return text[0].upper() + text[1:]


def world_document(rng: random.Random, split: str) -> str:
    """Statements, Q/A pairs or mentions about a few entities."""
    names = names_for(split, "other")
    style = rng.choices(("facts", "qa", "mentions"), weights=(3, 5, 2))[0]
    if split == "heldout":
        style = "qa" if style != "mentions" else style
    parts = []
    for _ in range(rng.choice((1, 2, 3, 4))):
        etype = _pick_type(rng)
        if style == "facts":
            parts.append(fact_statement(rng, rng.choice(entities(etype, KNOWN))))
        elif style == "mentions":
            entity = _stranger(rng, etype, None) if split == "train" else rng.choice(entities(etype))
            parts.append(mention(rng, entity, names))
        else:
            unknown = UNKNOWN_TRAIN if split == "train" else UNKNOWN_HELDOUT
            group = KNOWN if rng.random() < 0.6 else unknown
            entity = _stranger(rng, etype, group) if group == UNKNOWN_TRAIN else rng.choice(entities(etype, group))
            parts.append(qa_pair(rng, entity, split))
    return ("\n" if style == "qa" else " ").join(parts)


def entity_prompts(n: int, known: bool, seed: int = 0, split: str = "heldout") -> list[dict]:
    """``n`` questions "Q: ... A:" about known entities (answer: the fact's value) or unknown
    ones (answer None). ``split`` picks the phrasings and, for unknown entities, the group:
    ``unknown_train`` (refused in training) or ``unknown_heldout`` (never asked in training)."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', not {split!r}")
    rng = random.Random(f"entity-prompts:{seed}:{split}:{known}")
    group = KNOWN if known else (UNKNOWN_TRAIN if split == "train" else UNKNOWN_HELDOUT)
    out = []
    for _ in range(n):
        entity = rng.choice(entities(_pick_type(rng), group))
        prompt, q = _ask(rng, entity, split)
        out.append({"prompt": prompt, "entity": entity.name,
                    "answer": entity.facts[q.attribute] if known else None})
    return out


def never_asked_prompts(n: int, seed: int = 0, half: int = 0, split: str = "train") -> list[dict]:
    """``n`` questions about ``unknown_heldout`` entities (mentioned in training, never asked
    about), all from one of two disjoint halves of them (``half`` 0 or 1: every other entity of
    each type, in the world's order), in ``split``'s phrasings. Unknown-entity latents ranked
    on one half can be tested on the other: unknown entities in Ferrando et al.'s sense (the
    model has no facts about them) that the ranking never saw, where ``unknown_train`` entities
    are ones the model was taught to refuse by name. Answer: None."""
    if half not in (0, 1):
        raise ValueError(f"half must be 0 or 1, not {half!r}")
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', not {split!r}")
    rng = random.Random(f"never-asked-prompts:{seed}:{half}:{split}")
    out = []
    for _ in range(n):
        entity = rng.choice(entities(_pick_type(rng), UNKNOWN_HELDOUT)[half::2])
        prompt, _ = _ask(rng, entity, split)
        out.append({"prompt": prompt, "entity": entity.name, "answer": None})
    return out


def made_up_entity_prompts(n: int, seed: int = 0) -> list[dict]:
    """``n`` training-phrasing questions about names built like the world's (the same syllables
    for each type) that no entity and no person's name uses, so they never occur in the corpus:
    entities the model has never met, unlike ``unknown_train`` (refused in training) and
    ``unknown_heldout`` (mentioned in training). For choosing a layer for unknown-entity
    latents without touching any held-out entity. Answer: None."""
    rng = random.Random(f"made-up-entity-prompts:{seed}")
    taken = set(ALL_NAMES) | {e.name for e in ENTITIES}
    unused = {etype: sorted({a + b for a in first for b in second} - taken)
              for etype, (first, second) in _SYLLABLES.items()}
    out = []
    for _ in range(n):
        etype = _pick_type(rng)
        name = rng.choice(unused[etype])
        prompt, _ = _ask(rng, Entity(name, etype, "made_up", {}), "train")
        out.append({"prompt": prompt, "entity": name, "answer": None})
    return out
