"""The per-feature JSON schema of a dashboard, and the optional neighbour inputs.

``dash/data/<feature>.json`` (one per feature; ``dash/dashboard.json`` lists them)::

    schema            "sae-toolkit-dashboard-feature/1"
    feature           int, index of the latent in the SAE
    model, hook, sae  str: model name, the SAE's input hook, the SAE folder's name
    n_tokens          int: tokens in the streamed pass
    n_fired           int: tokens with activation > 0;  density = n_fired / n_tokens
    max_activation, mean_activation      float (the mean is over firing tokens)
    histogram         {start, bin_width, counts [int]}: positive activations, bin i covers
                      [start + i·w, start + (i+1)·w)
    top_contexts      [Context], highest activation first
    quantile_contexts [{quantiles [lo, hi], activations [lo, hi], contexts [Context]}]
    logit_effects     {note, positive [Logit], negative [Logit]} or null (decoder not in the
                      residual basis)
    correlated_features [{feature, pearson}]: global Pearson over all n_tokens tokens
    flow_neighbours   [object] or null: the entries given for this feature by --flow
    circuits          [object] or null: the entries given for this feature by --circuits
    attribute_detectors [object] or null: with --supervised, each attribute value this feature
                      detects best in a `sae supervised` report ({task, position, attribute,
                      value, f1, chance}); absent in records written before it existed
    matches           [object] or null: with --compare, this feature's best match in the other
                      SAE of a `sae compare --json` file ({"other SAE", "best match", cosine,
                      shared, correlation, family}); absent in records written before it existed

    Context = {tokens [str], token_ids [int], activations [float], focus int (index of the
               chosen token), sequence_id int, position int (of the focus token)}
    Logit   = {token str, token_id int, value float}

Neighbour inputs (``--flow``, ``--circuits``) are JSON objects mapping feature indices (as
strings) to lists of flat objects, e.g. ``{"features": {"12": [{"hook": "blocks.2.hook_resid_post",
"feature": 40, "similarity": 0.71}]}}``. Values must be strings, numbers, booleans or null; the
pages show every key as a column, escaped like all other text.
"""

from __future__ import annotations

import json
from pathlib import Path

from activations.errors import ToolkitError

SCHEMA = "sae-toolkit-dashboard-feature/1"
INDEX_SCHEMA = "sae-toolkit-dashboard/1"
_REQUIRED = {"schema": str, "feature": int, "model": str, "hook": str, "sae": str, "n_tokens": int,
             "n_fired": int, "density": float, "max_activation": float, "mean_activation": float,
             "histogram": dict, "top_contexts": list, "quantile_contexts": list, "correlated_features": list}
_CONTEXT = {"tokens": list, "token_ids": list, "activations": list, "focus": int}


def validate_feature(record: dict, where: str = "feature record") -> dict:
    """Check ``record`` against the schema; ToolkitError naming the first problem."""
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise ToolkitError(f"{where} is not a {SCHEMA} record")
    for key, kind in _REQUIRED.items():
        value = record.get(key)
        if not isinstance(value, kind) and not (kind is float and isinstance(value, int)):
            raise ToolkitError(f"{where}: field '{key}' must be {kind.__name__}")
    contexts = list(record["top_contexts"])
    for group in record["quantile_contexts"]:
        contexts += group.get("contexts", [])
    for context in contexts:
        if any(not isinstance(context.get(k), kind) for k, kind in _CONTEXT.items()) or not (
                len(context["tokens"]) == len(context["token_ids"]) == len(context["activations"])):
            raise ToolkitError(f"{where}: a context needs tokens, token_ids and activations of equal length")
    return record


def load_neighbours(path: str | Path | None, flag: str) -> dict[int, list[dict]] | None:
    """Read a ``--flow`` / ``--circuits`` file: feature -> list of flat objects (see module doc)."""
    if path is None:
        return None
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise ToolkitError(f"{flag} file '{path}' does not exist") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ToolkitError(f"{flag} file '{path}' is not valid JSON") from err
    features = raw.get("features") if isinstance(raw, dict) else None
    if not isinstance(features, dict):
        raise ToolkitError(f"{flag} file '{path}' needs an object {{\"features\": {{\"<index>\": [...]}}}}")
    out = {}
    for key, entries in features.items():
        if not key.isdigit() or not isinstance(entries, list) or not all(
                isinstance(e, dict) and all(v is None or isinstance(v, (str, int, float, bool)) for v in e.values())
                for e in entries):
            raise ToolkitError(f"{flag} file '{path}': entry '{key}' must map a feature index to a list of "
                               "flat objects")
        out[int(key)] = entries
    return out
