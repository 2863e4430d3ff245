"""Training steps of the embedded tiny model: SDPA against eager attention, with and without
torch.compile, and compiled with deterministic algorithms, side by side in one process.

Copies of the same freshly built model (``activations.tiny.train.build_model``: 4 layers,
d_model 192, vocabulary 4096) take full training steps of the training script (bf16 autocast,
backward, clipping, AdamW: ``train_step``) on the same batches of 32 x 128 tokens. Each repetition steps every
variant once, in turn, so load from other processes hits all alike; the ratios use the median
of each.

    python benchmarks/bench_tiny_train.py                 # 2 threads, 20 steps per variant
    python benchmarks/bench_tiny_train.py --repeats 40

The training script's defaults follow from this: eager attention always, ``--compile`` for the
long runs (it costs about 20 s to compile). The last variant is ``--compile --deterministic``
(``torch.use_deterministic_algorithms``: bit-identical reruns), to show what that costs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from activations.tiny.train import TrainConfig, _optimizer, build_model, train_step


def variant(attention: str, compiled: bool, cfg: TrainConfig, deterministic: bool = False) -> dict:
    model = build_model(cfg)
    model.set_attn_implementation(attention)
    model.train()
    return {"model": model, "forward": torch.compile(model) if compiled else model,
            "opt": _optimizer(model, cfg), "times": [], "deterministic": deterministic}


def step(v: dict, batch: torch.Tensor, cfg: TrainConfig) -> float:
    torch.use_deterministic_algorithms(v["deterministic"])  # compiled under, and run with, its own mode
    start = time.perf_counter()
    train_step(v["model"], v["forward"], v["opt"], batch, cfg)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(out="unused")
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(1, cfg.vocab_size, (cfg.batch_size, cfg.context), generator=gen) for _ in range(4)]
    variants = {"sdpa": variant("sdpa", False, cfg), "eager": variant("eager", False, cfg),
                "eager + compile": variant("eager", True, cfg),
                "+ deterministic": variant("eager", True, cfg, deterministic=True)}
    for i in range(args.warmup + args.repeats):
        for v in variants.values():
            t = step(v, batches[i % len(batches)], cfg)
            if i >= args.warmup:
                v["times"].append(t)
    base = statistics.median(variants["sdpa"]["times"])
    tokens = cfg.batch_size * cfg.context
    print(f"tiny model training step, batch {cfg.batch_size} x {cfg.context} tokens, {args.threads} threads, "
          f"median of {args.repeats}")
    print(f"{'variant':<16} {'step s':>7} {'tokens/s':>9} {'speed-up vs sdpa':>17}")
    for name, v in variants.items():
        median = statistics.median(v["times"])
        print(f"{name:<16} {median:>7.3f} {tokens / median:>9.0f} {base / median:>16.2f}x", flush=True)


if __name__ == "__main__":
    main()
