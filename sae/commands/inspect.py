"""``sae inspect``: verify an activation store shard by shard and summarise it."""

from __future__ import annotations

import argparse

from activations.store import ActivationStore

NAME = "inspect"
HELP = "verify every shard of an activation store (size, SHA-256, finite values) and summarise it"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="activation store folder")


def run(args: argparse.Namespace) -> int:
    import torch

    from activations.errors import ToolkitError
    store = ActivationStore(args.store, verify=True)
    for position, shard in enumerate(store.iter_shards()):
        for hook in store.hooks:
            if not torch.isfinite(shard[hook]).all():
                raise ToolkitError(f"activations of {hook} contain NaN or inf in "
                                   f"'{store.folder / store.shards[position]['file']}'; harvest it again")
    m = store.manifest
    print(f"store {store.folder}: model {m['model']}, {store.n_tokens:,} tokens, {len(store.shards)} shards, "
          f"dtype {m['dtype']}, context {m['dataset']['context']}, dataset {m['dataset']['name']} "
          f"(seed {m['dataset']['seed']}); all shards verified")
    print(f"{'hook':<32} {'d':>6} {'mean norm':>10} {'variance':>10}")
    for hook in store.hooks:
        s = m["stats"][hook]
        print(f"{hook:<32} {store.widths[hook]:>6} {s['mean_norm']:>10.4f} {s['variance']:>10.4f}")
    return 0
