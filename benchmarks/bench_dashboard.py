"""Dashboard speed and memory: 1,000 features over 1M tokens of the embedded model.

Harvests the store (unless --acts is given), trains a TopK SAE with 2,048 latents on it
(unless --sae is given), then times ``sae dashboard --features 0:1000`` in a fresh process
with 2 threads and reports wall time, CPU time and peak RSS; the same run over a quarter of
the tokens shows whether memory grows with the token count. Target: < 10 minutes, bounded memory.

    python benchmarks/bench_dashboard.py                        # everything, in /tmp/bench_dashboard
    python benchmarks/bench_dashboard.py --acts ACTS --sae SAE  # reuse a store and an SAE
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from sae.commands.harvest import parse_count

HOOK = "blocks.2.hook_resid_post"


def run_measured(cmd: list[str]) -> dict:
    """Run ``cmd`` in a fresh process: wall seconds, CPU seconds and peak RSS (MB)."""
    env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(cmd)}")
    return {"wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024)}


def prepare(args, work: Path) -> tuple[str, str]:
    sae_cmd = [sys.executable, "-m", "sae"]
    acts = args.acts or str(work / "acts")
    if not args.acts and not (work / "acts" / "manifest.json").exists():
        print("harvest:", run_measured([*sae_cmd, "harvest", "--model", "tiny", "--hooks", HOOK, "--tokens",
                                        str(args.tokens), "--out", acts, "--device", "cpu", "--no-progress"]))
    sae = args.sae
    if not sae:
        run = work / "run"
        if not (run / "saes").exists():
            print("train:", run_measured([*sae_cmd, "train", "--acts", acts, "--out", str(run), "--hook", HOOK,
                                          "--architecture", "topk", "--k", "32", "--d-sae", "2048", "--tokens",
                                          "300k", "--batch-size", "2048", "--device", "cpu"]))
        sae = str(next((run / "saes").iterdir()))
    return acts, sae


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--acts", help="existing store of the tiny model's %s" % HOOK)
    parser.add_argument("--sae", help="existing SAE folder for that hook")
    parser.add_argument("--tokens", type=parse_count, default=1_000_000)
    parser.add_argument("--features", default="0:1000")
    parser.add_argument("--workdir", default="/tmp/bench_dashboard")
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    acts, sae = prepare(args, work)
    results = {}
    for label, tokens in (("full", args.tokens), ("quarter", args.tokens // 4)):
        cmd = [sys.executable, "-m", "sae", "dashboard", sae, "--acts", acts, "--features", args.features,
               "--tokens", str(tokens), "--out", str(work / f"dash-{label}"), "--overwrite", "--no-progress"]
        results[label] = {"tokens": tokens, **run_measured(cmd)}
        print(label, results[label], flush=True)
    pages = len(list((work / "dash-full" / "features").glob("*.html")))
    print(json.dumps({"features": args.features, "pages": pages, **results}, indent=1))


if __name__ == "__main__":
    main()
