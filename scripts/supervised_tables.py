"""Markdown tables of a `sae supervised --out` report, as in docs/supervised.md.

    python scripts/supervised_tables.py REPORT.json

The approximation/interpretability table lists the nodes where mean ablation moves F by at
least 0.5 logits; the control table the (node, attribute) pairs whose patch effect is at
least 0.5 logits (the others have no scores).
"""

from __future__ import annotations

import json
import sys


def _f(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def approximation_table(doc: dict) -> list[str]:
    lines = ["| node | sufficiency sup / SAE | necessity sup / SAE | best F1 io / s / pos |", "|---|---|---|---|"]
    for n in doc["nodes"]:
        a, i = n["approximation"], n["interpretability"]
        if a["supervised"]["sufficiency"] is not None:
            lines.append(f"| {n['hook']} @{n['position']} | {_f(a['supervised']['sufficiency'])} / "
                         f"{_f(a['sae']['sufficiency'])} | {_f(a['supervised']['necessity'])} / "
                         f"{_f(a['sae']['necessity'])} | {i['io']['f1']:.2f} / {i['s']['f1']:.2f} / {i['pos']['f1']:.2f} |")
    return lines


def control_table(doc: dict) -> list[str]:
    budgets = doc["settings"]["budgets"]
    lines = ["| node | attr | patch effect | supervised (2 vectors) | " + " | ".join(f"SAE k={k}" for k in budgets) + " |",
             "|---|---|---|---|" + "---|" * len(budgets)]
    for n in doc["nodes"]:
        for attribute, c in n["control"].items():
            if c["supervised"] is not None:
                lines.append(f"| {n['hook']} @{n['position']} | {attribute} | {c['patch_effect']:+.2f} | "
                             f"{_f(c['supervised'])} | " + " | ".join(_f(c[f'sae_k{k}']) for k in budgets) + " |")
    return lines


if __name__ == "__main__":
    report = json.loads(open(sys.argv[1]).read())
    print("\n".join(approximation_table(report) + [""] + control_table(report)))
