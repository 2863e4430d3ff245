"""Data-free feature flow between SAEs on consecutive hook points (Laptev et al. 2025).

Block L is described by four dictionaries, all in the residual basis: the residual stream
entering it (``blocks.L.hook_resid_pre``, the same activations as
``blocks.{L-1}.hook_resid_post``), its attention output (``blocks.L.hook_attn_out``), its
MLP output (``blocks.L.hook_mlp_out``) and the residual stream leaving it
(``blocks.L.hook_resid_post``). Every feature of the outgoing residual SAE is matched, by
cosine similarity of unit decoder directions, to its best predecessor in each of the other
three, and classified (``CLASSES``) from which of those similarities clear the layer's
thresholds:

=================  ==================  ==========================
residual  >= t_r   module >= t_m        class
=================  ==================  ==========================
yes                no                   ``persists``
yes                attention / MLP      ``processed_attn`` / ``_mlp``
no                 attention / MLP      ``created_attn`` / ``_mlp``
no                 no                   ``unexplained``
=================  ==================  ==========================

When both modules clear t_m, the more similar one names the class. All-pairs similarities
are computed in blocks (``best_matches``), so memory stays at one block of similarities
plus the decoders themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from activations.errors import ToolkitError
from activations.hooks import parse_hook, same_basis
from sae.compare import best_matches, unit_rows
from sae.io import sae_folders

CLASSES = ("persists", "processed_attn", "processed_mlp", "created_attn", "created_mlp", "unexplained")
SOURCES = ("resid", "attn", "mlp")
"""Predecessor dictionaries of a residual feature, in the column order of ``LayerFlow``."""
_SITE_ROLE = {"hook_resid_pre": "resid", "hook_resid_post": "resid", "hook_attn_out": "attn",
              "hook_mlp_out": "mlp"}


@dataclass(frozen=True)
class Thresholds:
    """Cosine similarities above which a predecessor counts."""

    resid: float = 0.5
    """t_r: a residual predecessor at L-1 (also where a flow-graph chain is cut)."""
    module: float = 0.35
    """t_m: an attention or MLP predecessor in block L."""


@dataclass
class FlowConfig:
    """Default thresholds, overridden per block index by ``per_layer``."""

    default: Thresholds = field(default_factory=Thresholds)
    per_layer: dict[int, Thresholds] = field(default_factory=dict)

    def at(self, layer: int) -> Thresholds:
        return self.per_layer.get(layer, self.default)


@dataclass
class Dictionary:
    """The unit decoder directions of one SAE folder and what it was trained on."""

    folder: Path
    hook: str
    model_name: str | None
    directions: Tensor
    """[d_sae, d_in] float32, unit-norm rows."""

    @property
    def d_in(self) -> int:
        return self.directions.shape[1]

    @property
    def d_sae(self) -> int:
        return self.directions.shape[0]

    @property
    def role(self) -> str:
        return _SITE_ROLE.get(parse_hook(self.hook, 10**6).site, "")

    @property
    def boundary(self) -> int:
        """Residual boundary index: ``resid_pre L`` is L, ``resid_post L`` is L+1."""
        point = parse_hook(self.hook, 10**6)
        return point.layer + (point.site == "hook_resid_post")


def load_directions(folder: str | Path) -> Dictionary:
    """Read cfg.json and only ``W_dec`` [d_sae, d_in] of an SAE folder; normalise its rows."""
    folder = Path(folder)
    cfg_path, weights = folder / "cfg.json", folder / "sae_weights.safetensors"
    if not folder.is_dir():
        raise ToolkitError(f"SAE folder {folder} does not exist")
    if not cfg_path.is_file() or not weights.is_file():
        raise ToolkitError(f"{folder} is not an SAE folder: it needs cfg.json and sae_weights.safetensors")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ToolkitError(f"{cfg_path} is not readable JSON ({err}); rewrite or replace the SAE folder") from None
    meta = cfg.get("metadata") if isinstance(cfg, dict) else None
    if not isinstance(cfg, dict) or not isinstance(meta or {}, dict):
        raise ToolkitError(f"{cfg_path} must hold a JSON object (with a 'metadata' object); it is not an SAE config")
    meta = meta or {}
    hook = meta.get("hook_name") or cfg.get("hook_name") or ""
    if not hook:
        raise ToolkitError(f"{cfg_path} names no hook (metadata.hook_name); flow needs to know where the SAE reads")
    if cfg.get("hook_name_out") or meta.get("hook_name_out"):
        raise ToolkitError(f"{folder} is a transcoder ({hook} -> {cfg.get('hook_name_out')}); flow needs SAEs")
    try:
        with safe_open(str(weights), "pt") as f:
            decoder = f.get_tensor("W_dec").float()
    except (OSError, SafetensorError) as err:
        raise ToolkitError(f"cannot read W_dec from {weights} ({str(err).splitlines()[0]}); the weights file is "
                           "damaged or not an SAE's") from None
    if decoder.dim() != 2:
        raise ToolkitError(f"W_dec in {weights} has shape {tuple(decoder.shape)}; an SAE's is [d_sae, d_in]")
    return Dictionary(folder, hook, meta.get("model_name") or cfg.get("model_name"), unit_rows(decoder))


def check_compatible(dicts: list[Dictionary]) -> None:
    """Refuse dictionaries of different widths, models or bases; the error names the culprit."""
    first = dicts[0]
    for d in dicts:
        parse_hook(d.hook, 10**6)
        if not same_basis(d.hook, "blocks.0.hook_resid_post"):
            raise ToolkitError(f"{d.folder} lives in another basis ({d.hook}) than the residual stream; "
                               "flow compares SAEs on hook_resid_pre/post, hook_attn_out and hook_mlp_out")
        if not d.role:
            raise ToolkitError(f"{d.folder} reads {d.hook}, which flow does not use; pass SAEs on "
                               "hook_resid_pre/post, hook_attn_out and hook_mlp_out")
        if d.d_in != first.d_in:
            raise ToolkitError(f"{d.folder} has d_in {d.d_in} but {first.folder} has d_in {first.d_in}; "
                               "all SAEs must read the same model width")
        if d.model_name and first.model_name and d.model_name != first.model_name:
            raise ToolkitError(f"{d.folder} was trained on model '{d.model_name}' but {first.folder} on "
                               f"'{first.model_name}'; flow compares SAEs of one model")


@dataclass
class FlowLayer:
    """The four dictionaries of block ``layer``."""

    layer: int
    resid_in: Dictionary
    attn: Dictionary
    mlp: Dictionary
    resid_out: Dictionary

    def sources(self) -> list[Dictionary]:
        """Predecessor dictionaries in ``SOURCES`` order."""
        return [self.resid_in, self.attn, self.mlp]


def stack_layers(dicts: list[Dictionary]) -> list[FlowLayer]:
    """Group dictionaries into the complete blocks they cover, in layer order."""
    check_compatible(dicts)
    by_key: dict[tuple[str, int], Dictionary] = {}
    for d in dicts:
        key = ("resid", d.boundary) if d.role == "resid" else (d.role, parse_hook(d.hook, 10**6).layer)
        if key in by_key:
            raise ToolkitError(f"{d.folder} and {by_key[key].folder} both cover {d.hook}; pass one SAE per hook")
        by_key[key] = d
    layers = sorted({k[1] for k in by_key if k[0] == "attn"})
    stack = [FlowLayer(L, by_key[("resid", L)], by_key[("attn", L)], by_key[("mlp", L)], by_key[("resid", L + 1)])
             for L in layers if all(k in by_key for k in (("resid", L), ("mlp", L), ("resid", L + 1)))]
    if not stack:
        raise ToolkitError("no complete block among these SAEs: block L needs SAEs on blocks.L.hook_resid_pre "
                           "(or blocks.{L-1}.hook_resid_post), blocks.L.hook_attn_out, blocks.L.hook_mlp_out "
                           "and blocks.L.hook_resid_post")
    return stack


def classify(similarity: Tensor, thresholds: Thresholds) -> Tensor:
    """Class indices into ``CLASSES`` [n] from predecessor similarities [n, 3] (``SOURCES`` order)."""
    resid = similarity[:, 0] >= thresholds.resid
    module = similarity[:, 1:] >= thresholds.module
    any_module = module.any(dim=1)
    mlp = similarity[:, 2] > similarity[:, 1]
    classes = torch.full((similarity.shape[0],), CLASSES.index("unexplained"), dtype=torch.long)
    classes[resid & ~any_module] = CLASSES.index("persists")
    for prefix, rows in (("processed", resid & any_module), ("created", ~resid & any_module)):
        classes[rows & ~mlp] = CLASSES.index(f"{prefix}_attn")
        classes[rows & mlp] = CLASSES.index(f"{prefix}_mlp")
    return classes


@dataclass
class LayerFlow:
    """Best predecessors and classes of every outgoing residual feature of one block."""

    layer: int
    similarity: Tensor
    """[d_sae, 3] cosine of the best predecessor in resid L-1, attn L, mlp L."""
    index: Tensor
    """[d_sae, 3] that predecessor's feature index."""
    classes: Tensor
    """[d_sae] index into ``CLASSES``."""
    thresholds: Thresholds

    def counts(self) -> dict[str, int]:
        return {name: int((self.classes == i).sum()) for i, name in enumerate(CLASSES)}


def layer_flow(block: FlowLayer, thresholds: Thresholds, tile: int = 2048) -> LayerFlow:
    """Classify every feature of ``block.resid_out``."""
    matches = [best_matches(block.resid_out.directions, src.directions, tile) for src in block.sources()]
    similarity = torch.stack([m[0] for m in matches], dim=1)
    index = torch.stack([m[1] for m in matches], dim=1)
    return LayerFlow(block.layer, similarity, index, classify(similarity, thresholds), thresholds)


def feature_flow(folders: list[str | Path],
                 config: FlowConfig | None = None) -> tuple[list[FlowLayer], list[LayerFlow]]:
    """Load SAE folders (or every SAE of a `sae train` run folder), check them, and classify
    every complete block's features."""
    config = config or FlowConfig()
    if isinstance(folders, (str, Path)) or not folders:
        raise ToolkitError(f"feature_flow takes a non-empty list of SAE folders, got {folders!r}")
    stack = stack_layers([load_directions(f) for folder in folders for f in sae_folders(folder)])
    return stack, [layer_flow(block, config.at(block.layer)) for block in stack]
