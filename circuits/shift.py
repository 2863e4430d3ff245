"""SHIFT (Marks et al. 2024, section 4): remove a classifier's reliance on a spurious cue by
ablating the SAE features it uses that a judge deems task-irrelevant.

1. ``circuits.datasets.shift_examples``: profession bios whose gender is a spurious cue
   (ambiguous training set: gender == profession; balanced test set: all four groups).
2. ``train_probe``: logistic regression on activations at ``hook`` mean-pooled over the real
   tokens (BOS excluded), trained on the ambiguous set.
3. ``probe_attribution``: attribution patching of the probe logit to every feature at or
   before ``hook``, zero baseline: mean over examples of |Σ_t ∇logit · f|, [d_sae] per hook.
4. ``ablate``: the user's features (hook -> index list) are zero-ablated in the spliced
   model (errors kept) and the pooled activations recomputed.
5. ``shift``: probe accuracy on the balanced set (profession label) before and after.

``select_by_cue`` is an automatic stand-in for the human judgement of the paper: among the
``top`` most attributed features it picks those whose mean activation differs more between
the two genders than between the two professions, on a small labelled judging set.
``random_like`` draws the control: as many other features from the same top ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from activations.errors import ToolkitError
from circuits.attribution import SplicedModel, hook_order
from circuits.circuit import keep_edit

Features = dict[str, list[int]]


@dataclass
class Texts:
    """Right-padded tokens [N, T], real-token mask [N, T] (BOS excluded), labels, cues [N]."""

    tokens: Tensor
    real: Tensor
    label: Tensor
    cue: Tensor


def encode_texts(model, rows: list[dict]) -> Texts:
    ids = [[model.bos_token_id] + model.tokenizer.encode(r["text"]) for r in rows]
    width = max(map(len, ids))
    tokens = torch.tensor([r + [model.bos_token_id] * (width - len(r)) for r in ids])
    real = torch.tensor([[0 < t < len(r) for t in range(width)] for r in ids])
    return Texts(tokens, real, torch.tensor([r["label"] for r in rows]), torch.tensor([r["cue"] for r in rows]))


def upstream_hooks(spliced: SplicedModel, hook: str) -> list[str]:
    return [h for h in spliced.hooks if hook_order(h) <= hook_order(hook)]


def pooled(spliced: SplicedModel, texts: Texts, hook: str, ablated: Features | None = None,
           grads: dict[str, Tensor] | None = None,
           fill: dict[str, Tensor] | None = None) -> tuple[Tensor, dict[str, tuple[Tensor, Tensor]]]:
    """Mean over real tokens of the activation at ``hook`` [N, d], with ``ablated`` features set
    to ``fill`` (hook -> [d_sae]; zero when not given); also hook -> (f, e) of the pass. With
    ``grads``, the pass keeps its graph and a backward fills hook -> ∂/∂x at the hooks before
    ``hook``."""
    hooks = upstream_hooks(spliced, hook)
    edits = {}
    for h, indices in (ablated or {}).items():
        mask = torch.ones(spliced.d_sae(h) + 1, dtype=torch.bool)
        mask[indices] = False
        edits[h] = keep_edit(mask, (fill[h] if fill else torch.zeros(()), torch.zeros(())))
    with torch.set_grad_enabled(grads is not None):
        _, nodes = spliced.run(texts.tokens, edits, hooks=hooks, stop_at=hook, grads=grads)
        f, e = nodes[hook]
        return real_token_mean(spliced.saes[hook].decode(f) + e, texts), nodes


def real_token_mean(x: Tensor, texts: Texts) -> Tensor:
    """[N, T, d] -> [N, d]: each text's mean over its real tokens, padding and BOS left out."""
    real = texts.real.to(x)[..., None]
    return (x * real).sum(1) / real.sum(1)


@torch.no_grad()
def real_token_means(nodes: dict[str, tuple[Tensor, Tensor]], texts: Texts) -> dict[str, Tensor]:
    """hook -> [d_sae] mean activation of every feature in ``nodes`` (a ``pooled`` pass over
    ``texts``) over the real tokens, padding and BOS left out."""
    real = texts.real.float()[..., None]
    return {h: (f * real).sum((0, 1)) / real.sum() for h, (f, _) in nodes.items()}


@dataclass
class Probe:
    """Logistic regression on pooled activations: logit = (x − mean) @ weight + bias."""

    mean: Tensor
    weight: Tensor
    bias: Tensor

    def logit(self, x: Tensor) -> Tensor:
        return (x - self.mean) @ self.weight + self.bias

    def accuracy(self, x: Tensor, labels: Tensor) -> float:
        return float(((self.logit(x) > 0).long() == labels).float().mean())


def train_probe(x: Tensor, labels: Tensor, steps: int = 300, lr: float = 0.05, weight_decay: float = 1e-3) -> Probe:
    """Fit a probe on x [N, d], labels [N] in {0, 1} (full-batch Adam, deterministic)."""
    x = x.detach()
    mean = x.mean(0)
    weight = torch.zeros(x.shape[1], requires_grad=True)
    bias = torch.zeros((), requires_grad=True)
    opt = torch.optim.Adam([weight, bias], lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits((x - mean) @ weight + bias, labels.float()).backward()
        opt.step()
    return Probe(mean, weight.detach(), bias.detach())


def probe_attribution(spliced: SplicedModel, texts: Texts, hook: str, probe: Probe) -> dict[str, Tensor]:
    """hook -> [d_sae] mean |∇ probe logit · f| over examples (zero-baseline AtP)."""
    grads: dict[str, Tensor] = {}
    x, nodes = pooled(spliced, texts, hook, grads=grads)
    probe.logit(x).sum().backward()
    real = texts.real.float()
    grads[hook] = (real / real.sum(1, keepdim=True))[..., None] * probe.weight  # the pooling, by hand
    return {h: ((grads[h] @ spliced.saes[h].W_dec.t()) * f.detach()).sum(1).abs().mean(0) for h, (f, _) in nodes.items()}


def select_by_cue(spliced: SplicedModel, judge: Texts, hook: str, scores: dict[str, Tensor], top: int = 400,
                  ratio: float = 1.5) -> Features:
    """Among the ``top`` most attributed features, those whose mean (pooled) activation differs
    at least ``ratio`` times more between cues (genders) than between labels (professions) on
    ``judge``. The defaults were chosen on a validation split (docs/circuits.md, SHIFT)."""
    flat = torch.cat([scores[h] for h in scores])
    chosen = set(flat.topk(min(top, flat.numel())).indices.tolist())
    with torch.no_grad():
        _, nodes = pooled(spliced, judge, hook)
    picked: Features = {}
    start = 0
    for h in scores:
        f = (nodes[h][0] * judge.real[..., None]).sum(1) / judge.real.sum(1, keepdim=True)  # [N, d_sae]

        def gap(groups: Tensor) -> Tensor:
            return (f[groups == 1].mean(0) - f[groups == 0].mean(0)).abs()
        by_cue, by_label = gap(judge.cue), gap(judge.label)
        for i in range(scores[h].numel()):
            if start + i in chosen and by_cue[i] > ratio * by_label[i]:
                picked.setdefault(h, []).append(i)
        start += scores[h].numel()
    return picked


def random_like(scores: dict[str, Tensor], like: Features, top: int = 400, seed: int = 0) -> Features:
    """As many features as ``like`` holds, drawn at random from the ``top`` most attributed
    features that ``like`` leaves out: the control ablation of Marks et al.'s Table 1, which
    tells gender features from any features the probe reads."""
    hooks = list(scores)
    flat = torch.cat([scores[h] for h in hooks])
    starts = torch.tensor([0] + [scores[h].numel() for h in hooks]).cumsum(0)
    taken = {int(starts[hooks.index(h)]) + i for h, indices in like.items() for i in indices}
    pool = [i for i in flat.topk(min(top, flat.numel())).indices.tolist() if i not in taken]
    n = len(taken)
    if n > len(pool):
        raise ToolkitError(f"cannot draw {n} control features from the {len(pool)} left among the top {top}; "
                           "raise top")
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:n]
    drawn: Features = {}
    for i in sorted(pool[j] for j in order.tolist()):
        h = int(torch.searchsorted(starts, i, right=True)) - 1
        drawn.setdefault(hooks[h], []).append(i - int(starts[h]))
    return drawn


def shift(spliced: SplicedModel, train: Texts, test: Texts, hook: str, ablated: Features,
          fill: str = "mean") -> dict[str, float]:
    """Balanced-set probe accuracy (profession) before and after ablating ``ablated`` (to their
    training-set means, or to zero with ``fill="zero"``), with the original probe and with a
    probe retrained on the ablated training set."""
    if fill not in ("mean", "zero"):
        raise ToolkitError(f"unknown ablation fill '{fill}'; use mean or zero")
    x_train, nodes = pooled(spliced, train, hook)
    values = real_token_means(nodes, train) if fill == "mean" else None
    probe = train_probe(x_train, train.label)
    x_test, _ = pooled(spliced, test, hook)
    x_train_ab, _ = pooled(spliced, train, hook, ablated, fill=values)
    x_test_ab, _ = pooled(spliced, test, hook, ablated, fill=values)
    retrained = train_probe(x_train_ab, train.label)
    return {"accuracy_before": probe.accuracy(x_test, test.label),
            "cue_accuracy_before": probe.accuracy(x_test, test.cue),
            "accuracy_after": probe.accuracy(x_test_ab, test.label),
            "cue_accuracy_after": probe.accuracy(x_test_ab, test.cue),
            "accuracy_after_retrain": retrained.accuracy(x_test_ab, test.label),
            "n_ablated": sum(len(v) for v in ablated.values())}
