"""Scan every latent of the IOI test's dictionaries for the duplicated-name rule, with its rank.

    python scripts/ioi_duplicated_name_scan.py [--saes RUN/saes] [--replace OTHER/saes] [--top 30]

``test_ioi_circuit_has_duplicated_name_features`` asks whether one of the top 30 features (IG,
summed over positions, 48 ``ioi_abc`` prompts) tracks the duplicated name. This script asks
the two questions behind a "no":

1. does *any* latent pass the test's rule (at S2 or at the end), and where does it rank by
   attribution? And how much of the IG total do the error nodes carry (what the dictionaries
   miss)?
2. does a top feature pass it *per prompt*: on the prompts where it fires in the repeat run
   (mean a), against its mean with each fresh name on those same prompts? The test's rule
   averages over all 48 prompts, which a feature of one particular repeated name (firing on a
   few prompts only) could never pass.

``--replace`` puts other SAEs (for example wider ones from ``sae train --hook A,B,...``) in
place of the fixture's at their hooks. ``--saes`` defaults to the fixture's cached SAEs
(scripts/fixture_path.py). docs/circuits.md ("IOI") quotes it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts"), str(ROOT / "tests" / "circuits")]

from activations.models import load_model  # noqa: E402
from circuits.attribution import SplicedModel, attribute  # noqa: E402
from circuits.circuit import select_nodes  # noqa: E402
from circuits.commands.circuit import load_saes  # noqa: E402
from circuits.datasets import load_examples, tokenize_pairs  # noqa: E402
from fixture_path import fixture_saes  # noqa: E402


def main() -> None:
    from test_circuit import (DATASET, FRESH_NAMES, duplicated_name_features, duplicated_name_positions,
                              tracks_repeat)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--saes", type=Path, default=None)
    parser.add_argument("--replace", type=Path, default=None, help="SAEs that replace the --saes ones at their hooks")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = load_model("tiny", device="cpu")
    saes = load_saes(args.saes or fixture_saes())
    replaced = load_saes(args.replace) if args.replace else {}
    saes.update(replaced)
    spliced = SplicedModel(model, saes)
    examples = [e for e in load_examples(DATASET, 48, seed=1) if not any(" " + n in e.values() for n in FRESH_NAMES)]
    batch = tokenize_pairs(model, examples)
    attribution = attribute(spliced, batch, "ig")
    features = {h: s[:-1] for h, s in attribution.scores.items()}
    print(f"{len(batch)} prompts; IG total {attribution.total:.2f}; error nodes:",
          {h: round(float(s[-1]), 2) for h, s in attribution.scores.items()})
    order = torch.cat(list(features.values())).abs().argsort(descending=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order))
    offset = dict(zip(features, torch.tensor([0] + [len(s) for s in features.values()]).cumsum(0).tolist()))
    s2, controls = duplicated_name_positions(model, batch)
    everything = {h: torch.ones_like(s, dtype=torch.bool) for h, s in features.items()}
    tracking, _ = duplicated_name_features(spliced, batch, everything, s2, controls)
    print(f"latents passing the test's rule, of {len(order)}:")
    for hook, feature, where, a, bs in tracking:
        print(f"  {hook} {feature} at {where}: a {a}, fresh names {bs}; IG {float(features[hook][feature]):.3f}, "
              f"rank {int(rank[offset[hook] + feature]) + 1}{' (replaced hook)' if hook in replaced else ''}")
    rows = torch.arange(len(batch))
    with torch.no_grad():
        repeat, fresh = spliced.values(batch.clean), [spliced.values(c) for c in controls]
    top = select_nodes(features, "topk", args.top)
    print(f"top {args.top} features, per prompt (on the prompts where each fires in the repeat run):")
    for hook, mask in top.items():
        for feature in mask.nonzero().flatten().tolist():
            for where, position in (("S2", s2), ("end", batch.last)):
                a = repeat[hook][0][rows, position, feature]
                on = a > 0
                if not on.any():
                    continue
                bs = torch.stack([f[hook][0][rows, position, feature][on].mean() for f in fresh])
                mean = float(a[on].mean())
                passes = bool(tracks_repeat(a[on].mean()[None], bs[:, None]))
                print(f"  {hook} {feature} at {where}: fires on {int(on.sum())}/{len(batch)}, a {mean:.2f}, "
                      f"fresh names {[round(float(b), 2) for b in bs]}{'  PASSES' if passes else ''}")


if __name__ == "__main__":
    main()
