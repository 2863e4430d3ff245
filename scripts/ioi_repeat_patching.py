"""Does the model use the repeat of the subject in IOI? Activation patching at S2 and at the end.

    python scripts/ioi_repeat_patching.py [--model tiny] [--prompts 200]

``test_ioi_circuit_has_duplicated_name_features`` looks for features that track the repeat:
in "When Mary and John went to the store, John gave a drink to", the second "John" (S2) is a
repeat. Its controls put a fresh name in place of the first occurrence (S1: "When Mary and
Victor went to the store, John gave a drink to"), so S2 holds the same token, at the same
place, without being a repeat. This script asks whether the model's IOI behaviour uses that
difference at all. On held-out ``ioi_abc`` prompts it measures the logit difference
m = logit(IO) − logit(S) at the final position:

- of the clean prompts, of the controls, and of the ``ioi_abc`` patch prompts (S2 a third
  name);
- of the clean prompts with one hook's activation at S2 (or at the end) replaced by its value
  in each control run: the repeat removed there and nowhere else;
- of the clean prompts with one hook's activation at S2 replaced by its value in the patch
  run: S2's name changed there, for comparison. (At ``hook_embed`` the controls' S2 is the
  clean one, token for token, so that row's control columns must read the clean m.)

If patching S2 from the controls leaves m where it was, the model does not read the repeat at
S2, and no feature there can matter to the behaviour by tracking it. docs/circuits.md ("IOI")
quotes the results for the shipped model and other draws.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "circuits")]

from activations.models import load_model  # noqa: E402
from circuits.datasets import load_examples, tokenize_pairs  # noqa: E402

SITES = ("attn_out", "mlp_out", "resid_post")


def main() -> None:
    from test_circuit import DATASET, FRESH_NAMES, duplicated_name_positions
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny", help="'tiny' or a checkpoint folder")
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = load_model(args.model, device="cpu")
    examples = [e for e in load_examples(DATASET, args.prompts, seed=args.seed)
                if not any(" " + n in e.values() for n in FRESH_NAMES)]
    batch = tokenize_pairs(model, examples)
    s2, controls = duplicated_name_positions(model, batch)
    rows = torch.arange(len(batch))
    hooks = ["hook_embed"] + [f"blocks.{layer}.hook_{site}" for layer in range(model.dims.n_layers) for site in SITES]

    def margin(logits: torch.Tensor) -> float:
        final = logits[rows, batch.last]
        return float((final[rows, batch.clean_answer] - final[rows, batch.patch_answer]).mean())

    def patched(hook: str, source: dict[str, torch.Tensor], position: torch.Tensor) -> float:
        def patch(x: torch.Tensor) -> torch.Tensor:
            x = x.clone()
            x[rows, position] = source[hook][rows, position].to(x.dtype)
            return x
        with torch.no_grad():
            return margin(model.forward(batch.clean, {hook: patch}))

    with torch.no_grad():
        clean = margin(model.forward(batch.clean))
        print(f"{args.model}: {len(batch)} prompts; m = logit(IO) - logit(S) at the end")
        print(f"  clean {clean:.3f}; ioi_abc patch (S2 a third name) {margin(model.forward(batch.patch)):.3f}; "
              f"controls (S1 a fresh name) " + ", ".join(f"{margin(model.forward(c)):.3f}" for c in controls))
    runs = [model.capture(c, hooks) for c in controls]
    patch_run = model.capture(batch.patch, hooks)
    print(f"  {'hook':28s} {'S2 from controls':>18s} {'end from controls':>18s} {'S2 from ioi_abc patch':>22s}")
    largest = 0.0
    for hook in hooks:
        at_s2 = [patched(hook, run, s2) for run in runs]
        at_end = [patched(hook, run, batch.last) for run in runs]
        largest = max(largest, max(abs(v - clean) for v in at_s2))
        print(f"  {hook:28s} {sum(at_s2) / len(at_s2):18.3f} {sum(at_end) / len(at_end):18.3f} "
              f"{patched(hook, patch_run, s2):22.3f}")
    print(f"  largest change from removing the repeat at S2 (any hook, any control name): {largest:.3f} "
          f"({largest / abs(clean):.1%} of m)")


if __name__ == "__main__":
    main()
