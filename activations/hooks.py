"""TransformerLens hook-point names: parsing, validation, widths and bases.

Every hook in the toolkit is named as TransformerLens names it, for example
``blocks.3.hook_resid_post`` or ``blocks.3.ln2.hook_normalized``. A hook's *basis* says
which vector space its activations live in; dictionaries from different bases are never
compared (``hook_z`` in GPT-2 also has 768 dimensions, but it is not the residual stream).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from activations.errors import ToolkitError

# site -> (basis, width key): the width key names the model dimension of the activation.
_BLOCK_SITES: dict[str, tuple[str, str]] = {
    "hook_resid_pre": ("resid", "d_model"),
    "hook_resid_mid": ("resid", "d_model"),
    "hook_resid_post": ("resid", "d_model"),
    "hook_attn_out": ("resid", "d_model"),
    "hook_mlp_out": ("resid", "d_model"),
    "ln1.hook_normalized": ("ln_normalized", "d_model"),
    "ln2.hook_normalized": ("ln_normalized", "d_model"),
    "attn.hook_z": ("attn_z", "d_attn"),
    "mlp.hook_pre": ("mlp_neurons", "d_mlp"),
    "mlp.hook_post": ("mlp_neurons", "d_mlp"),
}
_GLOBAL_SITES: dict[str, tuple[str, str]] = {
    "hook_embed": ("resid", "d_model"),
    "hook_pos_embed": ("resid", "d_model"),
}
_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")


@dataclass(frozen=True)
class HookPoint:
    """One parsed hook name. ``layer`` is None for the embedding hooks."""

    name: str
    layer: int | None
    site: str
    basis: str
    width_key: str

    @property
    def depth(self) -> int:
        """Index of the last transformer block that must run to produce this hook (-1: none)."""
        return -1 if self.layer is None else self.layer


def valid_hook_names(n_layers: int) -> list[str]:
    """Every hook name this toolkit can harvest from a model with ``n_layers`` blocks."""
    names = list(_GLOBAL_SITES)
    for layer in range(n_layers):
        names += [f"blocks.{layer}.{site}" for site in _BLOCK_SITES]
    return names


def parse_hook(name: str, n_layers: int) -> HookPoint:
    """Parse and validate a hook name; the error lists the valid names."""
    name = name.strip()
    if name in _GLOBAL_SITES:
        basis, width_key = _GLOBAL_SITES[name]
        return HookPoint(name, None, name, basis, width_key)
    match = _BLOCK_RE.match(name)
    if match and match.group(2) in _BLOCK_SITES and int(match.group(1)) < n_layers:
        basis, width_key = _BLOCK_SITES[match.group(2)]
        return HookPoint(name, int(match.group(1)), match.group(2), basis, width_key)
    sites = ", ".join(list(_GLOBAL_SITES) + [f"blocks.{{0..{n_layers - 1}}}.{s}" for s in _BLOCK_SITES])
    raise ToolkitError(f"unknown hook name '{name}'; valid hook names are: {sites}")


def parse_hooks(names: str | list[str], n_layers: int) -> list[HookPoint]:
    """Parse a comma-separated string or a list of names, refusing duplicates."""
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    if not names:
        raise ToolkitError("no hook names given; pass at least one, e.g. blocks.1.hook_resid_post")
    points = [parse_hook(n, n_layers) for n in names]
    seen = [p.name for p in points]
    if len(set(seen)) != len(seen):
        raise ToolkitError(f"hook names repeat in {','.join(seen)}; give each hook once")
    return points


def same_basis(a: str, b: str) -> bool:
    """True when two hooks' activations live in the same vector space (any layer)."""
    return parse_hook(a, 10**6).basis == parse_hook(b, 10**6).basis
