"""The tinyworld corpus: determinism, the held-out rule, single-token answers, example sets."""

from __future__ import annotations

import functools
import hashlib
import random
import re
from itertools import islice

import pytest

from activations import corpus
from activations.corpus import agreement, curriculum, ioi, lexicon, names, people, world
from activations.corpus.stream import iter_tagged_documents

SAMPLE = 20_000  # documents scanned for held-out leaks (about 2 MB of text)


@pytest.fixture(scope="module")
def train_docs() -> list[tuple[str, str]]:
    return list(islice(iter_tagged_documents(seed=0, split="train"), SAMPLE))


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from activations.tiny import CHECKPOINT_DIR
    return AutoTokenizer.from_pretrained(CHECKPOINT_DIR)


def _alternation(words) -> str:
    return "(?:" + "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True)) + ")"


def _slot_patterns() -> dict[str, str]:
    nouns = [form for pairs in agreement.NOUNS.values() for pair in pairs for form in pair]
    person_names = _alternation(names.ALL_NAMES)
    return {"A": person_names, "B": person_names, "S": person_names, "N": person_names,
            "place": _alternation(lexicon.PLACES), "obj": _alternation(lexicon.OBJECTS),
            "adj": _alternation(agreement.ADJECTIVES), "p": _alternation(agreement.PREPOSITIONS),
            "pn": _alternation(agreement.NAME_PREPOSITIONS),
            "v": _alternation(v for vs in agreement.RC_VERBS.values() for v in vs), "nouns": _alternation(nouns),
            "nonce": r"[a-z]+ed"}


@functools.cache
def _template_regex(template: str, noun_slots: bool) -> re.Pattern:
    """A template with its slots replaced by every word that may fill them."""
    slots = _slot_patterns()
    if noun_slots:  # agreement frames: {S} and {A} are nouns
        slots = {**slots, "S": slots["nouns"], "A": slots["nouns"]}
    parts = re.split(r"\{(\w+)\}", template)
    body = "".join(re.escape(p) if i % 2 == 0 else slots[p] for i, p in enumerate(parts))
    return re.compile(r"(?<![A-Za-z])" + body + r"(?![A-Za-z])")


HELDOUT_REGEXES = ([_template_regex(t, False) for t in ioi.HELDOUT_TEMPLATES]
                   + [_template_regex(f.text, True) for f in agreement.HELDOUT_FRAMES])


def test_dataset_name():
    assert corpus.DATASET_NAME == "tinyworld"


def test_stream_is_deterministic_and_seeded():
    first = list(islice(corpus.iter_documents(seed=0), 300))
    assert first == list(islice(corpus.iter_documents(seed=0), 300))
    assert first != list(islice(corpus.iter_documents(seed=1), 300))
    assert first != list(islice(corpus.iter_documents(seed=0, split="heldout"), 300))
    assert all(isinstance(d, str) and d for d in first)


def test_stream_mixes_every_kind(train_docs):
    kinds = {kind for kind, _ in train_docs}
    assert kinds == set(corpus.stream.MIXTURE)


def test_sizes_of_the_name_and_template_pools():
    assert len(ioi.TRAIN_TEMPLATES) + len(ioi.HELDOUT_TEMPLATES) >= 15 and ioi.HELDOUT_TEMPLATES
    assert len(names.ALL_NAMES) >= 100 and len(set(names.ALL_NAMES)) == len(names.ALL_NAMES)
    assert 0.15 <= len(names.HELDOUT_NAMES) / len(names.ALL_NAMES) <= 0.25
    assert not set(ioi.TRAIN_TEMPLATES) & set(ioi.HELDOUT_TEMPLATES)
    assert {f.kind for f in agreement.HELDOUT_FRAMES} == set(agreement.KINDS)
    pairs = {(v.singular, v.plural) for v in agreement.VERBS}
    assert {("is", "are"), ("was", "were"), ("has", "have")} < pairs and len(pairs) >= 8


IOI_ROLE_KINDS = ("ioi", "agreement", "dialogue")  # documents whose names follow the IOI split


def test_heldout_names_never_fill_ioi_or_agreement_training_sentences(train_docs):
    heldout = re.compile(r"\b" + _alternation(names.HELDOUT_NAMES) + r"\b")
    for kind, doc in train_docs:
        if kind in IOI_ROLE_KINDS:
            assert not heldout.search(doc), doc
    # ...but they are ordinary words of the other training text
    other = " ".join(doc for kind, doc in train_docs if kind not in IOI_ROLE_KINDS)
    seen = set(heldout.findall(other))
    assert seen == set(names.HELDOUT_NAMES)


def test_heldout_templates_never_occur_in_training(train_docs):
    for _, doc in train_docs:
        for pattern in HELDOUT_REGEXES:
            assert not pattern.search(doc), (pattern.pattern[:80], doc)


def test_heldout_template_regexes_do_match_heldout_text():
    examples = corpus.ioi_examples(50) + corpus.sva_examples(50)
    assert all(any(p.search(e["clean_prefix"]) for p in HELDOUT_REGEXES) for e in examples)


def test_unknown_entity_facts_never_occur_in_training(train_docs):
    unknown = {e.name: e for e in world.ENTITIES if e.group != world.KNOWN}
    pattern = re.compile(r"\b" + _alternation(unknown) + r"\b")
    text = "\n".join(doc for _, doc in train_docs)
    mentioned = set()
    for sentence in re.split(r"(?<=[.?!])\s+|\n", text):
        for name in set(pattern.findall(sentence)):
            mentioned.add(name)
            facts = unknown[name].facts.values()
            assert not any(re.search(rf"\b{re.escape(v)}\b", sentence) for v in facts), sentence
            assert not re.search(rf"\b{name} (lives|is a|is in|works|eats)\b", sentence), sentence
            assert not sentence.startswith(f"A: {name}"), sentence
    assert len(mentioned) >= len(unknown) * 0.9  # unknown entities are seen, just without facts
    for line in text.split("\n"):
        if line.startswith("Q:"):
            for name in pattern.findall(line):
                assert unknown[name].group == world.UNKNOWN_TRAIN, line
                assert line.endswith("A: " + world.DONT_KNOW), line


def test_known_entities_are_answered_in_training(train_docs):
    qa = [line for _, doc in train_docs for line in doc.split("\n") if line.startswith("Q:")]
    known = {e.name for e in world.entities(group=world.KNOWN)}
    answered = {e for line in qa for e in known if re.search(rf"\b{e}\b", line) and world.DONT_KNOW not in line}
    assert len(answered) >= 0.9 * len(known)


def test_names_and_answer_verbs_are_single_tokens(tokenizer):
    words = list(names.ALL_NAMES) + [f for v in agreement.VERBS for f in (v.singular, v.plural)]
    for word in words:
        assert len(tokenizer.encode(" " + word, add_special_tokens=False)) == 1, word
    examples = (corpus.ioi_examples(100) + corpus.ioi_examples(100, split="train")
                + corpus.sva_examples(100) + corpus.sva_examples(100, split="train"))
    for e in examples:
        for key in ("clean_answer", "patch_answer"):
            assert len(tokenizer.encode(e[key], add_special_tokens=False)) == 1, e[key]


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_ioi_examples_are_well_formed(split):
    examples = corpus.ioi_examples(200, seed=3, split=split)
    assert examples == corpus.ioi_examples(200, seed=3, split=split)
    pool = set(names.TRAIN_NAMES if split == "train" else names.HELDOUT_NAMES)
    composed = [f"{o} {a}" for o in ioi.OPENERS for a in ioi.ACTIONS]
    templates = [*ioi.TRAIN_TEMPLATES, *composed] if split == "train" else ioi.HELDOUT_TEMPLATES
    assert not set(composed) & set(ioi.HELDOUT_TEMPLATES)
    literals = {t: [part for part in re.split(r"\{\w+\}", t) if part.strip()] for t in templates}
    for e in examples:
        assert set(e) == {"clean_prefix", "clean_answer", "patch_prefix", "patch_answer"}
        io, s = e["clean_answer"][1:], e["patch_answer"][1:]
        assert e["clean_answer"].startswith(" ") and io != s and {io, s} <= pool
        words = re.findall(r"\w+", e["clean_prefix"])
        assert words.count(io) == 1 and words.count(s) == 2
        patch_words = re.findall(r"\w+", e["patch_prefix"])
        assert patch_words.count(io) == 2 and patch_words.count(s) == 1
        prefix = e["clean_prefix"]  # a template can only match text that holds its fixed words, and
        # compiling all 5,700 templates' regexes would take 20 s: only those that can match are
        assert any(_template_regex(t, False).fullmatch(prefix) for t, parts in literals.items()
                   if all(part in prefix for part in parts))


@pytest.mark.parametrize("kind", ["simple", "pp", "rc", "all"])
@pytest.mark.parametrize("split", ["train", "heldout"])
def test_sva_examples_are_well_formed(kind, split):
    examples = corpus.sva_examples(200, seed=1, split=split, kind=kind)
    frames = agreement.frames_for(split, kind)
    if split == "train" and kind in ("simple", "all"):
        frames += agreement.composed_simple_frames()
    verbs = {(v.singular, v.plural) for v in agreement.VERBS}
    plural_subjects = 0
    regexes = [_template_regex(f.text, True) for f in frames]
    for e in examples:
        assert set(e) == {"clean_prefix", "clean_answer", "patch_prefix", "patch_answer"}
        right, wrong = e["clean_answer"][1:], e["patch_answer"][1:]
        assert e["clean_answer"].startswith(" ") and e["patch_answer"].startswith(" ")
        assert (right, wrong) in verbs or (wrong, right) in verbs
        assert e["clean_prefix"] != e["patch_prefix"]
        plural_subjects += (wrong, right) in verbs
        assert any(r.fullmatch(e["clean_prefix"]) for r in regexes)
    assert 0.3 < plural_subjects / len(examples) < 0.7


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_entity_prompts(split):
    known = corpus.entity_prompts(100, known=True, split=split)
    unknown = corpus.entity_prompts(100, known=False, split=split)
    assert known == corpus.entity_prompts(100, known=True, split=split)
    groups = {e.name: e for e in world.ENTITIES}
    for p in known:
        assert set(p) == {"prompt", "entity", "answer"}
        assert p["prompt"].startswith("Q: ") and p["prompt"].endswith(" A:") and p["entity"] in p["prompt"]
        assert groups[p["entity"]].group == world.KNOWN and p["answer"] in groups[p["entity"]].facts.values()
    expected = world.UNKNOWN_TRAIN if split == "train" else world.UNKNOWN_HELDOUT
    for p in unknown:
        assert p["answer"] is None and groups[p["entity"]].group == expected
    phrasings = {q.text for qs in world.QUESTIONS[split].values() for q in qs}
    for p in known + unknown:
        assert p["prompt"][len("Q: "):-len(" A:")].replace(p["entity"], "{E}") in phrasings


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_never_asked_prompts_come_from_two_disjoint_halves(split):
    halves = [corpus.never_asked_prompts(300, seed=2, half=half, split=split) for half in (0, 1)]
    assert halves[0] == corpus.never_asked_prompts(300, seed=2, half=0, split=split)
    entities = [{p["entity"] for p in half} for half in halves]
    never_asked = {e.name for e in world.entities(group=world.UNKNOWN_HELDOUT)}
    assert not entities[0] & entities[1] and entities[0] | entities[1] == never_asked
    for etype in (world.PERSON, world.CITY, world.CREATURE):  # each half has each type's entities
        names_of_type = {e.name for e in world.entities(etype, world.UNKNOWN_HELDOUT)}
        assert entities[0] & names_of_type and entities[1] & names_of_type
    phrasings = {q.text for qs in world.QUESTIONS[split].values() for q in qs}
    for p in halves[0] + halves[1]:
        assert p["answer"] is None and p["prompt"].startswith("Q: ") and p["prompt"].endswith(" A:")
        assert p["prompt"][len("Q: "):-len(" A:")].replace(p["entity"], "{E}") in phrasings
    with pytest.raises(ValueError, match="half must be 0 or 1"):
        corpus.never_asked_prompts(3, half=2)


def test_made_up_entities_never_occur_in_the_corpus(train_docs):
    prompts = corpus.made_up_entity_prompts(300, seed=5)
    assert prompts == corpus.made_up_entity_prompts(300, seed=5) != corpus.made_up_entity_prompts(300, seed=6)
    made_up = {p["entity"] for p in prompts}
    assert len(made_up) > 150 and not made_up & ({e.name for e in world.ENTITIES} | set(names.ALL_NAMES))
    words = {w for _, doc in train_docs for w in re.findall(r"[A-Za-z]+", doc)}
    heldout = {w for _, doc in islice(iter_tagged_documents(seed=0, split="heldout"), 2000)
               for w in re.findall(r"[A-Za-z]+", doc)}
    assert not made_up & (words | heldout)
    phrasings = {q.text for qs in world.QUESTIONS["train"].values() for q in qs}
    for p in prompts:
        assert p["answer"] is None and p["prompt"].startswith("Q: ") and p["prompt"].endswith(" A:")
        assert p["prompt"][len("Q: "):-len(" A:")].replace(p["entity"], "{E}") in phrasings


def test_heldout_stream_uses_only_heldout_pools():
    trained = re.compile(r"\b" + _alternation(names.TRAIN_NAMES) + r"\b")
    for kind, doc in islice(iter_tagged_documents(seed=0, split="heldout"), 2000):
        assert not trained.search(doc), doc
        if kind == "ioi":
            assert any(p.search(doc) for p in HELDOUT_REGEXES[:len(ioi.HELDOUT_TEMPLATES)]), doc


def test_profiles_state_each_persona_truly(train_docs):
    qa = re.compile(r"^Q: What pet does (\w+) have\? A: \1 has an? (\w+)\.$", re.M)
    pets = [m.groups() for kind, doc in train_docs if kind == "profile" for m in qa.finditer(doc)]
    assert pets and all(people.PERSONAS[name].pet == pet for name, pet in pets)
    assert len({p.name for p in people.PERSONAS.values()}) == len(names.ALL_NAMES)
    said = re.compile(r"\b(\w+)'s best friend is (\w+)\.")
    friends = [m.groups() for kind, doc in train_docs if kind == "profile" for m in said.finditer(doc)]
    assert friends and all(people.PERSONAS[name].friend == friend != name for name, friend in friends)
    mutual = [n for n, p in people.PERSONAS.items() if people.PERSONAS[p.friend].friend == n]
    assert len(mutual) >= len(names.ALL_NAMES) - 1


def test_dialogue_speakers_address_each_other(train_docs):
    for kind, doc in train_docs[:3000]:
        if kind != "dialogue":
            continue
        turns = [line.split(": ", 1) for line in doc.split("\n")]
        speakers = [speaker for speaker, _ in turns]
        assert len(set(speakers)) == 2 and all(a != b for a, b in zip(speakers, speakers[1:]))
        for speaker, text in turns:
            other = (set(speakers) - {speaker}).pop()
            assert other in text and speaker not in text


def test_misc_arithmetic_and_code_are_true():
    docs = [doc for kind, doc in islice(iter_tagged_documents(seed=2), 5000) if kind == "misc"]
    sums = [m for d in docs for m in re.finditer(r"^(\d+) ([-+*]) (\d+) = (\d+)$", d, re.M)]
    assert sums
    for m in sums:
        a, op, b, result = int(m[1]), m[2], int(m[3]), int(m[4])
        assert {"+": a + b, "-": a - b, "*": a * b}[op] == result


def _ioi_train_prompts(n: int = 3000) -> list[str]:
    rng = random.Random(7)
    return [ioi.ioi_prompt(rng, "train")[0] for _ in range(n)]


def _matches_any(prompts: list[str], templates) -> int:
    regexes = [_template_regex(t, False) for t in templates]
    return sum(any(r.search(p) for r in regexes) for p in prompts)


def test_curriculum_levels_are_nested_and_the_last_is_the_whole_corpus():
    levels = [curriculum.LEVELS[n] for n in sorted(curriculum.LEVELS)]
    for lower, higher in zip(levels, levels[1:]):
        assert lower.ioi_openers <= higher.ioi_openers and lower.ioi_actions <= higher.ioi_actions
        assert lower.sva_pp_composed_share <= higher.sva_pp_composed_share
    assert (levels[-1].ioi_openers, levels[-1].ioi_actions) == (len(ioi.OPENERS), len(ioi.ACTIONS))
    assert curriculum.current() == curriculum.LEVELS[curriculum.DEFAULT]


def test_curriculum_level_sets_the_training_ioi_mix_and_is_restored():
    with curriculum.use_level(1):
        level1 = _ioi_train_prompts()
    with curriculum.use_level(2):
        level2 = _ioi_train_prompts()
    with curriculum.use_level(5):
        level5 = _ioi_train_prompts()
    default = _ioi_train_prompts()
    assert curriculum.current() == curriculum.LEVELS[curriculum.DEFAULT]
    # level 1: fixed templates only; level 2: composed prompts from the first openers only
    assert _matches_any(level1, ioi.TRAIN_TEMPLATES) == len(level1)
    later_openers = ioi.OPENERS[curriculum.LEVELS[2].ioi_openers:]
    assert _matches_any(level2, later_openers) == 0
    assert _matches_any(level2, ioi.OPENERS) > 0.3 * len(level2)
    assert _matches_any(default, later_openers) > 0.3 * len(default)
    level5_openers = ioi.OPENERS[curriculum.LEVELS[4].ioi_openers:]
    assert _matches_any(default, level5_openers) == 0 < _matches_any(level5, level5_openers)


def test_curriculum_level_sets_the_composed_agreement_share():
    def leadin_share() -> float:
        rng = random.Random(3)
        prompts = [agreement.sva_prompt(rng, "train", "simple")[0] for _ in range(1000)]
        return sum(p.startswith(lead.split("{")[0]) for p in prompts
                   for lead in agreement.SIMPLE_LEADINS if not lead.startswith("In the")) / len(prompts)
    with curriculum.use_level(2):
        assert leadin_share() == 0
    assert leadin_share() > 0.3


def test_curriculum_level_6_composes_agreement_frames_across_prepositional_phrases():
    def pp_prompts() -> list[str]:
        rng = random.Random(5)
        return [agreement.sva_prompt(rng, "train", "pp")[0] for _ in range(1000)]
    possessive = re.compile(r"^(Your|His|Her|Their) ")
    with curriculum.use_level(5):
        level5 = pp_prompts()
    with curriculum.use_level(6):
        level6 = pp_prompts()
        docs = [doc for _, doc in islice(iter_tagged_documents(seed=2), 4000)]
    assert not any(possessive.match(p) for p in level5 + pp_prompts())
    assert 0.2 < sum(bool(possessive.match(p)) for p in level6) / len(level6) < 0.5
    regexes = [_template_regex(f.text, True)
               for f in agreement.frames_for("train", "pp") + agreement.composed_pp_frames()]
    assert all(any(r.fullmatch(p) for r in regexes) for p in level6)
    assert not any(f.text.startswith("Our ") for f in agreement.composed_pp_frames())
    for doc in docs:  # the composed frames never spell a held-out one
        assert not any(r.search(doc) for r in HELDOUT_REGEXES), doc


def test_curriculum_level_9_opens_composed_pp_frames_with_possessors_too():
    def pp_prompts(level: int) -> list[str]:
        rng = random.Random(6)
        with curriculum.use_level(level):
            return [agreement.sva_prompt(rng, "train", "pp")[0] for _ in range(1000)]
    possessor = re.compile(r"^(?:[A-Z][a-z]+|The old man|The teacher|My friend|The farmer)'s [a-z]")
    level8, level9 = pp_prompts(8), pp_prompts(9)
    assert not any(possessor.match(p) for p in level8)
    assert 0.1 < sum(bool(possessor.match(p)) for p in level9) / len(level9) < 0.4
    owners = {p.split("'s ")[0] for p in level9 if possessor.match(p)}
    assert len(owners) > 20 and not owners & set(names.names_for("heldout", "ioi"))
    assert not any(p.startswith("Our ") for p in level9)
    with curriculum.use_level(9):
        docs = [doc for _, doc in islice(iter_tagged_documents(seed=5), 4000)]
    for doc in docs:  # possessors never spell a held-out frame
        assert not any(r.search(doc) for r in HELDOUT_REGEXES), doc


def test_curriculum_levels_7_and_8_put_made_up_verbs_in_ioi_actions():
    shapes = [_template_regex(f"{opener} {shape}".replace("{verb}", "{nonce}"), False)
              for opener in ioi.OPENERS for shape in ioi.NONCE_SHAPES]
    real = {w for text in ioi.ACTIONS + ioi.TRAIN_TEMPLATES for w in re.findall(r"[a-z]+ed", text)}

    def nonce_share(level: int) -> float:
        with curriculum.use_level(level):
            prompts = _ioi_train_prompts()
        made_up = [p for p in prompts if any(r.fullmatch(p) for r in shapes)]
        verbs = [re.findall(r"\b([a-z]+ed) (?:a|the|it)\b", p)[-1] for p in made_up]
        verbs = [v for v in verbs if v not in real]
        assert not set(verbs) & {"tossed", "wrote", "decided"}
        return len(verbs) / len(prompts), len(set(verbs)) / max(len(verbs), 1)
    assert nonce_share(6)[0] == 0
    share, distinct = nonce_share(7)
    assert 0.1 < share < 0.35 and distinct > 0.8  # drawn afresh for each prompt, rarely repeated
    share8, distinct8 = nonce_share(8)
    assert 0.02 < share8 < 0.15 and share8 < share / 2 and distinct8 > 0.8
    for level, seed in ((7, 3), (8, 4)):
        with curriculum.use_level(level):
            docs = [doc for _, doc in islice(iter_tagged_documents(seed=seed), 4000)]
        for doc in docs:
            assert not any(r.search(doc) for r in HELDOUT_REGEXES), doc


def test_made_up_verbs_are_not_words_of_the_corpus(train_docs):
    verbs = set(ioi.nonce_verbs())
    assert len(verbs) > 2000
    used = {w for _, doc in train_docs for w in re.findall(r"[a-z]+ed\b", doc)}
    assert used and not verbs & used and not verbs & {"tossed", "decided"}


def test_the_default_training_stream_is_unchanged():
    """Harvests, the circuits fixture's SAEs and every number measured on them read this
    stream: a change to it (even to the order of random draws, as an opt-in level once made)
    must be deliberate, and then this digest updated with the re-measured docs."""
    digest = hashlib.sha1()
    for doc in islice(corpus.iter_documents(seed=0), 3000):
        digest.update(doc.encode())
    assert digest.hexdigest()[:8] == "feb41c61"


def test_heldout_examples_do_not_depend_on_the_curriculum_level():
    with curriculum.use_level(1):
        low = corpus.ioi_examples(50, seed=4), corpus.sva_examples(50, seed=4, kind="simple")
    assert low == (corpus.ioi_examples(50, seed=4), corpus.sva_examples(50, seed=4, kind="simple"))


def test_unknown_curriculum_level_is_a_clear_error():
    with pytest.raises(ValueError, match="curriculum level must be one of"):
        with curriculum.use_level(max(curriculum.LEVELS) + 1):
            pass
    assert curriculum.current() == curriculum.LEVELS[curriculum.DEFAULT]


def test_curriculum_level_10_gives_a_quarter_of_ioi_sentences_a_fresh_subject():
    """Level 10's extra sentences: the subject is a name the opener did not introduce, and the
    sentence ends in " them"; every other IOI sentence still repeats a name and ends in the
    other one. No other level and no held-out text has them."""
    def sentences(level: int, split: str = "train") -> list[str]:
        rng = random.Random(11)
        with curriculum.use_level(level):
            docs = [ioi.ioi_document(rng, split) for _ in range(1500)]
        return [s for doc in docs for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", doc)]

    ioi_names = set(names.names_for("train", "ioi"))

    def kinds(level: int, split: str = "train") -> tuple[int, int, int]:
        repeat = fresh = 0
        found = sentences(level, split)
        for sentence in found:
            words = re.findall(r"[A-Z][a-z]+", sentence)
            mentioned = [w for w in words if w in ioi_names or w in names.names_for("heldout", "ioi")]
            if " them" in sentence and len(set(mentioned)) == 3 and len(mentioned) == 3:
                fresh += 1
            elif len(mentioned) >= 3 and len(set(mentioned)) < len(mentioned):
                repeat += 1
        return repeat, fresh, len(found)

    repeat, fresh, total = kinds(10)
    assert 0.18 < fresh / (repeat + fresh) < 0.32, (repeat, fresh, total)
    for level, split in ((8, "train"), (10, "heldout")):
        assert kinds(level, split)[1] == 0
    with curriculum.use_level(10):
        docs = [doc for _, doc in islice(iter_tagged_documents(seed=6), 4000)]
    for doc in docs:  # a fresh subject never spells a held-out template
        assert not any(r.search(doc) for r in HELDOUT_REGEXES), doc


def test_curriculum_level_11_names_the_subject_by_surname_in_some_ioi_sentences():
    """Level 11's extra sentences: both people get a surname (another training first name),
    the subject is named again by surname alone, and the answer is the other's first name."""
    rng = random.Random(12)
    found = [ioi.surname_sentence(rng, "train") for _ in range(300)]
    for sentence in found:
        words = re.findall(r"\b[A-Z][a-z]+\b", sentence)
        people = [w for w in words if w in names.TRAIN_NAMES]
        assert len(people) == 6, sentence  # two full names, the surname again, the answer
        first, second, s2, answer = people[0:2], people[2:4], people[4], people[5]
        subject, other = (first, second) if s2 == first[1] else (second, first)
        assert s2 == subject[1] and answer == other[0] and len(set(first + second)) == 4, sentence
    with curriculum.use_level(11):
        docs = [ioi.ioi_document(rng, "train") for _ in range(1500)]
    assert 0.15 < sum(bool(re.search(r"[A-Z][a-z]+ [A-Z][a-z]+ and [A-Z][a-z]+ [A-Z][a-z]+ ", d)) for d in docs) / 1500
    with curriculum.use_level(8):
        assert not any(" and " in d and re.search(r"\b[A-Z][a-z]+ [A-Z][a-z]+ and [A-Z][a-z]+ [A-Z][a-z]+ ", d)
                       for d in (ioi.ioi_document(rng, "train") for _ in range(1500)))


def test_fresh_names_are_nobody_else_s():
    """Level 12's strangers share no name with the world's entities, people or the made-up
    prompts, so asking about them never contradicts a fact and never touches a validation set."""
    taken = set(names.ALL_NAMES) | {e.name for e in world.ENTITIES}
    made_up = {p["entity"] for seed in range(4) for p in world.made_up_entity_prompts(200, seed)}
    for etype in (world.PERSON, world.CITY, world.CREATURE):
        fresh = world.fresh_names(etype)
        assert len(fresh) >= 150 and len(set(fresh)) == len(fresh)
        assert not set(fresh) & (taken | made_up), etype


def test_curriculum_level_12_refuses_fresh_names_in_training_text_only():
    """At level 12 about half the training refusals and mentions are about fresh names, and no
    fresh name is ever given a fact; held-out text and the levels below have none."""
    fresh = {n for t in (world.PERSON, world.CITY, world.CREATURE) for n in world.fresh_names(t)}
    unknown_train = {e.name for e in world.entities(group=world.UNKNOWN_TRAIN)}

    def refusals(level: int, split: str) -> tuple[int, int, int]:
        rng = random.Random(13)
        about_fresh = about_world = answered_fresh = 0
        with curriculum.use_level(level):
            docs = [world.world_document(rng, split) for _ in range(3000)]
        for doc in docs:
            for line in doc.split("\n"):
                who = {w for w in re.findall(r"[A-Za-z]+", line)}
                if line.endswith(world.DONT_KNOW):
                    about_fresh += bool(who & fresh)
                    about_world += bool(who & unknown_train)
                elif line.startswith("Q:"):
                    answered_fresh += bool(who & fresh)
        return about_fresh, about_world, answered_fresh

    about_fresh, about_world, answered = refusals(12, "train")
    assert 0.4 < about_fresh / (about_fresh + about_world) < 0.6 and answered == 0, (about_fresh, about_world)
    assert refusals(11, "train")[0] == 0 and refusals(12, "heldout")[0] == 0
    rng = random.Random(14)
    with curriculum.use_level(12):
        mentions = " ".join(d for d in (world.world_document(rng, "train") for _ in range(2000)) if "Q:" not in d)
    assert set(re.findall(r"[A-Za-z]+", mentions)) & fresh


def test_curriculum_level_12_asks_in_more_phrasings_but_never_held_out_ones():
    """Level 12's training Q/A also use ``MORE_QUESTIONS``, none a held-out phrasing; held-out
    text, the lower levels and the evaluation prompts keep their own phrasings."""
    heldout = {q.text for qs in world.QUESTIONS["heldout"].values() for q in qs}
    more = {q.text for qs in world.MORE_QUESTIONS.values() for q in qs}
    assert not more & heldout and not more & {q.text for qs in world.QUESTIONS["train"].values() for q in qs}

    def asked(level: int, split: str) -> tuple[set[str], list[dict]]:
        """The questions in level ``level``'s world documents, and the evaluation prompts drawn there."""
        rng = random.Random(15)
        with curriculum.use_level(level):
            docs = [world.world_document(rng, split) for _ in range(3000)]
            prompts = world.entity_prompts(50, True, 0, "train") + world.made_up_entity_prompts(50, 0)
        return {q for doc in docs for q in re.findall(r"Q: (.*?) A:", doc)}, prompts

    def uses(questions: set[str], texts: set[str]) -> bool:
        patterns = [re.compile("^" + re.escape(t).replace(re.escape("{E}"), r"\w+") + "$") for t in texts]
        return any(p.match(q) for q in questions for p in patterns)

    level12, prompts12 = asked(12, "train")
    level11, prompts11 = asked(11, "train")
    assert prompts12 == prompts11
    assert uses(level12, more) and not uses(level11, more)
    assert not uses(asked(12, "heldout")[0], more) and not uses(level12, heldout)


def test_curriculum_level_13_names_most_subjects_by_surname_and_none_fresh():
    """Level 13, for fine-tuning the level-8 model on the surname rule: about 80% of training
    IOI sentences name the subject by surname, none has a fresh subject, held-out text has neither."""
    full_names = re.compile(r"\b[A-Z][a-z]+ [A-Z][a-z]+ and [A-Z][a-z]+ [A-Z][a-z]+ ")
    rng = random.Random(13)

    def docs(level: int, split: str = "train") -> list[str]:
        with curriculum.use_level(level):
            return [ioi.ioi_document(rng, split) for _ in range(1500)]

    level13 = docs(13)
    with_surnames = sum(bool(full_names.search(d)) for d in level13) / len(level13)
    assert 0.85 < with_surnames < 0.97, with_surnames  # 1 - 0.2^k over k = 1, 2, 3 sentences: 0.92
    assert not any(" to them" in d for d in level13)
    assert any(" to them" in d for d in docs(11))  # the fresh subjects this level leaves out
    assert not any(full_names.search(d) or " to them" in d for d in docs(13, "heldout"))
