"""Flow neighbours, circuit membership and attribute detectors for one SAE's dashboard, read
straight from the outputs of ``sae flow``, ``sae circuit`` and ``sae supervised`` (or from the
flat ``{"features": ...}`` file of ``circuits.dashboard.schema``).

- ``sae flow --out flow/`` writes ``flow.csv`` (each outgoing residual feature's best
  predecessor per source) and ``summary.json`` (the hooks of each block). For an SAE on a
  block's outgoing residual hook, a feature's entries are its predecessors; for an SAE on a
  block's incoming residual, attention or MLP hook, they are the residual features it is the
  best predecessor of (its successors).
- ``sae circuit --out circ/`` writes ``circuit.json``: a feature's entries are the circuit
  nodes of this SAE's hook with that feature (one per token position when the circuit is per
  position).
- ``sae supervised --out sup.json`` writes a report: a feature's entries are the attribute
  values it detects best in this SAE's rows (matched by folder name and hook).
- ``sae compare A B --json cmp.json`` writes a comparison: a feature's entry is its best match
  in the other SAE (matched by the SAE folder's path, else by its name when only one side
  has it), whether the two are shared, their activation correlation, and its split family.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from activations.errors import ToolkitError
from circuits.dashboard.schema import load_neighbours

_SOURCE_KEY = {"resid": "resid_in", "attn": "attn", "mlp": "mlp"}


def read_neighbours(paths: str | Path | list | tuple | None, flag: str, hook: str) -> dict[int, list[dict]] | None:
    """Feature -> entries for the SAE on ``hook``, merged over one or more files or folders."""
    return _merged(paths, lambda path: _read_one(path, flag, hook))


def _merged(paths, read_one) -> dict[int, list[dict]] | None:
    """``read_one(path)`` (feature -> entries) merged over one path or several; None for None."""
    if paths is None:
        return None
    merged: dict[int, list[dict]] = {}
    for path in [paths] if isinstance(paths, (str, Path)) else paths:
        for feature, entries in read_one(Path(path)).items():
            merged.setdefault(feature, []).extend(entries)
    return merged


def _read_one(path: Path, flag: str, hook: str) -> dict[int, list[dict]]:
    if path.is_dir():
        if (path / "flow.csv").is_file() and (path / "summary.json").is_file():
            return flow_neighbours(path, hook)
        if (path / "circuit.json").is_file():
            return circuit_members(_json(path / "circuit.json", flag), path.name, hook)
        raise ToolkitError(f"{flag} folder '{path}' holds neither a flow result (flow.csv, summary.json) "
                           "nor a circuit.json; pass the --out folder of `sae flow` or `sae circuit`")
    if path.is_file() and path.suffix == ".json":
        doc = _json(path, flag)
        if isinstance(doc, dict) and "nodes" in doc and "meta" in doc:
            return circuit_members(doc, path.parent.name, hook)
    return load_neighbours(path, flag)


def _json(path: Path, flag: str):
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ToolkitError(f"{flag} file '{path}' is not valid JSON") from err


def flow_neighbours(folder: Path, hook: str) -> dict[int, list[dict]]:
    """Predecessors (SAE on a resid_out hook) or successors (any other hook of a block)."""
    summary = _json(folder / "summary.json", "--flow")
    blocks = summary.get("blocks", {}) if isinstance(summary, dict) else None
    if not isinstance(blocks, dict):
        raise ToolkitError(f"--flow: '{folder / 'summary.json'}' holds no 'blocks' object; rerun `sae flow`")
    try:
        return _flow_rows(folder, blocks, hook)
    except (KeyError, ValueError, TypeError, AttributeError) as err:
        raise ToolkitError(f"--flow: '{folder / 'flow.csv'}' is damaged ({type(err).__name__}: {err}); "
                           "rerun `sae flow`") from None


def _flow_rows(folder: Path, blocks: dict, hook: str) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    with open(folder / "flow.csv", newline="") as f:
        for row in csv.DictReader(f):
            hooks = blocks.get(row["layer"])
            if hooks is None:
                raise ToolkitError(f"--flow: '{folder / 'flow.csv'}' names block {row['layer']}, which "
                                   f"'{folder / 'summary.json'}' lacks; rerun `sae flow`")
            for source, key in _SOURCE_KEY.items():
                entry = {"layer": int(row["layer"]), "class": row["class"], "source": source,
                         "cosine": float(row[f"{source}_cos"])}
                if row["hook"] == hook:
                    out.setdefault(int(row["feature"]), []).append(
                        {"relation": "predecessor", "hook": hooks[key], "feature": int(row[f"{source}_feature"]),
                         **entry})
                elif hooks[key] == hook:
                    out.setdefault(int(row[f"{source}_feature"]), []).append(
                        {"relation": "successor", "hook": row["hook"], "feature": int(row["feature"]), **entry})
    for entries in out.values():
        entries.sort(key=lambda e: -e["cosine"])
    return out


def circuit_members(doc: dict, folder_name: str, hook: str) -> dict[int, list[dict]]:
    """The nodes of a parsed ``circuit.json`` on ``hook``, by feature (error nodes are not
    features); the circuit is named after its dataset, else its folder."""
    listed = doc.get("nodes", [])
    if not isinstance(listed, list) or not all(isinstance(n, dict) and "id" in n for n in listed):
        raise ToolkitError(f"--circuits: the circuit of '{folder_name}' has nodes that are not objects with an 'id'; "
                           "pass a circuit.json written by `sae circuit`")
    meta = doc.get("meta") if isinstance(doc.get("meta"), dict) else {}
    name = Path(str(meta.get("dataset") or folder_name)).stem
    nodes = [n for n in listed if n.get("hook") == hook and n.get("feature") is not None]
    if not all(isinstance(n["feature"], int) for n in nodes):
        raise ToolkitError(f"--circuits: the circuit of '{folder_name}' has a node whose 'feature' is not an integer")
    ranks = {n["id"]: i + 1 for i, n in enumerate(listed)}
    out: dict[int, list[dict]] = {}
    for n in nodes:
        out.setdefault(int(n["feature"]), []).append(
            {"circuit": name, "node": n["id"], "rank": ranks[n["id"]], "of": len(ranks), "position": n.get("position"),
             "attribution": n.get("attribution"), "activation": n.get("activation")})
    return out


def read_detectors(paths: str | Path | list | tuple | None, sae_name: str, hook: str) -> dict[int, list[dict]] | None:
    """Feature -> the attribute values it best detects, from one or more `sae supervised --out`
    reports, for the SAE folder ``sae_name`` on ``hook`` (a report that never judged it is an
    error: it belongs to other SAEs)."""
    return _merged(paths, lambda path: supervised_detectors(path, sae_name, hook))


def supervised_detectors(path: Path, sae_name: str, hook: str) -> dict[int, list[dict]]:
    """One report's best detectors (``interpretability[attribute]["best"]``) at each position."""
    if not path.is_file():
        raise ToolkitError(f"--supervised file '{path}' does not exist; pass the --out file of `sae supervised`")
    doc = _json(path, "--supervised")
    nodes = doc.get("nodes") if isinstance(doc, dict) else None
    if not isinstance(nodes, list) or not all(isinstance(n, dict) and "sae" in n and "interpretability" in n
                                              for n in nodes):
        raise ToolkitError(f"--supervised file '{path}' is not a report of `sae supervised --out` (no nodes with "
                           "'sae' and 'interpretability')")
    task = str(doc.get("settings", {}).get("task", "ioi"))
    mine = [n for n in nodes if n.get("hook") == hook and Path(str(n["sae"])).name == sae_name]
    if not mine:
        raise ToolkitError(f"--supervised file '{path}' judges no SAE '{sae_name}' on {hook}; pass the report of "
                           f"`sae supervised` run on this SAE")
    out: dict[int, list[dict]] = {}
    for node in mine:
        for attribute, found in node["interpretability"].items():
            for value, best in found.get("best", {}).items():
                out.setdefault(int(best["latent"]), []).append(
                    {"task": task, "position": node.get("position"), "attribute": attribute, "value": value,
                     "f1": round(float(best["f1"]), 3), "chance": round(float(found.get("chance", 0.0)), 3)})
    return out


def read_matches(paths: str | Path | list | tuple | None, sae_folder: Path) -> dict[int, list[dict]] | None:
    """Feature -> its best match in the other SAE of one or more `sae compare --json` files on
    the SAE in ``sae_folder`` (a comparison of two other SAEs is an error)."""
    return _merged(paths, lambda path: compare_matches(path, sae_folder))


def _side(doc: dict, path: Path, sae_folder: Path) -> str:
    """"a" or "b": which SAE of the comparison ``sae_folder`` is."""
    names = {side: Path(str(doc.get(side, ""))) for side in ("a", "b")}
    same = [side for side, name in names.items() if name.resolve() == sae_folder.resolve()]
    same = same or [side for side, name in names.items() if name.name == sae_folder.name]
    if len(same) != 1:
        why = "neither" if not same else "both (by folder name; pass the comparison of this folder's path)"
        raise ToolkitError(f"--compare file '{path}' compares {why} of its SAEs with '{sae_folder.name}'; pass the "
                           "--json file of `sae compare` run on this SAE")
    return same[0]


def compare_matches(path: Path, sae_folder: Path) -> dict[int, list[dict]]:
    """One comparison's entry for every feature of the SAE in ``sae_folder``."""
    if not path.is_file():
        raise ToolkitError(f"--compare file '{path}' does not exist; pass the --json file of `sae compare`")
    doc = _json(path, "--compare")
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), dict) for k in ("a_best", "b_best")):
        raise ToolkitError(f"--compare file '{path}' is not a comparison written by `sae compare --json` "
                           "(no 'a_best' and 'b_best')")
    side = _side(doc, path, sae_folder)
    other = "b" if side == "a" else "a"
    best = doc[f"{side}_best"]
    shared = {row[side]: row for row in doc.get("shared", [])}
    family = {}
    for row in doc.get("families", []):
        kids = row["children"]
        if side == "a":
            family[row["a"]] = f"splits into {len(kids)} of the other: {', '.join(map(str, kids))}"
        else:
            family.update({kid: f"one of {len(kids)} children of {row['a']}" for kid in kids})
    out: dict[int, list[dict]] = {}
    for feature, (cosine, match) in enumerate(zip(best["cosine"], best["index"])):
        pair = shared.get(feature)
        out[feature] = [{"other SAE": Path(str(doc.get(other, ""))).name, "best match": int(match),
                         "cosine": round(float(cosine), 3), "shared": pair is not None,
                         "correlation": pair.get("correlation") if pair else None, "family": family.get(feature)}]
    return out
