"""One training step against one dense encoder matmul, side by side in one process.

For each architecture a ``Trainer`` with one coder (d_in 768, 16x dictionary, k 32) takes
full training steps (``Trainer.train_step``: forward, backward, decoder-gradient projection,
clipping, fused Adam, renormalisation, dead-latent bookkeeping) on batches of 4096 random
activations. Each repetition times one fp32 encoder matmul [4096, 768] @ [768, 12288] and then
one step, so load from other processes hits both alike; the ratio uses the fastest of each.

    python benchmarks/bench_train_step.py                 # topk, batchtopk, relu; 2 threads
    python benchmarks/bench_train_step.py --architectures topk --repeats 10
    python benchmarks/bench_train_step.py --device cuda --repeats 20   # bf16 autocast, as trained
    python benchmarks/bench_train_step.py --device cuda --no-autocast  # fp32

On CUDA the matmul runs under the same autocast as the step's encoder, and both are timed
between device synchronisations.

Target (issue 3, section 3): a TopK step costs at most 1.5x the dense encoder matmul.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from contextlib import nullcontext

import torch

from sae.config import SAEConfig, TrainConfig
from sae.data import TensorSource
from sae.trainer import Trainer

HOOK = "blocks.6.hook_resid_post"


def timed(fn, cuda: bool) -> float:
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench(architecture: str, args: argparse.Namespace) -> dict:
    gen = torch.Generator().manual_seed(0)
    acts = torch.randn(args.batch * 2, args.d_in, generator=gen)
    d_sae = args.d_in * args.expansion
    cuda = args.device.startswith("cuda")
    weight = torch.randn(args.d_in, d_sae, generator=gen).to(args.device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda and args.autocast else nullcontext()
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(sae=SAEConfig(architecture=architecture, hook=HOOK, k=args.k, d_sae=d_sae),
                          out=out, tokens=args.batch * 1000, batch_size=args.batch, checkpoint_every=0,
                          device=args.device, autocast=args.autocast)
        trainer = Trainer(cfg, TensorSource({HOOK: acts}))
        batches = [{HOOK: (b * trainer.scales[HOOK]).to(args.device)} for b in acts.split(args.batch)]
        for i in range(args.warmup):
            trainer.train_step(batches[i % 2])

        def matmul_once():
            with autocast:
                return batches[0][HOOK] @ weight

        matmul, step = [], []
        for i in range(args.repeats):
            matmul.append(timed(matmul_once, cuda))
            step.append(timed(lambda: trainer.train_step(batches[i % 2]), cuda))
    return {"architecture": architecture, "matmul_s": min(matmul), "step_s": min(step),
            "ratio": min(step) / min(matmul), "median_ratio": statistics.median(s / m for s, m in zip(step, matmul))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architectures", default="topk,batchtopk,relu")
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--d-in", type=int, default=768)
    parser.add_argument("--expansion", type=int, default=16)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--autocast", action=argparse.BooleanOptionalAction, default=True,
                        help="on CUDA, bf16 autocast of the encoder (the trainer's default)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    d_sae = args.d_in * args.expansion
    where = (f"{torch.cuda.get_device_name(args.device)}, {'bf16 autocast' if args.autocast else 'fp32'}"
             if args.device.startswith("cuda") else f"{args.threads} threads")
    print(f"batch {args.batch}, d_in {args.d_in}, d_sae {d_sae}, k {args.k}, {where}, "
          f"fastest of {args.repeats} (median ratio in brackets)")
    print(f"{'architecture':<12} {'matmul s':>9} {'step s':>8} {'step/matmul':>12} {'step tokens/s':>14}")
    for architecture in args.architectures.split(","):
        r = bench(architecture, args)
        print(f"{architecture:<12} {r['matmul_s']:>9.3f} {r['step_s']:>8.3f} {r['ratio']:>6.2f} "
              f"({r['median_ratio']:.2f}) {args.batch / r['step_s']:>14.0f}", flush=True)


if __name__ == "__main__":
    main()
