"""Train several sparse coders in one pass over the same activation batches.

Every coder of a run (a sweep over k, L1 coefficient, width, hooks, ...) trains on the same
batches, each read from the ``ActivationSource`` once. Per coder:

- activations are scaled to mean norm √d (per hook, from the source's statistics); the
  factor is folded into the saved weights, so saved coders work on raw activations;
- the first batch initialises each coder (``init_from_data``): b_dec at the geometric
  median of its targets, and where a coder has thresholds or gate biases, values at which
  each latent fires on about k / d_sae of the tokens;
- Adam (fused where available) with linear warm-up, a linear decay over the final
  ``decay_fraction`` of training, and gradient-norm clipping; unit-norm decoders have the
  gradient component along each decoder row removed before the step and are renormalised
  after it;
- a latent is dead after ``dead_window`` tokens without firing; top-k coders feed dead
  latents to AuxK, ReLU coders resample them once per window.

The run folder holds ``config.json``, ``metrics.jsonl``, ``checkpoints/step-NNNNNNNN/`` (the
latest only: weights, optimizer state, dead-latent counters, RNG state and the step, which
fixes the data position) and, once finished, ``saes/<name>/`` and ``eval.json``. Resuming
from a checkpoint reproduces an uninterrupted run exactly. A non-finite loss stops the run
with the step it happened at; the last good checkpoint stays.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm import tqdm

from activations.errors import ToolkitError
from activations.models import resolve_device
from activations.source import ActivationSource
from activations.store import fsync_dir as fsync  # works on files too
from sae.architectures import SparseCoder, StepContext, StepOutput, build
from sae.compare import unit_rows
from sae.config import SAEConfig, TrainConfig, name_coders, save_config
from sae.data import check_context, eval_contexts, model_for, open_source
from sae.distributed import DataParallel
from sae.evaluate import reconstruction_scores, splice_scores
from sae.io import RUN_CHECKPOINTS, RUN_SAES, load_sae, save_log_density, save_sae
from sae.metrics import fvu, log10_density
from sae.sparse import one_thread

CHECKPOINTS = RUN_CHECKPOINTS
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
RESTARTABLE = {CONFIG_FILE, METRICS_FILE, CHECKPOINTS, "wandb"}
"""What a run folder holds before its first checkpoint: a fresh run of the same config may
start over there."""


def learning_rate(step: int, n_steps: int, base: float, warmup_steps: int, decay_fraction: float) -> float:
    """Linear warm-up over ``warmup_steps``, constant, then linear decay to 0 over the last
    ``decay_fraction`` of the ``n_steps`` steps."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    decay_steps = n_steps * decay_fraction
    decay = min(1.0, (n_steps - step) / decay_steps) if decay_steps > 0 else 1.0
    return base * warm * decay


@dataclass
class Coder:
    """One sparse coder in training."""

    name: str
    sae: SparseCoder
    optimizer: torch.optim.Adam
    since_fired: Tensor
    """[d_sae] int64: tokens since each latent last fired."""
    start: Tensor
    """[d_sae, d_out] the decoder's initial rows, unit norm (the seed rebuilds them on resume)."""

    def decoder_start_cos(self) -> float:
        """Median cosine of each decoder row with its initial direction: near 1, the dictionary
        is still close to where the seed put it, whatever the FVU says."""
        return float((unit_rows(self.sae.W_dec.detach().float()) * self.start).sum(1).median())


class Trainer:
    """Trains the coders of ``cfg`` on ``source``; see the module docstring."""

    def __init__(self, cfg: TrainConfig, source: ActivationSource):
        cfg.validate()
        self.cfg, self.source = cfg, source
        self.run_dir = Path(cfg.out)
        self.device = resolve_device(cfg.device)
        self.dp = DataParallel.from_env(self.device)
        if self.dp.active and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dp.local_rank)
            torch.cuda.set_device(self.device)
        self.dp.check_batch(cfg.batch_size)
        self.hooks = cfg.hooks()
        missing = [h for h in self.hooks if h not in source.hooks]
        if missing:
            raise ToolkitError(f"the activations have no hook {', '.join(missing)}; available hooks: "
                               f"{', '.join(source.hooks)}")
        self.scales = {h: source.widths[h] ** 0.5 / source.mean_norm[h] for h in self.hooks}
        configs = cfg.sae_configs()
        resolved = [c.resolved(source.widths[c.hook], source.widths[c.output_hook]) for c in configs]
        names = name_coders(resolved, [c.lr for c in configs])  # a default learning rate is not named
        cfg.check_distinct(names)
        self.coders = [self._build(index, c, name) for index, (c, name) in enumerate(zip(resolved, names))]
        self.n_steps = math.ceil(cfg.tokens / cfg.batch_size)
        self.step = 0
        self.generator = torch.Generator().manual_seed(cfg.seed)

    def _build(self, index: int, resolved: SAEConfig, name: str) -> Coder:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed * 7919 + index)
            sae = build(resolved, self.source.widths[resolved.output_hook]).to(self.device)
        fused = self.device.type in ("cpu", "cuda")
        optimizer = torch.optim.Adam(sae.parameters(), lr=resolved.lr, betas=(self.cfg.beta1, self.cfg.beta2),
                                     fused=fused)
        since_fired = torch.zeros(resolved.d_sae, dtype=torch.long, device=self.device)
        return Coder(name, sae, optimizer, since_fired, unit_rows(sae.W_dec.detach().float()))

    # ----------------------------------------------------------------- the loop

    def fit(self, resume: bool = False) -> None:
        """Train to ``cfg.tokens`` tokens, from the latest checkpoint when ``resume``."""
        self._prepare_run_dir(resume)
        batches = self.source.batches(self.cfg.batch_size, hooks=self.hooks, seed=self.cfg.seed)
        batches = islice(batches, self.step, self.n_steps)  # a resumed run skips what it has seen
        log = _MetricsLog(self.run_dir, self.cfg, self.step) if self.dp.is_main else _NoLog()
        start = time.perf_counter()
        bar = tqdm(total=self.n_steps, initial=self.step, unit="step", dynamic_ncols=True,
                   disable=None if self.dp.is_main else True)
        try:
            for batch in batches:
                inputs = {h: self._to_device(batch[h]) * self.scales[h] for h in self.hooks}
                if self.step == 0:
                    self._init_from_data(inputs)
                records = self.train_step(inputs)
                self.step += 1
                if records:
                    log.write([{**r, "elapsed_s": round(time.perf_counter() - start, 3)} for r in records])
                    first = records[0]
                    bar.set_postfix(loss=f"{first['loss']:.4g}", l0=f"{first['l0']:.1f}", fvu=f"{first['fvu']:.4f}")
                bar.update(1)
                if self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0:
                    self.save_checkpoint()
        finally:
            bar.close()
            log.close()
        if self.step < self.n_steps:
            raise ToolkitError(f"the activations ran out after {self.step * self.cfg.batch_size} tokens; "
                               f"lower --tokens to at most that or harvest more")
        self.save_checkpoint()

    def _to_device(self, acts: Tensor) -> Tensor:
        if self.device.type == "cuda":
            return acts.pin_memory().to(self.device, non_blocking=True)
        return acts.to(self.device)

    def _init_from_data(self, inputs: dict[str, Tensor]) -> None:
        for coder in self.coders:
            coder.sae.init_from_data(inputs[coder.sae.cfg.hook], inputs[coder.sae.cfg.output_hook])

    def train_step(self, inputs: dict[str, Tensor]) -> list[dict]:
        """One optimizer step of every coder on one batch (hook -> scaled activations [B, d]);
        returns metric records on logging steps. ``fit`` calls it; benchmarks time it.

        Under torchrun, ``inputs`` is the global batch: each rank optimises on its slice, and
        the records describe rank 0's slice."""
        log_now = self.step % self.cfg.log_every == 0 or self.step == self.n_steps - 1
        records = []
        local = {h: self.dp.local_slice(acts) for h, acts in inputs.items()}
        for coder in self.coders:
            cfg = coder.sae.cfg
            x, target = local[cfg.hook], local[cfg.output_hook]
            dead = coder.since_fired >= self.cfg.dead_window
            with one_thread() if coder.sae.sparse_training else nullcontext():
                out = self._optimize(coder, x, target, dead)
            coder.since_fired += inputs[cfg.hook].shape[0]
            coder.since_fired[self.dp.sum_(out.fired.clone()) > 0] = 0
            self._maybe_resample(coder, inputs[cfg.hook], inputs[cfg.output_hook])
            if log_now:
                records.append(self._record(coder, out, target, dead))
        return records

    def _optimize(self, coder: Coder, x: Tensor, target: Tensor, dead: Tensor) -> StepOutput:
        """Forward, NaN check, backward, gradient projection and clipping, Adam, constraints."""
        sae = coder.sae
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if (
            self.device.type == "cuda" and self.cfg.autocast) else nullcontext()
        with autocast:
            out = sae.training_forward(x, target, StepContext(self.step / self.n_steps, dead))
        loss = out.loss
        if not self.dp.all_finite(loss):
            kept = (f"the last good checkpoint is kept in {self.run_dir / CHECKPOINTS}"
                    if latest_checkpoint(self.run_dir) else "no checkpoint had been written yet")
            raise ToolkitError(
                f"the loss of {coder.name} became {float(loss.detach())} at step {self.step + 1}; training "
                f"stopped and {kept}; lower --lr and rerun, or check the activations for extreme values")
        coder.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.dp.average_gradients(sae.parameters())
        with one_thread():  # element-wise passes over the parameters: memory-bound
            sae.project_decoder_grad()
            if self.cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(sae.parameters(), self.cfg.grad_clip, foreach=True)
            for group in coder.optimizer.param_groups:
                group["lr"] = self._lr(coder)
            coder.optimizer.step()
            sae.after_step()
        return out

    def _lr(self, coder: Coder) -> float:
        return learning_rate(self.step, self.n_steps, coder.sae.cfg.lr, self.cfg.warmup_steps,
                             self.cfg.decay_fraction)

    def _record(self, coder: Coder, out: StepOutput, target: Tensor, dead: Tensor) -> dict:
        losses = {name: float(value.detach()) for name, value in out.losses.items()}
        return {"step": self.step + 1, "tokens": (self.step + 1) * target.shape[0], "sae": coder.name,
                "lr": self._lr(coder), "loss": sum(losses.values()), **losses, "l0": float(out.l0),
                "fvu": fvu(target, out.recon.detach().float()), "dead_fraction": float(dead.float().mean()),
                "dead_window_tokens": self.cfg.dead_window, "decoder_start_cos": coder.decoder_start_cos()}

    def _maybe_resample(self, coder: Coder, x: Tensor, target: Tensor) -> None:
        """Resample the dead latents of coders that do so, once per dead window."""
        window, batch = self.cfg.dead_window, x.shape[0]
        if not hasattr(coder.sae, "resample") or (self.step + 1) * batch // window == self.step * batch // window:
            return
        dead = (coder.since_fired >= window).nonzero().squeeze(1)
        if dead.numel() == 0:
            return
        coder.sae.resample(dead, x, target, self.generator)
        for param in (coder.sae.encoder_weight, coder.sae.b_enc, coder.sae.W_dec):  # latents along dim 0
            state = coder.optimizer.state[param]
            state["exp_avg"][dead] = 0.0
            state["exp_avg_sq"][dead] = 0.0
        coder.since_fired[dead] = 0

    # ----------------------------------------------------------------- checkpoints

    def _prepare_run_dir(self, resume: bool) -> None:
        latest = check_run_dir(self.run_dir, resume, self.cfg)
        self.dp.barrier()  # every rank has looked before rank 0 writes
        if latest is not None:
            self.load_checkpoint(latest)
            return
        if not self.dp.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(self.cfg, self.run_dir / CONFIG_FILE)
        (self.run_dir / METRICS_FILE).unlink(missing_ok=True)

    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/step-NNNNNNNN`` atomically, then drop older checkpoints (rank 0
        only: under torchrun every rank holds the same state)."""
        root = self.run_dir / CHECKPOINTS
        final = root / f"step-{self.step:08d}"
        if final.is_dir() or not self.dp.is_main:
            return final
        tmp = root / f".tmp-{final.name}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for coder in self.coders:
            state = {k: v.detach().cpu().contiguous() for k, v in coder.sae.state_dict().items()}
            save_file({**state, "since_fired": coder.since_fired.cpu()}, tmp / f"{coder.name}.safetensors")
            save_file(_optimizer_tensors(coder), tmp / f"{coder.name}.optim.safetensors")
        save_file({"generator": self.generator.get_state()}, tmp / "rng.safetensors")
        (tmp / "trainer.json").write_text(json.dumps(
            {"step": self.step, "tokens": self.step * self.cfg.batch_size, "coders": [c.name for c in self.coders]}))
        for path in tmp.iterdir():
            fsync(path)
        os.replace(tmp, final)
        fsync(root)
        for old in root.glob("step-*"):
            if old != final:
                shutil.rmtree(old)
        return final

    def load_checkpoint(self, folder: Path) -> None:
        with _damaged(folder / "trainer.json"):
            meta = json.loads((folder / "trainer.json").read_text())
            step, saved = int(meta["step"]), meta["coders"]
        names = [c.name for c in self.coders]
        if saved != names:
            raise ToolkitError(f"checkpoint {folder} holds coders {saved}, but the config makes {names}; "
                               "resume with the run's own config.json")
        for coder in self.coders:
            with _damaged(folder / f"{coder.name}.safetensors"):
                state = load_file(folder / f"{coder.name}.safetensors", device=str(self.device))
                coder.since_fired.copy_(state.pop("since_fired"))
                coder.sae.load_state_dict(state)
            with _damaged(folder / f"{coder.name}.optim.safetensors"):
                _restore_optimizer(coder, load_file(folder / f"{coder.name}.optim.safetensors"))
        with _damaged(folder / "rng.safetensors"):
            self.generator.set_state(load_file(folder / "rng.safetensors")["generator"])
        self.step = step


@contextmanager
def _damaged(path: Path):
    """Turn a missing or unreadable checkpoint file into one line naming it."""
    try:
        yield
    except (OSError, ValueError, TypeError, KeyError, RuntimeError, SafetensorError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else f"{type(err).__name__}: {err}"
        raise ToolkitError(f"cannot resume: checkpoint file {path} is missing or damaged ({reason}); start the "
                           "run again with another --out") from err


def latest_checkpoint(run_dir: Path) -> Path | None:
    steps = sorted((run_dir / CHECKPOINTS).glob("step-*"))
    return steps[-1] if steps else None


def check_run_dir(run_dir: Path, resume: bool, cfg: TrainConfig | None = None) -> Path | None:
    """The checkpoint to resume from (None for a fresh run); refuses a resume without a
    checkpoint, a fresh run over one, and (given ``cfg``) a fresh run in a folder that holds
    anything but an unfinished run of ``cfg``."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ToolkitError(f"run folder {run_dir} is a file; choose another --out")
    latest = latest_checkpoint(run_dir)
    if resume and latest is None:
        raise ToolkitError(f"nothing to resume: {run_dir / CHECKPOINTS} holds no checkpoint; "
                           "start the run without --resume")
    if not resume and latest is not None:
        raise ToolkitError(f"run folder {run_dir} already holds checkpoints; pass --resume to continue it, "
                           "or choose another --out")
    if not resume and cfg is not None:
        _check_restartable(run_dir, cfg)
    return latest


def _check_restartable(run_dir: Path, cfg: TrainConfig) -> None:
    """Refuse a fresh run in a non-empty folder unless it holds only an unfinished run of the
    same config (anything else there would be overwritten)."""
    entries = sorted(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else []
    if not entries or (set(entries) <= RESTARTABLE and _same_config(run_dir / CONFIG_FILE, cfg)):
        return
    raise ToolkitError(f"run folder {run_dir} is not empty ({', '.join(entries[:4])}) and is not an unfinished "
                       "run of this config; choose another --out, or pass --resume to continue the run there")


def _same_config(path: Path, cfg: TrainConfig) -> bool:
    """Whether ``path`` is the config.json of ``cfg`` (wherever the folder now lies)."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    ours = json.loads(json.dumps(cfg.to_dict()))
    return isinstance(saved, dict) and {**saved, "out": ""} == {**ours, "out": ""}


def _optimizer_tensors(coder: Coder) -> dict[str, Tensor]:
    tensors = {}
    for name, param in coder.sae.named_parameters():
        for key, value in coder.optimizer.state.get(param, {}).items():
            tensors[f"{name}.{key}"] = value.detach().cpu().contiguous()
    return tensors


def _restore_optimizer(coder: Coder, tensors: dict[str, Tensor]) -> None:
    """Adam state onto each parameter's device, laid out like the parameter."""
    for name, param in coder.sae.named_parameters():
        if f"{name}.step" not in tensors:
            continue
        fused = coder.optimizer.param_groups[0]["fused"]
        coder.optimizer.state[param] = {
            "step": tensors[f"{name}.step"].to(param.device if fused else "cpu"),
            "exp_avg": torch.empty_like(param).copy_(tensors[f"{name}.exp_avg"]),
            "exp_avg_sq": torch.empty_like(param).copy_(tensors[f"{name}.exp_avg_sq"]),
        }


class _NoLog:
    """The metrics log of ranks other than 0."""

    def write(self, records: list[dict]) -> None:
        pass

    def close(self) -> None:
        pass


class _MetricsLog:
    """metrics.jsonl (always) and Weights & Biases (when ``cfg.wandb``)."""

    def __init__(self, run_dir: Path, cfg: TrainConfig, step: int):
        self.path = run_dir / METRICS_FILE
        if self.path.exists():  # a resumed run: drop records written after its checkpoint
            kept = [line for line in self._lines() if self._step_of(line) <= step]
            self.path.write_text("".join(line + "\n" for line in kept))
        self.file = self.path.open("a")
        self.wandb = None
        if cfg.wandb:
            try:
                import wandb
            except ImportError as err:
                raise ToolkitError("wandb = true needs the wandb package: pip install wandb") from err
            self.wandb = wandb.init(project=cfg.wandb_project, config=cfg.to_dict(), dir=str(run_dir),
                                    resume="allow")

    def _lines(self) -> list[str]:
        """The complete lines of the log; a line cut short by a kill (no newline) was written
        after the checkpoint and is dropped."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ToolkitError(f"{self.path} is not a metrics log (not UTF-8 text); move it away and resume") from err
        return text[: text.rfind("\n") + 1].splitlines()

    def _step_of(self, line: str) -> int:
        try:
            return int(json.loads(line)["step"])
        except (ValueError, TypeError, KeyError) as err:
            raise ToolkitError(f"{self.path} has a damaged line ({line[:40]!r}); delete that line and resume") from err

    def write(self, records: list[dict]) -> None:
        for record in records:
            self.file.write(json.dumps(record) + "\n")
            if self.wandb is not None:
                self.wandb.log({f"{record['sae']}/{k}": v for k, v in record.items() if k != "sae"},
                               step=record["step"])
        self.file.flush()

    def close(self) -> None:
        self.file.close()
        if self.wandb is not None:
            self.wandb.finish()


def train(cfg: TrainConfig, source: ActivationSource | None = None, resume: bool = False) -> dict[str, dict]:
    """Train the coders of ``cfg``, save them, evaluate them; returns coder name -> scores.

    ``source`` defaults to ``cfg.acts`` (a store) or an on-the-fly harvest of ``cfg.model``.
    """
    cfg.validate()
    check_run_dir(Path(cfg.out), resume, cfg)  # before the (possibly slow) source opens
    if source is None:
        source = open_source(cfg.acts, cfg.model, cfg.hooks(), cfg.dataset, cfg.seed, cfg.context,
                             cfg.buffer_tokens)
    if hasattr(source, "model"):  # harvesting on the fly: the contexts must fit the model
        check_context(source.model, cfg.context)
    trainer = Trainer(cfg, source)
    trainer.fit(resume)
    trainer.dp.barrier()
    trainer.dp.close()
    return export(trainer) if trainer.dp.is_main else {}


def export(trainer: Trainer) -> dict[str, dict]:
    """Save each coder to ``saes/<name>/`` for raw activations, reload it, evaluate it there
    (reconstruction; CE/KL when the model loads), and write ``eval.json``."""
    cfg, source = trainer.cfg, trainer.source
    results: dict[str, dict] = {}
    model, tokens, ce_note = None, None, ""
    if cfg.eval_contexts > 0:
        try:
            model = model_for(source)
            check_context(model, cfg.context)
            tokens = eval_contexts(model, cfg.dataset, cfg.context, cfg.eval_contexts, cfg.seed + 1)
        except ToolkitError as err:
            ce_note = f"CE loss recovered skipped: {err}"
    folders = [save_sae(coder.sae, trainer.run_dir / RUN_SAES / coder.name, trainer.scales[coder.sae.cfg.hook],
                        trainer.scales[coder.sae.cfg.output_hook],
                        metadata={"model_name": source.model_name, "context_size": cfg.context,
                                  "dataset_path": cfg.acts or cfg.dataset,
                                  "training_tokens": trainer.step * cfg.batch_size})
               for coder in trainer.coders]
    raw = [load_sae(folder, trainer.device) for folder in folders]
    windows = reconstruction_scores(raw, source, cfg.eval_tokens, cfg.batch_size, cfg.seed + 1, cfg.dense_threshold)
    spliced = splice_scores(raw, model, tokens) if model is not None else [{} for _ in raw]
    for coder, folder, (scores, counts), splice in zip(trainer.coders, folders, windows, spliced):
        save_log_density(folder, log10_density(counts, scores["n_tokens"]))
        scores.update(splice)
        sae_cfg = coder.sae.cfg
        results[coder.name] = {"architecture": sae_cfg.architecture, "hook": sae_cfg.hook,
                               "hook_out": sae_cfg.output_hook, "d_sae": sae_cfg.d_sae, "k": sae_cfg.k, **scores,
                               "decoder_start_cos": coder.decoder_start_cos()}
        if ce_note:
            results[coder.name]["note"] = ce_note
    (trainer.run_dir / "eval.json").write_text(json.dumps(results, indent=2) + "\n")
    return results
