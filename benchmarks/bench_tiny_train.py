"""Training steps of the embedded tiny model: SDPA against eager attention, with and without
torch.compile, and compiled with deterministic algorithms, side by side in one process.

Copies of the same freshly built model (``activations.tiny.train.build_model``: 4 layers,
d_model 192, vocabulary 4096) take full training steps of the training script (bf16 autocast,
backward, clipping, AdamW: ``train_step``) on the same batches of 32 x 128 tokens. Each repetition steps every
variant once, in turn, so load from other processes hits all alike; the ratios use the median
of each.

    python benchmarks/bench_tiny_train.py                 # 2 threads, 20 steps per variant
    python benchmarks/bench_tiny_train.py --repeats 40

``--profile`` then profiles three more steps of ``+ deterministic`` (``torch.profiler``) and
prints where the time goes: the dense matrix products against the rest.

The training script's defaults follow from this: eager attention always, ``--compile`` for the
long runs (it costs about 20 s to compile). The variant ``+ deterministic`` is ``--compile
--deterministic`` (``torch.use_deterministic_algorithms``: bit-identical reruns), to show what
that costs, and ``+ fp32`` the same without bf16 autocast (``--no-bf16``). ``- NaN fill`` is
``+ deterministic`` without deterministic mode's NaN fill of new tensors
(``torch.utils.deterministic.fill_uninitialized_memory = False``), measured and not adopted
(docs/tiny_model.md, "Training speed"); the script checks that it ends with the same weights.
On a CPU without native bf16 (``activations.tiny.train.native_bf16``: no AVX-512 or AMX) every variant runs in
fp32, as the training script then does, and ``--force-bf16`` adds ``+ bf16`` (bf16 autocast
anyway, on ATen's scalar GEMM: about 19 s a step on an AVX2-only EPYC; use ``--repeats 3``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from activations.tiny.train import TrainConfig, _optimizer, build_model, native_bf16, train_step


def variant(attention: str, compiled: bool, cfg: TrainConfig, deterministic: bool = False, fill: bool = True) -> dict:
    model = build_model(cfg)
    model.set_attn_implementation(attention)
    model.train()
    return {"model": model, "forward": torch.compile(model) if compiled else model,
            "opt": _optimizer(model, cfg), "times": [], "deterministic": deterministic, "fill": fill, "cfg": cfg}


def step(v: dict, batch: torch.Tensor) -> float:
    torch.use_deterministic_algorithms(v["deterministic"])  # compiled under, and run with, its own mode
    torch.utils.deterministic.fill_uninitialized_memory = v["fill"]
    start = time.perf_counter()
    train_step(v["model"], v["forward"], v["opt"], batch, v["cfg"])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--profile", action="store_true",
                        help="then profile 3 steps of '+ deterministic' and print the share of the matrix products")
    parser.add_argument("--force-bf16", action="store_true",
                        help="on a CPU without native bf16, time a bf16-autocast variant anyway (slow)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bf16 = native_bf16()
    cfg = TrainConfig(out="unused", bf16=bf16)
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(1, cfg.vocab_size, (cfg.batch_size, cfg.context), generator=gen) for _ in range(4)]
    variants = {"sdpa": variant("sdpa", False, cfg), "eager": variant("eager", False, cfg),
                "eager + compile": variant("eager", True, cfg),
                "+ deterministic": variant("eager", True, cfg, deterministic=True),
                "- NaN fill": variant("eager", True, cfg, deterministic=True, fill=False)}
    if bf16:
        variants["+ fp32"] = variant("eager", True, replace(cfg, bf16=False), deterministic=True)
    elif args.force_bf16:
        variants["+ bf16"] = variant("eager", True, replace(cfg, bf16=True), deterministic=True)
    for i in range(args.warmup + args.repeats):
        for v in variants.values():
            t = step(v, batches[i % len(batches)])
            if i >= args.warmup:
                v["times"].append(t)
    base = statistics.median(variants["sdpa"]["times"])
    tokens = cfg.batch_size * cfg.context
    print(f"tiny model training step, batch {cfg.batch_size} x {cfg.context} tokens, {args.threads} threads, "
          f"median of {args.repeats}, {'bf16 autocast' if bf16 else 'fp32 (this CPU has no native bf16)'}")
    print(f"{'variant':<16} {'step s':>7} {'tokens/s':>9} {'speed-up vs sdpa':>17}")
    for name, v in variants.items():
        median = statistics.median(v["times"])
        print(f"{name:<16} {median:>7.3f} {tokens / median:>9.0f} {base / median:>16.2f}x", flush=True)
    same = all(torch.equal(a, b) for a, b in zip(variants["+ deterministic"]["model"].parameters(),
                                                 variants["- NaN fill"]["model"].parameters()))
    print(f"'- NaN fill' ends with the same weights as '+ deterministic', bit for bit: {same}")
    if args.profile:
        profile(variants["+ deterministic"], batches, cfg)


MATMULS = ("aten::mm", "aten::addmm", "aten::bmm")


def profile(v: dict, batches: list[torch.Tensor], cfg: TrainConfig) -> None:
    """Self CPU time per step of the matrix products and of the other leading ops, over 3 steps;
    with the products' FLOPs, their rate, to set against a bare GEMM's on this CPU."""
    from torch.profiler import ProfilerActivity, profile as torch_profile
    with torch_profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        for batch in batches[:3]:
            step(v, batch)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events) / 3e6
    products = [e for e in events if e.key in MATMULS]
    seconds = sum(e.self_cpu_time_total for e in products) / 3e6
    flops = sum(e.flops for e in products) / 3
    a = torch.randn(cfg.batch_size * cfg.context, 4 * cfg.n_embd)
    b = torch.randn(4 * cfg.n_embd, cfg.n_embd)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(20):
        a @ b
    bare = 20 * 2 * a.shape[0] * a.shape[1] * b.shape[1] / (time.perf_counter() - start)
    print(f"profile of '+ deterministic', per step: {total:.3f} s of ops; matrix products {seconds:.3f} s "
          f"({seconds / total:.0%}), {flops / 1e9:.1f} GFLOP at {flops / seconds / 1e9:.0f} GFLOP/s "
          f"(a bare {a.shape[0]}x{a.shape[1]} @ {b.shape[0]}x{b.shape[1]} product: {bare / 1e9:.0f} GFLOP/s)")
    for e in events[:8]:
        print(f"  {e.key[:40]:<40} {e.self_cpu_time_total / 3e6:7.3f} s  x{e.count // 3}")


if __name__ == "__main__":
    main()
