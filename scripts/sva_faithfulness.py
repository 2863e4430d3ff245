"""The SVA (pp) faithfulness curve of the circuits test, on dictionaries of another recipe.

    python scripts/sva_faithfulness.py --out DIR [--architecture matryoshka] [--k 16] [--d-sae 1536]

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
from circuits.circuit import faithfulness_curve  # noqa: E402
from circuits.commands.circuit import load_saes  # noqa: E402
from circuits.datasets import load_examples, tokenize_pairs, train_test_split  # noqa: E402
from sae.config import SAEConfig, TrainConfig  # noqa: E402
from sae.trainer import train  # noqa: E402
from tests.circuits.conftest import NODE_HOOKS, RECIPE  # noqa: E402

SIZES = [10, 25, 50, 100, 200, 400]


def train_saes(out: Path, architecture: str, k: int, d_sae: int) -> None:
    started = time.time()
    cfg = TrainConfig(sae=SAEConfig(architecture=architecture, d_sae=d_sae, k=k),
                      coders=[{"hook": hook} for hook in NODE_HOOKS], model="tiny", out=str(out),
                      tokens=RECIPE["tokens"], batch_size=RECIPE["batch_size"], seed=0, device="cpu",
                      checkpoint_every=0, log_every=50, eval_contexts=0, eval_tokens=16_384)
    train(cfg)
    print(f"trained {len(NODE_HOOKS)} SAEs in {time.time() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--architecture", default=RECIPE["architecture"])
    parser.add_argument("--k", type=int, default=RECIPE["k"])
    parser.add_argument("--d-sae", type=int, default=RECIPE["d_sae"])
    args = parser.parse_args()
    torch.set_num_threads(2)
    if not (args.out / "saes").exists():
        train_saes(args.out, args.architecture, args.k, args.d_sae)
    model = load_model("tiny", device="cpu")
    spliced = SplicedModel(model, load_saes(args.out / "saes"))
    discover, evaluate_on = train_test_split(load_examples("sva_pp", 64, seed=0), 0.5, seed=0)
    found, held = tokenize_pairs(model, discover), tokenize_pairs(model, evaluate_on)
    for method in ("ig", "atp"):
        curve = faithfulness_curve(spliced, held, attribute(spliced, found, method).scores, SIZES)
        print(method, ", ".join(f"{p['size']}: {p['faithfulness']:.3f}" for p in curve), flush=True)


if __name__ == "__main__":
    main()
