"""``sae inspect``: verify an activation store shard by shard, or the SAEs of an SAE or run
folder, and summarise what it holds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from activations.errors import ToolkitError
from activations.store import ActivationStore

NAME = "inspect"
HELP = ("verify an activation store (size, SHA-256, finite values of every shard) or the SAEs of an SAE or "
        "`sae train` run folder, and summarise it")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="PATH", help="activation store folder, SAE folder, `sae train` run folder, or a "
                                                "pretrained SAE as RELEASE:SAE_ID")


def _is_store(path: Path) -> bool:
    """A store, or something only a store error can describe (a file)."""
    return not path.is_dir() or (path / "manifest.json").exists()


def inspect_store(folder: str | Path) -> None:
    import torch

    store = ActivationStore(folder, verify=True)
    for position, shard in enumerate(store.iter_shards()):
        for hook in store.hooks:
            if not torch.isfinite(shard[hook]).all():
                raise ToolkitError(f"activations of {hook} contain NaN or inf in "
                                   f"'{store.folder / store.shards[position]['file']}'; harvest it again")
    m = store.manifest
    print(f"store {store.folder}: model {m['model']}, {store.n_tokens:,} tokens, {len(store.shards)} shards, "
          f"dtype {m['dtype']}, context {m['dataset']['context']}, dataset {m['dataset']['name']} "
          f"(seed {m['dataset']['seed']}); all shards verified")
    print(f"{'hook':<32} {'d':>6} {'mean norm':>10} {'variance':>10}")
    for hook in store.hooks:
        s = m["stats"][hook]
        print(f"{hook:<32} {store.widths[hook]:>6} {s['mean_norm']:>10.4f} {s['variance']:>10.4f}")


def _run_scores(folder: Path) -> dict:
    """The run's eval.json entry for an SAE in RUN/saes/, or {} (none, or unreadable)."""
    scores = folder.parent.parent / "eval.json"
    try:
        return json.loads(scores.read_text()).get(folder.name, {}) if scores.is_file() else {}
    except (ValueError, UnicodeDecodeError, AttributeError):
        return {}


def inspect_saes(path: str | Path) -> None:
    """Load every SAE that ``path`` names (``sae.io.sae_folders``), check its weights are
    finite, and print one row each: hooks, architecture, widths, sparsity, model, and the
    run's L0 and FVU where its eval.json has them."""
    import torch

    from sae.io import load_log_density, load_sae, sae_folders
    folders = sae_folders(path)
    rows = []
    for folder in folders:
        sae = load_sae(folder)
        bad = [name for name, p in sae.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise ToolkitError(f"SAE weights in '{folder}' contain NaN or inf ({', '.join(bad)}); train it again")
        cfg, density, scores = sae.cfg, load_log_density(folder), _run_scores(folder)
        hooks = cfg.hook + (f" -> {cfg.hook_out}" if cfg.hook_out else "") + (" (skip)" if cfg.skip else "")
        k = cfg.k if cfg.architecture in ("topk", "batchtopk", "matryoshka") else "-"
        dead = f"{float((density <= -10).float().mean()):.3f}" if density is not None else "-"
        score = lambda key, form: format(scores[key], form) if isinstance(scores.get(key), (int, float)) else "-"
        rows.append((folder.name, hooks, cfg.architecture, f"{sae.d_in}x{sae.d_sae}", str(k), dead,
                     score("l0", ".1f"), score("fvu", ".4f"), str(sae.metadata.get("model_name") or "-")))
    print(f"{len(rows)} SAE{'s' if len(rows) != 1 else ''} in {path}; weights loaded and finite")
    header = ("sae", "hooks", "architecture", "d_in x d_sae", "k", "never fired", "L0", "FVU", "model")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def run(args: argparse.Namespace) -> int:
    from sae.io import release_spec
    if release_spec(args.path) is not None:
        inspect_saes(args.path)
        return 0
    path = Path(args.path)
    if not path.exists():
        raise ToolkitError(f"'{path}' does not exist; pass an activation store, an SAE folder or a `sae train` "
                           "run folder")
    if _is_store(path):
        inspect_store(path)
        return 0
    from sae.io import NoSAEsError
    try:
        inspect_saes(path)
    except NoSAEsError:
        raise ToolkitError(f"'{path}' is neither an activation store (no manifest.json) nor an SAE folder or "
                           "`sae train` run folder; pass one of those") from None
    return 0
