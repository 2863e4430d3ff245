"""SAEs judged against supervised feature dictionaries (Makelov, Lange & Nanda 2024).

A task (``circuits.supervised_tasks``: ``ioi``, ``sva``) describes each prompt by a few
attributes (IOI: the indirect object's name, the subject's name, their order). At a *node*,
a hook at one of the task's positions, the **supervised dictionary** is the attributes' mean
differences over a fitting set of prompts:

    u[attr][v] = E[a | attr = v] − E[a]        â(p) = E[a] + Σ_attr u[attr][value of p]

An SAE at the same hook is judged on the same three axes as this dictionary, on other prompts:

- **approximation** (the task's logit difference F at the last token): with a replaced by
  the reconstruction, ``sufficiency`` = (F(â) − F(mean)) / (F(a) − F(mean)); with the
  reconstruction taken out (a − â + E[a]), ``necessity`` = (F(a) − F(a − â + E[a])) /
  (F(a) − F(mean)). Both are 1 for a perfect dictionary; the SAE's â is its reconstruction.
- **control**: a prompt s and its counterfactual t differ in one attribute. Patching t's
  activation into s's run moves the task's control metric by ``patch_effect``. The
  supervised edit is a_s − u[attr][v_s] + u[attr][v_t]; the SAE edit adds, for at most k
  latents chosen greedily, (f_t − f_s)_j d_j, the change that brings the SAE's
  reconstruction closest to t's (the SAE's error term stays). ``score`` = mean(F(edit) −
  F(s)) / patch_effect: 1 does what patching does. A node whose patch effect is below
  ``MIN_EFFECT`` logits has no score.
- **interpretability**: for each attribute value, the latent whose firing (f > 0) best
  predicts it (F1 over the evaluation prompts); ``f1`` is the mean over values of that best
  F1, ``chance`` that of a detector that always fires.

Everything here runs under ``torch.no_grad()``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from activations.errors import ToolkitError
from circuits.supervised_tasks import Task, TaskPrompts, get_task
from sae.architectures import SparseCoder

BUDGETS = (1, 2, 4, 8, 16)
MIN_EFFECT = 0.5  # logits: a smaller patch effect says the node does not carry the attribute
BATCH = 64  # prompts per forward pass


@torch.no_grad()
def node_acts(model, prompts: TaskPrompts, hook: str, where: str) -> Tensor:
    """Activations [N, d] (float32) of ``hook`` at each prompt's ``where`` position."""
    rows = prompts.at(where)
    out = []
    for start in range(0, len(prompts), BATCH):
        acts = model.capture(prompts.tokens[start:start + BATCH], [hook])[hook]
        acts = acts.flatten(2) if acts.dim() == 4 else acts
        out.append(acts[torch.arange(acts.shape[0]), rows[start:start + BATCH]].float().cpu())
    return torch.cat(out)


@torch.no_grad()
def end_logits(model, prompts: TaskPrompts, hook: str | None = None, where: str = "end",
               new: Tensor | None = None) -> Tensor:
    """Logits [N, vocab] at each prompt's last token, with ``hook`` at ``where`` set to
    ``new`` [N, d] (or unpatched when ``hook`` is None)."""
    out = []
    rows = prompts.at(where)
    for start in range(0, len(prompts), BATCH):
        chunk = slice(start, start + BATCH)
        patches = None
        if hook is not None:
            def patch(act: Tensor, chunk=chunk) -> Tensor:
                act = act.clone()
                act[torch.arange(act.shape[0]), rows[chunk]] = new[chunk].to(act.device, act.dtype)
                return act
            patches = {hook: patch}
        logits = model.forward(prompts.tokens[chunk], patches)
        out.append(logits[torch.arange(logits.shape[0]), prompts.end[chunk]].float().cpu())
    return torch.cat(out)


@dataclass
class SupervisedDictionary:
    """mean [d] and u: attribute -> [n_values, d] (NaN rows for values never seen)."""

    mean: Tensor
    u: dict[str, Tensor]

    @classmethod
    def fit(cls, acts: Tensor, prompts: TaskPrompts) -> SupervisedDictionary:
        """Mean differences of acts [N, d] by each attribute's value."""
        mean = acts.mean(0)
        u = {}
        for attribute, values in prompts.values.items():
            n_values = len(prompts.value_names[attribute])
            sums = torch.zeros(n_values, acts.shape[1]).index_add_(0, values, acts)
            counts = torch.bincount(values, minlength=n_values).float()[:, None]
            u[attribute] = torch.where(counts > 0, sums / counts.clamp(min=1), float("nan")) - mean
        return cls(mean, u)

    def vectors(self, attribute: str, values: Tensor) -> Tensor:
        """u[attribute][values] [N, d]; refuses values the fitting prompts never had."""
        rows = self.u[attribute][values]
        if rows.isnan().any():
            unseen = self.u[attribute].isnan().any(1)
            raise ToolkitError(f"{int(unseen.sum())} of the {len(unseen)} {attribute} values never occur in the fitting "
                               "prompts; fit on more prompts (--fit-prompts)")
        return rows

    def reconstruct(self, prompts: TaskPrompts) -> Tensor:
        """â [N, d] = mean + Σ_attr u[attr][value]."""
        return self.mean + sum(self.vectors(a, v) for a, v in prompts.values.items())

    def edit(self, acts: Tensor, attribute: str, base: TaskPrompts, cf: TaskPrompts) -> Tensor:
        """a − u[attr][v_s] + u[attr][v_t] for acts [N, d] of ``base``."""
        return acts - self.vectors(attribute, base.values[attribute]) + self.vectors(attribute, cf.values[attribute])


@torch.no_grad()
def sae_edits(sae: SparseCoder, acts: Tensor, target: Tensor, budgets=BUDGETS) -> dict[int, Tensor]:
    """For each budget k, acts [N, d] plus the change of at most k latents that brings the
    SAE's reconstruction of acts closest to its reconstruction of target [N, d].

    Greedy: each step adds the latent j (not yet changed, f_t[j] ≠ f_s[j]) whose change
    c_j d_j = (f_t − f_s)_j d_j lowers ‖r − e − c_j d_j‖² the most, r being the reconstructions'
    difference and e the change so far; a step that would not lower it stops the edit.
    """
    dec = sae.W_dec.detach().float().cpu()
    f_s, f_t = sae.encode(acts.to(sae.W_dec.device)).float().cpu(), sae.encode(target.to(sae.W_dec.device)).float().cpu()
    coef = f_t - f_s  # [N, d_sae]
    residual = coef @ dec  # r - e, [N, d]
    sq_norms = dec.pow(2).sum(1)  # [d_sae]
    used = coef == 0
    edit = torch.zeros_like(acts)
    out = {}
    for step in range(1, max(budgets) + 1):
        gain = 2 * coef * (residual @ dec.t()) - coef.pow(2) * sq_norms
        gain = gain.masked_fill(used, float("-inf"))
        best = gain.argmax(1)
        rows = torch.arange(len(best))
        take = gain[rows, best] > 0
        change = coef[rows, best][:, None] * dec[best] * take[:, None]
        edit += change
        residual -= change
        used[rows, best] |= take
        if step in budgets:
            out[step] = acts + edit
    return out


def _ratio(moved: Tensor, effect: float) -> float | None:
    return float(moved.mean()) / effect if abs(effect) >= MIN_EFFECT else None


def refuse_transcoder(sae: SparseCoder) -> None:
    """A supervised dictionary lives at one hook: a transcoder (two hooks) is refused."""
    if sae.cfg.is_transcoder:
        raise ToolkitError(f"the coder on {sae.cfg.hook} is a transcoder (it writes {sae.cfg.output_hook}); "
                           "supervised dictionaries are compared with SAEs, which read and write one hook")


@dataclass
class _Pair:
    """One attribute's prompts and counterfactuals, their activations at the node [N, d], the
    metric before any edit [N] and the patch effect (logits)."""

    base: TaskPrompts
    cf: TaskPrompts
    a_s: Tensor
    a_t: Tensor
    start: Tensor
    effect: float = 0.0


class Node:
    """A hook at one of a task's positions, with everything that does not depend on the SAE
    judged there.

    That is the supervised dictionary (fitted on ``n_fit`` prompts, seed ``seed``), the
    ``n_eval`` evaluation prompts (seed ``seed + 1``) with their clean and mean-ablated logit
    differences, and one set of counterfactual pairs per attribute with its patch effect.
    Several SAEs at the hook (a sweep) are judged against one ``Node``.
    """

    @torch.no_grad()
    def __init__(self, model, hook: str, where: str, n_fit: int = 1024, n_eval: int = 256, seed: int = 0,
                 task: str | Task = "ioi"):
        self.model, self.hook, self.where, self.task = model, hook, where, get_task(task)
        if where not in self.task.positions:
            raise ToolkitError(f"unknown {self.task.name} position '{where}'; use one of "
                               f"{', '.join(self.task.positions)}")
        fit_prompts, _ = self.task.prompts(model, n_fit, seed)
        self.dictionary = SupervisedDictionary.fit(node_acts(model, fit_prompts, hook, where), fit_prompts)
        self.prompts, _ = self.task.prompts(model, n_eval, seed + 1)
        self.acts = node_acts(model, self.prompts, hook, where)
        self.clean = self.task.logit_diff(end_logits(model, self.prompts), self.prompts)
        self.ablated = self._logit_diff(self.dictionary.mean.expand_as(self.acts))
        self.pairs = {}
        for attribute in self.task.attributes:
            base, cf = self.task.prompts(model, n_eval, seed + 1, attribute)
            pair = _Pair(base, cf, node_acts(model, base, hook, where), node_acts(model, cf, hook, where),
                         self.task.control_metric(attribute, end_logits(model, base), base, cf))
            pair.effect = float(self._moved(attribute, pair, pair.a_t).mean())
            self.pairs[attribute] = pair

    def _logit_diff(self, new: Tensor) -> Tensor:
        return self.task.logit_diff(end_logits(self.model, self.prompts, self.hook, self.where, new), self.prompts)

    def _moved(self, attribute: str, pair: _Pair, new: Tensor) -> Tensor:
        """The metric's change [N] with ``new`` [N, d] at the node in the pair's base prompts."""
        logits = end_logits(self.model, pair.base, self.hook, self.where, new)
        return self.task.control_metric(attribute, logits, pair.base, pair.cf) - pair.start

    @torch.no_grad()
    def approximation(self, recon: Tensor) -> dict:
        """Sufficiency and necessity of a reconstruction [N, d] of the evaluation activations."""
        span = float((self.clean - self.ablated).mean())
        kept = self._logit_diff(recon)
        removed = self._logit_diff(self.acts - recon + self.dictionary.mean)
        return {"sufficiency": _ratio(kept - self.ablated, span), "necessity": _ratio(self.clean - removed, span)}

    @torch.no_grad()
    def supervised(self) -> dict:
        """The supervised dictionary's report: the logit differences, its approximation, and
        per attribute the patch effect and its edit's score."""
        control = {}
        for attribute, pair in self.pairs.items():
            edited = self.dictionary.edit(pair.a_s, attribute, pair.base, pair.cf)
            control[attribute] = {"patch_effect": pair.effect,
                                  "supervised": _ratio(self._moved(attribute, pair, edited), pair.effect)}
        return {"logit_diff": float(self.clean.mean()), "mean_ablated": float(self.ablated.mean()),
                "approximation": self.approximation(self.dictionary.reconstruct(self.prompts)), "control": control}

    @torch.no_grad()
    def judge(self, sae: SparseCoder, budgets=BUDGETS) -> dict:
        """An SAE at this hook: its approximation, its edits of at most k latents per attribute
        (``sae_k{k}``), and interpretability."""
        refuse_transcoder(sae)
        if sae.cfg.hook != self.hook:
            raise ToolkitError(f"the SAE reads {sae.cfg.hook}, not this node's hook {self.hook}")
        control = {}
        for attribute, pair in self.pairs.items():
            edits = sae_edits(sae, pair.a_s, pair.a_t, budgets)
            control[attribute] = {f"sae_k{k}": _ratio(self._moved(attribute, pair, edited), pair.effect)
                                  for k, edited in edits.items()}
        recon = sae(self.acts.to(sae.W_dec.device)).float().cpu()
        return {"approximation": self.approximation(recon), "control": control,
                "interpretability": interpretability(sae, self.acts, self.prompts)}


def best_f1(latents: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """For each label value v in labels [N]: the best F1 [n_values] of any latent's firing
    (latents [N, d_sae] > 0) as a detector of label == v, and that latent [n_values]."""
    fires = (latents > 0).float()
    values = labels.unique()
    onehot = (labels[:, None] == values[None, :]).float()  # [N, V]
    tp = onehot.t() @ fires  # [V, d_sae]
    f1 = 2 * tp / (onehot.sum(0)[:, None] + fires.sum(0)[None, :]).clamp(min=1)
    best, index = f1.max(1)
    return best, index


def chance_f1(labels: Tensor) -> float:
    """The mean F1 over values of a detector that always fires: 2p / (1 + p), p each value's share."""
    share = torch.bincount(labels).float()
    share = share[share > 0] / len(labels)
    return float((2 * share / (1 + share)).mean())


def interpretability(sae: SparseCoder, acts: Tensor, prompts: TaskPrompts) -> dict:
    """Per attribute: the mean best-latent F1 over its values, an always-firing detector's
    (``chance``), and for each value that occurs its best latent and that latent's F1."""
    latents = sae.encode(acts.to(sae.W_dec.device)).float().cpu()
    report = {}
    for attribute, labels in prompts.values.items():
        best, index = best_f1(latents, labels)
        names = prompts.value_names[attribute]
        per_value = {names[v]: {"latent": int(j), "f1": float(f)} for v, j, f in zip(labels.unique().tolist(), index, best)}
        report[attribute] = {"f1": float(best.mean()), "chance": chance_f1(labels), "best": per_value}
    return report




def node_report(node: Node, supervised: dict, judged: dict) -> dict:
    """One SAE's report at ``node`` (``Node.judge``) beside the supervised dictionary's
    (``Node.supervised``), in the layout of ``sae supervised --out``: approximation
    {logit_diff, mean_ablated, supervised, sae}, control {attribute: {patch_effect,
    supervised, sae_k1, ...}} and interpretability."""
    approximation = {"logit_diff": supervised["logit_diff"], "mean_ablated": supervised["mean_ablated"],
                     "supervised": supervised["approximation"], "sae": judged["approximation"]}
    control = {a: {**supervised["control"][a], **judged["control"][a]} for a in node.task.attributes}
    return {"task": node.task.name, "hook": node.hook, "position": node.where, "approximation": approximation, "control": control,
            "interpretability": judged["interpretability"]}


def evaluate_node(model, sae: SparseCoder, where: str, n_fit: int = 1024, n_eval: int = 256, seed: int = 0,
                  budgets=BUDGETS, task: str | Task = "ioi") -> dict:
    """The three evaluations of ``sae`` against a supervised dictionary at its hook and
    ``where`` (see ``Node``; to judge several SAEs at one hook, build the ``Node`` once)."""
    refuse_transcoder(sae)
    node = Node(model, sae.cfg.hook, where, n_fit, n_eval, seed, task)
    return node_report(node, node.supervised(), node.judge(sae, budgets))
