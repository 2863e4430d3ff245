"""The slow circuits demonstrations on circuit-fixture SAEs trained from several seeds.

    python scripts/fixture_seeds.py --seeds 0 1 2 --logs /tmp/fixture-seeds
    python scripts/fixture_seeds.py --seeds 0 1 2 3 --d-sae 512 --logs /tmp/narrow   # another width

The ``tiny_saes`` fixture (tests/circuits/conftest.py) trains its SAEs from seed 0;
``SAE_FIXTURE_SEED`` trains the same recipe from another seed (cached like the default, about
2 minutes each on 2 cores at 512 latents). For each seed this runs, with ``--runxfail`` so that a known
shortfall reports its real outcome, the tests of ``tests/circuits`` whose result depends on
what the SAEs learned (the slow ones and IG against patching). It keeps their output, with
the numbers each test prints, in ``--logs``, and ends with a table of which tests hold on
which seed: a demonstration of the method holds on every dictionary, one of a lucky
dictionary does not. docs/circuits.md ("Across fixture seeds") came from it. The exit
status is 0 when every test held on every seed run; ``--stop-at-failure`` runs no seed after
one with a failure (``scripts/check_draw.sh`` uses it).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the tests that depend on what the fixture's SAEs learned: the slow ones, IG's target and the
# gradient search's reach
DEMONSTRATIONS = " or ".join(["sva_circuit_of_at_most", "duplicated_name_features", "unknown_entity_latents",
                              "activation_check_beats", "removing_a_flow_feature", "ablating_a_plural_subject",
                              "shift_removes", "ig_agrees", "brings_the_metric"])


def run(seed: int, logs: Path, d_sae: int | None = None) -> dict[str, str]:
    log = logs / f"seed{seed}.log"
    env = {**os.environ, "SAE_FIXTURE_SEED": str(seed), "HF_HUB_OFFLINE": "1"}
    if d_sae is not None:
        env["SAE_FIXTURE_D_SAE"] = str(d_sae)
    with log.open("w") as out:
        subprocess.run([sys.executable, "-m", "pytest", "-s", "-rA", "--runxfail", "-k", DEMONSTRATIONS,
                        "tests/circuits"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    outcomes = {}
    for line in log.read_text().splitlines():
        found = re.match(r"(PASSED|FAILED|ERROR) tests/circuits/(\S+)", line)
        if found:
            outcomes[found.group(2)] = "holds" if found.group(1) == "PASSED" else found.group(1).lower()
    print(f"seed {seed}: {log}", flush=True)
    return outcomes


def all_hold(outcomes: dict[str, str]) -> bool:
    """Whether a seed's run reported its tests and every one held (no report counts as a failure)."""
    return bool(outcomes) and all(outcome == "holds" for outcome in outcomes.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--logs", type=Path, required=True)
    parser.add_argument("--stop-at-failure", action="store_true",
                        help="run no further seed once a seed has a demonstration that does not hold")
    parser.add_argument("--d-sae", type=int, default=None,
                        help="train the fixture's SAEs at this width instead of the recipe's (SAE_FIXTURE_D_SAE)")
    args = parser.parse_args()
    args.logs.mkdir(parents=True, exist_ok=True)
    results = {}
    for seed in args.seeds:
        results[seed] = run(seed, args.logs, args.d_sae)
        if args.stop_at_failure and not all_hold(results[seed]):
            print(f"seed {seed} has a failure: seeds after it not run", flush=True)
            break
    tests = sorted({t for outcomes in results.values() for t in outcomes})
    print("| test | " + " | ".join(f"seed {s}" for s in results) + " |")
    print("|---|" + "---|" * len(results))
    for test in tests:
        print(f"| {test} | " + " | ".join(results[s].get(test, "-") for s in results) + " |")
    sys.exit(0 if all(all_hold(outcomes) for outcomes in results.values()) else 1)


if __name__ == "__main__":
    main()
