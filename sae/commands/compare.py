"""``sae compare``: which features two SAEs share, and which of A's features split in B."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from activations.errors import ToolkitError
from activations.store import write_json
from sae.commands.harvest import parse_count
from sae.compare import CUTS, Comparison, check_cosine, compare, firing_agreement
from sae.config import NON_NEGATIVE, POSITIVE, check_flags
from sae.data import check_context, check_source_model, open_source
from sae.io import load_sae, one_sae_folder

NAME = "compare"
HELP = ("compare two SAEs of one basis feature by feature: decoder best matches both ways, shared features, "
        "features of A that split in B, checked on activations")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sae_a", metavar="SAE_A", help="an SAE folder, a run folder holding one SAE, or RELEASE:SAE_ID")
    p.add_argument("sae_b", metavar="SAE_B", help="the SAE to compare it with (the wider one, to see splitting)")
    p.add_argument("--threshold", type=float, default=0.7,
                   help="decoder cosine at which mutual best matches count as one shared feature")
    p.add_argument("--child-threshold", type=float, default=0.5,
                   help="decoder cosine at which a B feature counts as a child of its best match in A")
    p.add_argument("--acts", default="", help="activation store (default: harvest on the fly from the SAEs' model)")
    p.add_argument("--tokens", type=parse_count, default=65_536,
                   help="tokens on which to check the matches by activations, e.g. 100k (0: decoders only)")
    p.add_argument("--dataset", default="tinyworld", help="token data for on-the-fly activations")
    p.add_argument("--context", type=int, default=128, help="context length for on-the-fly activations")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--families", type=int, default=10, help="split families to list (largest first)")
    p.add_argument("--json", default="", help="also write the comparison, feature by feature, to this JSON file")


_NUMBERS = {"tokens": NON_NEGATIVE, "batch_size": POSITIVE, "families": NON_NEGATIVE,
            "context": (lambda v: v >= 2, "at least 2")}


def _check_numbers(args: argparse.Namespace) -> None:
    check_flags(args, _NUMBERS)
    check_cosine("--threshold", args.threshold)
    check_cosine("--child-threshold", args.child_threshold)


def _fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def report(comparison: Comparison, names: tuple[str, str], families: int) -> str:
    """The comparison as text: match distributions, shared features, the largest split families."""
    s, agree = comparison.summary(), comparison.agreement
    lines = [f"A: {names[0]} ({s['n_a']} latents)", f"B: {names[1]} ({s['n_b']} latents)", "",
             "decoder cosine of each feature's best match in the other SAE (chance: among as many random "
             "directions as B has):",
             f"{'':14}{'median':>8}" + "".join(f"{'>= ' + str(c):>8}" for c in CUTS)]
    for label, key in (("A's in B", "a_in_b"), ("B's in A", "b_in_a"), ("A's, chance", "a_in_random")):
        row = s[key]
        lines.append(f"{label:14}{row['median']:8.3f}" + "".join(f"{row[f'>={c}']:8.3f}" for c in CUTS))
    lines.append(f"shared (mutual best match, cosine >= {s['threshold']}): {s['shared']} features "
                 f"({s['shared_share_a']:.1%} of A, {s['shared_share_b']:.1%} of B)")
    if agree:
        corr = agree["correlation"]
        valid = corr[~corr.isnan()]
        if len(valid):
            lines.append(f"  their activations over {agree['n_tokens']:,} tokens: Pearson correlation median "
                         f"{float(valid.median()):.3f}, >= 0.7 for {float((valid >= 0.7).float().mean()):.1%}")
    lines.append(f"split: {s['split']} features of A have two or more children in B (cosine >= "
                 f"{s['child_threshold']}), {s['children']} children in all")
    fams = comparison.families()
    if agree and fams:
        recall, precision = agree["recall"], agree["precision"]
        lines.append(f"  on activations, median over families: a child fires on {_fmt(float(recall.nanmedian()))} "
                     f"of the parent's firings; the parent on {_fmt(float(precision.nanmedian()))} of the children's")
    items = list(fams.items())
    for i in sorted(range(len(items)), key=lambda i: -len(items[i][1]))[:families]:
        parent, kids = items[i]
        shown = ", ".join(f"{k} ({float(comparison.b_cos[k]):.2f})" for k in kids[:8]) + (" ..." if len(kids) > 8 else "")
        extra = (f"  [recall {_fmt(float(agree['recall'][i]))}, precision {_fmt(float(agree['precision'][i]))}]"
                 if agree else "")
        lines.append(f"  A {parent} -> {len(kids)} children: {shown}{extra}")
    return "\n".join(lines)


def as_json(comparison: Comparison, names: tuple[str, str]) -> dict:
    """Everything, feature by feature: best matches both ways, shared pairs, families."""
    agree, fams = comparison.agreement, comparison.families()
    shared = comparison.shared.tolist()
    out = {"a": names[0], "b": names[1], "summary": comparison.summary(),
           "a_best": {"cosine": comparison.a_cos.tolist(), "index": comparison.a_match.tolist()},
           "b_best": {"cosine": comparison.b_cos.tolist(), "index": comparison.b_match.tolist()},
           "shared": [{"a": i, "b": j, "cosine": float(comparison.a_cos[i])} for i, j in shared],
           "families": [{"a": parent, "children": kids} for parent, kids in fams.items()]}
    if agree:
        out["n_tokens"] = agree["n_tokens"]
        out["fired_a"], out["fired_b"] = agree["fired_a"].tolist(), agree["fired_b"].tolist()
        for row, corr in zip(out["shared"], agree["correlation"].tolist()):
            row["correlation"] = None if math.isnan(corr) else corr
        for row, recall, precision in zip(out["families"], agree["recall"].tolist(), agree["precision"].tolist()):
            row["recall"] = None if math.isnan(recall) else recall
            row["precision"] = None if math.isnan(precision) else precision
    return out


def run(args: argparse.Namespace) -> int:
    _check_numbers(args)
    folders = one_sae_folder(args.sae_a), one_sae_folder(args.sae_b)
    a, b = (load_sae(f) for f in folders)
    comparison = compare(a, b, args.threshold, args.child_threshold)
    if args.tokens:
        model_name = a.metadata.get("model_name") or b.metadata.get("model_name") or ""
        if not args.acts and not model_name:
            raise ToolkitError("the SAEs' cfg.json names no model to harvest from; pass --acts STORE or --tokens 0")
        source = open_source(args.acts, model_name, list(dict.fromkeys((a.cfg.hook, b.cfg.hook))), args.dataset,
                             args.seed, args.context)
        if model_name:
            check_source_model(source, model_name)
        if not args.acts:
            check_context(source.model, args.context)
        firing_agreement(comparison, a, b, source, args.tokens, args.batch_size, args.seed)
    names = (str(folders[0].resolve()), str(folders[1].resolve()))  # --compare in `sae dashboard` matches by path
    print(report(comparison, names, args.families))
    if args.json:
        write_json(Path(args.json), as_json(comparison, names))  # whole or not at all
    return 0
