"""``sae eval``: score saved sparse coders and print a metrics table."""

from __future__ import annotations

import argparse
from pathlib import Path

from activations.errors import ToolkitError
from activations.store import write_json
from sae.commands.harvest import parse_count
from sae.config import NON_NEGATIVE, POSITIVE, UNIT, check_flags
from sae.data import check_context, check_source_model, eval_contexts, model_for, open_source
from sae.evaluate import format_table, reconstruction_scores, splice_scores
from sae.io import load_sae, sae_folders
from sae.trainer import resolve_device

NAME = "eval"
HELP = "evaluate saved SAEs: L0, FVU, dead/dense fractions, CE and KL loss recovered"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sae_dirs", nargs="+", metavar="SAE_DIR",
                   help="SAE folders (cfg.json + sae_weights.safetensors), or `sae train` run folders: every "
                        "SAE in them")
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


_NUMBERS = {"tokens": POSITIVE, "batch_size": POSITIVE, "contexts": NON_NEGATIVE,
            "context": (lambda v: v >= 2, "at least 2"), "dense_threshold": UNIT}


def _model_of(saes: dict, asked: str) -> str:
    """The model the SAEs were trained on ('' when their cfg.json names none); refuses SAEs of
    several models and a --model other than theirs."""
    models = sorted({sae.metadata.get("model_name") for sae in saes.values()} - {None, ""})
    if len(models) > 1:
        raise ToolkitError(f"the SAEs come from different models ({', '.join(models)}); evaluate each "
                           "model's SAEs in a separate run")
    if asked and models and asked != models[0]:
        raise ToolkitError(f"--model {asked} is not the model the SAEs were trained on ({models[0]}); "
                           f"drop --model or pass --model {models[0]}")
    return asked or (models[0] if models else "")


def run(args: argparse.Namespace) -> int:
    check_flags(args, _NUMBERS)
    device = resolve_device(args.device)
    folders = dict.fromkeys(f for d in args.sae_dirs for f in sae_folders(d))
    saes = {str(f): load_sae(f, device) for f in folders}
    model_name = _model_of(saes, args.model)
    if not args.acts and not model_name:
        raise ToolkitError("the SAE's cfg.json names no model; pass --model or --acts")
    hooks = list(dict.fromkeys(h for sae in saes.values() for h in (sae.cfg.hook, sae.cfg.output_hook)))
    source = open_source(args.acts, model_name, hooks, args.dataset, args.seed, args.context)
    if model_name:
        check_source_model(source, model_name)
    model = model_for(source, args.model) if args.contexts > 0 else None
    if model is not None or not args.acts:  # splicing, or harvesting on the fly: contexts must fit
        check_context(model or source.model, args.context)
    tokens = eval_contexts(model, args.dataset, args.context, args.contexts, args.seed) if model else None
    windows = reconstruction_scores(list(saes.values()), source, args.tokens, args.batch_size, args.seed,
                                    args.dense_threshold)
    spliced = splice_scores(list(saes.values()), model, tokens) if model is not None else [{} for _ in saes]
    results = {name: {**scores, **splice} for name, (scores, _), splice in zip(saes, windows, spliced)}
    print(format_table(results))
    if args.json:
        write_json(Path(args.json), results)  # whole or not at all
    return 0
