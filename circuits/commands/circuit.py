"""``sae circuit``: find a sparse feature circuit for a behaviour and write JSON, HTML (and SVG)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from pathlib import Path

import torch

from activations.errors import ToolkitError

NAME = "circuit"
HELP = "sparse feature circuit (Marks et al. 2024): node and edge attribution, faithfulness, JSON/HTML/SVG"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="ioi, ioi_abc, sva_simple, sva_pp, sva_rc, or a .json/.jsonl file of "
                   "{clean_prefix, clean_answer, patch_prefix, patch_answer} objects")
    p.add_argument("--saes", required=True, metavar="RUN_DIR",
                   help="a `sae train` run folder, a folder of SAE folders, or one SAE folder")
    p.add_argument("--model", default="", help="model name or folder (default: the SAEs' cfg.json model_name)")
    p.add_argument("--out", required=True, help="output folder for circuit.json, circuit.html (and circuit.svg)")
    p.add_argument("--examples", type=int, default=64, help="examples drawn (half discover, half evaluate)")
    p.add_argument("--split", default="heldout", choices=("train", "heldout"), help="generator template split")
    p.add_argument("--method", default="ig", choices=("ig", "atp"))
    p.add_argument("--steps", type=int, default=10, help="integrated-gradient steps")
    p.add_argument("--baseline", default="counterfactual", choices=("counterfactual", "zero"))
    p.add_argument("--per-position", action="store_true", help="nodes per (feature, position), not summed")
    p.add_argument("--threshold", default="topk", choices=("topk", "relative", "absolute"))
    p.add_argument("--value", type=float, default=100, help="k for topk, a fraction for relative, an IE for absolute")
    p.add_argument("--search", type=int, default=0, metavar="STEPS",
                   help="gradient search over circuits of the selected size for STEPS steps (one forward and backward "
                        "pass each) on the discovery half, before any --refine swaps (docs/circuits.md, 'Refinement')")
    p.add_argument("--search-kicks", type=int, default=0, metavar="N",
                   help="after the --search steps, N more rounds of as many steps, each from the best circuit so far "
                        "with 30%% of its nodes, drawn at random, swapped for the best additions by in-context gradient")
    p.add_argument("--refine", type=int, default=0, metavar="ROUNDS",
                   help="swap nodes of the selected circuit for up to ROUNDS rounds to raise its faithfulness on the "
                        "discovery half (docs/circuits.md, 'Refinement'; 0 keeps the attribution's top nodes)")
    p.add_argument("--refine-candidates", type=int, default=8, metavar="N",
                   help="members and non-members tried per refinement round (3 x N exact runs: each alone, then the N best pairs)")
    p.add_argument("--edge-threshold", type=float, default=0.0, help="keep edges with |weight| above this")
    p.add_argument("--draw-edges", type=int, default=150, metavar="N",
                   help="the graph in circuit.html (and .svg) draws the N strongest edges; circuit.json keeps all")
    p.add_argument("--no-edges", action="store_true")
    p.add_argument("--sweep", default="10,25,50,100,200", help="circuit sizes for the faithfulness curve ('' skips)")
    p.add_argument("--check-top", type=int, default=0, metavar="N",
                   help="patch the N top nodes exactly and report how well the estimate ranks them (0 skips)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace the circuit files already in --out")
    p.add_argument("--device", default="cpu")


def load_saes(run_dir: str | Path, device: str = "cpu") -> dict:
    """hook -> SAE for every SAE folder that ``run_dir`` names: a `sae train` run folder, a folder
    of SAE folders, or one SAE folder (``sae.io.sae_folders``)."""
    from sae.io import load_sae, sae_folders
    saes = {}
    for folder in sae_folders(run_dir):
        sae = load_sae(folder, device)
        if sae.cfg.hook in saes:
            raise ToolkitError(f"two SAEs in '{run_dir}' read {sae.cfg.hook}; keep one per hook")
        saes[sae.cfg.hook] = sae
    return saes


def refine_circuit(spliced, found, held, masks, held_means, args) -> tuple[dict, dict]:
    """--search, then --refine, on the discovery batch: the refined masks, and their record for
    circuit.json (what ran, the discovery metric, the held-out faithfulness before)."""
    from circuits.circuit import evaluate
    from circuits.refine import gradient_search, refine

    start, history, swaps, searched = masks, [], 0, []
    if args.search:
        result = gradient_search(spliced, found, masks, args.search, progress=True, kicks=args.search_kicks,
                                 seed=args.seed)
        masks, history, swaps = result.masks, result.metric_history, len(result.swaps)
        searched.append(f"{len(result.swaps)} by gradient search")
    if args.refine:
        result = refine(spliced, found, masks, args.refine, args.refine_candidates, progress=True)
        masks, swaps = result.masks, swaps + len(result.swaps)
        history = history + result.metric_history[1:] if history else result.metric_history
        searched.append(f"{len(result.swaps)} by swap rounds")
    with torch.no_grad():
        before = evaluate(spliced, held, start, means=held_means)["faithfulness"]
    return masks, {"search_steps": args.search, "search_kicks": args.search_kicks, "rounds": args.refine,
                   "candidates": args.refine_candidates, "swaps": swaps, "searched": ", ".join(searched),
                   "discovery_metric": history, "heldout_faithfulness_before": before}


def _sweep_sizes(sweep: str) -> list[int]:
    """--sweep's circuit sizes, checked before any work is done."""
    try:
        sizes = [int(s) for s in sweep.split(",") if s.strip()]
    except ValueError:
        raise ToolkitError(f"--sweep '{sweep}' is not a comma-separated list of circuit sizes") from None
    if any(size < 1 for size in sizes):
        raise ToolkitError(f"--sweep '{sweep}': circuit sizes must be at least 1")
    return sizes


def _report_dropped(found, held, given: int) -> None:
    """One stderr line when examples were left out, with the reasons and their counts."""
    dropped = Counter(found.dropped) + Counter(held.dropped)
    if dropped:
        reasons = "; ".join(f"{n} {reason}" for reason, n in dropped.items())
        print(f"note: {sum(dropped.values())} of {given} examples left out ({reasons})", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from activations.models import load_model
    from circuits.attribution import SplicedModel, attribute, check_against_patching
    from circuits.circuit import evaluate, faithfulness_curve, mean_values, select_nodes
    from circuits.datasets import load_examples, tokenize_pairs, train_test_split
    from circuits.edges import compute_edges
    from circuits.flow_export import check_out
    from circuits.render import CIRCUIT_OUTPUTS, circuit_json, write_outputs

    if args.search < 0 or args.search_kicks < 0:
        raise ToolkitError(f"--search {args.search} --search-kicks {args.search_kicks}: give numbers >= 0")
    if args.search_kicks and not args.search:
        raise ToolkitError(f"--search-kicks {args.search_kicks} needs --search STEPS (the steps of each round)")
    if args.refine < 0 or args.refine_candidates < 1:
        raise ToolkitError(f"--refine {args.refine} --refine-candidates {args.refine_candidates}: give rounds >= 0 "
                           "and at least 1 candidate")
    if args.check_top == 1 or args.check_top < 0:
        raise ToolkitError(f"--check-top {args.check_top}: give 0 to skip, or at least 2 nodes to rank")
    if not math.isfinite(args.value):
        raise ToolkitError(f"--value {args.value} is not a finite number")
    if args.draw_edges < 0:
        raise ToolkitError(f"--draw-edges {args.draw_edges}: give 0 to draw none, or how many to draw")
    sizes = _sweep_sizes(args.sweep)
    check_out(args.out, CIRCUIT_OUTPUTS, args.overwrite, "sae circuit")
    saes = load_saes(args.saes, args.device)
    names = {s.metadata.get("model_name") for s in saes.values()} - {None, ""}
    if len(names) > 1:
        raise ToolkitError(f"the SAEs in '{args.saes}' come from different models ({', '.join(sorted(names))}); "
                           "a circuit splices SAEs of one model")
    model_name = args.model or next(iter(names), "")
    if not model_name:
        raise ToolkitError("the SAEs' cfg.json names no model; pass --model")
    model = load_model(model_name, device=args.device)
    spliced = SplicedModel(model, saes)
    train, test = train_test_split(load_examples(args.dataset, args.examples, args.seed, args.split), 0.5, args.seed)
    found, held = tokenize_pairs(model, train), tokenize_pairs(model, test)
    _report_dropped(found, held, len(train) + len(test))
    if args.per_position:  # per-position nodes need one width for discovery and evaluation
        width = max(found.clean.shape[1], held.clean.shape[1])
        found, held = tokenize_pairs(model, train, width), tokenize_pairs(model, test, width)
    attribution = attribute(spliced, found, args.method, args.steps, args.baseline, args.per_position)
    masks = select_nodes(attribution.scores, args.threshold, args.value)
    held_means = mean_values(spliced, held)
    refinement = None
    if args.search or args.refine:
        masks, refinement = refine_circuit(spliced, found, held, masks, held_means, args)
    edges = None if args.no_edges else compute_edges(spliced, found, attribution, masks,
                                                     threshold=args.edge_threshold)
    with torch.no_grad():
        scores = evaluate(spliced, held, masks, means=held_means)
        curve = faithfulness_curve(spliced, held, attribution.scores, sizes, means=held_means) if sizes else []
    meta = {"model": model_name, "dataset": args.dataset, "method": args.method, "steps": args.steps,
            "baseline": args.baseline, "per_position": args.per_position, "threshold": args.threshold,
            "value": args.value, "n_discover": len(found), "n_evaluate": len(held), "total_effect": attribution.total,
            "evaluation": scores, "faithfulness_curve": curve}
    if refinement:
        meta["refinement"] = refinement
    if args.check_top:
        meta["patching_check"] = check_against_patching(spliced, found, attribution, args.check_top, args.baseline)
    paths = write_outputs(circuit_json(attribution, masks, edges, meta), args.out, args.draw_edges)
    for stale in set(CIRCUIT_OUTPUTS) - {p.name for p in paths}:  # an old circuit.svg without graphviz now
        (Path(args.out) / stale).unlink(missing_ok=True)
    doc = json.loads(paths[0].read_text())
    print(f"{len(doc['nodes'])} nodes, {len(doc['edges'])} edges; faithfulness {scores['faithfulness']:.3f}, "
          f"completeness {scores['completeness']:.3f} on {len(held)} held-out examples")
    if refinement:
        print(f"  refined by {refinement['swaps']} swaps ({refinement['searched']}): held-out faithfulness "
              f"{refinement['heldout_faithfulness_before']:.3f} -> {scores['faithfulness']:.3f}")
    for point in curve:
        print(f"  top {point['size']:>4}: faithfulness {point['faithfulness']:.3f}")
    if args.check_top:
        check = meta["patching_check"]
        show = lambda r: "undefined (all values equal)" if r is None else f"{r:.3f}"
        print(f"  top {check['n']} nodes against exact patching: Spearman {show(check['spearman'])}, "
              f"Pearson {show(check['pearson'])}")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
