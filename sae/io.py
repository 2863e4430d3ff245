"""SAEs on disk, in the folder layout SAELens 6.x writes and reads.

::

    my_sae/
      cfg.json                   d_in, d_sae, dtype, device, apply_b_dec_to_input,
                                 normalize_activations, reshape_activations, metadata
                                 {model_name, hook_name, ...}, architecture, and the
                                 architecture's own fields (k; d_out and hook_name_out
                                 for transcoders)
      sae_weights.safetensors    W_enc [d_in, d_sae], W_dec [d_sae, d_out], b_enc, b_dec,
                                 threshold (jumprelu; batchtopk and matryoshka save as
                                 jumprelu), b_gate, r_mag, b_mag (gated), W_skip [d_out, d_in]
      sparsity.safetensors       "sparsity": log10 feature density [d_sae]

Weights are saved for raw activations: the trainer's input normalisation is folded in, so
``normalize_activations`` is always ``"none"``. Safetensors and JSON only, no pickles.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import Tensor

from activations.errors import ToolkitError
from activations.models import resolve_device
from activations.store import atomic_write_bytes
from sae.architectures import ARCHITECTURES, SparseCoder
from sae.config import SAEConfig

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
RUN_SAES = "saes"  # where a `sae train` run folder keeps its final SAEs
RUN_CHECKPOINTS = "checkpoints"  # ... and its checkpoints while it runs
SPARSITY_FILE = "sparsity.safetensors"

# SAELens architecture name -> ours (transcoders: same activation, d_out and hook_name_out set)
_FROM_SAELENS = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu", "gated": "gated",
                 "transcoder": "relu", "skip_transcoder": "relu", "jumprelu_transcoder": "jumprelu"}
_TRANSCODER_NAMES = {("standard", False): "transcoder", ("standard", True): "skip_transcoder",
                     ("jumprelu", False): "jumprelu_transcoder"}

PRETRAINED_RELEASES = {
    "gpt2-small-res-jb": "jbloom/GPT2-Small-SAEs-Reformatted",
}
"""SAELens release name -> Hugging Face repository whose folders are named by SAE id."""


def fold_scaling(state: dict[str, Tensor], input_scale: float, output_scale: float) -> dict[str, Tensor]:
    """Weights for raw activations, from weights trained on x·input_scale -> y·output_scale.

    Pre-activations are unchanged (so are thresholds and encoder biases); the encoder
    absorbs input_scale and the decoder side divides by output_scale.
    """
    folded = dict(state)
    folded["W_enc"] = state["W_enc"] * input_scale
    folded["W_dec"] = state["W_dec"] / output_scale
    folded["b_dec"] = state["b_dec"] / output_scale
    if "W_skip" in state:
        folded["W_skip"] = state["W_skip"] * (input_scale / output_scale)
    return folded


def saelens_config(sae: SparseCoder, metadata: dict | None = None) -> dict:
    """The cfg.json dictionary of a coder, in SAELens 6.x field names."""
    cfg = sae.cfg
    architecture = sae.saelens_architecture
    fields = {"d_in": sae.d_in, "d_sae": sae.d_sae, "dtype": "float32", "device": "cpu",
              "apply_b_dec_to_input": sae.apply_b_dec_to_input, "normalize_activations": "none",
              "reshape_activations": "none",
              "metadata": {"model_name": None, "hook_name": cfg.hook, "hook_head_index": None,
                           "prepend_bos": True, **(metadata or {}),
                           "sae_toolkit": {"architecture": cfg.architecture, "skip": cfg.skip}}}
    if cfg.is_transcoder:
        architecture = _TRANSCODER_NAMES.get((architecture, cfg.skip), architecture)
        layer = cfg.hook_out.split(".")[1] if cfg.hook_out.startswith("blocks.") else "0"
        fields.update(d_out=sae.d_out, hook_name_out=cfg.hook_out, hook_layer_out=int(layer),
                      hook_head_index_out=None)
    return {**fields, "architecture": architecture, **sae.saelens_fields()}


def save_sae(sae: SparseCoder, folder: str | Path, input_scale: float = 1.0, output_scale: float = 1.0,
             metadata: dict | None = None) -> Path:
    """Write ``folder`` (created if needed) for raw activations; see the module docstring.

    ``input_scale``/``output_scale`` are the factors the coder's training inputs/targets were
    multiplied by; ``metadata`` adds to cfg.json's metadata (model_name, context_size, ...).
    """
    if sae.apply_b_dec_to_input and input_scale != output_scale:
        raise ToolkitError("an SAE that subtracts b_dec from its input needs equal input and output scales")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ToolkitError(f"cannot save an SAE to {folder}: it is a file, not a folder; choose another path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ToolkitError(f"cannot create the SAE folder {folder}: {err.strerror}; choose another path") from err
    state = {k: v.float().cpu().contiguous() for k, v in sae.inference_state().items()}
    # each file is replaced whole: a crash leaves the old file or the new one, never half of one
    atomic_write_bytes(folder / WEIGHTS_FILE, save(fold_scaling(state, input_scale, output_scale)))
    atomic_write_bytes(folder / CFG_FILE, (json.dumps(saelens_config(sae, metadata), indent=2) + "\n").encode())
    return folder


def save_log_density(folder: str | Path, log_density: Tensor) -> None:
    """Write sparsity.safetensors: log10 feature density [d_sae]."""
    atomic_write_bytes(Path(folder) / SPARSITY_FILE, save({"sparsity": log_density.float().cpu().contiguous()}))


def load_log_density(folder: str | Path) -> Tensor | None:
    """log10 feature density [d_sae] from sparsity.safetensors, or None if absent."""
    path = Path(folder) / SPARSITY_FILE
    return load_file(path)["sparsity"] if path.is_file() else None


def _bad_cfg(folder: Path, problem: str) -> ToolkitError:
    return ToolkitError(f"{folder / CFG_FILE} {problem}; fix or replace that SAE folder")


def _read_cfg(folder: Path) -> dict:
    """cfg.json as a mapping, with an object (or nothing) as its metadata."""
    try:
        raw = json.loads((folder / CFG_FILE).read_text(encoding="utf-8"))
    except ValueError as err:  # JSON or UTF-8
        raise _bad_cfg(folder, f"is not valid JSON ({err})") from err
    if not isinstance(raw, dict):
        raise _bad_cfg(folder, f"must hold a JSON object, not {type(raw).__name__}")
    if not isinstance(raw.get("metadata") or {}, dict):
        raise _bad_cfg(folder, f"has metadata {raw['metadata']!r}, which is not an object")
    return raw


def _width(raw: dict, name: str, folder: Path, default: int | None = None) -> int:
    """The positive whole number ``raw[name]`` (``default`` when absent)."""
    value = raw.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _bad_cfg(folder, f"needs '{name}', a positive whole number, got {value!r}")
    return value


def _top_k(raw: dict, folder: Path) -> int:
    """k of a top-k SAE (SAELens 6.x or legacy ``activation_fn_kwargs``; 32 if neither)."""
    k, legacy = raw.get("k"), raw.get("activation_fn_kwargs")
    if k is None and isinstance(legacy, dict):
        k = legacy.get("k")
    k = _width({"k": SAEConfig.k if k is None else k}, "k", folder)
    if k > raw["d_sae"]:
        raise _bad_cfg(folder, f"has k = {k}, more than its d_sae = {raw['d_sae']} latents")
    return k


def _coder_config(raw: dict, skip: bool, folder: Path) -> tuple[SAEConfig, int, bool]:
    """Our SAEConfig, d_out and apply_b_dec_to_input from a (possibly legacy) cfg.json."""
    metadata = raw.get("metadata") or {}
    name = raw.get("architecture") or ("topk" if raw.get("activation_fn_str") == "topk" else "standard")
    if not isinstance(name, str) or name not in _FROM_SAELENS:
        raise ToolkitError(f"cannot load SAE architecture {name!r}; loadable SAELens architectures: "
                           f"{', '.join(_FROM_SAELENS)}")
    if raw.get("normalize_activations", "none") not in ("none", None):
        raise ToolkitError(f"this SAE normalises activations at run time ('{raw['normalize_activations']}'); "
                           "fold the normalisation into its weights with SAELens first")
    hook = metadata.get("hook_name") or raw.get("hook_name") or raw.get("hook_point") or ""
    if not isinstance(hook, str) or not hook:
        raise _bad_cfg(folder, "names no hook (metadata.hook_name)")
    cfg = SAEConfig(architecture=_FROM_SAELENS[name], hook=hook, hook_out=raw.get("hook_name_out") or "",
                    skip=skip, d_in=_width(raw, "d_in", folder), d_sae=_width(raw, "d_sae", folder),
                    k=_top_k(raw, folder) if _FROM_SAELENS[name] == "topk" else SAEConfig.k)
    d_out = _width(raw, "d_out", folder, cfg.d_in)
    try:
        cfg.validate(d_out)
    except ToolkitError as err:
        raise _bad_cfg(folder, f"describes no loadable SAE: {err}") from err
    transcoder = name.endswith("transcoder") or cfg.is_transcoder  # never subtracts b_dec [d_out] from x
    return cfg, d_out, bool(raw.get("apply_b_dec_to_input", True)) and not transcoder


def _read_weights(folder: Path) -> dict[str, Tensor]:
    try:
        return {k: v.float() for k, v in load_file(folder / WEIGHTS_FILE).items()}
    except SafetensorError as err:
        raise ToolkitError(f"{folder / WEIGHTS_FILE} is not a readable safetensors file ({err}); fix or "
                           "replace that SAE folder") from err


class NoSAEsError(ToolkitError):
    """A folder that is neither an SAE folder nor holds any (``sae_folders``)."""


def release_spec(text: str | Path) -> tuple[str, str] | None:
    """(release, SAE id) when ``text`` is ``RELEASE:SAE_ID`` (a SAELens release name or a
    Hugging Face ``owner/repo``, e.g. ``gpt2-small-res-jb:blocks.8.hook_resid_pre``) and no
    such local path exists; else None."""
    text = str(text)
    release, colon, sae_id = text.partition(":")
    if not colon or not sae_id or Path(text).exists():
        return None
    return (release, sae_id) if release in PRETRAINED_RELEASES or release.count("/") == 1 else None


def sae_folders(path: str | Path) -> list[Path]:
    """The SAE folders that ``path`` names: ``[path]`` when it is one (it holds cfg.json);
    for ``RELEASE:SAE_ID`` (``release_spec``), that SAE's folder in the Hugging Face cache,
    downloaded when the hub is reachable; otherwise, for a ``sae train`` run folder or any
    folder of SAE folders, every subfolder of its ``saes/`` (or of itself) that holds a
    cfg.json, sorted by name."""
    spec = release_spec(path)
    if spec is not None:
        return [download_pretrained(*spec)]
    path = Path(path)
    if (path / CFG_FILE).is_file():
        return [path]
    if not path.is_dir():
        raise ToolkitError(f"SAE folder {path} {'is a file' if path.exists() else 'does not exist'}; pass an "
                           "SAE folder (cfg.json + sae_weights.safetensors), a `sae train` run folder, or a "
                           "pretrained SAE as RELEASE:SAE_ID (e.g. gpt2-small-res-jb:blocks.8.hook_resid_pre)")
    root = path / RUN_SAES if (path / RUN_SAES).is_dir() else path
    found = sorted(f for f in root.iterdir() if (f / CFG_FILE).is_file())
    if not found and (path / RUN_CHECKPOINTS).is_dir():
        raise ToolkitError(f"run folder {path} holds no finished SAEs yet (no {RUN_SAES}/); finish the run with "
                           f"`sae train --out {path} --resume`")
    if not found:
        raise NoSAEsError(f"{path} is not an SAE folder (it needs {CFG_FILE} and {WEIGHTS_FILE}) and holds none; "
                           "pass an SAE folder or a `sae train` run folder")
    return found


def one_sae_folder(path: str | Path) -> Path:
    """The one SAE folder that ``path`` names (see ``sae_folders``); a run folder of several is refused."""
    found = sae_folders(path)
    if len(found) > 1:
        raise ToolkitError(f"{path} holds {len(found)} SAEs; pass one of them: {', '.join(map(str, found))}")
    return found[0]


def load_sae(folder: str | Path, device: str | torch.device = "cpu") -> SparseCoder:
    """Load a SAELens-format folder (ours or SAELens's) as a coder in eval mode.

    The coder's ``metadata`` attribute holds cfg.json's metadata (model_name, hook_name, ...).
    """
    folder, device = Path(folder), resolve_device(device)
    if not (folder / CFG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise ToolkitError(f"{folder} is not an SAE folder: it needs {CFG_FILE} and {WEIGHTS_FILE}")
    raw = _read_cfg(folder)
    state = _read_weights(folder)
    cfg, d_out, apply_b_dec = _coder_config(raw, "W_skip" in state, folder)
    sae = ARCHITECTURES[cfg.architecture](cfg, d_out)
    sae.apply_b_dec_to_input = apply_b_dec
    try:
        sae.load_inference_state(state)
    except (RuntimeError, KeyError) as err:
        raise ToolkitError(f"weights in {folder / WEIGHTS_FILE} do not fit its {CFG_FILE} "
                           f"(architecture {raw.get('architecture', 'standard')}): {err}") from err
    sae.metadata = {"model_name": raw.get("model_name"), **(raw.get("metadata") or {}), "hook_name": cfg.hook}
    return sae.to(device).eval()


def _release_repo(release: str) -> str:
    if release in PRETRAINED_RELEASES:
        return PRETRAINED_RELEASES[release]
    if release.count("/") == 1:
        return release
    raise ToolkitError(f"unknown SAELens release '{release}'; known releases: {', '.join(PRETRAINED_RELEASES)}, "
                       "or pass a Hugging Face repository id (owner/name)")


def download_pretrained(release: str, sae_id: str) -> Path:
    """Fetch one SAE of a SAELens release (or ``owner/repo``) into the Hugging Face cache."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, OfflineModeIsEnabled,
                                        RepositoryNotFoundError)
    repo = _release_repo(release)
    try:
        paths = [Path(hf_hub_download(repo, f"{sae_id}/{name}")) for name in (CFG_FILE, WEIGHTS_FILE)]
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError) as err:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
        reason = "the hub is switched off (HF_HUB_OFFLINE)" if offline else "the Hugging Face hub cannot be reached"
        raise ToolkitError(f"cannot load SAE '{sae_id}' of release '{release}': it is not in the local "
                           f"Hugging Face cache and {reason}; connect once to download it, or pass a local "
                           "SAE folder instead") from err
    except RepositoryNotFoundError as err:
        raise ToolkitError(f"Hugging Face repository {repo} (release '{release}') does not exist") from err
    except EntryNotFoundError as err:
        raise ToolkitError(f"release '{release}' has no SAE '{sae_id}'; SAE ids are folder names in {repo}, "
                           "e.g. blocks.8.hook_resid_pre") from err
    try:
        hf_hub_download(repo, f"{sae_id}/{SPARSITY_FILE}")
    except (EntryNotFoundError, OfflineModeIsEnabled, ConnectionError):
        pass  # sparsity is optional
    return paths[0].parent


def load_pretrained(release: str, sae_id: str, device: str | torch.device = "cpu") -> SparseCoder:
    """Load e.g. ``load_pretrained("gpt2-small-res-jb", "blocks.8.hook_resid_pre")``."""
    return load_sae(download_pretrained(release, sae_id), device)
