"""``sae steer``: generate with and without steering along SAE features, and print the
effect on held-out CE/KL (and a target token's probability) against random controls."""

from __future__ import annotations

import argparse
import math

import torch

from activations.errors import ToolkitError
from circuits.commands import check_widths
from circuits.effects import measure, standard_metrics, target_prob
from circuits.interventions import SCHEDULES, Steering, chain_steering, generate, intervene

NAME = "steer"
HELP = "steered generation: add s times SAE feature directions at chosen layers and positions"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="", help="model name or folder (default: the SAE's cfg.json)")
    p.add_argument("--sae", action="append", required=True, metavar="DIR",
                   help="SAE folder (or a `sae train` run folder holding one SAE); repeat with --feature once "
                        "each to steer at several layers")
    p.add_argument("--feature", action="append", type=int, required=True, metavar="N", help="latent index per --sae")
    p.add_argument("--scale", type=float, required=True, help="s: added as s times each unit-norm decoder direction, in the activation's own units "
                        "(compare with the residual norm at that layer)")
    p.add_argument("--schedule", choices=SCHEDULES, default="constant", help="scale across the given layers, in order")
    p.add_argument("--prompt", action="append", required=True, help="prompt text (repeatable)")
    p.add_argument("--positions", default="all",
                   help="'all', 'last', comma-separated token positions, or 'from:TEXT': from TEXT's first token "
                        "(say, an entity) to the prompt's end (the held-out CE/KL then steers all positions)")
    p.add_argument("--max-new-tokens", type=int, default=20)
    p.add_argument("--target", default="", help="also report P(target token) after each prompt")
    p.add_argument("--contexts", type=int, default=8, help="held-out tinyworld contexts for CE/KL (0: skip)")
    p.add_argument("--controls", type=int, default=4, help="random-direction controls of equal norm")
    p.add_argument("--device", default="cpu")


def _positions(spec: str, length: int, model=None, prompt: str | None = None):
    if spec == "all" or (spec.startswith("from:") and prompt is None):
        return None
    if spec == "last":
        return [length - 1]
    if spec.startswith("from:"):
        from circuits.contrastive import positions_from
        return positions_from(model, prompt, spec[len("from:"):])
    try:
        positions = [int(i) for i in spec.split(",")]
    except ValueError:
        raise ToolkitError(f"--positions '{spec}' is not 'all', 'last', 'from:TEXT' or comma-separated integers") from None
    outside = [p for p in positions if not -length <= p < length]
    if outside:
        raise ToolkitError(f"--positions {','.join(map(str, outside))} is outside the prompt's {length} tokens "
                           f"(give 0..{length - 1}, or negative from the end)")
    return positions


def _edits(saes, features, args, length, model=None, prompt: str | None = None) -> list[Steering]:
    chain = [(sae.cfg.hook, sae.W_dec[f].detach()) for sae, f in zip(saes, features)]
    return chain_steering(chain, args.scale, args.schedule, _positions(args.positions, length, model, prompt))


def _print_metrics(label: str, report: dict) -> None:
    for name, r in report.items():
        print(f"  {label}{name}: clean {r['clean']:.4f}  steered {r['edited']:.4f}  "
              f"effect {r['effect']:+.4f}  random controls {r['control_effect_mean']:+.4f} "
              f"± {r['control_effect_std']:.4f}")


def run(args: argparse.Namespace) -> int:
    from activations.models import load_model
    from sae.data import eval_contexts
    from sae.io import load_sae, one_sae_folder
    if not math.isfinite(args.scale):
        raise ToolkitError(f"--scale {args.scale} is not a finite number")
    if args.controls < 1:
        raise ToolkitError(f"--controls {args.controls}: give at least 1 random-direction control")
    if len(args.sae) != len(args.feature):
        raise ToolkitError(f"give one --feature per --sae ({len(args.sae)} SAEs, {len(args.feature)} features)")
    saes = [load_sae(one_sae_folder(d), args.device) for d in args.sae]
    for sae, feature in zip(saes, args.feature):
        if not 0 <= feature < sae.d_sae:
            raise ToolkitError(f"feature {feature} is out of range for {sae.cfg.hook} (d_sae {sae.d_sae})")
    names = {sae.metadata.get("model_name") for sae in saes} - {None}
    if len(names) > 1:
        raise ToolkitError(f"the SAEs come from different models ({', '.join(sorted(names))}); steer one model")
    model_name = args.model or next(iter(names), "")
    if not model_name:
        raise ToolkitError("the SAE's cfg.json names no model; pass --model")
    model = load_model(model_name, args.device)
    check_widths(model, model_name, saes)
    target = model.tokenizer.encode(args.target) if args.target else None
    if target is not None and len(target) != 1:
        raise ToolkitError(f"--target {args.target!r} is {len(target)} tokens for {model_name}'s tokenizer; give one "
                           "token (often with its leading space, as in ' Paris')")
    # every prompt's edits first, so that a bad --positions stops the run before anything is printed
    edits_per_prompt = [_edits(saes, args.feature, args, model.to_tokens([prompt]).shape[1], model, prompt)
                        for prompt in args.prompt]
    gen = torch.Generator().manual_seed(0)
    for prompt, edits in zip(args.prompt, edits_per_prompt):
        print(f"prompt: {prompt!r}")
        print(f"  clean:   {generate(model, prompt, args.max_new_tokens)!r}")
        with intervene(model, edits):
            print(f"  steered: {generate(model, prompt, args.max_new_tokens)!r}")
        with intervene(model, [e.control(gen) for e in edits]):
            print(f"  random:  {generate(model, prompt, args.max_new_tokens)!r}")
        if args.target:
            report = measure(model, edits, model.to_tokens([prompt]), {"p_target": target_prob(torch.tensor(target))},
                             args.controls)
            _print_metrics("", report)
    if args.contexts > 0:
        tokens = eval_contexts(model, "tinyworld", min(64, model.dims.n_ctx), args.contexts, seed=1)
        edits = _edits(saes, args.feature, args, tokens.shape[1])
        print(f"held-out text ({args.contexts} contexts of {tokens.shape[1]} tokens):")
        _print_metrics("", measure(model, edits, tokens, standard_metrics(tokens, model), args.controls))
    return 0
