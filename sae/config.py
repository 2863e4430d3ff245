"""Configuration: one dataclass per sparse coder, one per training run, loaded from TOML.

A run file names the training settings at the top level, the sparse coder under ``[sae]``,
optionally several different coders as ``[[coders]]`` tables (each overriding ``[sae]``), and
optionally a sweep under ``[sweep]``: each listed field takes every listed value, and one
coder is trained per combination, all on the same batches::

    tokens = 2_000_000
    acts = "acts/tiny"

    [sae]
    architecture = "topk"
    hook = "blocks.2.hook_resid_post"
    d_sae = 4096

    [sweep]
    k = [16, 32, 64]

Command-line flags override fields; a misspelt field is refused with the list of valid ones.
"""

from __future__ import annotations

import itertools
import json
import math
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_type_hints

from activations.errors import ToolkitError

DEFAULT_HOOK = "blocks.2.hook_resid_post"
DEFAULT_LR = 6e-4
"""Adam's learning rate at 16,384 latents, scaled by (d_sae / 16384) ** -0.5 (the rule of Gao et
al. 2024, whose 2e-4 it triples: on the embedded model that halves a 1M-token run's FVU and
cuts a 4M-token run's by a quarter; docs/sae.md, "Learning rate")."""

Rule = tuple[Callable[[Any], bool], str]  # a test of a number, and what it must be
POSITIVE: Rule = (lambda v: v > 0, "positive")
NON_NEGATIVE: Rule = (lambda v: v >= 0, "0 or more")
FRACTION: Rule = (lambda v: 0 <= v < 1, "at least 0 and below 1")
UNIT: Rule = (lambda v: 0 <= v <= 1, "between 0 and 1")


def check_number(label: str, value: Any, rule: Rule, fix: str) -> None:
    """Refuse ``value`` unless it is finite and passes ``rule``; ``label`` names it in the
    message and ``fix`` says what to do."""
    test, text = rule
    if (isinstance(value, float) and not math.isfinite(value)) or not test(value):
        raise ToolkitError(f"{label} must be {text}, got {value!r}; {fix}")


def check_flags(args: Any, rules: dict[str, Rule]) -> None:
    """``check_number`` for each command-line value named in ``rules`` (``batch_size`` is
    ``--batch-size``)."""
    for name, rule in rules.items():
        flag = "--" + name.replace("_", "-")
        check_number(flag, getattr(args, name), rule, f"pass another {flag}")


def _check_fields(obj: Any, rules: dict[str, Rule]) -> None:
    for name, rule in rules.items():
        check_number(f"config field '{name}'", getattr(obj, name), rule,
                     f"change it in the config or with --set {name}=VALUE")


@dataclass
class SAEConfig:
    """One sparse coder: what it reads and writes, its size, and its sparsity mechanism."""

    architecture: str = "topk"
    """relu, topk, batchtopk, jumprelu, gated or matryoshka."""
    hook: str = DEFAULT_HOOK
    """Hook the coder reads (TransformerLens name)."""
    hook_out: str = ""
    """Hook the coder reconstructs; empty: ``hook`` (an SAE). Set it for a transcoder."""
    skip: bool = False
    """Skip transcoder: add a linear map W_skip [d_out, d_in] from input to output."""
    d_in: int = 0
    """Input width; 0 takes the source's width (set it to insist on a width)."""
    d_sae: int = 0
    """Number of latents; 0 means ``expansion_factor`` × d_in."""
    expansion_factor: int = 16
    k: int = 32
    """Active latents per token (topk; batchtopk and matryoshka: on average over the batch)."""
    lr: float = 0.0
    """Adam learning rate; 0 scales ``DEFAULT_LR`` (6e-4) by (d_sae / 16384) ** -0.5."""
    l1_coefficient: float = 5.0
    """relu and gated: weight of the sparsity penalty (per token, activations of norm √d_in)."""
    l0_coefficient: float = 0.05
    """jumprelu without a target: weight of the L0 penalty."""
    target_l0: float = 0.0
    """jumprelu: the L0 to aim for, through (L0/target_l0 − 1)²; 0 penalises L0 itself."""
    target_l0_coefficient: float = 50.0
    """jumprelu with a target: weight of (L0/target_l0 − 1)². 50 holds L0 32 within a few
    percent on the embedded model (weights 1 / 5 / 20 end at L0 56 / 41 / 35; docs/sae.md)."""
    sparsity_warmup: float = 0.05
    """relu, gated, jumprelu: fraction of training over which the sparsity weight rises from 0."""
    jumprelu_threshold: float = 0.1
    """jumprelu: initial threshold."""
    jumprelu_bandwidth: float = 0.05
    """jumprelu: width of the straight-through estimator's rectangle kernel."""
    jumprelu_l0_to_encoder: bool = True
    """jumprelu: the sparsity term's straight-through gradient also reaches the pre-activations
    (so the encoder), not only the thresholds as in Rajamanoharan et al. 2024. Adam moves a
    threshold by about lr per step, too slowly for a short run to hold its L0 against the
    reconstruction term; False keeps the paper's threshold-only estimator."""
    auxk_coefficient: float = 1 / 32
    """topk, batchtopk, matryoshka: weight of the AuxK loss on dead latents."""
    auxk_k: int = 0
    """Dead latents used by AuxK per token; 0 means d_in // 2."""
    threshold_momentum: float = 0.9
    """batchtopk, matryoshka: EMA momentum of the inference threshold (0.99 lagged the
    cutoff by ~100 steps and gave L0 12.8 for k 32 after 245 steps; 0.9 gave 31.4)."""
    matryoshka_prefixes: list[int] = field(default_factory=list)
    """matryoshka: nested prefix widths, increasing, the last equal to d_sae; empty means
    d_sae/16, d_sae/8, d_sae/4, d_sae/2, d_sae."""

    @property
    def is_transcoder(self) -> bool:
        return bool(self.hook_out) and self.hook_out != self.hook

    @property
    def output_hook(self) -> str:
        return self.hook_out or self.hook

    def check_numbers(self) -> None:
        """Refuse numbers no coder can train with, before any width is known."""
        _check_fields(self, _SAE_RULES)
        prefixes = self.matryoshka_prefixes
        if not all(isinstance(p, int) and not isinstance(p, bool) and p > 0 for p in prefixes):
            raise ToolkitError(f"matryoshka_prefixes {prefixes!r} must be positive whole numbers of latents; "
                               "change it in the config")

    def resolved(self, d_in: int, d_out: int) -> SAEConfig:
        """A copy with d_in, d_sae, lr and prefixes filled in from the source's widths."""
        self.check_numbers()
        if self.d_in and self.d_in != d_in:
            raise ToolkitError(f"d_in = {self.d_in} in the config does not match the width {d_in} of "
                               f"{self.hook} in the activations; remove d_in or pick the right hook")
        d_sae = self.d_sae or self.expansion_factor * d_in
        lr = self.lr or DEFAULT_LR / (d_sae / 2**14) ** 0.5
        prefixes = self.matryoshka_prefixes or [d_sae // m for m in (16, 8, 4, 2, 1)]
        out = replace(self, d_in=d_in, d_sae=d_sae, lr=lr, matryoshka_prefixes=prefixes)
        out.validate(d_out)
        return out

    def validate(self, d_out: int) -> None:
        from sae.architectures import ARCHITECTURES  # the registry imports this module
        if self.architecture not in ARCHITECTURES:
            raise ToolkitError(f"unknown architecture '{self.architecture}'; valid architectures: "
                               f"{', '.join(ARCHITECTURES)}")
        if self.d_sae < 1:
            raise ToolkitError(f"d_sae must be positive, got {self.d_sae}")
        if self.architecture in ("topk", "batchtopk", "matryoshka") and not 0 < self.k <= self.d_sae:
            raise ToolkitError(f"k = {self.k} must be between 1 and d_sae = {self.d_sae}; lower --k or raise --d-sae")
        if self.skip and not self.is_transcoder:
            raise ToolkitError("skip = true needs a transcoder; set hook_out to a different hook than hook")
        if self.is_transcoder and self.architecture == "matryoshka":
            raise ToolkitError("matryoshka transcoders are not supported; use topk or batchtopk with hook_out")
        prefixes = self.matryoshka_prefixes
        if self.architecture == "matryoshka" and (
                prefixes != sorted(set(prefixes)) or prefixes[0] < 1 or prefixes[-1] != self.d_sae):
            raise ToolkitError(f"matryoshka_prefixes {prefixes} must increase strictly and end at d_sae = {self.d_sae}")
        if d_out < 1:
            raise ToolkitError(f"output width {d_out} of {self.output_hook} is not positive")

    def slug(self) -> str:
        """A folder name for this coder, e.g. ``blocks.2.hook_resid_post-topk-d4096-k32``
        (``name_coders`` adds the learning rate where a run sweeps it)."""
        hooks = self.hook + (f"-to-{self.hook_out}" if self.is_transcoder else "")
        arch = self.architecture + ("-skip" if self.skip else "")
        knob = {"relu": f"l1_{self.l1_coefficient:g}", "gated": f"l1_{self.l1_coefficient:g}",
                "jumprelu": (f"l0_{self.target_l0:g}-c{self.target_l0_coefficient:g}" if self.target_l0
                             else f"l0c_{self.l0_coefficient:g}"),
                }.get(self.architecture, f"k{self.k}")
        width = f"d{self.d_sae}" if self.d_sae else f"x{self.expansion_factor}"
        return f"{hooks}-{arch}-{width}-{knob}"


def name_coders(configs: list[SAEConfig], lrs: list[float] | None = None) -> list[str]:
    """The folder names of a run's coders: each ``slug``, with ``-lr<lr>`` appended where the
    slug alone would repeat and the learning rate was set by hand. ``lrs`` are the learning
    rates as set (0: the width's default; default: each config's own ``lr``)."""
    lrs = [c.lr for c in configs] if lrs is None else lrs
    slugs = [c.slug() for c in configs]
    return [slug + (f"-lr{lr:g}" if lr and slugs.count(slug) > 1 else "") for slug, lr in zip(slugs, lrs)]


_SAE_RULES: dict[str, Rule] = {
    "d_in": NON_NEGATIVE, "d_sae": NON_NEGATIVE, "expansion_factor": POSITIVE, "lr": NON_NEGATIVE,
    "l1_coefficient": NON_NEGATIVE, "l0_coefficient": NON_NEGATIVE, "target_l0": NON_NEGATIVE,
    "target_l0_coefficient": NON_NEGATIVE, "sparsity_warmup": UNIT, "jumprelu_threshold": NON_NEGATIVE,
    "jumprelu_bandwidth": POSITIVE, "auxk_coefficient": NON_NEGATIVE, "auxk_k": NON_NEGATIVE,
    "threshold_momentum": FRACTION}


@dataclass
class TrainConfig:
    """A training run: the data, the schedule, and the coders trained side by side."""

    sae: SAEConfig = field(default_factory=SAEConfig)
    coders: list[dict] = field(default_factory=list)
    """Several different coders: each a table of SAEConfig fields overriding ``sae``."""
    sweep: dict[str, list] = field(default_factory=dict)
    """SAEConfig field -> values; every coder is trained with each combination (cartesian
    product)."""
    acts: str = ""
    """Activation store folder; empty: harvest on the fly from ``model``."""
    model: str = "tiny"
    """Model for on-the-fly harvesting and for CE-loss-recovered evaluation."""
    dataset: str = "tinyworld"
    context: int = 128
    buffer_tokens: int = 1 << 17
    """On-the-fly shuffle buffer, in tokens."""
    out: str = "runs/sae"
    """Run folder: config, checkpoints, metrics.jsonl, final coders, eval.json."""
    tokens: int = 1_000_000
    """Training tokens (each coder sees all of them)."""
    batch_size: int = 4096
    warmup_steps: int = 50
    """Linear learning-rate warm-up, in steps."""
    decay_fraction: float = 0.2
    """The learning rate decays linearly to 0 over this final fraction of training."""
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: float = 1.0
    """Clip each coder's gradient to this global norm (0: off)."""
    dead_window: int = 1_000_000
    """A latent is dead after this many tokens without firing; relu coders resample dead
    latents once per window."""
    dense_threshold: float = 0.1
    """A latent is dense when it fires on more than this fraction of tokens."""
    seed: int = 0
    checkpoint_every: int = 200
    """Steps between checkpoints (0: only at the end)."""
    log_every: int = 10
    eval_tokens: int = 65_536
    eval_contexts: int = 32
    """Contexts for CE loss recovered (0: skip it)."""
    device: str = "auto"
    autocast: bool = True
    """On CUDA, run the encoder in bfloat16 autocast."""
    wandb: bool = False
    wandb_project: str = "sae"

    def sae_configs(self) -> list[SAEConfig]:
        """The coders of this run: each of ``coders`` (or ``sae`` alone) with each combination
        of the sweep's values."""
        bases = [replace(self.sae, **_coder_fields(c, "coders of the TrainConfig")) for c in self.coders] or [self.sae]
        sweep = _sweep_fields(self.sweep, "the TrainConfig")
        names = list(sweep)
        combos = list(itertools.product(*(sweep[n] for n in names)))
        return [replace(base, **dict(zip(names, values))) for base in bases for values in combos]

    def check_distinct(self, names: list[str] | None = None) -> None:
        """Refuse runs whose coders would share a name (and a folder): a sweep over a field
        that some architecture ignores. ``names`` defaults to ``name_coders`` of the coders."""
        names = names or name_coders(self.sae_configs())
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ToolkitError(f"the run would train identical coders ({', '.join(repeated)}); a swept field "
                               "does not apply to every architecture: move it into [[coders]] tables")

    def hooks(self) -> list[str]:
        """Every hook any coder reads or writes, in first-use order."""
        return list(dict.fromkeys(h for cfg in self.sae_configs() for h in (cfg.hook, cfg.output_hook)))

    def validate(self) -> None:
        """Refuse numbers no run can use (a zero batch size, a negative learning rate, ...)."""
        _check_fields(self, _TRAIN_RULES)
        for sae_cfg in self.sae_configs():
            sae_cfg.check_numbers()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_TRAIN_RULES: dict[str, Rule] = {
    "context": (lambda v: v >= 2, "at least 2"), "buffer_tokens": POSITIVE, "tokens": POSITIVE,
    "batch_size": POSITIVE, "warmup_steps": NON_NEGATIVE, "decay_fraction": UNIT, "beta1": FRACTION,
    "beta2": FRACTION, "grad_clip": NON_NEGATIVE, "dead_window": POSITIVE, "dense_threshold": UNIT,
    "checkpoint_every": NON_NEGATIVE, "log_every": POSITIVE, "eval_tokens": POSITIVE, "eval_contexts": NON_NEGATIVE}


_TABLES = ("sae", "coders", "sweep")  # TrainConfig fields that hold coder fields
COMMAND_LINE = "the command line"  # where load_config's overrides come from, for error messages


def field_names(cls) -> list[str]:
    return [f.name for f in fields(cls)]


def _check_keys(keys, cls, where: str) -> None:
    valid = field_names(cls)
    for key in keys:
        if key not in valid:
            raise ToolkitError(f"unknown config field '{key}' in {where}; valid fields: {', '.join(valid)}")


def _coerce(cls, name: str, value: Any, where: str) -> Any:
    """Check a TOML/JSON value against the field's type (ints widen to floats)."""
    hint = get_type_hints(cls)[name]
    origin = getattr(hint, "__origin__", hint)
    if origin is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin in (list, dict) and isinstance(value, origin):
        return value
    if isinstance(origin, type) and isinstance(value, origin) and not (origin is int and isinstance(value, bool)):
        return value
    raise ToolkitError(f"config field '{name}' in {where} must be {getattr(origin, '__name__', origin)}, "
                       f"got {value!r}")


def _coder_fields(values: Any, where: str) -> dict[str, Any]:
    """Checked and coerced SAEConfig fields of a [sae] or [[coders]] table."""
    if not isinstance(values, dict):
        raise ToolkitError(f"{where} must be a table of coder fields, got {values!r}")
    _check_keys(values, SAEConfig, where)
    return {k: _coerce(SAEConfig, k, v, where) for k, v in values.items()}


def _sweep_fields(sweep: dict[str, Any], where: str) -> dict[str, list]:
    """Checked and coerced value lists of a [sweep] table."""
    _check_keys(_table(sweep, "[sweep]", where), SAEConfig, f"[sweep] of {where}")
    for name, values in sweep.items():
        if not isinstance(values, list) or not values:
            raise ToolkitError(f"sweep field '{name}' in {where} must be a non-empty list of values")
    return {name: [_coerce(SAEConfig, name, v, f"[sweep] of {where}") for v in values] for name, values in sweep.items()}


def config_from_dict(raw: dict[str, Any], where: str = "the config") -> TrainConfig:
    """Build a TrainConfig from a parsed TOML/JSON mapping, refusing unknown fields."""
    raw = dict(raw)
    misplaced = [k for k in raw if k not in field_names(TrainConfig) and k in field_names(SAEConfig)]
    if misplaced:
        raise ToolkitError(f"config field '{misplaced[0]}' in {where} describes the coder; put it under [sae] "
                           "(or a list of values under [sweep])")
    _check_keys(raw, TrainConfig, where)
    sae = SAEConfig(**_coder_fields(raw.pop("sae", {}), f"[sae] of {where}"))
    coders = raw.pop("coders", [])
    if not isinstance(coders, list):
        raise ToolkitError(f"coders in {where} must be a list of [[coders]] tables, got {coders!r}")
    coders = [_coder_fields(c, f"[[coders]] of {where}") for c in coders]
    sweep = _sweep_fields(_table(raw.pop("sweep", {}), "[sweep]", where), where)
    top = {k: _coerce(TrainConfig, k, v, where) for k, v in raw.items()}
    cfg = TrainConfig(sae=sae, coders=coders, sweep=sweep, **top)
    cfg.check_distinct()
    cfg.validate()
    return cfg


def _table(value: Any, name: str, where: str) -> dict[str, Any]:
    """``value`` if it is a table (a dict), else the error naming ``name`` in ``where``."""
    if not isinstance(value, dict):
        raise ToolkitError(f"{name} in {where} must be a table of fields, got {value!r}")
    return value


def _read_raw(path: Path) -> dict[str, Any]:
    """The mapping in a TOML file (or a run folder's JSON config)."""
    if not path.is_file():
        raise ToolkitError(f"config file {path} does not exist; pass an existing .toml file")
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ToolkitError(f"cannot parse {path}: {err}") from err
    return _table(raw, "the top level", str(path))


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a TOML (or a run folder's JSON) config, then apply ``overrides``.

    ``overrides`` maps a field name of TrainConfig or SAEConfig to a value; a list value for
    an SAEConfig field becomes a sweep over it.
    """
    raw: dict[str, Any] = {}
    where = "the defaults"
    if path is not None:
        raw, where = _read_raw(Path(path)), str(path)
    raw["sae"] = dict(_table(raw.get("sae", {}), "[sae]", where))
    raw["sweep"] = dict(_table(raw.get("sweep", {}), "[sweep]", where))
    for name, value in (overrides or {}).items():
        settable = [n for n in field_names(TrainConfig) + field_names(SAEConfig) if n not in _TABLES]
        if name not in settable:
            raise ToolkitError(f"unknown config field '{name}'; valid fields: {', '.join(settable)}")
        if name in field_names(TrainConfig):
            raw[name] = _coerce(TrainConfig, name, value, COMMAND_LINE)
        elif isinstance(value, list) and name != "matryoshka_prefixes":
            raw["sweep"][name] = [_coerce(SAEConfig, name, v, COMMAND_LINE) for v in value]
            raw["sae"].pop(name, None)
        else:
            raw["sae"][name] = _coerce(SAEConfig, name, value, COMMAND_LINE)
            raw["sweep"].pop(name, None)
    return config_from_dict(raw, where)


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
