"""Issue 4's unknown-entity reading under other ranking rules, on several dictionaries at once.

    python scripts/unknown_entity_rules.py [--model tiny|CKPT] SAES [SAES ...]

Each SAES is a folder of SAE folders (``scripts/fixture_path.py N`` for a cached fixture, or
``OUT/saes`` from ``scripts/train_fixture.py``). For each, it runs ``test_contrastive.py``'s
procedure: rank the latents of the residual-stream SAEs of blocks 0–2 on two prompt sets in
training phrasings, keep the hook and number of latents (4 or 8) whose summed activation best
separates made-up names from known entities, and report the held-out AUROC of that choice:
the second half of the never-asked entities against known entities, both in held-out
phrasings (``never_asked_prompts(half=1)``; the test's set since 2026-12-01). The rules:

- ``never-asked``: firing-frequency difference (issue 4's rule), the first half of the
  never-asked entities minus known ones: the test's since 2026-12-01;
- ``refused``: the same on the entities the model was taught to refuse (``unknown_train``):
  the test's until then, whose held-out set was every never-asked entity (``refused/all``);
- ``log-odds``: log((f + 0.02) / (f_known + 0.02)) on the refused entities, which favours
  latents silent on known entities;
- ``d-prime``: mean-activation difference over the activation's standard deviation, refused
  entities against known;
- ``made-up``: the frequency difference with made-up names (another draw than the
  validation's) against known, validated on the refused entities instead.

"oracle" is the best held-out AUROC over the six hook and size choices: what any validation
could at most reach with that rule. docs/circuits.md ("Split unknown latents") quotes it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from activations.corpus import entity_prompts, made_up_entity_prompts, never_asked_prompts  # noqa: E402
from activations.models import load_model  # noqa: E402
from circuits.contrastive import auroc, latent_activations, score  # noqa: E402
from sae.io import load_log_density, load_sae  # noqa: E402

HOOKS = [f"blocks.{layer}.hook_resid_post" for layer in range(3)]


def prompt_sets() -> dict[str, list[str]]:
    def texts(items):
        return [item["prompt"] for item in items]
    return {"known": texts(entity_prompts(200, True, 0, "train")), "unknown": texts(entity_prompts(200, False, 0, "train")),
            "made_up_rank": texts(made_up_entity_prompts(200, 7)),
            "known_val": texts(entity_prompts(100, True, 5, "train")), "made_up": texts(made_up_entity_prompts(100, 5)),
            "never_asked": texts(never_asked_prompts(200, 0, 0, "train")),
            "known_test": texts(entity_prompts(100, True, 1, "heldout")),
            "unknown_test": texts(never_asked_prompts(100, 1, 1, "heldout")),
            "unknown_test_all": texts(entity_prompts(100, False, 1, "heldout"))}


def rankings(acts: dict[str, torch.Tensor], dense: torch.Tensor) -> dict[str, tuple[torch.Tensor, str]]:
    """rule -> (latents best first, the validation's unknown set); dense latents last."""
    def frequency(a):
        return (a > 0).float().mean(0)
    f_unknown, f_known = frequency(acts["unknown"]), frequency(acts["known"])
    spread = torch.cat([acts["unknown"], acts["known"]]).std(0) + 1e-6
    values = {"never-asked": (frequency(acts["never_asked"]) - f_known, "made_up"),
              "refused": (f_unknown - f_known, "made_up"),
              "log-odds": (torch.log((f_unknown + 0.02) / (f_known + 0.02)), "made_up"),
              "d-prime": ((acts["unknown"].mean(0) - acts["known"].mean(0)) / spread, "made_up"),
              "made-up": (frequency(acts["made_up_rank"]) - f_known, "unknown")}
    return {rule: (torch.where(dense, torch.tensor(-1e9), value).argsort(descending=True, stable=True), validation)
            for rule, (value, validation) in values.items()}


def evaluate(model, saes: Path, sets: dict[str, list[str]]) -> dict[str, tuple[str, float, float]]:
    """rule -> (the validation's pick, its held-out AUROC, the oracle's); "refused/all" is the
    refused rule on the old test's held-out set."""
    folders = {json.loads((f / "cfg.json").read_text())["metadata"]["hook_name"]: f for f in saes.iterdir() if f.is_dir()}
    choices: dict[str, list[tuple[float, float, str]]] = {}
    for hook in HOOKS:
        if hook not in folders:
            sys.exit(f"error: {saes} has no SAE for {hook}")
        sae = load_sae(folders[hook])
        acts = {name: latent_activations(model, sae, prompts) for name, prompts in sets.items()}
        dense = 10 ** load_log_density(folders[hook]) > 0.1
        for rule, (ranked, validation) in rankings(acts, dense).items():
            for n in (4, 8):
                top = ranked[:n]
                tests = {rule: "unknown_test"} | ({"refused/all": "unknown_test_all"} if rule == "refused" else {})
                for name, test in tests.items():
                    choices.setdefault(name, []).append((
                        auroc(score(acts[validation], top), score(acts["known_val"], top)),
                        auroc(score(acts[test], top), score(acts["known_test"], top)), f"b{hook[7]} n{n}"))
    picks = {rule: max(c, key=lambda choice: choice[0]) for rule, c in choices.items()}  # the first best, as the test
    return {rule: (picks[rule][2], picks[rule][1], max(x[1] for x in c)) for rule, c in choices.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("saes", type=Path, nargs="+")
    parser.add_argument("--model", default="tiny")
    args = parser.parse_args()
    model, sets = load_model(args.model, device="cpu"), prompt_sets()
    with torch.no_grad():
        for saes in args.saes:
            results = evaluate(model, saes, sets)
            print(f"{saes}: " + " | ".join(f"{rule} {pick} {held_out:.3f} (oracle {oracle:.3f})"
                                           for rule, (pick, held_out, oracle) in results.items()), flush=True)


if __name__ == "__main__":
    main()
