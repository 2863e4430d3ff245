"""``sae contrast``: the latents that tell two prompt sets apart (Ferrando et al. 2024), checked
on prompts the ranking did not see and against the dictionary-free direction."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from activations.errors import ToolkitError
from circuits.commands import check_widths
from circuits.contrastive import BUILTIN_SETS, Contrast, contrast, prompt_set

NAME = "contrast"
HELP = ("latents that fire more on prompt set A than on B (say, unknown against known entities), ranked by "
        "firing frequency, with their AUROC on held-out prompts")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sets = ", ".join(BUILTIN_SETS)
    p.add_argument("--sae", required=True, metavar="DIR", help="an SAE folder, or a run folder holding one SAE")
    p.add_argument("--a", required=True, metavar="SET",
                   help=f"prompts on which the latents should fire: a .txt/.jsonl/.json file or a built-in set ({sets})")
    p.add_argument("--b", required=True, metavar="SET", help="the prompts to contrast them with (same forms)")
    p.add_argument("--test-a", default="", metavar="SET",
                   help="evaluate on these instead of a held-out part of --a (a built-in set is drawn with --seed + 1)")
    p.add_argument("--test-b", default="", metavar="SET", help="evaluate on these instead of a held-out part of --b")
    p.add_argument("--holdout", type=float, default=0.25,
                   help="fraction of --a and --b kept out of the ranking to evaluate on, when --test-a/-b are not "
                        "given (0: rank on all, evaluate nothing)")
    p.add_argument("--position", type=int, default=-1, help="token position read in every prompt (-1: the last)")
    p.add_argument("--max-density", type=float, default=0.1,
                   help="leave out latents that fire on more than this fraction of ordinary tokens (the SAE "
                        "folder's sparsity.safetensors)")
    p.add_argument("--top", type=int, default=10, help="latents to list")
    p.add_argument("--n", type=int, default=200, help="prompts drawn for each built-in set")
    p.add_argument("--seed", type=int, default=0, help="seed of the built-in sets and of the held-out split")
    p.add_argument("--model", default="", help="model name or folder (default: the SAE's cfg.json)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default="", help="also write the result to this JSON file")


def _check(args: argparse.Namespace) -> None:
    if not 0 <= args.holdout < 1:
        raise ToolkitError(f"--holdout {args.holdout} must be at least 0 and below 1")
    if not 0 < args.max_density <= 1:
        raise ToolkitError(f"--max-density {args.max_density} must be above 0 and at most 1 (1: keep every latent)")
    if args.top < 1 or args.n < 1:
        raise ToolkitError(f"--top {args.top} and --n {args.n} must each be at least 1")
    if bool(args.test_a) != bool(args.test_b):
        raise ToolkitError("give both --test-a and --test-b, or neither (then --holdout splits --a and --b)")


def split(prompts: list[str], holdout: float, seed: int, name: str) -> tuple[list[str], list[str]]:
    """(ranking, evaluation) parts of ``prompts``: a seeded shuffle, ``holdout`` of it held out."""
    if holdout == 0:
        return prompts, []
    n_eval = round(len(prompts) * holdout)
    if n_eval < 1 or n_eval >= len(prompts):
        raise ToolkitError(f"--{name} has {len(prompts)} prompts: too few to hold out {holdout:g} of them and rank on "
                           "the rest; give more prompts, another --holdout, or --test-a/--test-b")
    order = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(seed)).tolist()
    return [prompts[i] for i in order[n_eval:]], [prompts[i] for i in order[:n_eval]]


def report(result: Contrast, sae_name: str, names: tuple[str, str], top: int) -> str:
    c = result.counts
    lines = [f"{sae_name} at position {result.position}: set a = {names[0]}, set b = {names[1]}",
             f"ranked on {c['rank_a']} + {c['rank_b']} prompts; evaluated on {c['eval_a']} + {c['eval_b']}"]
    if result.density is None:
        lines.append("no sparsity.safetensors in the SAE folder: no latent left out for density")
    else:
        dropped = int((result.density > result.max_density).sum())
        lines.append(f"{dropped} latents denser than {result.max_density:g} on ordinary tokens left out")
    lines.append(f"{'rank':>4} {'latent':>7} {'fires a':>8} {'fires b':>8} {'a - b':>7} {'density':>8}")
    for rank, row in enumerate(result.rows(top), 1):
        density = "-" if row["density"] is None else f"{row['density']:.4f}"
        lines.append(f"{rank:4d} {row['latent']:7d} {row['freq_a']:8.3f} {row['freq_b']:8.3f} "
                     f"{row['difference']:7.3f} {density:>8}")
    if result.auroc_top:
        tops = "  ".join(f"top {n}: {value:.3f}" for n, value in result.auroc_top.items())
        lines.append(f"AUROC, set a above set b on the evaluation prompts, summed activation of the {tops}")
        lines.append(f"AUROC along the difference of the hook's mean activations (no dictionary): "
                     f"{result.dense_auroc:.3f}")
    return "\n".join(lines)


def as_json(result: Contrast, sae_path: str, names: tuple[str, str], top: int) -> dict:
    return {"sae": sae_path, "hook": result.hook, "position": result.position, "a": names[0], "b": names[1],
            "counts": result.counts, "max_density": result.max_density if result.density is not None else None,
            "latents": result.rows(top), "auroc_top": {str(n): v for n, v in result.auroc_top.items()},
            "dense_auroc": result.dense_auroc}


def run(args: argparse.Namespace) -> int:
    from activations.models import load_model
    from activations.store import write_json
    from sae.io import load_log_density, load_sae, one_sae_folder
    _check(args)
    folder = one_sae_folder(args.sae)
    sae = load_sae(folder, args.device)
    model_name = args.model or sae.metadata.get("model_name") or ""
    if not model_name:
        raise ToolkitError("the SAE's cfg.json names no model; pass --model")
    a, b = prompt_set(args.a, args.n, args.seed), prompt_set(args.b, args.n, args.seed)
    if args.test_a:
        test_a, test_b = prompt_set(args.test_a, args.n, args.seed + 1), prompt_set(args.test_b, args.n, args.seed + 1)
    else:
        (a, test_a), (b, test_b) = split(a, args.holdout, args.seed, "a"), split(b, args.holdout, args.seed, "b")
    model = load_model(model_name, args.device)
    check_widths(model, model_name, [sae])
    log_density = load_log_density(folder)
    density = None if log_density is None else 10 ** log_density.float()
    result = contrast(model, sae, a, b, test_a, test_b, density, args.max_density, (1, 4, 8, args.top),
                      args.position)
    names = (args.a + (f" (test: {args.test_a})" if args.test_a else ""),
             args.b + (f" (test: {args.test_b})" if args.test_b else ""))
    print(report(result, folder.name, names, args.top))
    if args.json:
        write_json(Path(args.json), as_json(result, str(folder.resolve()), names, args.top))
    return 0
