"""On-the-fly source: the cost of the shuffle buffer, measured side by side in one run.

``OnTheFlySource`` shuffles an index and copies only the rows it serves and the fresh ones;
the plain statement of the same buffer (``tests/activations/test_onthefly.py``'s
``_MovingRows``) permutes every row of every hook each round and concatenates the fresh rows
in front. Both serve identical batches (the test checks it). This times serving ``--tokens``
tokens from each, alternating, split into the time spent harvesting (the model's forward
pass, the same in both) and the rest (the buffer's bookkeeping and the batches' copies).

    python benchmarks/bench_onthefly.py                 # the circuits fixture's 13 hooks of tiny
    python benchmarks/bench_onthefly.py --hooks blocks.2.hook_resid_post --tokens 400k
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from activations.models import load_model
from activations.onthefly import OnTheFlySource
from sae.commands.harvest import parse_count

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the reference lives in tests/
from tests.activations.test_onthefly import _MovingRows

FIXTURE_HOOKS = ["blocks.0.hook_resid_pre"] + [f"blocks.{layer}.{name}" for layer in range(4)
                                               for name in ("hook_attn_out", "hook_mlp_out", "hook_resid_post")]


def serve(kind: type, model, hooks: list[str], tokens: int, batch_size: int) -> tuple[float, float]:
    """(total seconds, seconds inside ``_harvest``) to serve ``tokens`` tokens after the first fill."""
    source = kind(model, hooks)
    spent = [0.0]
    harvest = source._harvest

    def timed(n_rows):
        start = time.perf_counter()
        try:
            return harvest(n_rows)
        finally:
            spent[0] += time.perf_counter() - start

    source._harvest = timed
    start = time.perf_counter()
    batches = source.batches(batch_size, seed=0, epochs=10**9)
    for _ in range(tokens // batch_size):
        next(batches)
    return time.perf_counter() - start, spent[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hooks", default=",".join(FIXTURE_HOOKS))
    parser.add_argument("--tokens", type=parse_count, default=600_000)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model("tiny", device="cpu")
    hooks = args.hooks.split(",")
    results = {"moving rows": [], "shuffled index": []}
    for _ in range(args.repeats):
        for name, kind in (("moving rows", _MovingRows), ("shuffled index", OnTheFlySource)):
            results[name].append(serve(kind, model, hooks, args.tokens, args.batch_size))
    print(f"{len(hooks)} hooks of tiny, {args.tokens:,} tokens in batches of {args.batch_size}, buffer 65,536 rows, "
          f"{args.threads} threads; best of {args.repeats}")
    best = {name: min(runs) for name, runs in results.items()}
    for name, (total, harvesting) in best.items():
        print(f"  {name:15s} total {total:6.2f} s   harvesting {harvesting:6.2f} s   rest {total - harvesting:6.2f} s")
    (old, old_h), (new, new_h) = best["moving rows"], best["shuffled index"]
    print(f"total: shuffled index / moving rows = {new / old:.3f}; "
          f"rest: {(new - new_h) / (old - old_h):.3f}")


if __name__ == "__main__":
    main()
