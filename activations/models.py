"""Load a language model by name or path, and read or patch it at TransformerLens hook points.

Every TransformerLens call in the toolkit lives in this module. ``load_model`` accepts the
embedded model (``"tiny"``), TransformerLens / HuggingFace names (``"gpt2"``,
``"gpt2-medium"``, ...) and local HuggingFace checkpoint folders, and loads them all through
the same path: ``AutoModelForCausalLM.from_pretrained`` + ``AutoTokenizer``, with a
``TransformerBridge`` booted lazily on top for the TransformerLens view of the model.

Reading activations (``capture``) of GPT-2-family models hooks the HuggingFace modules
directly, under TransformerLens names, and stops the forward pass right after the deepest
requested hook; ``tests/activations/test_models.py`` proves the values identical to the
bridge's ``run_with_cache``. Other architectures are read through the bridge.
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from activations.errors import ToolkitError
from activations.hooks import HookPoint, parse_hook, parse_hooks

TINY = "tiny"
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
          "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
_DEVICE = re.compile(r"cpu|cuda(:\d+)?|mps")
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")

# Order of the hook sites inside one GPT-2 block, as the forward pass meets them.
_SITE_ORDER = ["hook_resid_pre", "ln1.hook_normalized", "attn.hook_z", "hook_attn_out",
               "hook_resid_mid", "ln2.hook_normalized", "mlp.hook_pre", "mlp.hook_post",
               "hook_mlp_out", "hook_resid_post"]


class _StopForward(Exception):
    """Raised by the last capture hook to end the forward pass early."""


@dataclass(frozen=True)
class ModelDims:
    """Sizes of a transformer, in TransformerLens terms."""

    n_layers: int
    d_model: int
    n_heads: int
    d_head: int
    d_mlp: int
    n_ctx: int
    d_vocab: int

    def width(self, point: HookPoint) -> int:
        return {"d_model": self.d_model, "d_attn": self.n_heads * self.d_head,
                "d_mlp": self.d_mlp}[point.width_key]


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype or torch.float32
    if dtype not in DTYPES:
        raise ToolkitError(f"unknown dtype '{dtype}'; use one of float32, float16, bfloat16")
    return DTYPES[dtype]


def native_on_cpu(dtype: torch.dtype) -> bool:
    """Whether this CPU multiplies ``dtype`` matrices natively. float32 always; bfloat16 and
    float16 through oneDNN, which needs AVX-512 or AMX (float16: AVX512-FP16 or AMX-FP16).
    Without it, as on AVX2-only CPUs, ATen falls back to a scalar GEMM: a 512 x 768 by 768 x 768
    product took 0.51 s in either half precision against 0.0085 s in float32 on an AMD EPYC
    (``benchmarks/bench_cpu_precision.py``)."""
    check = {torch.bfloat16: "_is_mkldnn_bf16_supported", torch.float16: "_is_mkldnn_fp16_supported"}.get(dtype)
    if check is None:
        return True
    try:
        return bool(getattr(torch.ops.mkldnn, check)())
    except (AttributeError, RuntimeError):
        return False


def warn_if_slow_on_cpu(dtype: torch.dtype, device: torch.device) -> None:
    """One line on stderr when a half-precision forward pass would run on a CPU's scalar GEMM."""
    if device.type == "cpu" and not native_on_cpu(dtype):
        print(f"warning: this CPU has no native {dtype} matrix multiply (oneDNN needs AVX-512 or AMX), so a "
              f"{dtype} forward pass runs tens of times slower than float32; half precision is for GPUs "
              "(pass float32, the default)", file=sys.stderr, flush=True)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA when present, else the CPU; anything but auto, cpu, cuda, cuda:N, mps is refused."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not _DEVICE.fullmatch(str(device)):
        raise ToolkitError(f"unknown device '{device}'; use {DEVICE_CHOICES}")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ToolkitError(f"device '{device}' was asked for but no CUDA GPU is visible; use --device cpu")
    if str(device) == "mps" and not torch.backends.mps.is_available():
        raise ToolkitError("device 'mps' was asked for but Apple's MPS backend is not available; use --device cpu")
    return torch.device(device)


def _checkpoint_id(name_or_path: str) -> str:
    """Map a model name or folder to what ``from_pretrained`` takes."""
    if name_or_path == TINY:
        from activations.tiny import CHECKPOINT_DIR
        return str(CHECKPOINT_DIR)
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser().resolve())
    if Path(name_or_path).expanduser().exists():
        raise ToolkitError(f"model '{name_or_path}' is a file; pass a HuggingFace checkpoint folder, "
                           "'tiny', or a model name such as gpt2")
    if name_or_path.startswith((".", "/", "~")):
        raise ToolkitError(f"model folder '{name_or_path}' does not exist; pass an existing "
                           "HuggingFace checkpoint folder, 'tiny', or a model name such as gpt2")
    from transformer_lens.supported_models import get_official_model_name
    try:
        return get_official_model_name(name_or_path)
    except ValueError:
        return name_or_path  # any HuggingFace repo id; from_pretrained reports what is wrong


def same_model(a: str, b: str) -> bool:
    """Whether two model names or folders name one model: "gpt2-small" and "gpt2" do (the
    TransformerLens alias), and so do "tiny" and the embedded checkpoint's folder."""
    if a == b:
        return True
    try:
        return _checkpoint_id(a) == _checkpoint_id(b)
    except ToolkitError:
        return False


def _from_pretrained(checkpoint: str, dtype: torch.dtype):
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    local = Path(checkpoint).is_dir()
    if local:
        _check_folder(Path(checkpoint))
    try:
        tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        hf_model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=dtype)
    except (OSError, ValueError, TypeError, SafetensorError) as err:
        if local:
            detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
            detail = f"unreadable .safetensors weights ({detail})" if isinstance(err, SafetensorError) else detail
            raise ToolkitError(f"cannot load model folder '{checkpoint}': {detail}; its files are damaged or "
                               "incomplete, save the checkpoint again with save_pretrained") from err
        if not isinstance(err, OSError):
            raise
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
        reason = "the hub is switched off (HF_HUB_OFFLINE)" if offline else "the hub could not be reached"
        raise ToolkitError(
            f"cannot load model '{checkpoint}': its weights are not in the local HuggingFace cache "
            f"and {reason}; download them once on a connected machine with "
            f"`hf download {checkpoint}` (or pass a local checkpoint folder)") from err
    return hf_model.eval(), tokenizer


def _check_folder(folder: Path) -> None:
    """Refuse a folder that is not a HuggingFace checkpoint: no or broken config.json, no weights."""
    config = folder / "config.json"
    if not config.is_file():
        raise ToolkitError(f"model folder '{folder}' has no config.json, so it is not a HuggingFace checkpoint; "
                           "pass a folder written by save_pretrained, 'tiny', or a model name such as gpt2")
    try:
        model_type = json.loads(config.read_bytes()).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        model_type = None
    if not isinstance(model_type, str):
        raise ToolkitError(f"'{config}' is not a JSON object with a 'model_type'; the checkpoint is damaged, "
                           "save it again with save_pretrained")
    if not any((folder / name).is_file() for name in _WEIGHT_FILES):
        raise ToolkitError(f"model folder '{folder}' holds no weights ({', '.join(_WEIGHT_FILES)}); "
                           "save the checkpoint again with save_pretrained")


def load_model(name_or_path: str, device: str | torch.device = "auto",
               dtype: str | torch.dtype | None = None) -> LoadedModel:
    """Load ``"tiny"``, a model name (``"gpt2"``) or a local HuggingFace folder, in eval mode."""
    checkpoint = _checkpoint_id(str(name_or_path))
    torch_dtype, torch_device = resolve_dtype(dtype), resolve_device(device)
    warn_if_slow_on_cpu(torch_dtype, torch_device)
    hf_model, tokenizer = _from_pretrained(checkpoint, torch_dtype)
    return LoadedModel(str(name_or_path), checkpoint, hf_model.to(torch_device), tokenizer)


class LoadedModel:
    """A causal language model with TransformerLens-named read and patch access.

    Attributes:
        name: what the user asked for (``"tiny"``, ``"gpt2"``, a folder).
        checkpoint: the resolved ``from_pretrained`` id or absolute folder.
        hf_model: the HuggingFace model (eval mode; never mutated by the bridge).
        tokenizer: its HuggingFace tokenizer.
        dims: ``ModelDims``.
    """

    def __init__(self, name: str, checkpoint: str, hf_model, tokenizer):
        self.name, self.checkpoint, self.hf_model, self.tokenizer = name, checkpoint, hf_model, tokenizer
        self._bridge = None
        cfg = hf_model.config
        self.is_gpt2 = cfg.model_type == "gpt2"
        if self.is_gpt2:
            self.dims = ModelDims(cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_embd // cfg.n_head,
                                  cfg.n_inner or 4 * cfg.n_embd, cfg.n_positions, cfg.vocab_size)
        else:
            c = self.bridge.cfg
            self.dims = ModelDims(c.n_layers, c.d_model, c.n_heads, c.d_head, c.d_mlp, c.n_ctx, c.d_vocab)

    @property
    def device(self) -> torch.device:
        return next(self.hf_model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.hf_model.parameters()).dtype

    @property
    def bos_token_id(self) -> int:
        tok = self.tokenizer
        return tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id

    @property
    def bridge(self):
        """The TransformerLens ``TransformerBridge`` over a private copy of the HF model."""
        if self._bridge is None:
            from transformer_lens.model_bridge import TransformerBridge
            wrapped = copy.deepcopy(self.hf_model) if self.is_gpt2 else self.hf_model
            self._bridge = TransformerBridge.boot_transformers(
                self.checkpoint, hf_model=wrapped, tokenizer=self.tokenizer,
                device=self.device, dtype=self.dtype)
        return self._bridge

    def hook_point(self, hook: str) -> HookPoint:
        return parse_hook(hook, self.dims.n_layers)

    def hook_width(self, hook: str) -> int:
        """Activation width d of a hook (``attn.hook_z`` is flattened to n_heads·d_head)."""
        return self.dims.width(self.hook_point(hook))

    @torch.no_grad()
    def capture(self, tokens: torch.Tensor, hooks: list[str]) -> dict[str, torch.Tensor]:
        """Run ``tokens`` [B, T] and return hook -> activations [B, T, d], model dtype.

        The forward pass stops right after the deepest requested hook.
        """
        points = parse_hooks(hooks, self.dims.n_layers)
        tokens = self._checked(tokens).to(self.device)
        if not self.is_gpt2:
            return self._capture_with_bridge(tokens, points)
        captured: dict[str, torch.Tensor] = {}
        last = max(points, key=_execution_rank)
        handles = []
        for point in points:
            def record(act, point=point):
                captured[point.name] = act.expand(tokens.shape[0], -1, -1) if act.shape[0] == 1 else act
                if point is last:
                    raise _StopForward
            handles.append(_gpt2_register(self.hf_model, point, record))
        try:
            self.hf_model(tokens, use_cache=False)
        except _StopForward:
            pass
        finally:
            for handle in handles:
                handle.remove()
        return captured

    @torch.no_grad()
    def forward_until(self, tokens: torch.Tensor, hook: str) -> None:
        """A bare forward pass that stops after ``hook`` and keeps nothing (the harvest baseline)."""
        point = self.hook_point(hook)
        tokens = self._checked(tokens)
        if not self.is_gpt2:
            self.bridge(tokens.to(self.device), stop_at_layer=(point.layer or 0) + 1)
            return
        handle = _gpt2_register(self.hf_model, point, _raise_stop)
        try:
            self.hf_model(tokens.to(self.device), use_cache=False)
        except _StopForward:
            pass
        finally:
            handle.remove()

    def forward(self, tokens: torch.Tensor,
                patches: dict[str, Callable[[torch.Tensor], torch.Tensor]] | None = None) -> torch.Tensor:
        """Logits [B, T, vocab] with each hook's activations [B, T, d] replaced by ``patch(act)``.

        Gradients flow (call under ``torch.no_grad()`` when not needed). ``attn.hook_z`` is
        passed to the patch flattened to [B, T, n_heads·d_head], as everywhere else.
        """
        tokens = self._checked(tokens).to(self.device)
        if not patches:
            return self.hf_model(tokens, use_cache=False).logits
        fwd_hooks = [(self.hook_point(h).name, _bridge_patch(self.hook_point(h), fn))
                     for h, fn in patches.items()]
        return self.bridge.run_with_hooks(tokens, fwd_hooks=fwd_hooks)

    def to_tokens(self, texts: list[str], prepend_bos: bool = True) -> torch.Tensor:
        """Tokenise prompts of equal token length into [B, T] (left-aligned, BOS first)."""
        if isinstance(texts, str) or not texts:
            raise ToolkitError(f"to_tokens takes a non-empty list of prompts, got {texts!r}; wrap one prompt in a list")
        rows = [([self.bos_token_id] if prepend_bos else []) + self.tokenizer.encode(t) for t in texts]
        if len({len(r) for r in rows}) != 1:
            raise ToolkitError("prompts tokenise to different lengths; pad them or pass them one at a time")
        return torch.tensor(rows, dtype=torch.long)

    def _checked(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens`` if it is an integer tensor [batch, positions] of this model's ids and context."""
        d = self.dims
        shape = list(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        if not isinstance(tokens, torch.Tensor) or tokens.dtype not in (torch.long, torch.int) or tokens.dim() != 2:
            raise ToolkitError(f"tokens must be an integer tensor [batch, positions], got {shape} "
                               f"({getattr(tokens, 'dtype', '')}); make them with model.to_tokens")
        if tokens.shape[1] > d.n_ctx or (tokens.numel() and not 0 <= int(tokens.min()) <= int(tokens.max()) < d.d_vocab):
            raise ToolkitError(f"tokens must be ids in 0..{d.d_vocab - 1} over at most {d.n_ctx} positions for model "
                               f"'{self.name}', got shape {shape}; make them with model.to_tokens")
        return tokens

    def _capture_with_bridge(self, tokens, points: list[HookPoint]) -> dict[str, torch.Tensor]:
        names = [p.name for p in points]
        stop = max(p.depth for p in points) + 1
        _, cache = self.bridge.run_with_cache(tokens, names_filter=names, stop_at_layer=max(stop, 1))
        return {p.name: _flatten_heads(cache[p.name]) for p in points}


def _execution_rank(point: HookPoint) -> tuple[int, int]:
    if point.layer is None:
        return (-1, 0)
    return (point.layer, _SITE_ORDER.index(point.site))


def _raise_stop(_act):
    raise _StopForward


def _flatten_heads(act: torch.Tensor) -> torch.Tensor:
    return act.flatten(-2) if act.dim() == 4 else act


def _bridge_patch(point: HookPoint, fn):
    """Adapt ``fn`` on [B, T, d] to a TransformerLens hook (which sees [B, T, H, dh] for hook_z)."""
    def hook(act, hook=None):
        if act.dim() == 4:
            return fn(act.flatten(-2)).view_as(act)
        return fn(act)
    return hook


def _gpt2_register(hf_model, point: HookPoint, callback):
    """Attach ``callback(act [B, T, d])`` to the HuggingFace GPT-2 module behind ``point``."""
    transformer = hf_model.transformer
    if point.layer is None:
        module = transformer.wte if point.site == "hook_embed" else transformer.wpe
        return module.register_forward_hook(lambda m, args, out: callback(out))
    block = transformer.h[point.layer]
    module, side = {
        "hook_resid_pre": (block, "in"), "hook_resid_mid": (block.ln_2, "in"),
        "hook_resid_post": (block, "out"), "hook_attn_out": (block.attn, "out"),
        "hook_mlp_out": (block.mlp, "out"), "ln1.hook_normalized": (block.ln_1, "out"),
        "ln2.hook_normalized": (block.ln_2, "out"), "attn.hook_z": (block.attn.c_proj, "in"),
        "mlp.hook_pre": (block.mlp.c_fc, "out"), "mlp.hook_post": (block.mlp.c_proj, "in"),
    }[point.site]
    if side == "in":
        def pre_hook(m, args, kwargs):
            callback(args[0] if args else kwargs["hidden_states"])
        return module.register_forward_pre_hook(pre_hook, with_kwargs=True)
    return module.register_forward_hook(lambda m, args, out: callback(out[0] if isinstance(out, tuple) else out))
