"""Positional IOI nodes on the circuit fixture: does any top node track the duplicated name?

    python scripts/ioi_positional_nodes.py [--seed 0 | --saes RUN/saes] [--dataset ioi_abc] [--top 60]

``test_ioi_circuit_has_duplicated_name_features`` ranks nodes summed over positions, which
could hide a feature whose effects at S2 and at the end cancel. Here the prompts of the most
common held-out template length (the same S2 and final positions, up to 48) are attributed
per position (integrated gradients), and each of the ``top`` nodes is printed with its score,
its mean activation on the clean prompts and on the four fresh-name controls of the test, and
whether it passes the test's tracking rule. ``--saes`` defaults to the fixture's cached SAEs
(scripts/fixture_path.py). docs/circuits.md ("Across fixture seeds") quotes it.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts"), str(ROOT / "tests" / "circuits")]

from activations.models import load_model  # noqa: E402
from circuits.attribution import SplicedModel, attribute, top_nodes  # noqa: E402
from circuits.commands.circuit import load_saes  # noqa: E402
from circuits.datasets import load_examples, tokenize_pairs  # noqa: E402
from fixture_path import fixture_saes  # noqa: E402


def main() -> None:
    from test_circuit import FRESH_NAMES, duplicated_name_positions
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--saes", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=None, help="fixture seed whose cached SAEs to use (default 0)")
    parser.add_argument("--dataset", default="ioi_abc")
    parser.add_argument("--top", type=int, default=60)
    args = parser.parse_args()
    model = load_model("tiny", device="cpu")
    spliced = SplicedModel(model, load_saes(args.saes or fixture_saes(args.seed)))
    examples = [e for e in load_examples(args.dataset, 400, seed=1)
                if not any(" " + name in e.values() for name in FRESH_NAMES)]
    s2, _ = duplicated_name_positions(model, tokenize_pairs(model, examples))
    lengths = [len(model.to_tokens([e["clean_prefix"]])[0]) for e in examples]
    groups = collections.defaultdict(list)
    for example, length, position in zip(examples, lengths, s2.tolist()):
        groups[(length - 1, position)].append(example)
    (end, s2_at), group = max(groups.items(), key=lambda item: len(item[1]))
    batch = tokenize_pairs(model, group[:48])
    _, controls = duplicated_name_positions(model, batch)
    print(f"{len(batch)} prompts like {group[0]['clean_prefix']!r}: S2 at {s2_at}, end at {end}")
    attribution = attribute(spliced, batch, "ig", per_position=True)
    print(f"total effect {attribution.total:.3f}")
    with torch.no_grad():
        dup, fresh = spliced.values(batch.clean), [spliced.values(c) for c in controls]
    for rank, (hook, index, position, score) in enumerate(top_nodes(attribution, args.top)):
        where = {s2_at: "S2", end: "end"}.get(position, str(position))
        if index == dup[hook][0].shape[-1]:
            print(f"{rank:3d} {hook:26s} error  {where:>4s} {score:+.3f}")
            continue
        a = float(dup[hook][0][:, position, index].mean())
        bs = [float(f[hook][0][:, position, index].mean()) for f in fresh]
        b = sum(bs) / len(bs)
        tracks = a >= 2 * b and a - b >= 0.5 and a - b >= 2 * (max(bs) - min(bs))
        print(f"{rank:3d} {hook:26s} {index:5d}  {where:>4s} {score:+.3f}  {a:.2f} vs {', '.join(f'{x:.2f}' for x in bs)}"
              + ("  TRACKS THE REPEAT" if tracks else ""))


if __name__ == "__main__":
    main()
