"""Harvest speed and memory, measured side by side in one run.

Speed: time of ``sae harvest`` of two hooks (tokenising, forward, copies, background writes)
divided by the time of a bare forward pass that stops after the deepest hook, on the same
token batches. Target <= 1.15. Memory: peak RSS of a harvest of two hooks at two token
counts, in fresh processes. Target < 1.5 GB and flat in the token count.

    python benchmarks/bench_harvest.py                    # embedded model + GPT-2-small shape
    python benchmarks/bench_harvest.py --models gpt2-small-shape --tokens 200k
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from activations.data import DatasetSpec, TokenData
from activations.harvest import HarvestConfig, harvest
from activations.models import load_model
from activations.synthetic import build_gpt2_checkpoint
from sae.commands.harvest import parse_count

SETUPS = {  # model -> two hooks to harvest
    "tiny": ["blocks.1.hook_resid_post", "blocks.2.hook_resid_post"],
    "gpt2-small-shape": ["blocks.5.hook_resid_post", "blocks.6.hook_resid_post"],
}


def hooks_for(name: str, workdir: Path) -> list[str]:
    if name in SETUPS:
        return SETUPS[name]
    n_layers = load_model(model_path(name, workdir), device="cpu").dims.n_layers
    middle = n_layers // 2
    return [f"blocks.{middle - 1}.hook_resid_post", f"blocks.{middle}.hook_resid_post"]


def model_path(name: str, workdir: Path) -> str:
    if name == "gpt2-small-shape":
        folder = workdir / "gpt2-small-shape"
        if not folder.exists():
            build_gpt2_checkpoint(folder, n_layer=12, n_embd=768, n_head=12, vocab=50257 // 8)
        return str(folder)
    return name


def _sync(model) -> None:
    if model.device.type == "cuda":
        torch.cuda.synchronize()


def time_bare(model, tokens: torch.Tensor, hook: str, batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(tokens), batch):
        model.forward_until(tokens[i:i + batch], hook)
    _sync(model)
    return time.perf_counter() - start


def time_harvest(model, cfg: HarvestConfig) -> float:
    start = time.perf_counter()
    harvest(cfg, model=model)
    return time.perf_counter() - start


def speed(name: str, n_tokens: int, workdir: Path, repeats: int, dataset: str, device: str,
          model_dtype: str | None) -> dict:
    model = load_model(model_path(name, workdir), device=device, dtype=model_dtype)
    hooks = hooks_for(name, workdir)
    context = min(128, model.dims.n_ctx)
    n_contexts = -(-n_tokens // context)
    tokens = TokenData(DatasetSpec(dataset, context=context), model.tokenizer).contexts(n_contexts)
    bare, full = [], []
    for r in range(repeats):  # alternate the two so machine noise hits both alike
        bare.append(time_bare(model, tokens, hooks[-1], 32))
        cfg = HarvestConfig(model=model.name, hooks=hooks, tokens=n_tokens, out=str(workdir / f"acts-{name}-{r}"),
                            context=context, dataset=dataset, progress=False, device=device,
                            model_dtype=model_dtype)
        full.append(time_harvest(model, cfg))
    b, h = min(bare), min(full)
    return {"model": name, "device": str(model.device), "model_dtype": str(model.dtype), "tokens": n_contexts * context, "bare_forward_s": round(b, 3),
            "harvest_s": round(h, 3), "ratio": round(h / b, 3), "harvest_tok_per_s": round(n_contexts * context / h)}


def peak_rss_mb(name: str, n_tokens: int, workdir: Path) -> float:
    code = (
        "import resource, sys\n"
        "from activations.harvest import HarvestConfig, harvest\n"
        f"harvest(HarvestConfig(model={model_path(name, workdir)!r}, hooks={hooks_for(name, workdir)!r}, tokens={n_tokens},"
        f" out={str(workdir / f'rss-{name}-{n_tokens}')!r}, progress=False, device='cpu'))\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,gpt2-small-shape")
    parser.add_argument("--tokens", type=parse_count, default=131_072, help="tokens per speed measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dataset", default="tinyworld")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--model-dtype", default=None, help="float16 / bfloat16 for the forward pass (CUDA)")
    parser.add_argument("--rss-tokens", default="500k,2M", help="token counts for the memory check")
    parser.add_argument("--rss-model", default="tiny")
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for name in filter(None, args.models.split(",")):
            print(json.dumps(speed(name, args.tokens, workdir, args.repeats, args.dataset, args.device,
                                   args.model_dtype)), flush=True)
        if args.rss_tokens:
            for count in args.rss_tokens.split(","):
                mb = peak_rss_mb(args.rss_model, parse_count(count), workdir)
                print(json.dumps({"model": args.rss_model, "hooks": 2, "tokens": parse_count(count),
                                  "peak_rss_mb": round(mb)}), flush=True)


if __name__ == "__main__":
    main()
