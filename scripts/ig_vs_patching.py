"""IG and AtP against exact activation patching, on the 50 nodes of largest exact effect.

    python scripts/ig_vs_patching.py SAE_RUN_DIR [--top 50]

For each behaviour dataset, every node that differs between clean and patch prompts is
patched exactly (the ground truth), the ``top`` nodes of largest |exact effect| are kept, and
the IG (10 steps) and AtP scores of those nodes are rank-correlated with their exact
effects. Also prints how many of them IG's own top ``top`` contains. The table in
docs/circuits.md ("Why IG ranks single-node patches worse than AtP") came from this script
with the test fixture's SAEs (.pytest_cache/d/tiny-saes-*/run).
"""

from __future__ import annotations

import argparse

import torch

from activations.models import load_model
from circuits.attribution import SplicedModel, attribute, patch_effects, rank_correlation, top_nodes
from circuits.commands.circuit import load_saes
from circuits.datasets import load_examples, tokenize_pairs

DATASETS = [("sva_pp", 24, 3), ("sva_pp", 48, 0), ("sva_simple", 24, 3), ("sva_rc", 24, 3), ("ioi", 24, 3)]


def changed_nodes(attribution) -> list[tuple[str, int, None]]:
    """Every summed node whose value differs between some clean and patch prompt, and every error node."""
    nodes = []
    for hook, (delta_f, _) in attribution.deltas.items():
        moved = delta_f.abs().amax((0, 1)) > 0
        nodes += [(hook, i, None) for i in moved.nonzero().squeeze(1).tolist()] + [(hook, delta_f.shape[-1], None)]
    return nodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("saes")
    parser.add_argument("--top", type=int, default=50)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_model("tiny", device="cpu")
    spliced = SplicedModel(model, load_saes(args.saes))
    print("dataset (prompts, seed) | nodes patched | IG | AtP | IG's own top shares")
    for name, n, seed in DATASETS:
        batch = tokenize_pairs(model, load_examples(name, n, seed=seed))
        ig, atp = attribute(spliced, batch, "ig", steps=10), attribute(spliced, batch, "atp")
        nodes = changed_nodes(ig)
        exact = patch_effects(spliced, batch, nodes, chunk=32)
        top = exact.abs().topk(args.top).indices.tolist()
        score = lambda a, j: float(a.scores[nodes[j][0]][nodes[j][1]])
        rho_ig = rank_correlation(torch.tensor([score(ig, j) for j in top]), exact[top])
        rho_atp = rank_correlation(torch.tensor([score(atp, j) for j in top]), exact[top])
        own = {(h, i) for h, i, _, _ in top_nodes(ig, args.top)}
        shared = sum((nodes[j][0], nodes[j][1]) in own for j in top)
        print(f"{name} ({n}, {seed}) | {len(nodes)} | {rho_ig:.3f} | {rho_atp:.3f} | {shared}", flush=True)


if __name__ == "__main__":
    main()
