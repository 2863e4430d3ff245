"""Curriculum levels of the training stream: how much of the composed IOI and agreement text
it writes.

The checkpoint shipped until 2026-11-29 trained in four stages on ever richer mixes of fixed
and composed prompts; the one shipped since, in one run at level 8 (docs/tiny_model.md). A
level fixes such a mix; ``use_level`` sets it for the training
documents generated inside it (``activations.tiny.train --phases`` steps through
levels in one run). Level 4 is the default: the stream that harvesting and every other use
reads. Level 5 adds 18 openers and 48 actions (more verbs, none of them held out); level 6
adds composed agreement frames across prepositional phrases; levels 7 and 8, made-up verbs in
30% and 10% of the composed IOI actions; level 9, possessors before those frames' subjects;
level 10, level 8 with a quarter of the training IOI sentences given a third name as subject
(they end in " them"), so that the next token depends on whether the subject is a repeat;
level 11, surnames besides (the subject named again by surname alone); level 12, level 11 with
14 more training question phrasings and half the training refusals and mentions about fresh
names, each rarely seen, from hundreds; level 13, level 8 with 80% of the training IOI
sentences in level 11's surname form and no fresh subjects (for fine-tuning the shipped model).
Held-out text never depends on the level.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator


@dataclass(frozen=True)
class Level:
    """One mix: the first ``ioi_openers`` × ``ioi_actions`` composed IOI prompts, written with
    these shares of training IOI prompts and of training "simple" agreement prompts."""

    ioi_openers: int
    ioi_actions: int
    ioi_composed_share: float
    sva_composed_share: float
    sva_pp_composed_share: float = 0.0
    ioi_nonce_share: float = 0.0  # of composed IOI prompts whose action has a made-up verb
    sva_pp_possessors: bool = False  # composed PP frames also open with possessors ("Anna's")
    ioi_fresh_subject_share: float = 0.0  # of training IOI sentences whose subject is a third name
    ioi_surname_share: float = 0.0  # of training IOI sentences with full names, the subject by its surname
    world_fresh_share: float = 0.0  # of training refusals and mentions about fresh names (world.fresh_names)
    world_more_questions: bool = False  # training Q/A also in world.MORE_QUESTIONS' phrasings


# Levels 1-4: the corpora of the four stages that trained the stage-4 checkpoint: fixed
# templates only; 12 openers × 22 actions for half the IOI prompts; 28 × 54 for 70% with
# composed agreement lead-ins; 31 × 68. Level 5: every opener and action. Level 6: level 5 with
# composed prepositional-phrase agreement frames (other determiners before "{S} {pn} {N}").
# Level 7: level 6 with made-up verbs in 30% of the composed IOI actions ("{S} glorked a
# {obj} to"), so that the answer has to come from the sentence's shape, not from the verb.
# Level 8: level 7 with made-up verbs in only 10% of the composed IOI actions (the shipped model's).
# Level 9: level 8 with possessors ("Anna's", "The teacher's") among the composed PP frames'
# determiners (a candidate, 2026-11-29: docs/tiny_model.md).
# Level 10: level 8 with a third name as the subject of 25% of the training IOI sentences, which
# end in " them" ("Kate gave a drink to them"): an experiment on whether the model then uses the
# repeat of the subject (docs/circuits.md, "IOI"; not shipped).
# Level 11: level 10 with 20% of them, and full names in 30% of the training IOI sentences, the
# subject named again by surname alone ("..., Owen gave a drink to Mary"): its token is no
# candidate, so only finding where it was said before tells whom to leave out (an experiment).
# Level 12: level 11 with half the training refusals ("Q: Where does Varmet live? A: I do not
# know.") and half the mentions about fresh names (``world.fresh_names``, hundreds, each rarely
# seen) instead of the 27 refused entities, so that refusing cannot be learnt name by name and
# has to come from the absence of facts; and its Q/A also in ``world.MORE_QUESTIONS``' 14
# phrasings, so that held-out phrasings no longer read as strange: an experiment on issue 4's
# never-asked entities (docs/circuits.md, "Entity phrasings and strangers (level 12)").
# Level 13: level 8 with full names in 80% of the training IOI sentences, the subject named
# again by surname alone, and no fresh subjects: a dense surname signal for fine-tuning the
# shipped model, which 800 steps at level 11 do not teach the surname rule (an experiment).
LEVELS: dict[int, Level] = {
    1: Level(0, 0, 0.0, 0.0),
    2: Level(12, 22, 0.5, 0.0),
    3: Level(28, 54, 0.7, 0.5),
    4: Level(31, 68, 0.7, 0.5),
    5: Level(49, 116, 0.7, 0.5),
    6: Level(49, 116, 0.7, 0.5, 0.5),
    7: Level(49, 116, 0.7, 0.5, 0.5, 0.3),
    8: Level(49, 116, 0.7, 0.5, 0.5, 0.1),
    9: Level(49, 116, 0.7, 0.5, 0.5, 0.1, True),
    10: Level(49, 116, 0.7, 0.5, 0.5, 0.1, False, 0.25),
    11: Level(49, 116, 0.7, 0.5, 0.5, 0.1, False, 0.2, 0.3),
    12: Level(49, 116, 0.7, 0.5, 0.5, 0.1, False, 0.2, 0.3, 0.5, True),
    13: Level(49, 116, 0.7, 0.5, 0.5, 0.1, False, 0.0, 0.8),
}
DEFAULT = 4
_current = [DEFAULT]


def current() -> Level:
    """The level that training documents are generated at now."""
    return LEVELS[_current[0]]


def check_level(level: int) -> int:
    if level not in LEVELS:
        raise ValueError(f"curriculum level must be one of {sorted(LEVELS)}, not {level!r}")
    return level


@contextmanager
def use_level(level: int) -> Iterator[Level]:
    """Generate training documents at ``level`` inside the block (documents are generated
    lazily: the level applies to those drawn from the stream while the block runs)."""
    previous = _current[0]
    _current[0] = check_level(level)
    try:
        yield LEVELS[level]
    finally:
        _current[0] = previous
