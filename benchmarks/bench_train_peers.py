"""TopK training speed and quality against EleutherAI sparsify and SAELens, side by side in one run.

One activation file (synthetic, d_in 768: a known sparse dictionary in superposition) is
written once; then, for each round, the toolkit, sparsify and SAELens each train a TopK SAE
(k 32, 16x dictionary, batches of 4096 tokens) on the same rows for the same number of steps,
one after another in a rotating order, each in a fresh subprocess with 2 threads. Each side
reports tokens/s over its steps after the first ``--warmup`` and FVU on the same held-out rows.
The ratios compare runs of the same round, so load from other processes hits both sides alike.
Results and the commands are in docs/benchmarks_training.md.

    python benchmarks/bench_train_peers.py                # 16 steps x 2 rounds: ~11 min on 2 busy cores
    python benchmarks/bench_train_peers.py --steps 120 --rounds 1 --json run.json
    python benchmarks/bench_train_peers.py --report run.json
    python benchmarks/bench_train_peers.py --libraries toolkit,sparsify

The peers run from their own virtualenvs (``--sparsify-python``, ``--saelens-python``) through
``benchmarks/peers/*.py``; the toolkit side is this file run with ``--worker``, training through
``sae.trainer.Trainer`` on an in-memory ``ActivationSource``. Targets (issue 3, section 3):
toolkit >= 1.5x sparsify and >= 5x SAELens tokens/s at equal or lower FVU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent
HOOK = "blocks.6.hook_resid_post"
PEER_SCRIPTS = {"sparsify": HERE / "peers" / "sparsify_topk.py", "saelens": HERE / "peers" / "saelens_topk.py"}


# ----------------------------------------------------------------------------- the data

def synthetic_activations(n_tokens: int, d: int = 768, n_features: int = 8192, active: int = 20,
                          noise: float = 0.05, seed: int = 0, chunk: int = 8192) -> torch.Tensor:
    """[n_tokens, d] float32: sums of ``active`` of ``n_features`` random unit directions.

    Each token draws its features without replacement with Zipf-like frequencies (weight
    ∝ 1 / (rank + 100), so the commonest fires ~80x as often as the rarest) and gives each an
    Exp(1) magnitude; a fixed offset (half the sparse part's typical norm) and Gaussian noise
    (``noise`` of it) are added, and the whole is scaled to mean norm √d.
    """
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(n_features, d, generator=gen)
    features /= features.norm(dim=-1, keepdim=True)
    log_weight = -torch.log(torch.arange(n_features, dtype=torch.float32) + 100.0)
    typical = math.sqrt(2.0 * active)  # E‖Σ m_i f_i‖² ≈ active · E[m²], E[m²] = 2 for Exp(1)
    offset = torch.randn(d, generator=gen)
    offset *= 0.5 * typical / offset.norm()
    out = torch.empty(n_tokens, d)
    for start in range(0, n_tokens, chunk):
        rows = min(chunk, n_tokens - start)
        gumbel = -torch.log(-torch.log(torch.rand(rows, n_features, generator=gen).clamp_min(1e-20)))
        ids = (log_weight + gumbel).topk(active, dim=-1).indices  # Gumbel top-k: draws without replacement
        magnitudes = torch.empty(rows, active).exponential_(generator=gen)
        sparse = torch.nn.functional.embedding_bag(ids, features, per_sample_weights=magnitudes, mode="sum")
        out[start:start + rows] = sparse + offset + torch.randn(rows, d, generator=gen) * (noise * typical / d ** 0.5)
    return out * (d ** 0.5 / out.norm(dim=-1).mean())


# ----------------------------------------------------------------------------- the toolkit side

class TensorRows:
    """``ActivationSource`` over one in-memory tensor [N, d]: consecutive batches, timing the steps.

    The rows are already in random order (synthetic, i.i.d.), so all three libraries can read
    exactly the same batches in the same order. Asking for batch i ends step i - 1 (``ends``);
    then, when ``reference`` holds an encoder-shaped weight [d_sae, d], one dense encoder
    matmul of the batch is timed (``matmul_s``) between the steps, out of both; then step i
    starts (``starts``).
    """

    def __init__(self, acts: torch.Tensor, reference: torch.Tensor | None = None):
        self.acts, self.reference = acts, reference
        self.model_name = "synthetic"
        self.hooks = [HOOK]
        self.widths = {HOOK: acts.shape[1]}
        self.mean_norm = {HOOK: float(acts.norm(dim=-1).mean())}
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.matmul_s: list[float] = []

    def batches(self, batch_size: int, hooks: list[str] | None = None, seed: int = 0, epochs: int | None = None):
        n_batches = len(self.acts) // batch_size
        i = 0
        while epochs is None or i < n_batches * epochs:
            if i:
                self.ends.append(time.perf_counter())
            start = (i % n_batches) * batch_size
            batch = self.acts[start:start + batch_size]
            if self.reference is not None:
                tick = time.perf_counter()
                torch.nn.functional.linear(batch, self.reference)
                self.matmul_s.append(time.perf_counter() - tick)
            self.starts.append(time.perf_counter())
            yield {HOOK: batch}
            i += 1


def toolkit_worker(args: argparse.Namespace) -> dict:
    """Train the toolkit's TopK SAE on the file's first steps × batch rows; time it; FVU on the held-out rows."""
    from sae.config import SAEConfig, TrainConfig
    from sae.metrics import fvu
    from sae.trainer import Trainer

    torch.set_num_threads(args.threads)
    acts = load_file(args.acts)["acts"]
    n_train, d_in = args.steps * args.batch, acts.shape[1]
    held = acts[-args.eval_tokens:]
    source = TensorRows(acts[:n_train], torch.randn(args.expansion * d_in, d_in))
    with tempfile.TemporaryDirectory(prefix="toolkit-bench-") as out:
        cfg = TrainConfig(sae=SAEConfig(architecture="topk", hook=HOOK, k=args.k, expansion_factor=args.expansion,
                                        lr=args.lr),
                          out=out, tokens=n_train, batch_size=args.batch, checkpoint_every=0, eval_contexts=0,
                          device="cpu", seed=args.seed,
                          **({"dead_window": args.dead_tokens} if args.dead_tokens else {}))
        trainer = Trainer(cfg, source)
        end = []
        save = trainer.save_checkpoint
        trainer.save_checkpoint = lambda: (end.append(time.perf_counter()), save())[1]  # once, after the last step
        trainer.fit()
    steps = [b - a for a, b in zip(source.starts[:args.steps], source.ends[:args.steps - 1] + end[-1:])]
    timed_tokens = (args.steps - args.warmup) * args.batch
    coder = trainer.coders[0]
    scale = trainer.scales[HOOK]
    with torch.no_grad():
        recon = torch.cat([coder.sae(chunk * scale) / scale for chunk in held.split(4096)])
    return {"library": "toolkit", "lr": coder.sae.cfg.lr, "steps": args.steps, "timed_steps": args.steps - args.warmup,
            "tokens_per_s": timed_tokens / sum(steps[args.warmup:]), "step_s": [round(t, 4) for t in steps],
            "fvu": fvu(held, recon), "dead_fraction": float((coder.since_fired >= cfg.dead_window).float().mean()),
            "matmul_tokens_per_s": timed_tokens / sum(source.matmul_s[args.warmup:args.steps]),
            "matmul_s": [round(t, 4) for t in source.matmul_s[:args.steps]]}


# ----------------------------------------------------------------------------- the comparison

def command(library: str, args: argparse.Namespace, acts: Path) -> list[str]:
    python = {"toolkit": sys.executable, "sparsify": args.sparsify_python, "saelens": args.saelens_python}[library]
    script = Path(__file__).resolve() if library == "toolkit" else PEER_SCRIPTS[library]
    cmd = [python, str(script), "--acts", str(acts), "--k", str(args.k), "--expansion", str(args.expansion),
           "--batch", str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--threads", str(args.threads), "--eval-tokens", str(args.eval_tokens), "--seed", str(args.seed)]
    if args.lr:
        cmd += ["--lr", str(args.lr)]
    if args.dead_tokens:
        cmd += ["--dead-tokens", str(args.dead_tokens)]
    return cmd + (["--worker"] if library == "toolkit" else [])


def run_one(library: str, args: argparse.Namespace, acts: Path, log: Path) -> dict:
    """One training run in a fresh process with ``args.threads`` threads; its JSON line."""
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "disabled"}
    start = time.perf_counter()
    proc = subprocess.run(command(library, args, acts), env=env, capture_output=True, text=True, cwd=HERE.parent)
    with log.open("a") as f:
        f.write(f"==== {library} rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}\n")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.splitlines()[-15:])
        return {"library": library, "error": f"exit {proc.returncode}: {tail}"}
    return {**json.loads(lines[-1]), "wall_s": time.perf_counter() - start}


def fmt(value, spec: str) -> str:
    return "-".rjust(len(format(0.0, spec))) if value is None else format(value, spec)


def median_step(result: dict) -> float | None:
    """Median seconds of a run's timed steps (robust to bursts of load from other processes)."""
    steps = result.get("step_s", [])[result.get("steps", 0) - result.get("timed_steps", 0):]
    return statistics.median(steps) if steps else None


def report(results: list[dict], libraries: list[str]) -> dict:
    """Print the per-round table and the summary; return the summary."""
    print(f"\n{'round':>5} {'library':>9} {'tokens/s':>9} {'FVU':>7} {'dead':>6} {'median step s':>13} {'wall s':>7}"
          "  note")
    for r in results:
        note = r.get("error", "")[:80].replace("\n", " ")
        if "matmul_tokens_per_s" in r:
            note = f"dense encoder matmul alone: {r['matmul_tokens_per_s']:.0f} tokens/s"
        print(f"{r['round']:>5} {r['library']:>9} {fmt(r.get('tokens_per_s'), '9.0f')} {fmt(r.get('fvu'), '7.4f')} "
              f"{fmt(r.get('dead_fraction'), '6.1%')} "
              f"{fmt(median_step(r), '13.3f')} {fmt(r.get('wall_s'), '7.0f')}  {note}")
    summary: dict = {}
    for lib in libraries:
        ok = [r for r in results if r["library"] == lib and "tokens_per_s" in r]
        if ok:
            summary[lib] = {"tokens_per_s": statistics.median(r["tokens_per_s"] for r in ok),
                            "fvu": statistics.median(r["fvu"] for r in ok), "runs": len(ok)}
    rounds = sorted({r["round"] for r in results})
    by = {(r["round"], r["library"]): r for r in results}
    print()
    for peer in [lib for lib in libraries if lib != "toolkit"]:
        pairs = [(by[rd, "toolkit"], by[rd, peer]) for rd in rounds
                 if "tokens_per_s" in by.get((rd, "toolkit"), {}) and "tokens_per_s" in by.get((rd, peer), {})]
        if not pairs:
            continue
        ratios = [ours["tokens_per_s"] / theirs["tokens_per_s"] for ours, theirs in pairs]
        steady = [median_step(theirs) / median_step(ours) for ours, theirs in pairs]
        summary[f"toolkit/{peer}"] = statistics.median(ratios)
        summary[f"toolkit/{peer} (median steps)"] = statistics.median(steady)
        print(f"toolkit/{peer} tokens/s, per round: {', '.join(f'{x:.2f}x' for x in ratios)}; "
              f"median {statistics.median(ratios):.2f}x (from median step times: {statistics.median(steady):.2f}x)")
    matmul = [r for r in results if "matmul_tokens_per_s" in r]
    if matmul:
        step_over_matmul = statistics.median(r["matmul_tokens_per_s"] / r["tokens_per_s"] for r in matmul)
        summary["toolkit_step/dense_matmul"] = step_over_matmul
        print(f"toolkit step time / one dense encoder matmul of the batch (timed between its steps): "
              f"{step_over_matmul:.2f}x")
    print("\nmedians over rounds:")
    for lib in libraries:
        if lib in summary:
            s = summary[lib]
            print(f"  {lib:>9}: {s['tokens_per_s']:7.0f} tokens/s, FVU {s['fvu']:.4f} ({s['runs']} runs)")
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=16, help="training steps per run (the FVU compares these)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2, help="first steps of each run left out of the timing")
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--expansion", type=int, default=16)
    p.add_argument("--d-in", type=int, default=768)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lr", type=float, default=0.0, help="0: each library's own default learning rate")
    p.add_argument("--dead-tokens", type=int, default=0,
                   help="dead-latent window (tokens) for all three, which starts AuxK; 0: each library's default")
    p.add_argument("--eval-tokens", type=int, default=16384, help="held-out rows at the end of the file")
    p.add_argument("--n-features", type=int, default=8192)
    p.add_argument("--active", type=int, default=20, help="features active per token")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--libraries", default="toolkit,sparsify,saelens")
    p.add_argument("--sparsify-python", default="/work/peers/sparsify/bin/python")
    p.add_argument("--saelens-python", default="/work/peers/saelens/bin/python")
    p.add_argument("--json", type=Path, help="also write every run's result and the summary here")
    p.add_argument("--report", type=Path, help="only print the table of a --json file written earlier")
    p.add_argument("--acts", help=argparse.SUPPRESS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(toolkit_worker(args)))
        return
    if args.report:
        saved = json.loads(args.report.read_text())
        report(saved["runs"], saved["args"]["libraries"].split(","))
        return

    libraries = args.libraries.split(",")
    with tempfile.TemporaryDirectory(prefix="bench-train-peers-") as tmp:
        acts = Path(tmp) / "acts.safetensors"
        n = args.steps * args.batch + args.eval_tokens
        start = time.perf_counter()
        save_file({"acts": synthetic_activations(n, args.d_in, args.n_features, args.active, seed=args.seed)}, acts)
        print(f"activations: {n} tokens x {args.d_in} ({args.n_features} features, {args.active} active per token), "
              f"{args.steps} x {args.batch} for training, the last {args.eval_tokens} held out; "
              f"built in {time.perf_counter() - start:.0f} s", flush=True)
        log = Path(tmp) / "runs.log"
        results = []
        for rd in range(args.rounds):
            order = libraries[rd % len(libraries):] + libraries[:rd % len(libraries)]
            for lib in order:
                result = {**run_one(lib, args, acts, log), "round": rd + 1}
                results.append(result)
                print(f"round {rd + 1} {lib}: " + (f"{result['tokens_per_s']:.0f} tokens/s, FVU {result['fvu']:.4f}"
                      if "tokens_per_s" in result else result["error"]), flush=True)
        summary = report(results, libraries)
        if args.json:
            args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                             "runs": results, "summary": summary}, indent=1) + "\n")


if __name__ == "__main__":
    main()
