"""SAELens 6: TopK SAE training throughput and held-out FVU on a tensor of activations.

Run with SAELens's own interpreter (it must not import the toolkit)::

    /work/peers/saelens/bin/python benchmarks/peers/saelens_topk.py --acts acts.safetensors \
        --k 32 --expansion 16 --batch 4096 --steps 30 --threads 2

This is SAELens's own ``SAETrainer.fit`` on a ``TopKTrainingSAE``, fed by a data provider
that yields consecutive ``--batch``-row slices of the tensor (what ``LanguageModelSAETrainingRunner``
hands the trainer, minus the language model). SAELens's defaults throughout: decoder rows
initialised at norm 0.1 and the encoder as its transpose, b_dec at zero, pre-activations
rescaled by decoder norms (``rescale_acts_by_decoder_norm``) instead of a unit-norm constraint,
a dense TopK activation ([B, d_sae] with zeros) and a dense decoder matmul, MSE summed over
features plus AuxK (coefficient 1), torch Adam (lr 3e-4, constant schedule), gradient-norm
clipping at 1, no autocast. ``--sparse-activations`` turns on SAELens's sparse COO activations
with ``torch.sparse.mm`` decoding; on CPU its backward fails (the JSON then carries ``error``).

Prints one JSON line: library, tokens_per_s (over the steps after ``--warmup``), fvu on the
held-out rows (the last ``--eval-tokens`` of the file).
"""

from __future__ import annotations

import json
import time
import traceback

import torch
from safetensors.torch import load_file

from peer_args import common_parser


def main() -> None:
    p = common_parser(__doc__.splitlines()[0])
    p.add_argument("--lr", type=float, default=0.0, help="0: SAELens's default, 3e-4")
    p.add_argument("--dead-tokens", type=int, default=0, help="0: SAELens's default window, 1000 steps")
    p.add_argument("--sparse-activations", action="store_true", help="SAELens's use_sparse_activations")
    p.add_argument("--eval-tokens", type=int, default=16384)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from sae_lens import SAETrainer, TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig

    acts = load_file(args.acts)["acts"]
    n_train, d_in = args.steps * args.batch, acts.shape[1]
    if n_train + args.eval_tokens > len(acts):
        raise SystemExit(f"{args.acts}: {len(acts)} rows, fewer than {n_train} to train + {args.eval_tokens} held out")
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=args.expansion * d_in, k=args.k,
                                                use_sparse_activations=args.sparse_activations))
    extra = {"dead_feature_window": max(1, args.dead_tokens // args.batch)} if args.dead_tokens else {}
    lr = args.lr or SAETrainerConfig.lr
    cfg = SAETrainerConfig(total_training_samples=n_train, train_batch_size_samples=args.batch, lr=lr,
                           lr_end=lr / 10, **extra)  # lr_end as the runner's config sets it (unused: constant)
    stamps: list[float] = []

    def batches():
        for start in range(0, n_train, args.batch):
            stamps.append(time.perf_counter())  # the trainer asks for a batch at the start of each step
            yield acts[start:start + args.batch]

    result = {"library": "saelens", "sparse_activations": args.sparse_activations, "lr": cfg.lr,
              "steps": args.steps, "timed_steps": args.steps - args.warmup}
    try:
        trainer = SAETrainer(cfg, sae, batches())
        trainer.fit()
    except Exception as err:  # noqa: BLE001 - reported, not hidden: the option's failure is the result
        result["error"] = f"{type(err).__name__}: {err}".splitlines()[0][:300]
        traceback.print_exc()
        print(json.dumps(result))
        return
    stamps.append(time.perf_counter())
    timed = stamps[-1] - stamps[args.warmup]
    sae.eval()
    with torch.no_grad():
        held = acts[-args.eval_tokens:]
        recon = torch.cat([sae(chunk) for chunk in held.split(4096)])
        recon = recon.to_dense() if recon.is_sparse else recon
        held, recon = held.double(), recon.double()
        fvu = float((held - recon).pow(2).sum() / (held - held.mean(0)).pow(2).sum())
    result.update(tokens_per_s=(args.steps - args.warmup) * args.batch / timed,
                  step_s=[round(b - a, 4) for a, b in zip(stamps, stamps[1:])], fvu=fvu,
                  dead_fraction=float(trainer.dead_neurons.float().mean()))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
