"""Tasks for supervised feature dictionaries: prompts described by attributes, counterfactuals
that change one attribute, and the metrics that edits should move.

A task draws prompts from the embedded generator's held-out templates and names, so the
model never saw them, and describes each prompt by a few attributes with integer values.

- ``ioi``: "When Bella and Ivan went to the park, Ivan gave a ball to" → " Bella". The
  attributes are ``io`` (the indirect object's name), ``s`` (the subject's name) and ``pos``
  (0 when the indirect object is named first). The positions are ``end`` and ``s2``, the
  subject's second mention. F = logit(IO) − logit(S). The control metrics are logit(IO_new)
  − logit(IO) for ``io``, logit(S) − logit(S_new) for ``s`` and logit(S) − logit(IO) for
  ``pos``.
- ``sva``: "The teachers near the old dog" → " are" over " is", in the held-out frames with
  an attractor noun (a prepositional phrase or a relative clause). The attributes are
  ``number`` (1 for a plural subject), ``attractor`` (1 for a plural attractor) and ``noun``
  (the subject's lemma). The positions are ``end`` and ``subject``, the subject noun's last
  token. F = logit(right verb form) − logit(wrong form). The control metric is
  logit(the counterfactual's form) − logit(the prompt's form) for ``number``, and F for the
  other two, whose change should not move the verb.

A counterfactual changes its attribute only, and pairs whose prompts tokenise to different
lengths are drawn again, so that positions line up for patching.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

import torch
from torch import Tensor

from activations.errors import ToolkitError


@dataclass
class TaskPrompts:
    """Tokenised prompts, right-padded.

    tokens [N, T]; positions: name -> [N] token positions (``end`` is each prompt's last
    token); values: attribute -> [N] long, indices into value_names[attribute] (what each
    value is: a name, "singular", ...); answers: name -> [N] token ids that the task's
    metrics read.
    """

    tokens: Tensor
    positions: dict[str, Tensor]
    values: dict[str, Tensor]
    answers: dict[str, Tensor]
    value_names: dict[str, tuple[str, ...]]

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @property
    def end(self) -> Tensor:
        return self.positions["end"]

    def at(self, where: str) -> Tensor:
        if where not in self.positions:
            raise ToolkitError(f"unknown position '{where}'; use one of {', '.join(self.positions)}")
        return self.positions[where]


def _pick(logits: Tensor, ids: Tensor) -> Tensor:
    return logits[torch.arange(logits.shape[0]), ids]


def _one_token(model, text: str) -> int | None:
    ids = model.tokenizer.encode(text)
    return ids[0] if len(ids) == 1 else None


@functools.lru_cache(maxsize=8)
def _single_token_names(tokenizer) -> tuple[str, ...]:
    from activations.corpus.names import names_for
    return tuple(n for n in names_for("heldout", "ioi") if len(tokenizer.encode(" " + n)) == 1)


class Task:
    """A task's prompts and metrics; subclasses say how to draw, change and read a prompt."""

    name: str
    attributes: tuple[str, ...]
    positions: tuple[str, ...]

    def draw(self, model, rng: random.Random) -> dict:
        """One prompt's slots."""
        raise NotImplementedError

    def change(self, model, slots: dict, attribute: str, rng: random.Random) -> dict:
        """The slots with ``attribute`` changed, everything else kept."""
        raise NotImplementedError

    def text(self, slots: dict) -> str:
        raise NotImplementedError

    def describe(self, model, slots: dict, ids: list[int]) -> tuple[dict, dict, dict]:
        """(positions, attribute values, answer ids) of one tokenised prompt (ids, BOS first)."""
        raise NotImplementedError

    def value_names(self, model) -> dict[str, tuple[str, ...]]:
        """attribute -> what each of its values is."""
        raise NotImplementedError

    def logit_diff(self, logits: Tensor, prompts: TaskPrompts) -> Tensor:
        """F [N] from end logits [N, vocab]: the behaviour the approximation scores keep."""
        raise NotImplementedError

    def control_metric(self, attribute: str, logits: Tensor, base: TaskPrompts, cf: TaskPrompts) -> Tensor:
        """The metric [N] an edit of ``attribute`` should move, from end logits [N, vocab]."""
        raise NotImplementedError

    def prompts(self, model, n: int, seed: int = 0, attribute: str | None = None) -> tuple[TaskPrompts, TaskPrompts | None]:
        """``n`` prompts and, with ``attribute``, their counterfactuals changing it."""
        if attribute is not None and attribute not in self.attributes:
            raise ToolkitError(f"unknown {self.name} attribute '{attribute}'; use one of {', '.join(self.attributes)}")
        rng = random.Random(f"supervised-{self.name}:{seed}:{attribute}")
        encode = model.tokenizer.encode
        base, other = [], []
        for _ in range(50 * n):
            if len(base) == n:
                break
            slots = self.draw(model, rng)
            cf = self.change(model, slots, attribute, rng) if attribute else None
            if cf is not None and len(encode(self.text(slots))) != len(encode(self.text(cf))):
                continue
            base.append(slots)
            other.append(cf)
        if len(base) < n:
            raise ToolkitError(f"could draw only {len(base)} of {n} {self.name} prompt pairs of equal token length")
        width = 1 + max(len(encode(self.text(s))) for s in base + [c for c in other if c])
        return self._tokenize(model, base, width), (self._tokenize(model, other, width) if attribute else None)

    def _tokenize(self, model, all_slots: list[dict], width: int) -> TaskPrompts:
        bos = model.bos_token_id
        rows = [[bos] + model.tokenizer.encode(self.text(slots)) for slots in all_slots]
        described = [self.describe(model, slots, row) for slots, row in zip(all_slots, rows)]

        def stacked(i: int) -> dict[str, Tensor]:
            return {key: torch.tensor([d[i][key] for d in described]) for key in described[0][i]}

        positions = {"end": torch.tensor([len(row) - 1 for row in rows]), **stacked(0)}
        tokens = torch.tensor([row + [bos] * (width - len(row)) for row in rows])
        return TaskPrompts(tokens, positions, stacked(1), stacked(2), self.value_names(model))


class IOITask(Task):
    name, attributes, positions = "ioi", ("io", "s", "pos"), ("end", "s2")

    @staticmethod
    def names(model) -> tuple[str, ...]:
        """The held-out IOI names that are one token after a space (the answer's form)."""
        names = _single_token_names(model.tokenizer)
        if len(names) < 4:
            raise ToolkitError(f"only {len(names)} of the generator's held-out names are single tokens for "
                               f"{model.name}'s tokenizer; the ioi task needs at least 4")
        return names

    def value_names(self, model) -> dict[str, tuple[str, ...]]:
        names = self.names(model)
        return {"io": names, "s": names, "pos": ("IO first", "IO second")}

    def draw(self, model, rng: random.Random) -> dict:
        from activations.corpus.ioi import templates_for
        from activations.corpus.lexicon import OBJECTS, PLACES
        io, s = rng.sample(self.names(model), 2)
        return {"template": rng.choice(templates_for("heldout")), "io": io, "s": s, "pos": rng.randrange(2),
                "place": rng.choice(PLACES), "obj": rng.choice(OBJECTS)}

    def change(self, model, slots: dict, attribute: str, rng: random.Random) -> dict:
        if attribute == "pos":
            return {**slots, "pos": 1 - slots["pos"]}
        others = [n for n in self.names(model) if n not in (slots["io"], slots["s"])]
        return {**slots, attribute: rng.choice(others)}

    def text(self, slots: dict) -> str:
        first, second = (slots["io"], slots["s"]) if slots["pos"] == 0 else (slots["s"], slots["io"])
        return slots["template"].format(A=first, B=second, S=slots["s"], place=slots["place"], obj=slots["obj"])

    def describe(self, model, slots: dict, ids: list[int]) -> tuple[dict, dict, dict]:
        names = self.names(model)
        io, s = _one_token(model, " " + slots["io"]), _one_token(model, " " + slots["s"])
        s2 = max(i for i, t in enumerate(ids) if t == s)  # the subject's last mention
        values = {"io": names.index(slots["io"]), "s": names.index(slots["s"]), "pos": slots["pos"]}
        return {"s2": s2}, values, {"io": io, "s": s}

    def logit_diff(self, logits: Tensor, prompts: TaskPrompts) -> Tensor:
        return _pick(logits, prompts.answers["io"]) - _pick(logits, prompts.answers["s"])

    def control_metric(self, attribute: str, logits: Tensor, base: TaskPrompts, cf: TaskPrompts) -> Tensor:
        a, b = base.answers, cf.answers
        if attribute == "io":
            return _pick(logits, b["io"]) - _pick(logits, a["io"])
        if attribute == "s":
            return _pick(logits, a["s"]) - _pick(logits, b["s"])
        return _pick(logits, a["s"]) - _pick(logits, a["io"])


class SVATask(Task):
    name, attributes, positions = "sva", ("number", "attractor", "noun"), ("end", "subject")

    @staticmethod
    def frames():
        from activations.corpus.agreement import frames_for
        return tuple(f for f in frames_for("heldout") if "{A}" in f.text)

    @staticmethod
    def subject_nouns() -> dict[str, tuple[tuple[str, str], ...]]:
        """(singular, plural) per class, leaving out nouns with one form for both ("sheep")."""
        from activations.corpus.agreement import NOUNS
        return {cls: tuple(pair for pair in pairs if pair[0] != pair[1]) for cls, pairs in NOUNS.items()}

    @classmethod
    def lemmas(cls) -> tuple[tuple[str, str], ...]:
        return tuple(pair for pairs in cls.subject_nouns().values() for pair in pairs)

    def value_names(self, model) -> dict[str, tuple[str, ...]]:
        return {"number": ("singular", "plural"), "attractor": ("singular", "plural"),
                "noun": tuple(singular for singular, _ in self.lemmas())}

    def draw(self, model, rng: random.Random) -> dict:
        from activations.corpus.agreement import ADJECTIVES, NOUNS, PREPOSITIONS, RC_VERBS, VERBS
        frame = rng.choice(self.frames())
        cls, a_cls = rng.choice(frame.subject), rng.choice(frame.attractor)
        verb = rng.choice([v for v in VERBS if cls in v.subjects])
        return {"frame": frame.text, "cls": cls, "subject": rng.choice(self.subject_nouns()[cls]), "number": rng.randrange(2),
                "a_cls": a_cls, "attractor_noun": rng.choice(NOUNS[a_cls]), "attractor": rng.randrange(2),
                "adj": rng.choice(ADJECTIVES), "p": rng.choice(PREPOSITIONS),
                "v": rng.choice(RC_VERBS[cls if frame.patient == "S" else a_cls]), "verb": (verb.singular, verb.plural)}

    def change(self, model, slots: dict, attribute: str, rng: random.Random) -> dict:
        if attribute == "noun":
            nouns = self.subject_nouns()[slots["cls"]]
            return {**slots, "subject": rng.choice([pair for pair in nouns if pair != slots["subject"]])}
        return {**slots, attribute: 1 - slots[attribute]}

    def text(self, slots: dict) -> str:
        return slots["frame"].format(S=slots["subject"][slots["number"]], A=slots["attractor_noun"][slots["attractor"]],
                                     adj=slots["adj"], p=slots["p"], v=slots["v"])

    def describe(self, model, slots: dict, ids: list[int]) -> tuple[dict, dict, dict]:
        head = slots["frame"].split("{S}")[0] + slots["subject"][slots["number"]]
        subject = len(model.tokenizer.encode(head))  # BOS shifts by one: the subject's last token
        singular, plural = (_one_token(model, " " + form) for form in slots["verb"])
        if None in (singular, plural):
            raise ToolkitError(f"the verb forms {slots['verb']} are not single tokens for {model.name}'s tokenizer; "
                               "the sva task needs them to be")
        right, wrong = (plural, singular) if slots["number"] else (singular, plural)
        values = {"number": slots["number"], "attractor": slots["attractor"], "noun": self.lemmas().index(slots["subject"])}
        return {"subject": subject}, values, {"right": right, "wrong": wrong}

    def logit_diff(self, logits: Tensor, prompts: TaskPrompts) -> Tensor:
        return _pick(logits, prompts.answers["right"]) - _pick(logits, prompts.answers["wrong"])

    def control_metric(self, attribute: str, logits: Tensor, base: TaskPrompts, cf: TaskPrompts) -> Tensor:
        if attribute == "number":
            return _pick(logits, cf.answers["right"]) - _pick(logits, base.answers["right"])
        return self.logit_diff(logits, base)


TASKS: dict[str, Task] = {task.name: task for task in (IOITask(), SVATask())}


def get_task(name: str | Task) -> Task:
    if isinstance(name, Task):
        return name
    if name not in TASKS:
        raise ToolkitError(f"unknown task '{name}'; use one of {', '.join(TASKS)}")
    return TASKS[name]
