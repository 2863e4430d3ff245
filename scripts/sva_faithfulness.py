"""The SVA (pp) faithfulness curve of the circuits test, on dictionaries of another recipe.

    python scripts/sva_faithfulness.py --out DIR [--architecture matryoshka] [--k 16] [--d-sae 1536]
    python scripts/sva_faithfulness.py --saes DIR --discover 256 --discover-seed 7 --refine 40

With ``--saes`` it uses those SAEs (e.g. the cached test fixture, ``python -c "import sys;
sys.path.insert(0, 'scripts'); from fixture_path import fixture_saes; print(fixture_saes())"``).
``--discover N`` discovers on N fresh prompts (drawn with ``--discover-seed``, none repeating a
held-out one) instead of the test's 32, and ``--refine R`` then refines the top-100 IG circuit
(``circuits.refine``) and prints its held-out faithfulness beside the unrefined one's.

Trains one SAE per node hook of the tiny model with the circuits fixture's recipe
(``tests/circuits/conftest.py``: 600k tokens on the fly, seed 0), changing only the flags
given, unless ``DIR/saes`` already holds them. Then, as
``test_sva_circuit_of_at_most_100_nodes_is_faithful`` does, it discovers on half of 64 sva_pp
examples and prints the held-out faithfulness of the top-n circuit for IG and AtP scores.
docs/circuits.md ("Why small circuits miss") records what it printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activations.models import load_model  # noqa: E402
from circuits.attribution import SplicedModel, attribute  # noqa: E402
from circuits.circuit import evaluate, faithfulness_curve, select_nodes  # noqa: E402
from circuits.commands.circuit import load_saes  # noqa: E402
from circuits.datasets import load_examples, tokenize_pairs, train_test_split  # noqa: E402
from circuits.refine import refine  # noqa: E402
from sae.config import SAEConfig, TrainConfig  # noqa: E402
from sae.trainer import train  # noqa: E402
from tests.circuits.conftest import NODE_HOOKS, RECIPE, fixture_lr  # noqa: E402

SIZES = [10, 25, 50, 100, 200, 400]


def train_saes(out: Path, architecture: str, k: int, d_sae: int) -> None:
    started = time.time()
    cfg = TrainConfig(sae=SAEConfig(architecture=architecture, d_sae=d_sae, k=k, lr=fixture_lr(d_sae)),
                      coders=[{"hook": hook} for hook in NODE_HOOKS], model="tiny", out=str(out),
                      tokens=RECIPE["tokens"], batch_size=RECIPE["batch_size"], seed=0, device="cpu",
                      checkpoint_every=0, log_every=50, eval_contexts=0, eval_tokens=16_384)
    train(cfg)
    print(f"trained {len(NODE_HOOKS)} SAEs in {time.time() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--architecture", default=RECIPE["architecture"])
    parser.add_argument("--k", type=int, default=RECIPE["k"])
    parser.add_argument("--d-sae", type=int, default=RECIPE["d_sae"])
    parser.add_argument("--saes", type=Path, help="use these SAEs (one folder per node hook) instead of training")
    parser.add_argument("--discover", type=int, default=0, help="discover on this many fresh prompts (0: the test's 32)")
    parser.add_argument("--discover-seed", type=int, default=7)
    parser.add_argument("--refine", type=int, default=0, help="refinement rounds for the top-100 IG circuit")
    parser.add_argument("--candidates", type=int, default=6)
    parser.add_argument("--widen", type=int, default=2)
    args = parser.parse_args()
    if args.out is None and args.saes is None:
        parser.error("give --out DIR (trains SAEs there) or --saes DIR")
    torch.set_num_threads(2)
    saes = args.saes
    if saes is None:
        saes = args.out / "saes"
        if not saes.exists():
            train_saes(args.out, args.architecture, args.k, args.d_sae)
    model = load_model("tiny", device="cpu")
    spliced = SplicedModel(model, load_saes(saes))
    discover, evaluate_on = train_test_split(load_examples("sva_pp", 64, seed=0), 0.5, seed=0)
    if args.discover:
        held_out = {(e["clean_prefix"], e["patch_prefix"]) for e in evaluate_on}
        discover = [e for e in load_examples("sva_pp", args.discover, seed=args.discover_seed)
                    if (e["clean_prefix"], e["patch_prefix"]) not in held_out]
    found, held = tokenize_pairs(model, discover), tokenize_pairs(model, evaluate_on)
    print(f"discovery {len(found)} prompts, held-out {len(held)}", flush=True)
    for method in ("ig", "atp"):
        scores = attribute(spliced, found, method).scores
        curve = faithfulness_curve(spliced, held, scores, SIZES)
        print(method, ", ".join(f"{p['size']}: {p['faithfulness']:.3f}" for p in curve), flush=True)
        if args.refine and method == "ig":
            started = time.time()
            result = refine(spliced, found, select_nodes(scores, "topk", 100), args.refine, args.candidates, args.widen)
            print(f"ig, top 100 refined by {len(result.swaps)} swaps ({time.time() - started:.0f} s): held-out "
                  f"faithfulness {evaluate(spliced, held, result.masks)['faithfulness']:.3f}, discovery "
                  f"{evaluate(spliced, found, result.masks)['faithfulness']:.3f}", flush=True)


if __name__ == "__main__":
    main()
