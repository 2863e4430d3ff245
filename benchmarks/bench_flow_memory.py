"""Peak memory of ``sae flow`` on four consecutive 24k-feature SAEs (d_in 768, GPT-2 width).

Writes four SAELens-format folders with random unit-norm decoders (resid_pre, attn_out,
mlp_out and resid_post of one block), then runs ``sae flow`` on them in a fresh child
process and prints that process's peak resident memory (ru_maxrss) and wall time. The
issue's bound is 2 GB.

    nice -n 19 python benchmarks/bench_flow_memory.py [--d-sae 24576] [--d-in 768] [--dir DIR]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOOKS = ["blocks.5.hook_resid_pre", "blocks.5.hook_attn_out", "blocks.5.hook_mlp_out", "blocks.5.hook_resid_post"]


def make_saes(root: Path, d_sae: int, d_in: int) -> list[Path]:
    """Random TopK SAEs (unit-norm decoder rows) in SAELens format, one per hook."""
    import torch

    from sae.architectures import ARCHITECTURES
    from sae.config import SAEConfig
    from sae.io import save_sae
    folders = []
    for i, hook in enumerate(HOOKS):
        torch.manual_seed(i)
        sae = ARCHITECTURES["topk"](SAEConfig(architecture="topk", hook=hook, d_in=d_in, d_sae=d_sae, k=32), d_in)
        folders.append(save_sae(sae, root / hook, metadata={"model_name": "gpt2"}))
        del sae
    return folders


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d-sae", type=int, default=24576)
    p.add_argument("--d-in", type=int, default=768)
    p.add_argument("--dir", default="", help="where to write the SAEs (default: a temporary folder)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.dir or tmp)
        folders = make_saes(root / "saes", args.d_sae, args.d_in)
        cmd = [sys.executable, "-m", "sae.cli", "flow", *map(str, folders), "--out", str(root / "flow"), "--seeds", "3"]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        size = sum(f.stat().st_size for d in folders for f in d.iterdir()) / 2**20
    print(f"sae flow on 4 SAEs x {args.d_sae} features (d_in {args.d_in}, {size:.0f} MiB of weights): "
          f"peak RSS {peak_mb:.0f} MiB, {seconds:.1f} s")


if __name__ == "__main__":
    main()
