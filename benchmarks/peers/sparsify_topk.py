"""EleutherAI sparsify 1.3: TopK SAE training throughput and held-out FVU on a tensor of activations.

Run with sparsify's own interpreter (it must not import the toolkit)::

    /work/peers/sparsify/bin/python benchmarks/peers/sparsify_topk.py --acts acts.safetensors \
        --k 32 --expansion 16 --batch 4096 --steps 30 --threads 2

This drives sparsify's real ``Trainer.fit`` rather than a copy of its step: sparsify trains
inside forward hooks on a language model, so the "model" here is one lookup layer that returns
rows of the activation tensor for the token ids it is given (``input_ids`` are row numbers,
``batch / T`` sequences of T tokens per step). Everything else is sparsify's: b_dec set to the
first batch's mean, unit-norm decoder renormalised before every forward pass with the parallel
gradient component removed, the fused TopK encoder (index_add backward), the embedding-bag
decoder (Triton is absent on CPU, so ``eager_decode``), the FVU loss plus AuxK, and its default
optimizer: SignSGD wrapped in ScheduleFree (lr 5e-3 / sqrt(d_sae / 2^14)); ``--optimizer adam``
selects torch Adam with sparsify's 1000-step linear warm-up and linear decay instead.

Prints one JSON line: library, tokens_per_s (over the steps after ``--warmup``), fvu on the
held-out rows (the last ``--eval-tokens`` of the file; schedule-free's averaged weights, as
sparsify saves them).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch
from safetensors.torch import load_file
from torch import nn

from peer_args import common_parser


class RowLookup(nn.Module):
    """The one "layer": token ids [B, T] -> rows of ``acts`` [B, T, d]."""

    def __init__(self, acts: torch.Tensor):
        super().__init__()
        self.acts = acts

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.acts[ids]


class LookupModel(nn.Module):
    """Just enough of a HuggingFace model for sparsify's Trainer; stamps the start of every step."""

    def __init__(self, acts: torch.Tensor):
        super().__init__()
        self.layers = nn.ModuleList([RowLookup(acts)])
        self.config = argparse.Namespace(num_hidden_layers=1)
        self.dummy_inputs = {"ids": torch.arange(8)[None]}
        self.step_starts: list[float] = []

    base_model = property(lambda self: self)
    device = property(lambda self: torch.device("cpu"))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        self.step_starts.append(time.perf_counter())
        return self.layers[0](ids)


class RowIds(torch.utils.data.Dataset):
    """Sequence i holds token ids (= row numbers) i*T .. i*T + T - 1."""

    def __init__(self, n_tokens: int, seq_len: int):
        self.n, self.seq_len = n_tokens // seq_len, seq_len

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": torch.arange(i * self.seq_len, (i + 1) * self.seq_len)}


def main() -> None:
    p = common_parser(__doc__.splitlines()[0])
    p.add_argument("--lr", type=float, default=0.0, help="0: sparsify's own rule for the optimizer")
    p.add_argument("--optimizer", choices=["signum", "adam"], default="signum", help="sparsify's default: signum")
    p.add_argument("--auxk-alpha", type=float, default=1 / 32, help="sparsify's default is 0 (AuxK off)")
    p.add_argument("--dead-tokens", type=int, default=10_000_000, help="sparsify's dead-latent threshold")
    p.add_argument("--eval-tokens", type=int, default=16384)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")
    from sparsify import SaeConfig, Trainer, TrainConfig

    acts = load_file(args.acts)["acts"]
    n_train = args.steps * args.batch
    if n_train + args.eval_tokens > len(acts):
        raise SystemExit(f"{args.acts}: {len(acts)} rows, fewer than {n_train} to train + {args.eval_tokens} held out")
    seq_len = 128 if args.batch % 128 == 0 else 1
    model = LookupModel(acts)
    cfg = TrainConfig(
        SaeConfig(k=args.k, expansion_factor=args.expansion), batch_size=args.batch // seq_len,
        optimizer=args.optimizer, lr=args.lr or None, auxk_alpha=args.auxk_alpha,
        dead_feature_threshold=args.dead_tokens, hookpoints=["layers.0"], init_seeds=[args.seed],
        save_every=1 << 30, log_to_wandb=False, save_dir=tempfile.mkdtemp(prefix="sparsify-bench-"))
    trainer = Trainer(cfg, RowIds(n_train, seq_len), model)
    end = []
    save = trainer.save
    trainer.save = lambda: (end.append(time.perf_counter()), save())  # called once, right after the last step
    trainer.fit()

    stamps = model.step_starts[1:] + end  # [0] is resolve_widths' dummy forward
    timed = stamps[-1] - stamps[args.warmup]
    sae = next(iter(trainer.saes.values()))
    since_fired = next(iter(trainer.num_tokens_since_fired.values()))
    for opt in trainer.optimizers:
        if hasattr(opt, "eval"):  # ScheduleFree: evaluate the averaged weights, as sparsify saves them
            opt.eval()
    with torch.no_grad():
        held = acts[-args.eval_tokens:]
        recon = torch.cat([sae.decode(*sae.encode(chunk)[:2]) for chunk in held.split(4096)])
        held, recon = held.double(), recon.double()
        fvu = float((held - recon).pow(2).sum() / (held - held.mean(0)).pow(2).sum())
    print(json.dumps({"library": "sparsify", "optimizer": args.optimizer,
                      "lr": trainer.optimizers[0].param_groups[0]["lr"], "steps": args.steps,
                      "timed_steps": args.steps - args.warmup,
                      "tokens_per_s": (args.steps - args.warmup) * args.batch / timed,
                      "step_s": [round(b - a, 4) for a, b in zip(stamps, stamps[1:])], "fvu": fvu,
                      "dead_fraction": float((since_fired > args.dead_tokens).float().mean())}))


if __name__ == "__main__":
    main()
