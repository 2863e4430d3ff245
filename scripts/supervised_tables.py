"""Markdown tables of a `sae supervised --out` report, as in docs/supervised.md.

    python scripts/supervised_tables.py REPORT.json

The approximation/interpretability table lists the nodes where mean ablation moves F by at
least 0.5 logits; the control table the (node, attribute) pairs whose patch effect is at
least 0.5 logits (the others have no scores).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _f(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def _namer(doc: dict):
    """Row names: the hook, or the SAE folder's name when several SAEs share a hook (a sweep)."""
    hooks = [(n["hook"], n["position"]) for n in doc["nodes"]]
    sweep = len(set(hooks)) < len(hooks)
    return lambda n: f"{Path(n['sae']).name if sweep else n['hook']} @{n['position']}"


def approximation_table(doc: dict) -> list[str]:
    attributes, name_of = list(doc["nodes"][0]["interpretability"]), _namer(doc)
    lines = [f"| node | sufficiency sup / SAE | necessity sup / SAE | best F1 {' / '.join(attributes)} |",
             "|---|---|---|---|"]
    for n in doc["nodes"]:
        a, i = n["approximation"], n["interpretability"]
        if a["supervised"]["sufficiency"] is not None:
            lines.append(f"| {name_of(n)} | {_f(a['supervised']['sufficiency'])} / {_f(a['sae']['sufficiency'])} | "
                         f"{_f(a['supervised']['necessity'])} / {_f(a['sae']['necessity'])} | "
                         + " / ".join(f"{i[x]['f1']:.2f}" for x in attributes) + " |")
    return lines


def control_table(doc: dict) -> list[str]:
    budgets, name_of = doc["settings"]["budgets"], _namer(doc)
    lines = ["| node | attr | patch effect | supervised (2 vectors) | " + " | ".join(f"SAE k={k}" for k in budgets) + " |",
             "|---|---|---|---|" + "---|" * len(budgets)]
    for n in doc["nodes"]:
        for attribute, c in n["control"].items():
            if c["supervised"] is not None:
                lines.append(f"| {name_of(n)} | {attribute} | {c['patch_effect']:+.2f} | "
                             f"{_f(c['supervised'])} | " + " | ".join(_f(c[f'sae_k{k}']) for k in budgets) + " |")
    return lines


if __name__ == "__main__":
    report = json.loads(open(sys.argv[1]).read())
    print("\n".join(approximation_table(report) + [""] + control_table(report)))
