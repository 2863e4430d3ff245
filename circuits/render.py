"""Circuit outputs: ``circuit.json``, a self-contained plotly ``circuit.html``, and
``circuit.svg`` through graphviz when the ``dot`` binary is installed.

circuit.json::

    {"meta": {...},                      model, dataset, method, thresholds, evaluation
     "nodes": [{"id": "blocks.1.hook_mlp_out/17@4", "hook": ..., "feature": 17 | null,
                "kind": "feature" | "error", "position": 4 | null (summed over positions),
                "attribution": float, "activation": float}],
     "edges": [{"source": node id, "target": node id, "weight": float}]}

Attribution is the node's mean indirect effect on the metric; activation its mean clean
activation (an error node's: the mean norm of the SAE error).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from torch import Tensor

from circuits.attribution import Attribution, hook_order
from circuits.edges import Edges
from circuits.flow_export import plotly_text, write_html as write_page, write_together


def node_id(hook: str, feature: int | None, position: int | None) -> str:
    name = "error" if feature is None else str(feature)
    return f"{hook}/{name}" + ("" if position is None else f"@{position}")


def _unflatten(flat: int, d_sae: int, per_position: bool) -> tuple[int | None, int | None]:
    position, index = divmod(flat, d_sae + 1) if per_position else (None, flat)
    return (None if index == d_sae else index), position


def circuit_json(attribution: Attribution, masks: dict[str, Tensor], edges: Edges | None, meta: dict) -> dict:
    """The circuit.json document of the selected nodes and their edges."""
    nodes = []
    ids: dict[tuple[str, int], str] = {}
    for hook, mask in masks.items():
        d_sae = attribution.scores[hook].shape[-1] - 1
        scores, acts = attribution.scores[hook].flatten(), attribution.activations[hook].flatten()
        for flat in mask.flatten().nonzero().squeeze(1).tolist():
            feature, position = _unflatten(flat, d_sae, attribution.per_position)
            ids[(hook, flat)] = node_id(hook, feature, position)
            nodes.append({"id": ids[(hook, flat)], "hook": hook, "feature": feature,
                          "kind": "error" if feature is None else "feature", "position": position,
                          "attribution": float(scores[flat]), "activation": float(acts[flat])})
    nodes.sort(key=lambda n: -abs(n["attribution"]))
    links = []
    for (up, down), weight in (edges.weights.items() if edges else []):
        for (u, d), w in zip(weight.indices().t().tolist(), weight.values().tolist()):
            links.append({"source": ids[(up, u)], "target": ids[(down, d)], "weight": w})
    return {"meta": meta, "nodes": nodes, "edges": links}


def _layout(doc: dict) -> dict[str, tuple[float, float]]:
    """Node id -> (x: submodule column, y: rank within the column by |attribution|)."""
    hooks = sorted({n["hook"] for n in doc["nodes"]}, key=hook_order)
    column = {h: i for i, h in enumerate(hooks)}
    seen: dict[str, int] = {}
    places = {}
    for n in doc["nodes"]:  # already sorted by |attribution|
        rank = seen[n["hook"]] = seen.get(n["hook"], -1) + 1
        places[n["id"]] = (float(column[n["hook"]]), float(rank))
    return places


DRAWN_EDGES = 150  # a figure of more is a hairball; circuit.json keeps them all


def strongest_edges(doc: dict, limit: int = DRAWN_EDGES) -> list[dict]:
    """The ``limit`` edges of largest |weight| (all when there are fewer), strongest first."""
    return sorted(doc["edges"], key=lambda e: -abs(e["weight"]))[:max(limit, 0)]


def graph_figure(doc: dict, max_edges: int = DRAWN_EDGES):
    """The circuit as a graph: one column per hook, nodes ranked by |attribution|, and the
    ``max_edges`` strongest edges, drawn by weight (the title says when more exist)."""
    import plotly.graph_objects as go
    places = _layout(doc)
    fig = go.Figure()
    drawn = strongest_edges(doc, max_edges)
    top = max((abs(e["weight"]) for e in drawn), default=1.0) or 1.0
    for e in drawn:
        (x0, y0), (x1, y1) = places[e["source"]], places[e["target"]]
        fig.add_trace(go.Scatter(x=[x0, x1], y=[y0, y1], mode="lines", hoverinfo="text",
                                 text=plotly_text(f"{e['source']} → {e['target']}: {e['weight']:.3g}"),
                                 showlegend=False,
                                 line=dict(width=0.5 + 4 * abs(e["weight"]) / top,
                                           color="royalblue" if e["weight"] > 0 else "crimson")))
    nodes = doc["nodes"]
    fig.add_trace(go.Scatter(
        x=[places[n["id"]][0] for n in nodes], y=[places[n["id"]][1] for n in nodes], mode="markers",
        marker=dict(size=12, color=[n["attribution"] for n in nodes], colorscale="RdBu", cmid=0, showscale=True,
                    symbol=["square" if n["kind"] == "error" else "circle" for n in nodes]),
        text=[f"{plotly_text(n['id'])}<br>attribution {n['attribution']:.3g}<br>activation {n['activation']:.3g}"
              for n in nodes],
        hoverinfo="text", showlegend=False))
    hooks = sorted({n["hook"] for n in nodes}, key=hook_order)
    # plotly reads a subset of HTML in text (links included): everything from the data is escaped
    title = f"Sparse feature circuit: {plotly_text(str(doc['meta'].get('dataset', '')))}"
    if len(drawn) < len(doc["edges"]):
        title += f" ({len(drawn)} strongest of {len(doc['edges'])} edges drawn; all in circuit.json)"
    fig.update_layout(title=title,
                      template="plotly_white",
                      xaxis=dict(tickvals=list(range(len(hooks))), ticktext=[plotly_text(h) for h in hooks],
                                 tickangle=-45),
                      yaxis=dict(title="rank by |attribution|", autorange="reversed"))
    return fig


def curve_figure(doc: dict):
    """Held-out faithfulness and completeness of the top-k circuit at each size of the sweep,
    with this circuit marked (and, when it was refined, where the refinement started); None
    without a sweep."""
    import plotly.graph_objects as go
    meta = doc["meta"]
    curve = meta.get("faithfulness_curve") or []
    if not curve:
        return None
    fig = go.Figure()
    sizes = [point["size"] for point in curve]
    for key in ("faithfulness", "completeness"):
        fig.add_trace(go.Scatter(x=sizes, y=[point[key] for point in curve], mode="lines+markers",
                                 name=f"top-k by attribution: {key}"))
    size, refinement = len(doc["nodes"]), meta.get("refinement")
    if refinement:
        fig.add_trace(go.Scatter(x=[size], y=[refinement["heldout_faithfulness_before"]], mode="markers",
                                 marker=dict(size=11, symbol="circle-open"), name="this circuit before refinement"))
    if meta.get("evaluation"):
        fig.add_trace(go.Scatter(x=[size], y=[meta["evaluation"]["faithfulness"]], mode="markers",
                                 marker=dict(size=13, symbol="star"),
                                 name=f"this circuit{' (refined)' if refinement else ''}: faithfulness"))
    fig.update_layout(title=f"Held-out faithfulness by circuit size ({meta.get('n_evaluate', '?')} examples)",
                      template="plotly_white", xaxis=dict(title="nodes", type="log"),
                      yaxis=dict(title="(m(C) − m(∅)) / (m(M) − m(∅))"))
    return fig


def write_html(doc: dict, path: Path, max_edges: int = DRAWN_EDGES) -> Path:
    """A self-contained page (plotly.js embedded): the circuit's graph (its ``max_edges``
    strongest edges) and, with a sweep, its faithfulness curve."""
    figures = [fig for fig in (graph_figure(doc, max_edges), curve_figure(doc)) if fig is not None]
    write_page(path, figures, f"Sparse feature circuit: {doc['meta'].get('dataset', '')}")
    return path


def to_dot(doc: dict, max_edges: int = DRAWN_EDGES) -> str:
    """Graphviz source: nodes coloured by the sign of their attribution, and the ``max_edges``
    strongest edges."""
    lines = ["digraph circuit {", "  rankdir=BT; node [shape=box, style=filled, fontsize=10];"]
    for n in doc["nodes"]:
        colour = "#9ecae1" if n["attribution"] > 0 else "#fc9272"
        lines.append(f'  "{n["id"]}" [label="{n["id"]}\\n{n["attribution"]:.3g}", fillcolor="{colour}"];')
    for e in strongest_edges(doc, max_edges):
        lines.append(f'  "{e["source"]}" -> "{e["target"]}" [penwidth={0.5 + min(abs(e["weight"]), 5):.2f}];')
    return "\n".join(lines + ["}"]) + "\n"


CIRCUIT_OUTPUTS = ("circuit.json", "circuit.html", "circuit.svg")


def write_outputs(doc: dict, out: str | Path, max_edges: int = DRAWN_EDGES) -> list[Path]:
    """circuit.json (every edge), circuit.html, and circuit.svg when graphviz's ``dot`` is on
    PATH (both drawing the ``max_edges`` strongest edges), written together
    (``write_together``: all or none)."""
    writers = {"circuit.json": lambda path: path.write_text(json.dumps(doc, indent=1) + "\n"),
               "circuit.html": lambda path: write_html(doc, path, max_edges)}
    dot = shutil.which("dot")
    if dot:
        source = to_dot(doc, max_edges).encode()
        writers["circuit.svg"] = lambda path: path.write_bytes(
            subprocess.run([dot, "-Tsvg"], input=source, capture_output=True, check=True).stdout)
    return list(write_together(Path(out), writers).values())
