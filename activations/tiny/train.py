"""Train the embedded tiny model: a byte-level BPE tokenizer and a GPT-2 on tinyworld.

    python -m activations.tiny.train --out DIR [--steps N] [--seed S] [--n-layer L] ...
    python -m activations.tiny.train --out DIR --phases 4500:3e-3:200:1,1500:1e-3:50:2 ...

Writes a HuggingFace folder (tokenizer, ``config.json``, ``model.safetensors``) and
``training_summary.json`` (command, seed, wall time, loss curve, held-out loss, IOI, SVA and
entity metrics). Everything is a function of the arguments: the tokenizer is trained on the
first ``tokenizer_docs`` documents of the training stream, the model on packed 128-token
contexts of the same stream (``activations.data.TokenData``: each context starts with
``<|endoftext|>``, documents are separated by it).

``--phases`` trains in phases ``STEPS:LR:WARMUP:LEVEL``: each restarts the learning rate
(warm-up, then cosine decay) and draws its documents at a curriculum level
(``activations.corpus.curriculum``), one stream and one run throughout. The tokenizer is
trained at the highest level of the run, or at ``--tokenizer-level``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from itertools import islice
from pathlib import Path

import torch

from activations.corpus import curriculum, entity_prompts, ioi_examples, iter_documents, sva_examples
from activations.corpus.agreement import KINDS
from activations.corpus.world import DONT_KNOW
from activations.data import TokenData
from activations.models import native_on_cpu

EOT = "<|endoftext|>"


@dataclass
class TrainConfig:
    """Tokenizer, model and optimiser settings (the command line mirrors these fields)."""

    out: str
    steps: int = 3000
    seed: int = 0
    batch_size: int = 32
    context: int = 128
    short_context: int = 32  # sequence-length warm-up: the first short_steps steps cut every
    short_steps: int = 0     # context into BOS-led pieces of this length (same tokens per step)
    vocab_size: int = 4096
    tokenizer_docs: int = 200_000
    tokenizer_seed: int = -1  # whose training documents the tokenizer learns from (-1: --seed's); fixing
    # it at 0 draws another model and data order on the shipped checkpoint's vocabulary
    tokenizer_level: int = -1  # the curriculum level of the tokenizer's documents (-1: the run's
    # highest); a run whose last phase adds a level can keep an earlier level's vocabulary and draw
    n_layer: int = 4
    n_embd: int = 192
    n_head: int = 4
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup: int = 200
    weight_decay: float = 0.1
    tie_embeddings: bool = True
    decay_embeddings: bool = True  # apply weight decay to the token/position embeddings
    grad_clip: float = 1.0
    bf16: bool = True  # bf16 autocast for matmuls where the CPU has native bf16 (native_bf16); weights
    # and the saved checkpoint stay fp32
    threads: int = 2
    eval_examples: int = 500
    eval_contexts: int = 64
    log_every: int = 50
    eval_every: int = 0  # >0: print quick held-out IOI/SVA accuracies every this many steps
    init_from: str = ""  # continue training this checkpoint folder (its tokenizer and weights)
    phases: str = ""  # "STEPS:LR:WARMUP:LEVEL,...": replaces steps, lr and warmup (see the docstring)
    compile: bool = False  # torch.compile the training forward (about 1.3x faster per step, 20 s to compile)
    deterministic: bool = True  # torch.use_deterministic_algorithms: the same weights on every rerun on
    # one machine (about 2% slower with --compile; without it, compiled scatter-adds sum in a varying order)


@dataclass(frozen=True)
class Phase:
    """A stretch of training with its own learning-rate cycle and curriculum level."""

    steps: int
    lr: float
    warmup: int
    level: int = curriculum.DEFAULT


def parse_phases(text: str) -> list[Phase]:
    """``"4500:3e-3:200:1,1500:1e-3:50:2"`` -> phases; a clear error for anything else."""
    phases = []
    for part in text.split(","):
        fields_ = part.strip().split(":")
        try:
            if len(fields_) != 4:
                raise ValueError
            phase = Phase(int(fields_[0]), float(fields_[1]), int(fields_[2]), int(fields_[3]))
        except ValueError:
            raise ValueError(f"--phases: {part.strip()!r} is not STEPS:LR:WARMUP:LEVEL "
                             f"(for example 4500:3e-3:200:1)") from None
        if phase.steps < 1 or phase.lr <= 0 or phase.warmup < 0:
            raise ValueError(f"--phases: {part.strip()!r} needs steps >= 1, lr > 0 and warmup >= 0")
        curriculum.check_level(phase.level)
        phases.append(phase)
    return phases


def phases_of(cfg: TrainConfig) -> list[Phase]:
    """The configured phases, or one phase of ``steps`` at ``lr`` on the default corpus."""
    return parse_phases(cfg.phases) if cfg.phases else [Phase(cfg.steps, cfg.lr, cfg.warmup)]


def tokenizer_level(cfg: TrainConfig, phases: list[Phase]) -> int:
    """The level whose text the tokenizer learns from: ``cfg.tokenizer_level``, or by default the
    richest text the run will see."""
    if cfg.tokenizer_level < 0:
        return max(p.level for p in phases)
    if cfg.tokenizer_level not in curriculum.LEVELS:
        raise ValueError(f"--tokenizer-level {cfg.tokenizer_level}: give a curriculum level, one of "
                         f"{sorted(curriculum.LEVELS)}, or -1 for the run's highest")
    return cfg.tokenizer_level


def train_tokenizer(cfg: TrainConfig):
    """Byte-level BPE on the first ``cfg.tokenizer_docs`` training documents; EOT has id 0."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, special_tokens=[EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    seed = cfg.seed if cfg.tokenizer_seed < 0 else cfg.tokenizer_seed
    tok.train_from_iterator(islice(iter_documents(seed, "train"), cfg.tokenizer_docs), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOT, eos_token=EOT, unk_token=EOT,
                                   model_max_length=cfg.context)


def build_model(cfg: TrainConfig):
    from transformers import GPT2Config, GPT2LMHeadModel

    # eager attention: for 128-token contexts on a CPU it trains faster than PyTorch's SDPA
    # kernel, whose backward pass alone took a fifth of each step (benchmarks/bench_tiny_train.py)
    config = GPT2Config(attn_implementation="eager", vocab_size=cfg.vocab_size, n_positions=cfg.context,
                        n_embd=cfg.n_embd, n_layer=cfg.n_layer, n_head=cfg.n_head, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
                        tie_word_embeddings=cfg.tie_embeddings)
    torch.manual_seed(cfg.seed)
    return GPT2LMHeadModel(config)


def lr_at(step: int, phase: Phase, min_lr_ratio: float) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio * lr``; ``step`` counts within the phase."""
    if step < phase.warmup:
        return phase.lr * (step + 1) / phase.warmup
    progress = (step - phase.warmup) / max(1, phase.steps - phase.warmup)
    return phase.lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def shorten(batch: torch.Tensor, length: int, bos: int) -> torch.Tensor:
    """Cut contexts [n, context] (each BOS + body) into BOS-led pieces [n * k, length]."""
    body = length - 1
    pieces = batch[:, 1:].unfold(1, body, body).reshape(-1, body)
    return torch.cat([torch.full((len(pieces), 1), bos), pieces], dim=1)


def _optimizer(model, cfg: TrainConfig) -> torch.optim.AdamW:
    embeddings = {id(model.transformer.wte.weight), id(model.transformer.wpe.weight)}
    decayed = lambda p: p.dim() >= 2 and (cfg.decay_embeddings or id(p) not in embeddings)
    decay = [p for p in model.parameters() if decayed(p)]
    no_decay = [p for p in model.parameters() if not decayed(p)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))


def lm_loss(model, ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy (nats) of ``ids`` [batch, seq]."""
    logits = model(input_ids=ids).logits[:, :-1]
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten())


# ---------------------------------------------------------------------------- evaluation

@torch.no_grad()
def next_token_logits(model, tokenizer, prompts: list[str], batch: int = 64) -> torch.Tensor:
    """Logits [len(prompts), vocab] for the token after each prompt (BOS prepended)."""
    rows = []
    for i in range(0, len(prompts), batch):
        ids = [[tokenizer.bos_token_id] + tokenizer.encode(p, add_special_tokens=False)
               for p in prompts[i:i + batch]]
        width = max(map(len, ids))
        input_ids = torch.tensor([x + [0] * (width - len(x)) for x in ids])
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
        logits = model(input_ids=input_ids, attention_mask=mask).logits
        rows.append(logits[torch.arange(len(ids)), torch.tensor([len(x) - 1 for x in ids])])
    return torch.cat(rows).float()


def pair_accuracy(model, tokenizer, examples: list[dict]) -> float:
    """Share of examples whose clean answer outscores the patch answer after the clean prefix.

    Answers are compared by their first token (the shipped tokenizer makes them single tokens).
    """
    logits = next_token_logits(model, tokenizer, [e["clean_prefix"] for e in examples])
    right = torch.tensor([tokenizer.encode(e["clean_answer"], add_special_tokens=False)[0] for e in examples])
    wrong = torch.tensor([tokenizer.encode(e["patch_answer"], add_special_tokens=False)[0] for e in examples])
    rows = torch.arange(len(examples))
    return (logits[rows, right] > logits[rows, wrong]).float().mean().item()


@torch.no_grad()
def heldout_loss(model, tokenizer, n_contexts: int, seed: int = 0, context: int = 128) -> float:
    """Mean next-token cross-entropy (nats) over ``n_contexts`` held-out contexts."""
    ids = TokenData("tinyworld", tokenizer, context=context, seed=seed, split="heldout").contexts(n_contexts)
    losses = [lm_loss(model, ids[i:i + 16]) for i in range(0, len(ids), 16)]
    return torch.stack(losses).mean().item()


@torch.no_grad()
def answer_entities(model, tokenizer, prompts: list[dict], max_new_tokens: int = 10) -> dict[str, float]:
    """Greedy answers to entity questions: share that state the right fact, share that refuse."""
    right = refused = 0
    for p in prompts:
        ids = torch.tensor([[tokenizer.bos_token_id] + tokenizer.encode(p["prompt"], add_special_tokens=False)])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=tokenizer.eos_token_id)
        text = tokenizer.decode(out[0, ids.shape[1]:]).split("\n")[0]
        right += p["answer"] is not None and f" {p['answer']}." in text
        refused += DONT_KNOW in text
    return {"answered_right": right / len(prompts), "refused": refused / len(prompts)}


def quick_metrics(model, tokenizer, n: int = 100) -> dict[str, float]:
    """IOI (held-out and training templates) and per-kind held-out SVA accuracy on ``n``
    examples each: a progress signal."""
    model.eval()
    sva = {k: round(pair_accuracy(model, tokenizer, sva_examples(n, kind=k)), 3) for k in KINDS}
    return {"ioi": round(pair_accuracy(model, tokenizer, ioi_examples(n)), 3),
            "ioi_train": round(pair_accuracy(model, tokenizer, ioi_examples(n, split="train")), 3), **sva}


def evaluate(model, tokenizer, n_examples: int = 500, n_contexts: int = 64, seed: int = 0) -> dict:
    """Held-out loss, IOI and SVA accuracy (held-out templates and names), entity answers."""
    model.eval()
    n_entity = max(1, n_examples // 5)
    return {
        "heldout_loss": heldout_loss(model, tokenizer, n_contexts, seed, model.config.n_positions),
        "ioi_accuracy": pair_accuracy(model, tokenizer, ioi_examples(n_examples, seed)),
        "sva_accuracy": {k: pair_accuracy(model, tokenizer, sva_examples(n_examples, seed, kind=k))
                         for k in KINDS},
        "entities": {"known": answer_entities(model, tokenizer, entity_prompts(n_entity, True, seed)),
                     "unknown": answer_entities(model, tokenizer, entity_prompts(n_entity, False, seed))},
    }


# ---------------------------------------------------------------------------- training

def native_bf16() -> bool:
    """Whether oneDNN multiplies bf16 matrices natively on this CPU (AVX-512 or AMX). Without it,
    as on AVX2-only CPUs such as the AMD EPYC some of this project's machines have, a matmul
    under bf16 autocast falls back to ATen's scalar GEMM: a compiled training step of the tiny
    model took 18.7 s there, against 1.07 s in fp32 (``benchmarks/bench_tiny_train.py
    --force-bf16``, 2026-12-01) and 0.35 s in bf16 on the machines with native bf16."""
    return native_on_cpu(torch.bfloat16)


def with_supported_precision(cfg: TrainConfig) -> TrainConfig:
    """``cfg``, in fp32 when it asks for bf16 autocast on a CPU without native bf16 (with a
    warning: the weights differ from a bf16 run's, and the step time from the documented one)."""
    if not cfg.bf16 or native_bf16():
        return cfg
    print("warning: this CPU has no native bf16 matrix multiply (oneDNN needs AVX-512 or AMX), where bf16 "
          "autocast runs tens of times slower than fp32: training in fp32. The weights will differ from a bf16 "
          "run's; pass --no-bf16 to choose fp32 yourself.", file=sys.stderr, flush=True)
    return replace(cfg, bf16=False)


def cpu_name() -> str:
    """The CPU's model name (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def train(cfg: TrainConfig, command: str = "") -> dict:
    """Train tokenizer and model, save both into ``cfg.out``, return the summary."""
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    cfg = with_supported_precision(cfg)
    start = time.time()
    torch.set_num_threads(cfg.threads)
    phases = phases_of(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.init_from:
        model, tokenizer = load_checkpoint(cfg.init_from)
    else:
        with curriculum.use_level(tokenizer_level(cfg, phases)):
            tokenizer = train_tokenizer(cfg)
        if len(tokenizer) > cfg.vocab_size:
            raise ValueError(f"tokenizer has {len(tokenizer)} tokens, more than vocab_size {cfg.vocab_size}")
        print(f"tokenizer: {len(tokenizer)} tokens ({time.time() - start:.0f} s)", flush=True)
        model = build_model(cfg)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(cfg.deterministic or was_deterministic)
    try:
        history = train_steps(model, tokenizer, phases, cfg, start)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
    train_time = time.time() - start

    metrics = evaluate(model, tokenizer, cfg.eval_examples, cfg.eval_contexts, seed=0)
    save(model, tokenizer, out)
    summary = {
        "command": command, "seed": cfg.seed, "config": asdict(cfg),
        "train_wall_time_s": round(train_time, 1), "wall_time_s": round(time.time() - start, 1),
        "phases": [asdict(p) for p in phases], "n_params": model.num_parameters(),
        "tokens_seen": sum(p.steps for p in phases) * cfg.batch_size * cfg.context,
        "loss_history": history, **metrics,
        "machine": f"{cpu_name()}, torch {torch.__version__}, {cfg.threads} threads, "
                   f"{'bf16 autocast' if cfg.bf16 else 'fp32'}",
    }
    (out / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: summary[k] for k in ("heldout_loss", "ioi_accuracy", "sva_accuracy", "entities",
                                              "wall_time_s")}, indent=2), flush=True)
    return summary


def train_step(model, forward, opt: torch.optim.Optimizer, batch: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """One optimiser step on ``batch``; ``forward`` is the model or its compiled form."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
        loss = lm_loss(forward, batch)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss


def train_steps(model, tokenizer, phases: list[Phase], cfg: TrainConfig, start: float) -> list[list]:
    """Run every phase on one stream of packed contexts; return the loss history [[step, loss]]."""
    opt = _optimizer(model, cfg)
    forward = torch.compile(model) if cfg.compile else model
    contexts = TokenData("tinyworld", tokenizer, context=cfg.context, seed=cfg.seed, split="train").iter_contexts()
    total = sum(p.steps for p in phases)
    history, step = [], 0
    model.train()
    for phase in phases:
        with curriculum.use_level(phase.level):
            for i in range(phase.steps):
                lr = lr_at(i, phase, cfg.min_lr_ratio)
                for group in opt.param_groups:
                    group["lr"] = lr
                batch = torch.tensor([next(contexts) for _ in range(cfg.batch_size)])
                if step < cfg.short_steps:
                    batch = shorten(batch, cfg.short_context, tokenizer.bos_token_id)
                loss = train_step(model, forward, opt, batch, cfg)
                if step % cfg.log_every == 0 or step == total - 1:
                    history.append([step, round(loss.item(), 4)])
                    print(f"step {step:5d}  loss {loss.item():.4f}  lr {lr:.2e}  level {phase.level}  "
                          f"{time.time() - start:.0f} s", flush=True)
                step += 1
                if cfg.eval_every and step % cfg.eval_every == 0:
                    print(f"  eval {quick_metrics(model, tokenizer)}", flush=True)
                    model.train()
    return history


CHECKPOINT_FILES = ("config.json", "model.safetensors", "tokenizer.json")


class NotACheckpoint(ValueError):
    """A folder given as a checkpoint lacks the files ``save`` writes."""


def check_checkpoint(folder: str) -> None:
    """NotACheckpoint naming ``folder`` and what it lacks, unless it holds a checkpoint written by ``save``."""
    missing = [name for name in CHECKPOINT_FILES if not (Path(folder) / name).is_file()]
    if missing:
        raise NotACheckpoint(f"{folder} is not a tiny-model checkpoint folder (no {', '.join(missing)}); give a "
                         "folder written by python -m activations.tiny.train --out, e.g. activations/tiny/checkpoint")


def load_checkpoint(folder: str):
    """(model, tokenizer) of a checkpoint folder written by ``save``, to continue training."""
    from transformers import AutoTokenizer, GPT2LMHeadModel
    check_checkpoint(folder)
    return (GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager"),
            AutoTokenizer.from_pretrained(folder))


def save(model, tokenizer, out: Path) -> None:
    """Write the HuggingFace folder, readable by everyone (it ships as package data)."""
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    # name the class that every transformers version knows (5.x alone knows TokenizersBackend)
    config_file = out / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_file.write_text(json.dumps(config, indent=2) + "\n")
    for f in out.iterdir():
        f.chmod(0o644)


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    parser = argparse.ArgumentParser(prog="python -m activations.tiny.train", description=__doc__.split("\n")[0])
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        elif f.name == "out":
            parser.add_argument(flag, required=True, help="output folder (HuggingFace checkpoint)")
        else:
            parser.add_argument(flag, type={"int": int, "float": float, "str": str}[f.type], default=f.default)
    return TrainConfig(**vars(parser.parse_args(argv)))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    cfg = parse_args(argv)
    try:
        tokenizer_level(cfg, phases_of(cfg))
        if cfg.init_from:
            check_checkpoint(cfg.init_from)
    except ValueError as err:
        sys.exit(f"error: {err}")
    train(cfg, command=shlex.join(["python", "-m", "activations.tiny.train", *argv]))


if __name__ == "__main__":
    main()
