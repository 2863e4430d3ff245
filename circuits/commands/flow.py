"""``sae flow``: data-free feature flow across layers; writes the classification table,
flow graphs (JSON) and an interactive HTML page, and optionally checks the flow on tokens."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from activations.errors import ToolkitError
from circuits.flow import CLASSES, FlowConfig, Thresholds, feature_flow
from circuits.flow_export import FLOW_OUTPUTS, check_out, write_flow
from circuits.flow_graph import flow_graph

NAME = "flow"
HELP = "feature flow across layers: classify residual features by their predecessors, draw flow graphs"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sae_dirs", nargs="+", metavar="SAE_DIR",
                   help="SAE folders on resid_pre/resid_post, attn_out and mlp_out of consecutive blocks, or "
                        "`sae train` run folders holding them")
    p.add_argument("--out", required=True, help="output folder (flow.csv, summary.json, graphs.json, flow.html)")
    p.add_argument("--resid-threshold", type=float, default=Thresholds.resid, help="t_r: residual predecessor cosine")
    p.add_argument("--module-threshold", type=float, default=Thresholds.module, help="t_m: attn/MLP predecessor cosine")
    p.add_argument("--layer-threshold", action="append", default=[], metavar="L:T_R:T_M",
                   help="per-block override, e.g. 2:0.6:0.4 (repeatable)")
    p.add_argument("--chain-threshold", type=float, default=None, help="flow graphs: cut chains below (default t_r)")
    p.add_argument("--seed", action="append", default=[], metavar="HOOK:FEATURE", help="flow-graph seed (repeatable)")
    p.add_argument("--seeds", type=int, default=5,
                   help="without --seed: graph this many most persistent features of the last residual SAE")
    p.add_argument("--check-contexts", type=int, default=0,
                   help="activation check on this many tinyworld contexts (0: skip); needs the SAEs' model")
    p.add_argument("--model", default="", help="model for the activation check (default: from cfg.json)")
    p.add_argument("--overwrite", action="store_true", help="replace the flow outputs already in --out")


def _layer_thresholds(specs: list[str]) -> dict[int, Thresholds]:
    out = {}
    for spec in specs:
        try:
            layer, t_r, t_m = spec.split(":")
            out[int(layer)] = Thresholds(float(t_r), float(t_m))
        except ValueError:
            raise ToolkitError(f"--layer-threshold '{spec}' is not LAYER:T_R:T_M, e.g. 2:0.6:0.4") from None
    return out


def _seeds(args, stack, flows) -> list[tuple[str, int]]:
    if args.seed:
        seeds = []
        for spec in args.seed:
            hook, _, feature = spec.rpartition(":")
            if not hook or not feature.isdigit():
                raise ToolkitError(f"--seed '{spec}' is not HOOK:FEATURE, e.g. blocks.3.hook_resid_post:17")
            seeds.append((hook, int(feature)))
        return seeds
    last = flows[-1]
    persistent = torch.nonzero(last.classes == CLASSES.index("persists")).squeeze(1)
    order = persistent[last.similarity[persistent, 0].argsort(descending=True)]
    return [(stack[-1].resid_out.hook, int(j)) for j in order[: args.seeds]]


def _check(args, stack, flows) -> dict:
    from activations.models import load_model
    from circuits.flow_check import activation_agreement
    from sae.data import eval_contexts
    name = args.model or stack[0].resid_out.model_name
    if not name:
        raise ToolkitError("the SAEs' cfg.json names no model; pass --model for the activation check")
    model = load_model(name, device="cpu")
    for block in stack:
        for d in (block.resid_in, block.attn, block.mlp, block.resid_out):
            if model.hook_width(d.hook) != d.d_in:
                raise ToolkitError(f"{d.folder} has d_in {d.d_in} but {name} has width {model.hook_width(d.hook)} at "
                                   f"{d.hook}; pass the SAEs' own model with --model")
    tokens = eval_contexts(model, "tinyworld", min(128, model.dims.n_ctx), args.check_contexts, seed=1)
    return {str(b.layer): activation_agreement(model, b, f, tokens) for b, f in zip(stack, flows)}


def _check_numbers(args) -> None:
    """Thresholds are cosines, counts are counts: refuse anything else before reading an SAE."""
    cosines = {"--resid-threshold": args.resid_threshold, "--module-threshold": args.module_threshold,
               "--chain-threshold": args.chain_threshold}
    for flag, value in cosines.items():
        if value is not None and not -1 <= value <= 1:  # also refuses NaN
            raise ToolkitError(f"{flag} {value}: a cosine threshold lies in [-1, 1]")
    if args.seeds < 0 or args.check_contexts < 0:
        raise ToolkitError(f"--seeds {args.seeds} --check-contexts {args.check_contexts}: give counts >= 0")


def run(args: argparse.Namespace) -> int:
    _check_numbers(args)
    check_out(args.out, FLOW_OUTPUTS, args.overwrite, "sae flow")
    default = Thresholds(args.resid_threshold, args.module_threshold)
    config = FlowConfig(default, _layer_thresholds(args.layer_threshold))
    stack, flows = feature_flow(args.sae_dirs, config)
    chain = args.resid_threshold if args.chain_threshold is None else args.chain_threshold
    graphs = [flow_graph(stack, hook, feature, chain, args.module_threshold)
              for hook, feature in _seeds(args, stack, flows)]
    agreement = _check(args, stack, flows) if args.check_contexts > 0 else None
    paths = write_flow(Path(args.out), stack, flows, graphs, agreement)
    print("block  " + "  ".join(f"{c:>14}" for c in CLASSES))
    for flow in flows:
        print(f"{flow.layer:>5}  " + "  ".join(f"{n:>14}" for n in flow.counts().values()))
    for layer, report in (agreement or {}).items():
        print(f"activation check, block {layer}: " + ", ".join(
            f"{c} {r['agreement']:.2f} (random {r['control']:.2f})" for c, r in report.items() if r["firings"]))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
