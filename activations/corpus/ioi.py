"""Indirect object identification (IOI) sentences, as in Wang et al. 2022.

A template introduces two names ``{A}`` and ``{B}``, repeats one of them as the subject
``{S}``, and ends right before the indirect object: the name that was *not* repeated.
``HELDOUT_TEMPLATES`` never occur in the training stream; their names come from
``HELDOUT_NAMES`` (see ``names.py``).
"""

from __future__ import annotations

import functools
import random
import re

from activations.corpus import curriculum
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
    # Added for stage 3: other subordinators, times of day and verbs of going.
    "Just before {A} and {B} left the {place},", "On Monday {A} and {B} cleaned the {place}, and",
    "Although {A} and {B} were tired after the {place},", "When {A} and {B} came back from the {place},",
    "Every Sunday {A} and {B} go to the {place}. This time", "{A} and {B} ran to the {place}. There",
    "After dinner, {A} and {B} walked past the {place}, and", "Now that {A} and {B} live near the {place},",
    "At night {A} and {B} sat outside the {place}.", "{A} and {B} spent an hour in the {place}. Then",
    "While {A} and {B} waited at the {place},", "Two days ago {A} and {B} painted the {place}, and",
    "Near the {place}, {A} and {B} saw a {obj}. Soon", "If {A} and {B} go to the {place},",
    "{A} and {B} opened the {place} early, so", "Whenever {A} and {B} visit the {place},",
    # Added for stage 4.
    "In the afternoon {A} and {B} played at the {place}.", "{A} and {B} were busy at the {place}, so later",
    "Before noon {A} and {B} visited the {place}, and",
    # Added for curriculum level 5 (more verbs and openers; none held out).
    "{A} and {B} took a walk to the {place}. Afterwards", "On Friday, {A} and {B} drove to the {place}, and",
    "{A} and {B} visited the {place} together. Then", "Early in the day {A} and {B} got to the {place}, and",
    "{A} and {B} were cleaning the {place}. After a while", "Right after {A} and {B} entered the {place},",
    "{A} and {B} looked around the {place}. At last", "During the trip to the {place}, {A} and {B} laughed, and",
    "{A} and {B} met outside the {place}. Soon after", "As soon as {A} and {B} saw the {place},",
    "{A} and {B} lived next to the {place}. One day", "{A} and {B} arrived late at the {place}. Still,",
    "On a cold day {A} and {B} went into the {place}, and", "{A} and {B} worked all week at the {place}. On Friday",
    "Yesterday {A} and {B} rested at the {place}. Later", "{A} and {B} went shopping near the {place}, and",
    "Because {A} and {B} loved the {place},", "After school {A} and {B} biked to the {place}. There",
)
ACTIONS: tuple[str, ...] = (
    "{S} gave a {obj} to", "{S} gave the {obj} to", "{S} handed a {obj} to", "{S} brought a {obj} for",
    "{S} showed the {obj} to", "{S} threw a {obj} to", "{S} sold a {obj} to", "{S} lent a {obj} to",
    "{S} offered a {obj} to", "{S} bought a {obj} for", "{S} made a {obj} for", "{S} said goodbye to",
    "{S} waved to", "{S} read a story to", "{S} sent a {obj} to", "{S} returned the {obj} to",
    "{S} wanted to give a {obj} to", "{S} explained the plan to", "{S} sang a song for",
    "{S} took a photo of", "{S} smiled at", "{S} talked to",
    # Added for stage 3 (still no "tossed", "wrote" or "decided": held-out verbs stay unseen).
    "{S} kicked the {obj} to", "{S} rolled a {obj} to", "{S} mailed a {obj} to", "{S} carried the {obj} to",
    "{S} slid the {obj} over to", "{S} gave back the {obj} to", "{S} left a {obj} for",
    "{S} cooked dinner for", "{S} told a joke to", "{S} whispered a secret to", "{S} pointed at",
    "{S} shouted at", "{S} nodded to", "{S} called out to", "{S} drew a picture for",
    "{S} baked a cake for", "{S} found a seat for", "{S} tried to give a {obj} to",
    "{S} hoped to show the {obj} to", "{S} forgot to give the {obj} to", "{S} got a {obj} for",
    "{S} saved a {obj} for", "{S} delivered the {obj} to", "{S} paid the money to",
    "{S} sent a message to", "{S} gave a small {obj} to", "{S} quietly handed the {obj} to",
    "{S} finally gave the {obj} to", "{S} described the {place} to", "{S} sold the old {obj} to",
    "{S} promised a {obj} to", "{S} passed a note to",
    # Added for stage 4: infinitive complements and fixed objects, the weakest held-out shapes.
    "{S} planned to lend the {obj} to", "{S} agreed to sell a {obj} to", "{S} chose to hand the {obj} to",
    "{S} offered to bring a {obj} to", "{S} needed to return the {obj} to", "{S} typed a note to",
    "{S} painted a card for", "{S} made a sandwich for", "{S} opened the door for",
    "{S} poured a drink for", "{S} knitted a scarf for", "{S} sent a postcard to",
    "{S} asked to show the {obj} to", "{S} went over to give a {obj} to",
    # Added for curriculum level 5 (more verbs and openers; none held out).
    "{S} lobbed the {obj} to", "{S} flung a {obj} to", "{S} pushed the {obj} over to", "{S} mailed a card to",
    "{S} sketched a map for", "{S} recited a poem to", "{S} played a tune for", "{S} served tea to",
    "{S} gifted a {obj} to", "{S} loaned the {obj} to", "{S} brought the {obj} back to",
    "{S} handed over a {obj} to", "{S} dropped off a {obj} for", "{S} packed a lunch for",
    "{S} fixed the {obj} for", "{S} wrapped a {obj} for", "{S} shipped a {obj} to", "{S} texted a photo to",
    "{S} emailed the plan to", "{S} reported the news to", "{S} revealed the secret to",
    "{S} taught a song to", "{S} showed a trick to", "{S} offered some help to", "{S} sold a ticket to",
    "{S} set a plate for", "{S} bought some flowers for", "{S} picked an apple for", "{S} carried a chair for",
    "{S} held the door for", "{S} chose to send a {obj} to", "{S} wanted to pass the {obj} to",
    "{S} meant to hand a {obj} to", "{S} tried to mail a {obj} to", "{S} managed to give the {obj} to",
    "{S} hurried to bring a {obj} to", "{S} stopped to show the {obj} to", "{S} went back to return the {obj} to",
    "{S} was happy to lend a {obj} to", "{S} was glad to give a {obj} to", "{S} made sure to send a {obj} to",
    "{S} remembered to bring the {obj} to", "{S} began to read a book to", "{S} started to sing a song to",
    "{S} rushed over to hand the {obj} to", "{S} came over to give a {obj} to", "{S} turned and smiled at",
    "{S} waved goodbye to",
)

# Made-up past-tense verbs for curriculum level 7's composed actions, drawn afresh for each
# prompt from the onset-vowel-coda combinations ("{S} glorked a {obj} to"): too many and too
# rare to become known verbs, so the model must find the indirect object from the sentence's
# shape, as it must for held-out verbs. The combinations that are English words are never
# drawn (``test_corpus.py`` checks that no drawable verb occurs in the rest of the corpus).
_ONSETS = ("bl", "br", "cr", "dr", "fl", "fr", "gl", "gr", "pl", "pr", "sk", "sl", "sn", "sp", "st", "tr",
           "z", "v", "m", "n", "k", "j", "h", "w")
_VOWELS = ("a", "e", "i", "o", "u", "oo", "ee")
_CODAS = ("b", "d", "g", "k", "m", "n", "p", "rk", "rp", "mp", "nk", "sk", "ft", "lt", "zz")
# the combinations that are English words
_WORDS = {"blanked", "blinked", "bloomed", "crafted", "cramped", "cranked", "drafted", "drifted",
          "droned", "flunked", "franked", "grafted", "heeded", "hefted", "hilted", "honed",
          "honked", "hooked", "hoped", "humped", "jolted", "jumped", "kilted", "kinked", "melted",
          "minked", "molted", "mooned", "needed", "planked", "pranked", "skunked", "slinked",
          "slumped", "spanked", "spooned", "stamped", "stanked", "stinked", "stomped", "stooped",
          "tramped", "trooped", "weeded", "wefted", "wilted", "winked", "worked", "zoned"}
NONCE_SHAPES: tuple[str, ...] = ("{S} {verb} a {obj} to", "{S} {verb} the {obj} to", "{S} {verb} it to",
                                 "{S} {verb} a {obj} for", "{S} quickly {verb} the {obj} to")


@functools.cache
def nonce_verbs() -> tuple[str, ...]:
    """Every made-up verb level 7 may draw."""
    return tuple(verb for onset in _ONSETS for vowel in _VOWELS for coda in _CODAS
                 if (verb := onset + vowel + coda + "ed") not in _WORDS)


def nonce_action(rng: random.Random) -> str:
    return rng.choice(NONCE_SHAPES).replace("{verb}", rng.choice(nonce_verbs()))


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

    Training prompts are a fixed template or a composed opener + action, with the share and
    the openers and actions of the current ``curriculum`` level;
    held-out prompts use ``HELDOUT_TEMPLATES`` only. The patch prefix repeats the other
    name, so its answer is the clean subject.
    """
    level = curriculum.current()
    if split == "train" and rng.random() < level.ioi_composed_share:
        opener, action = rng.choice(OPENERS[:level.ioi_openers]), rng.choice(ACTIONS[:level.ioi_actions])
        if level.ioi_nonce_share and rng.random() < level.ioi_nonce_share:
            action = nonce_action(rng)
        template = f"{opener} {action}"
    else:
        template = rng.choice(templates_for(split))
    return fill_template(rng, template, split)


def fill_template(rng: random.Random, template: str, split: str) -> tuple[str, str, str, str]:
    """``template`` with two names of ``split``, a place and an object: (clean prefix, patch
    prefix, indirect object, subject)."""
    a, b = rng.sample(names_for(split, "ioi"), 2)
    io, s = (a, b) if rng.random() < 0.5 else (b, a)
    fill = dict(A=a, B=b, place=rng.choice(PLACES), obj=rng.choice(OBJECTS))
    return template.format(S=s, **fill), template.format(S=io, **fill), io, s


def fresh_subject_sentence(rng: random.Random, split: str) -> str:
    """An IOI sentence whose subject is a third name, not one of the two introduced ("When
    Mary and John went to the store, Kate gave a drink to them"): nobody is singled out, so
    it ends with " them". Beside the IOI sentences, where the subject repeats a name and the
    answer is the other name, the next token depends on whether the subject is a repeat
    (curriculum level 10; docs/circuits.md, "IOI")."""
    clean, _, io, s = ioi_prompt(rng, split)
    third = rng.choice([n for n in names_for(split, "ioi") if n not in (io, s)])
    head, _, tail = clean.rpartition(s)  # the subject's last occurrence (S2)
    return f"{head}{third}{tail} them"


def surname_sentence(rng: random.Random, split: str) -> str:
    """An IOI sentence with full names, whose subject is named by surname alone ("When Mary
    Grace and John Owen went to the store, Owen gave a drink to Mary"): the subject's token is
    no candidate answer, so the model has to find where it was said before (curriculum
    level 11)."""
    clean, _, io, s = ioi_prompt(rng, split)
    io_surname, s_surname = rng.sample([n for n in names_for(split, "ioi") if n not in (io, s)], 2)
    words = {io: f"{io} {io_surname}", s: f"{s} {s_surname}"}
    first = re.compile(rf"\b({re.escape(io)}|{re.escape(s)})\b")
    head, _, tail = clean.rpartition(s)  # S2 takes the subject's surname
    head = first.sub(lambda m: words[m.group(1)], head)
    return f"{head}{s_surname}{tail} {io}"


def ioi_document(rng: random.Random, split: str) -> str:
    """One to three complete IOI sentences."""
    sentences = []
    level = curriculum.current()
    fresh, surname = (level.ioi_fresh_subject_share, level.ioi_surname_share) if split == "train" else (0.0, 0.0)
    for _ in range(rng.choice((1, 2, 3))):
        if fresh and rng.random() < fresh:
            sentences.append(fresh_subject_sentence(rng, split) + rng.choice(_ENDINGS))
            continue
        if surname and rng.random() < surname:
            sentences.append(surname_sentence(rng, split) + rng.choice(_ENDINGS))
            continue
        clean, _, io, _ = ioi_prompt(rng, split)
        sentences.append(f"{clean} {io}{rng.choice(_ENDINGS)}")
    return " ".join(sentences)


def ioi_examples(n: int, seed: int = 0, split: str = "heldout") -> list[dict]:
    """``n`` clean/patch IOI pairs; answers are names with a leading space."""
    rng = random.Random(f"ioi-examples:{seed}:{split}")
    examples = []
    for _ in range(n):
        examples.append(as_example(*ioi_prompt(rng, split)))
    return examples


def as_example(clean: str, patch: str, io: str, s: str) -> dict:
    """A clean/patch pair in the behaviour-dataset form; answers are names with a leading space."""
    return {"clean_prefix": clean, "clean_answer": " " + io, "patch_prefix": patch, "patch_answer": " " + s}
