"""``sae train``: train sparse coders; with no arguments, the project's main job.

With no arguments it trains a TopK SAE on the embedded model's middle residual stream
(blocks.2.hook_resid_post), harvesting on the fly, and prints FVU and CE loss recovered.
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

from activations.errors import ToolkitError
from sae.commands.harvest import parse_count
from sae.config import TrainConfig, load_config
from sae.evaluate import format_table
from sae.trainer import train

NAME = "train"
HELP = "train sparse autoencoders / transcoders (a sweep trains several on the same batches)"

# flag, config field, value type, whether a comma-separated list makes a sweep, help
_FLAGS = [
    ("--acts", "acts", str, False, "activation store folder (default: harvest on the fly from --model)"),
    ("--out", "out", str, False, "run folder (default runs/sae)"),
    ("--model", "model", str, False, "model to harvest on the fly and to splice into for CE (default tiny)"),
    ("--dataset", "dataset", str, False, "token data for on-the-fly harvesting and CE evaluation"),
    ("--tokens", "tokens", parse_count, False, "training tokens, e.g. 2M"),
    ("--batch-size", "batch_size", int, False, "tokens per step"),
    ("--seed", "seed", int, False, "seed for data order and initialisation"),
    ("--device", "device", str, False, "auto, cpu, cuda, cuda:1, ..."),
    ("--hook", "hook", str, True, "input hook, e.g. blocks.2.hook_resid_post"),
    ("--hook-out", "hook_out", str, True, "output hook of a transcoder, e.g. blocks.2.hook_mlp_out"),
    ("--architecture", "architecture", str, True, "relu, topk, batchtopk, jumprelu, gated, matryoshka"),
    ("--k", "k", int, True, "active latents per token"),
    ("--d-sae", "d_sae", int, True, "number of latents"),
    ("--lr", "lr", float, True, "learning rate (default scales with d_sae)"),
    ("--l1-coefficient", "l1_coefficient", float, True, "relu/gated sparsity weight"),
    ("--target-l0", "target_l0", float, True, "jumprelu target L0"),
    ("--target-l0-coefficient", "target_l0_coefficient", float, True, "jumprelu weight of the target-L0 term"),
]


def _values(kind, sweepable: bool):
    def parse(text: str):
        values = [kind(v) for v in text.split(",")] if sweepable else [kind(text)]
        return values if len(values) > 1 else values[0]
    return parse


def _setting(text: str) -> tuple[str, object]:
    """'name=value' with a TOML value (strings may go unquoted)."""
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"'{text}' is not NAME=VALUE")
    try:
        return name.strip(), tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return name.strip(), value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML run file ([sae] table, [sweep] table, training fields)")
    for flag, _field, kind, sweepable, text in _FLAGS:
        p.add_argument(flag, type=_values(kind, sweepable), default=None,
                       help=text + ("; a comma-separated list sweeps" if sweepable else ""))
    p.add_argument("--set", dest="settings", type=_setting, action="append", default=[], metavar="NAME=VALUE",
                   help="set any config field, e.g. --set dead_window=2_000_000 (repeatable)")
    p.add_argument("--wandb", action="store_true", default=None, help="also log to Weights & Biases")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")


def _run_config(run_dir: Path) -> TrainConfig:
    """The config of the run in ``run_dir``, to resume it there (even if it was moved)."""
    if not run_dir.is_dir():
        raise ToolkitError(f"run folder {run_dir} does not exist; check --out, or start the run without --resume")
    if not (run_dir / "config.json").is_file():
        raise ToolkitError(f"{run_dir} holds no config.json, so it is not a run folder; check --out")
    cfg = load_config(run_dir / "config.json")
    cfg.out = str(run_dir)
    return cfg


def run(args: argparse.Namespace) -> int:
    overrides = {fld: getattr(args, fld) for _, fld, *_ in _FLAGS if getattr(args, fld) is not None}
    overrides.update(dict(args.settings))
    if args.wandb:
        overrides["wandb"] = True
    if args.resume:
        if "out" not in overrides:
            raise ToolkitError("--resume needs --out RUN_FOLDER")
        if args.config or len(overrides) > 1:
            raise ToolkitError("with --resume the run's own config.json is used; pass only --out")
        cfg = _run_config(Path(overrides["out"]))
    else:
        cfg = load_config(args.config, overrides)
        if cfg.acts and "model" in overrides:  # --model beside --acts must name the store's model
            from activations.store import ActivationStore
            ActivationStore(cfg.acts).check_model(cfg.model)
    results = train(cfg, resume=args.resume)
    print(f"run folder: {cfg.out}")
    print(format_table(results))
    for scores in results.values():
        if "note" in scores:
            print(scores["note"])
            break
    return 0
