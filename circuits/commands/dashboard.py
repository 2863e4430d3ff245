"""``sae dashboard``: feature dashboards from one streamed pass over an activation store."""

from __future__ import annotations

import argparse

from circuits.dashboard.build import DashboardConfig, build_dashboard

NAME = "dashboard"
HELP = "write an HTML page and a JSON record per feature (density, contexts, logits, correlations)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = DashboardConfig(sae="", acts="")
    parser.add_argument("sae", metavar="SAE_DIR",
                        help="SAE folder (SAELens layout), or a `sae train` run folder holding one SAE")
    parser.add_argument("--acts", default="", help="activation store harvested for the SAE's hook (required; "
                        "without it the error gives the `sae harvest` command that makes one)")
    parser.add_argument("--out", default=defaults.out, help="output folder (default: %(default)s)")
    parser.add_argument("--features", default=defaults.features, help='e.g. 0:500, "3,7,10:20" or all '
                        "(default: %(default)s)")
    parser.add_argument("--tokens", type=int, default=None, help="stream only the first N tokens of the store")
    parser.add_argument("--top-k", type=int, default=defaults.top_k, help="top-activating contexts per feature")
    parser.add_argument("--quantile-intervals", type=int, default=defaults.quantile_intervals,
                        help="equal-mass intervals of the activation distribution to sample from")
    parser.add_argument("--per-interval", type=int, default=defaults.per_interval, help="samples per interval")
    parser.add_argument("--context-before", type=int, default=defaults.context_before)
    parser.add_argument("--context-after", type=int, default=defaults.context_after)
    parser.add_argument("--correlated", type=int, default=defaults.correlated, help="correlated features listed")
    parser.add_argument("--logits", type=int, default=defaults.logits, help="top and bottom logit tokens listed")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--flow", action="append", metavar="PATH",
                        help="flow neighbours: the --out folder of `sae flow`, or a JSON file "
                             '{"features": {"<index>": [{...}, ...]}}; repeatable')
    parser.add_argument("--circuits", action="append", metavar="PATH",
                        help="circuit membership: the --out folder of `sae circuit` (or its circuit.json), or a "
                             'JSON file {"features": {"<index>": [{...}, ...]}}; repeatable')
    parser.add_argument("--supervised", action="append", metavar="FILE",
                        help="the --out report of `sae supervised` on this SAE: each feature's page lists the "
                             "attribute values it detects best; repeatable")
    parser.add_argument("--compare", action="append", metavar="FILE",
                        help="the --json file of `sae compare` on this SAE and another: each feature's page gives "
                             "its best match there, whether it is shared and its split family; repeatable")
    parser.add_argument("--neuronpedia", metavar="DIR", help="also write Neuronpedia batch files into DIR")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dashboard in --out")
    parser.add_argument("--no-progress", action="store_true")


def _needs_store(sae_dir: str) -> str:
    """The missing --acts error, with the harvest command for this SAE's model and hook."""
    from sae.io import load_sae, one_sae_folder
    sae = load_sae(one_sae_folder(sae_dir))
    model = sae.metadata.get("model_name") or "MODEL"
    return (f"--acts is required: the dashboard streams an activation store of {sae.cfg.hook}; make one with "
            f"`sae harvest --model {model} --hooks {sae.cfg.hook} --tokens 1M --out acts/`, then pass --acts acts/")


def run(args: argparse.Namespace) -> int:
    from activations.errors import ToolkitError
    for name in ("top_k", "quantile_intervals", "per_interval", "correlated", "logits", "batch_size"):
        if getattr(args, name) < 1:
            raise ToolkitError(f"--{name.replace('_', '-')} must be at least 1")
    if args.context_before < 0 or args.context_after < 0 or (args.tokens is not None and args.tokens < 1):
        raise ToolkitError("--context-before/--context-after must be >= 0 and --tokens >= 1")
    if not args.acts:
        raise ToolkitError(_needs_store(args.sae))
    cfg = DashboardConfig(sae=args.sae, acts=args.acts, out=args.out, features=args.features, tokens=args.tokens,
                          top_k=args.top_k, quantile_intervals=args.quantile_intervals, per_interval=args.per_interval,
                          reservoir=max(48, 4 * args.quantile_intervals * args.per_interval),
                          context_before=args.context_before, context_after=args.context_after,
                          correlated=args.correlated, logits=args.logits, batch_size=args.batch_size, seed=args.seed,
                          flow=args.flow, circuits=args.circuits, supervised=args.supervised, compare=args.compare,
                          overwrite=args.overwrite,
                          progress=not args.no_progress)
    out = build_dashboard(cfg)
    print(f"wrote {out / 'index.html'}")
    if args.neuronpedia:
        from circuits.dashboard.neuronpedia import convert_dashboard
        paths = convert_dashboard(out, args.neuronpedia)
        print(f"wrote {len(paths)} Neuronpedia batch file(s) to {args.neuronpedia}")
    return 0
