"""``sae supervised``: judge SAEs against supervised feature dictionaries of a task (IOI or
agreement; Makelov et al. 2024) on approximation, control and interpretability; print two
tables and write JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from activations.errors import ToolkitError
from circuits.supervised import BUDGETS, MIN_EFFECT, Node, node_report, refuse_transcoder
from circuits.supervised_tasks import get_task

NAME = "supervised"
HELP = ("judge SAEs against supervised feature dictionaries of IOI or agreement (Makelov et al. 2024): "
        "approximation, control, interpretability")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sae_dirs", nargs="+", metavar="SAE_DIR", help="SAE folders or `sae train` run folders")
    p.add_argument("--model", default="", help="model name or folder (default: the SAEs' cfg.json)")
    p.add_argument("--task", default="ioi",
                   help="ioi (attributes io, s, pos) or sva (number, attractor, noun); see docs/supervised.md")
    p.add_argument("--positions", default="",
                   help="comma-separated node positions (default: all of the task's): 'end' (the last token), and "
                        "'s2' (ioi: the subject's second mention) or 'subject' (sva: the subject noun)")
    p.add_argument("--fit-prompts", type=int, default=1024, help="prompts the supervised dictionary is fitted on")
    p.add_argument("--prompts", type=int, default=256, help="other prompts everything is measured on")
    p.add_argument("--budgets", default=",".join(map(str, BUDGETS)),
                   help="comma-separated numbers of SAE latents an edit may change")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="", help="write the full report to this JSON file")
    p.add_argument("--device", default="cpu")


def _list(spec: str, what: str, allowed=None, cast=str) -> list:
    try:
        items = [cast(item) for item in spec.split(",") if item]
    except ValueError:
        raise ToolkitError(f"--{what} '{spec}' is not a comma-separated list of integers") from None
    bad = [str(i) for i in items if (allowed is not None and i not in allowed) or (cast is int and i < 1)]
    if not items or bad:
        raise ToolkitError(f"--{what} '{spec}': give " + (f"some of {', '.join(allowed)}" if allowed else
                                                           "positive integers, e.g. 1,2,4"))
    return items


def _fmt(x) -> str:
    return "     -" if x is None else f"{x:6.3f}"


def _label(report: dict) -> str:
    return f"{Path(report['sae']).name} @{report['position']}"


def _print(reports: list[dict], budgets: list[int], attributes: tuple[str, ...]) -> None:
    width = max(len(_label(r)) for r in reports)
    print("approximation (sufficiency / necessity of the reconstruction) and interpretability (best-latent F1, "
          "chance in brackets)")
    print(f"{'node':<{width}}  {'suff sup':>8} {'suff sae':>8} {'nec sup':>8} {'nec sae':>8}   "
          + "  ".join(f"{'F1 ' + a:>16}" for a in attributes))
    for r in reports:
        a, i = r["approximation"], r["interpretability"]
        print(f"{_label(r):<{width}}  {_fmt(a['supervised']['sufficiency']):>8} "
              f"{_fmt(a['sae']['sufficiency']):>8} {_fmt(a['supervised']['necessity']):>8} "
              f"{_fmt(a['sae']['necessity']):>8}   "
              + "  ".join(f"{i[x]['f1']:.3f} ({i[x]['chance']:.3f})".rjust(16) for x in attributes))
    print(f"\ncontrol (share of the patch effect an edit achieves; '-': the patch moves the metric by < {MIN_EFFECT} "
          "logits)")
    print(f"{'node':<{width}}  {'attribute':>9} {'patch':>7} {'sup':>6} " + " ".join(f"{'k=' + str(k):>6}" for k in budgets))
    for r in reports:
        for attribute, c in r["control"].items():
            print(f"{_label(r):<{width}}  {attribute:>9} {c['patch_effect']:+7.2f} "
                  f"{_fmt(c['supervised'])} " + " ".join(_fmt(c[f'sae_k{k}']) for k in budgets))


def run(args: argparse.Namespace) -> int:
    from activations.models import load_model
    from activations.source import check_count
    from activations.store import write_json
    from sae.io import load_sae, sae_folders
    task = get_task(args.task)
    positions = _list(args.positions or ",".join(task.positions), "positions", task.positions)
    budgets = sorted(set(_list(args.budgets, "budgets", cast=int)))
    check_count("--fit-prompts", args.fit_prompts)
    check_count("--prompts", args.prompts)
    out = Path(args.out) if args.out else None
    if out is not None and out.is_dir():
        raise ToolkitError(f"--out '{out}' is a folder; give a .json file name")
    folders = [f for d in args.sae_dirs for f in sae_folders(d)]
    saes = [load_sae(f, args.device) for f in folders]
    names = {sae.metadata.get("model_name") for sae in saes} - {None}
    if len(names) > 1 and not args.model:
        raise ToolkitError(f"the SAEs come from different models ({', '.join(sorted(names))}); pass --model")
    model_name = args.model or next(iter(names), "")
    if not model_name:
        raise ToolkitError("the SAEs' cfg.json names no model; pass --model")
    model = load_model(model_name, args.device)
    for folder, sae in zip(folders, saes):  # every SAE checked before any work
        refuse_transcoder(sae)
        if model.hook_width(sae.cfg.hook) != sae.d_in:
            raise ToolkitError(f"{folder} has d_in {sae.d_in} but {model_name} has width "
                               f"{model.hook_width(sae.cfg.hook)} at {sae.cfg.hook}; it belongs to another model")
    reports = []
    by_hook = {}
    for folder, sae in zip(folders, saes):
        by_hook.setdefault(sae.cfg.hook, []).append((folder, sae))
    for hook, group in by_hook.items():
        for where in positions:
            node = Node(model, hook, where, args.fit_prompts, args.prompts, args.seed, task)
            supervised = node.supervised()
            for folder, sae in group:
                reports.append({"sae": str(folder), **node_report(node, supervised, node.judge(sae, tuple(budgets)))})
    _print(reports, budgets, task.attributes)
    if out is not None:
        settings = {"task": task.name, "model": model_name, "fit_prompts": args.fit_prompts, "prompts": args.prompts,
                    "seed": args.seed, "budgets": budgets, "min_effect": MIN_EFFECT}
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, {"settings": settings, "nodes": reports})
        print(f"\nwrote {out}")
    return 0
