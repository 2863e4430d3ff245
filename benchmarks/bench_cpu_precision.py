"""Matrix multiplies on this CPU in float32, bfloat16 and float16, side by side in one run.

    python benchmarks/bench_cpu_precision.py            # 512 x 768 by 768 x 768, 2 threads
    python benchmarks/bench_cpu_precision.py --m 4096

Where oneDNN has no native half precision (``activations.models.native_on_cpu``: no AVX-512
or AMX), ATen multiplies bf16 and fp16 matrices with a scalar loop. That is why the tiny
model's trainer drops bf16 autocast there and ``load_model`` warns about a half-precision
forward pass on such a CPU. Each repetition times every dtype once, in turn, so load from
other processes hits all alike; the ratios use the median of each.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from activations.models import native_on_cpu

DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=512)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(args.m, args.d, generator=gen), torch.randn(args.d, args.d, generator=gen)
    pairs = {dtype: (a.to(dtype), b.to(dtype)) for dtype in DTYPES}
    times: dict[torch.dtype, list[float]] = {dtype: [] for dtype in DTYPES}
    for i in range(args.repeats + 1):
        for dtype, (x, y) in pairs.items():
            start = time.perf_counter()
            x @ y
            if i:  # the first round warms up
                times[dtype].append(time.perf_counter() - start)
    print(f"{args.m} x {args.d} by {args.d} x {args.d} matmul, {args.threads} threads, median of {args.repeats}, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
    base = statistics.median(times[torch.float32])
    print(f"{'dtype':<16} {'native':>6} {'seconds':>9} {'vs float32':>11}")
    for dtype in DTYPES:
        median = statistics.median(times[dtype])
        print(f"{str(dtype):<16} {str(native_on_cpu(dtype)):>6} {median:>9.4f} {median / base:>10.1f}x")


if __name__ == "__main__":
    main()
