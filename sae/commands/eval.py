"""``sae eval``: score saved sparse coders and print a metrics table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from activations.errors import ToolkitError
from sae.commands.harvest import parse_count
from sae.data import eval_contexts, model_for, open_source
from sae.evaluate import format_table, reconstruction_scores, splice_scores
from sae.io import load_sae
from sae.trainer import resolve_device

NAME = "eval"
HELP = "evaluate saved SAEs: L0, FVU, dead/dense fractions, CE and KL loss recovered"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sae_dirs", nargs="+", metavar="SAE_DIR", help="SAE folders (cfg.json + sae_weights.safetensors)")
    p.add_argument("--acts", default="", help="activation store (default: harvest on the fly from the model)")
    p.add_argument("--model", default="", help="model for CE/KL and on-the-fly activations (default: from cfg.json)")
    p.add_argument("--dataset", default="tinyworld", help="token data for on-the-fly activations and CE/KL")
    p.add_argument("--tokens", type=parse_count, default=65_536, help="evaluation tokens, e.g. 100k")
    p.add_argument("--contexts", type=int, default=32, help="contexts for CE/KL loss recovered (0: skip)")
    p.add_argument("--context", type=int, default=128, help="context length for CE/KL and on-the-fly activations")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dense-threshold", type=float, default=0.1, help="a latent is dense above this firing rate")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default="", help="also write the scores to this JSON file")


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    saes = {str(Path(d)): load_sae(d, device) for d in args.sae_dirs}
    models = {sae.metadata.get("model_name") for sae in saes.values()}
    model_name = args.model or next(iter(models))
    if not args.acts and not model_name:
        raise ToolkitError("the SAE's cfg.json names no model; pass --model or --acts")
    hooks = list(dict.fromkeys(h for sae in saes.values() for h in (sae.cfg.hook, sae.cfg.output_hook)))
    source = open_source(args.acts, model_name, hooks, args.dataset, args.seed, args.context)
    model = model_for(source, args.model) if args.contexts > 0 else None
    tokens = eval_contexts(model, args.dataset, args.context, args.contexts, args.seed) if model else None
    windows = reconstruction_scores(list(saes.values()), source, args.tokens, args.batch_size, args.seed,
                                    args.dense_threshold)
    spliced = splice_scores(list(saes.values()), model, tokens) if model is not None else [{} for _ in saes]
    results = {name: {**scores, **splice} for name, (scores, _), splice in zip(saes, windows, spliced)}
    print(format_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0
