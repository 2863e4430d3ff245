"""``sae harvest``: activations of many hooks, one pass, into a crash-safe store."""

from __future__ import annotations

import argparse
import math

from activations.data import EMBEDDED
from activations.harvest import MAX_TOKENS, HarvestConfig, harvest

NAME = "harvest"
HELP = "harvest activations of one or more hooks into an on-disk store"


def parse_count(text: str) -> int:
    """'2M' -> 2_000_000, '500k' -> 500_000, '1e6' -> 1_000_000; refuses inf, NaN and counts above 10^12."""
    text = text.strip().lower().replace("_", "")
    scale = {"k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9}.get(text[-1:], 1)
    try:
        value = float(text[:-1] if scale > 1 else text) * scale
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"'{text}' is not a count like 2M, 500k or 100000")
    if abs(value) > MAX_TOKENS:
        raise argparse.ArgumentTypeError(f"'{text}' is more than {MAX_TOKENS:,} tokens; "
                                         "pass a count like 2M, 500k or 100000")
    return int(value)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="tiny", help="'tiny', a model name (gpt2) or a local HF folder")
    p.add_argument("--hooks", required=True, help="comma-separated hook names, e.g. blocks.1.hook_resid_post")
    p.add_argument("--tokens", type=parse_count, default=2_000_000, help="tokens to harvest (2M, 500k, ...)")
    p.add_argument("--out", required=True, help="store folder")
    p.add_argument("--dataset", default=EMBEDDED,
                   help=f"'{EMBEDDED}', a .txt/.jsonl/.parquet file or a folder of them, or a HF dataset")
    p.add_argument("--text-field", default="text", help="text field of jsonl/parquet/HF datasets")
    p.add_argument("--seed", type=int, default=0, help="fixes the document order")
    p.add_argument("--context", type=int, default=None, help="context length (default min(128, n_ctx))")
    p.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"], help="stored dtype")
    p.add_argument("--model-dtype", default=None, choices=["float16", "bfloat16", "float32"],
                   help="dtype of the forward pass (half precision is for CUDA)")
    p.add_argument("--batch-contexts", type=int, default=32, help="contexts per forward pass")
    p.add_argument("--shard-tokens", type=parse_count, default=16_384, help="tokens per shard")
    p.add_argument("--exclude-bos", action="store_true", help="leave BOS / end-of-text positions out")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--resume", action="store_true", help="finish an interrupted store")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store in --out")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    cfg = HarvestConfig(
        model=args.model, hooks=args.hooks.split(","), tokens=args.tokens, out=args.out,
        dataset=args.dataset, seed=args.seed, context=args.context, text_field=args.text_field,
        dtype=args.dtype, model_dtype=args.model_dtype, batch_contexts=args.batch_contexts,
        shard_tokens=args.shard_tokens, exclude_bos=args.exclude_bos, device=args.device,
        resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    out = harvest(cfg)
    from activations.store import read_manifest
    manifest = read_manifest(out)
    print(f"wrote {manifest['total_tokens']:,} tokens x {len(manifest['hooks'])} hooks "
          f"in {len(manifest['shards'])} shards to {out}")
    return 0
