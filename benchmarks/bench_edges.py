"""Edge attribution: packed VJPs vs one backward pass per downstream node, side by side.

    nice -n 19 python benchmarks/bench_edges.py [--saes RUN_DIR] [--nodes 400] [--gpt2]

Both methods run on the same spliced model, batch, attribution and node set; the script
checks that the edge weights agree and prints the time of each and their ratio. Without
``--saes`` it uses random TopK SAEs (d_sae 1536, k 16) at Marks et al.'s 13 node hooks of the
embedded model; with ``--saes`` (e.g. the test fixture's, or a ``sae train`` run) trained
ones. Training matters to the speed: MLP and residual links pack downstream nodes that fire
on disjoint tokens into one backward pass, so sparser features pack better. ``--gpt2`` also times both on
the six links of layer 6 of a random GPT-2-small-shaped checkpoint with random 24,576-latent
SAEs, and extrapolates to all 12 × 3 + 1 SAEs (labelled as an estimate).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from activations.models import load_model
from circuits.attribution import SplicedModel, attribute
from circuits.circuit import select_nodes
from circuits.datasets import PromptBatch, load_examples, tokenize_pairs
from circuits.edges import compute_edges, links
from sae.architectures import build
from sae.config import SAEConfig


def random_saes(hooks: list[str], d_model: int, d_sae: int, k: int) -> dict:
    torch.manual_seed(0)
    return {h: build(SAEConfig(hook=h, d_sae=d_sae, k=k).resolved(d_model, d_model), d_model) for h in hooks}


def node_hooks(n_layers: int) -> list[str]:
    return ["blocks.0.hook_resid_pre"] + [f"blocks.{layer}.{site}" for layer in range(n_layers)
                                          for site in ("hook_attn_out", "hook_mlp_out", "hook_resid_post")]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def tiny(args) -> None:
    model = load_model("tiny", device="cpu")
    if args.saes:
        from circuits.commands.circuit import load_saes
        saes = load_saes(args.saes)
    else:
        saes = random_saes(node_hooks(model.dims.n_layers), model.dims.d_model, 1536, 16)
    spliced = SplicedModel(model, saes)
    batch = tokenize_pairs(model, load_examples("sva_pp", args.examples, seed=0))
    attribution = attribute(spliced, batch, "atp", per_position=args.per_position)
    masks = select_nodes(attribution.scores, "topk", args.nodes)
    n_down = sum(int(masks[link.down].sum()) for link in links(spliced.hooks))
    print(f"tiny model, {len(saes)} SAEs, {len(batch)} prompts x {batch.clean.shape[1]} tokens, "
          f"{args.nodes} {'per-position' if args.per_position else 'summed'} nodes, {n_down} downstream-node VJPs over {len(links(spliced.hooks))} links")
    compute_edges(spliced, batch, attribution, select_nodes(attribution.scores, "topk", 20))  # warm-up
    batched, t_batched = timed(lambda: compute_edges(spliced, batch, attribution, masks, batched=True, chunk=args.chunk))
    looped, t_loop = timed(lambda: compute_edges(spliced, batch, attribution, masks, batched=False))
    worst = max(float((batched.weights[k].to_dense() - looped.weights[k].to_dense()).abs().max()) for k in batched.weights)
    scale = max(float(w.to_dense().abs().max()) for w in looped.weights.values())
    print(f"  one backward per node : {t_loop:8.2f} s  ({1e3 * t_loop / n_down:.1f} ms per node)")
    print(f"  packed VJPs           : {t_batched:8.2f} s  ({1e3 * t_batched / n_down:.2f} ms per node)")
    print(f"  speed-up: {t_loop / t_batched:.1f}x; max |difference| {worst:.2e} (largest |weight| {scale:.2e}); "
          f"{batched.nnz()} edges stored sparse")


def gpt2(args) -> None:
    from activations.synthetic import build_gpt2_checkpoint
    folder = build_gpt2_checkpoint(tempfile.mkdtemp(), n_layer=12, n_embd=768, n_head=12)
    model = load_model(folder, device="cpu")
    hooks = ["blocks.5.hook_resid_post", "blocks.6.hook_attn_out", "blocks.6.hook_mlp_out", "blocks.6.hook_resid_post"]
    d_sae, n, t = 24_576, args.examples, 16
    spliced = SplicedModel(model, random_saes(hooks, 768, d_sae, 32))
    tokens = torch.randint(1, 500, (n, t))
    batch = PromptBatch(tokens, tokens.roll(1, 1), torch.full((n,), t - 1), torch.ones(n, dtype=torch.long),
                        torch.full((n,), 2), [{}] * n)
    attribution, t_attr = timed(lambda: attribute(spliced, batch, "atp", baseline="zero"))
    masks = select_nodes(attribution.scores, "topk", len(hooks) * args.gpt2_nodes)
    n_down = sum(int(masks[link.down].sum()) for link in links(hooks))
    batched, t_batched = timed(lambda: compute_edges(spliced, batch, attribution, masks, chunk=args.chunk))
    looped, t_loop = timed(lambda: compute_edges(spliced, batch, attribution, masks, batched=False))
    worst = max(float((batched.weights[k].to_dense() - looped.weights[k].to_dense()).abs().max()) for k in batched.weights)
    per_node = t_batched / max(n_down, 1)
    grads_gb = 2 * 37 * n * t * (d_sae + 768) * 4 / 1e9
    chunk_gb = args.chunk * n * t * 768 * 4 / 1e9
    print(f"GPT-2-small shape (random weights), {n} prompts x {t} tokens, random SAEs of {d_sae} latents at {len(hooks)} "
          f"hooks (layer 6's 6 links), {n_down} downstream-node VJPs; node attribution (AtP): {t_attr:.1f} s")
    print(f"  one backward per node : {t_loop:8.2f} s  ({1e3 * t_loop / n_down:.0f} ms per node)")
    print(f"  packed VJPs           : {t_batched:8.2f} s  ({1e3 * per_node:.0f} ms per node)")
    print(f"  speed-up: {t_loop / t_batched:.1f}x; max |difference| {worst:.2e}")
    print(f"  ESTIMATE for 12 layers x 3 SAEs + embeddings (72 links), 1000-node circuit (~2000 downstream-node "
          f"VJPs, each node feeding ~2 links): {2000 * per_node:.0f} s on this CPU; memory: grads+deltas of all "
          f"37 hooks {grads_gb:.1f} GB dense, VJP vectors of a {args.chunk}-node chunk {chunk_gb:.2f} GB, "
          f"edges sparse (12 bytes per kept edge)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--saes", default="", help="folder of SAE folders for the tiny model (default: random)")
    parser.add_argument("--nodes", type=int, default=400, help="circuit nodes (top-k over all hooks)")
    parser.add_argument("--examples", type=int, default=8)
    parser.add_argument("--chunk", type=int, default=64, help="downstream nodes whose VJP vectors are built at once")
    parser.add_argument("--per-position", action="store_true", help="nodes per (feature, position), not summed")
    parser.add_argument("--gpt2", action="store_true", help="also time one GPT-2-small-shaped link")
    parser.add_argument("--gpt2-nodes", type=int, default=16, help="GPT-2 circuit nodes per hook")
    args = parser.parse_args()
    torch.set_num_threads(2)
    tiny(args)
    if args.gpt2:
        gpt2(args)


if __name__ == "__main__":
    main()
