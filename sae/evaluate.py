"""Evaluate a sparse coder on raw activations, and spliced into its model.

- ``reconstruction_scores``: L0, FVU, explained variance, dead and dense fractions and the
  feature-density histogram over a window of tokens from an ``ActivationSource``.
- ``splice_scores``: CE loss recovered and KL recovered. The coder's output replaces the
  activations at its output hook (a transcoder reads its input hook in the same forward
  pass); baselines are the clean model and the output hook zero-ablated. ``ce_with_error``
  adds the coder's error term back, which must give the clean CE: a check of the splice.

Both read their data once for any number of coders.

Every number comes from ``sae.metrics``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from activations.errors import ToolkitError
from activations.source import ActivationSource, check_count
from sae import metrics
from sae.architectures import SparseCoder

Patches = dict[str, Callable[[Tensor], Tensor]]


def check_fits(sae: SparseCoder, source: ActivationSource) -> None:
    """Refuse activations that lack the coder's hooks or have other widths."""
    for hook, width in ((sae.cfg.hook, sae.d_in), (sae.cfg.output_hook, sae.d_out)):
        if hook not in source.hooks:
            raise ToolkitError(f"the activations have no hook {hook}, which this SAE needs; available hooks: "
                               f"{', '.join(source.hooks)}")
        if source.widths[hook] != width:
            raise ToolkitError(f"the SAE expects width {width} at {hook} but the activations have "
                               f"{source.widths[hook]}; they come from another model ({source.model_name})")


class _Window:
    """Running reconstruction and firing statistics of one coder."""

    def __init__(self, sae: SparseCoder):
        self.sae = sae
        self.stats = metrics.ReconstructionStats()
        self.counts = torch.zeros(sae.d_sae, dtype=torch.long, device=sae.W_dec.device)
        self.active = 0.0

    def update(self, x: Tensor, target: Tensor) -> None:
        latents = self.sae.encode(x)
        self.stats.update(target, self.sae.add_skip(self.sae.decode(latents), x))
        self.counts += metrics.firing_counts(latents)
        self.active += float(metrics.l0(latents)) * x.shape[0]

    def scores(self, n_tokens: int, dense_threshold: float) -> dict:
        hist, edges = metrics.density_histogram(self.counts, n_tokens)
        return {"n_tokens": n_tokens, "l0": self.active / n_tokens, "fvu": self.stats.fvu,
                "explained_variance": 1.0 - self.stats.fvu, "dead_fraction": metrics.dead_fraction(self.counts),
                "dense_fraction": metrics.dense_fraction(self.counts, n_tokens, dense_threshold),
                "dense_threshold": dense_threshold, "log10_density_histogram": {"counts": hist, "edges": edges}}


@torch.no_grad()
def reconstruction_scores(saes: list[SparseCoder], source: ActivationSource, n_tokens: int, batch_size: int = 4096,
                          seed: int = 1, dense_threshold: float = 0.1) -> list[tuple[dict, Tensor]]:
    """Scores of each coder over the same first ``n_tokens`` tokens of ``source`` (shuffled
    with ``seed``), read once for all coders.

    Returns, per coder, its scores and its per-latent firing counts [d_sae] over that window.
    """
    check_count("n_tokens", n_tokens)
    for sae in saes:
        check_fits(sae, source)
    windows = [_Window(sae) for sae in saes]
    hooks = list(dict.fromkeys(h for sae in saes for h in (sae.cfg.hook, sae.cfg.output_hook)))
    seen = 0
    for batch in source.batches(batch_size, hooks=hooks, seed=seed):
        batch = {h: acts[: n_tokens - seen] for h, acts in batch.items()}
        for window in windows:
            device = window.sae.W_dec.device
            window.update(batch[window.sae.cfg.hook].to(device), batch[window.sae.cfg.output_hook].to(device))
        seen += batch[hooks[0]].shape[0]
        if seen >= n_tokens:
            break
    return [(window.scores(seen, dense_threshold), window.counts) for window in windows]


def _coder_fn(sae: SparseCoder) -> Callable[[Tensor], Tensor]:
    """The coder on activations of any shape and dtype [.., d_in] -> [.., d_out]."""
    def apply(acts: Tensor) -> Tensor:
        return sae(acts.to(sae.W_dec.device, torch.float32)).to(acts.device, acts.dtype)
    return apply


def splice_patches(sae: SparseCoder) -> dict[str, Patches]:
    """Patch sets for ``LoadedModel.forward``: the coder, and the coder plus its error."""
    hook, hook_out = sae.cfg.hook, sae.cfg.output_hook
    coder = _coder_fn(sae)
    if hook == hook_out:
        readers: Patches = {}
        predict = coder
    else:  # a transcoder predicts the output hook from the input hook, read in the same pass
        seen: dict[str, Tensor] = {}

        def record(acts: Tensor) -> Tensor:
            seen["input"] = acts
            return acts

        def predict(acts: Tensor) -> Tensor:
            return coder(seen["input"])

        readers = {hook: record}

    def with_error(acts: Tensor) -> Tensor:
        recon = predict(acts)
        return recon + (acts - recon)

    return {"sae": {**readers, hook_out: predict}, "with_error": {**readers, hook_out: with_error}}


@torch.no_grad()
def splice_scores(saes: list[SparseCoder], model, tokens: Tensor, batch_size: int = 8) -> list[dict]:
    """CE and KL with each coder spliced into ``model``, on tokens [n, T]; see the module
    docstring. The clean and zero-ablated passes are shared by coders with the same hook.

    ``model`` needs ``forward(tokens, patches=None) -> logits [B, T, vocab]``.
    """
    totals = [dict.fromkeys(("ce_sae", "ce_with_error", "kl_sae", "kl_with_error"), 0.0) for _ in saes]
    baselines = {"ce_clean": 0.0} | {f"{kind}_zero:{sae.cfg.output_hook}": 0.0 for sae in saes for kind in ("ce", "kl")}
    for chunk in tokens.split(batch_size):
        weight = chunk.shape[0] / tokens.shape[0]
        clean = model.forward(chunk)
        chunk = chunk.to(clean.device)
        baselines["ce_clean"] += weight * metrics.next_token_ce(clean, chunk)
        for hook in dict.fromkeys(sae.cfg.output_hook for sae in saes):
            zero = model.forward(chunk, {hook: torch.zeros_like})
            baselines[f"ce_zero:{hook}"] += weight * metrics.next_token_ce(zero, chunk)
            baselines[f"kl_zero:{hook}"] += weight * metrics.next_token_kl(clean, zero)
        for sae, total in zip(saes, totals):
            for name, patches in splice_patches(sae).items():
                logits = model.forward(chunk, patches)
                total[f"ce_{name}"] += weight * metrics.next_token_ce(logits, chunk)
                total[f"kl_{name}"] += weight * metrics.next_token_kl(clean, logits)
    results = []
    for sae, total in zip(saes, totals):
        ce_clean = baselines["ce_clean"]
        ce_zero, kl_zero = (baselines[f"{kind}_zero:{sae.cfg.output_hook}"] for kind in ("ce", "kl"))
        results.append({"n_contexts": tokens.shape[0], "ce_clean": ce_clean, "ce_sae": total["ce_sae"],
                        "ce_zero": ce_zero, "ce_with_error": total["ce_with_error"],
                        "ce_loss_recovered": metrics.ce_loss_recovered(ce_clean, total["ce_sae"], ce_zero),
                        "kl_sae": total["kl_sae"], "kl_zero": kl_zero,
                        "kl_recovered": metrics.kl_recovered(total["kl_sae"], kl_zero)})
    return results


TABLE_COLUMNS = [("l0", "L0", "{:.1f}"), ("fvu", "FVU", "{:.4f}"), ("explained_variance", "expl.var", "{:.4f}"),
                 ("dead_fraction", "dead", "{:.3f}"), ("dense_fraction", "dense", "{:.3f}"),
                 ("ce_loss_recovered", "CE rec.", "{:.4f}"), ("kl_recovered", "KL rec.", "{:.4f}")]


TRAINING_COLUMNS = [("decoder_start_cos", "start cos", "{:.3f}")]
"""Columns that only a training run knows (``sae train``'s table); shown when a row has them."""


def format_table(results: dict[str, dict]) -> str:
    """An aligned text table, one row per coder, of the scores in ``results``."""
    columns = TABLE_COLUMNS + [c for c in TRAINING_COLUMNS if any(c[0] in s for s in results.values())]
    header = ["sae"] + [title for _, title, _ in columns]
    rows = [[name] + [fmt.format(scores[key]) if key in scores else "-" for key, _, fmt in columns]
            for name, scores in results.items()]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
             for r in [header, *rows]]
    return "\n".join(lines)
