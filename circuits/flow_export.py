"""Write feature flow to disk: the classification table (CSV), flow graphs (JSON) and one
self-contained interactive HTML page (plotly.js embedded once; no network needed to view)."""

from __future__ import annotations

import csv
import json
import os
from html import escape
from pathlib import Path
from typing import Callable

import plotly.graph_objects as go

from activations.errors import ToolkitError

from circuits.flow import CLASSES, SOURCES, FlowLayer, LayerFlow
from circuits.flow_graph import FlowGraph

def plotly_text(text: str) -> str:
    """Text from the data, safe in plotly's HTML subset (which knows links): < > & escaped, and
    quotes left alone because plotly would show their entities literally."""
    return escape(text, quote=False)


_KIND_COLOURS = {"resid": "#4c78a8", "attn": "#f58518", "mlp": "#54a24b"}


def write_table(path: Path, stack: list[FlowLayer], flows: list[LayerFlow]) -> None:
    """One row per outgoing residual feature: class, then best predecessor and cosine per source."""
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["layer", "hook", "feature", "class"] + [f"{s}_{c}" for s in SOURCES for c in ("feature", "cos")])
        for block, flow in zip(stack, flows):
            for j in range(flow.classes.shape[0]):
                pairs = [v for k in range(3) for v in (int(flow.index[j, k]), f"{float(flow.similarity[j, k]):.4f}")]
                out.writerow([block.layer, block.resid_out.hook, j, CLASSES[int(flow.classes[j])], *pairs])


def summary(stack: list[FlowLayer], flows: list[LayerFlow]) -> dict:
    """Per block: hooks, thresholds and class counts."""
    return {str(b.layer): {"resid_in": b.resid_in.hook, "attn": b.attn.hook, "mlp": b.mlp.hook,
                           "resid_out": b.resid_out.hook, "thresholds": vars(flow.thresholds),
                           "counts": flow.counts()} for b, flow in zip(stack, flows)}


def class_figure(flows: list[LayerFlow]) -> go.Figure:
    """Stacked bars: share of each class per block."""
    fig = go.Figure()
    for name in CLASSES:
        shares = [flow.counts()[name] / flow.classes.shape[0] for flow in flows]
        fig.add_bar(name=name, x=[f"block {flow.layer}" for flow in flows], y=shares)
    fig.update_layout(barmode="stack", title="Where residual features come from", yaxis_title="share of features")
    return fig


def graph_figure(graph: FlowGraph) -> go.Figure:
    """A layered graph: x is depth in the model, y the node's dictionary (resid/attn/mlp)."""
    rows = {"resid": 0.0, "attn": 1.0, "mlp": -1.0}
    kind_of = {n.id: "resid" for n in graph.nodes.values()}
    kind_of.update({e.source: e.kind for e in graph.edges})
    y = {nid: rows[kind] for nid, kind in kind_of.items()}
    fig = go.Figure()
    for e in graph.edges:
        a, b = graph.nodes[e.source], graph.nodes[e.target]
        fig.add_scatter(x=[a.x, b.x], y=[y[e.source], y[e.target]], mode="lines", showlegend=False,
                        line={"color": _KIND_COLOURS[e.kind], "width": 1 + 6 * max(e.similarity, 0)},
                        hoverinfo="text", text=plotly_text(f"{e.source} → {e.target}: cos {e.similarity:.3f}"))
    for kind, colour in _KIND_COLOURS.items():
        nodes = [n for n in graph.nodes.values() if kind_of[n.id] == kind]
        fig.add_scatter(x=[n.x for n in nodes], y=[y[n.id] for n in nodes], mode="markers+text", name=kind,
                        marker={"size": 14, "color": colour}, text=[str(n.feature) for n in nodes],
                        textposition="top center", hovertext=[plotly_text(n.id) for n in nodes], hoverinfo="text")
    fig.update_layout(title=f"Flow of {plotly_text(graph.seed.id)}",
                      xaxis={"title": "depth (residual boundary)", "dtick": 1},
                      yaxis={"tickvals": [-1, 0, 1], "ticktext": ["mlp", "resid", "attn"], "range": [-1.6, 1.6]})
    return fig


def write_html(path: Path, figures: list[go.Figure], title: str = "Feature flow") -> None:
    """All figures on one page; plotly.js is embedded in the first and reused by the rest.
    Text from the data is escaped (plotly reads a subset of HTML, links included)."""
    title = escape(title)
    parts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figures)]
    path.write_text(f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n"
                    f"<body>\n<h1>{title}</h1>\n" + "\n".join(parts) + "\n</body></html>\n")


def check_out(out: str | Path, names: tuple[str, ...], overwrite: bool, verb: str) -> None:
    """Refuse, before any work, an ``--out`` that is a file, or that holds any of ``names`` (a
    verb's outputs) unless ``overwrite``; other files in the folder are never touched."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ToolkitError(f"--out '{out}' is a file; give a folder for {verb}'s outputs")
    held = [name for name in names if (out / name).exists()]
    if held and not overwrite:
        raise ToolkitError(f"'{out}' already holds {', '.join(held)} from an earlier {verb}; pass --overwrite "
                           "to replace them, or choose another --out")


def write_together(out: Path, writers: dict[str, Callable[[Path], None]]) -> dict[str, Path]:
    """Each ``writers[name](path)`` writes a temporary file in ``out``; only when all have
    succeeded do they replace ``out/name``, so a failure leaves the earlier outputs, if any,
    whole, and no partial file. Returns name -> final path."""
    out.mkdir(parents=True, exist_ok=True)
    temps = {name: out / f".{name}.partial" for name in writers}
    try:
        for name, write in writers.items():
            write(temps[name])
        for name, temp in temps.items():
            os.replace(temp, out / name)
    finally:
        for temp in temps.values():
            temp.unlink(missing_ok=True)
    return {name: out / name for name in writers}


FLOW_OUTPUTS = ("flow.csv", "summary.json", "graphs.json", "flow.html")


def write_flow(out: Path, stack: list[FlowLayer], flows: list[LayerFlow], graphs: list[FlowGraph],
               agreement: dict | None = None) -> dict[str, Path]:
    """Write flow.csv, summary.json, graphs.json and flow.html under ``out``; return the paths."""
    info = {"blocks": summary(stack, flows), **({"activation_check": agreement} if agreement else {})}
    return write_together(out, {
        "flow.csv": lambda path: write_table(path, stack, flows),
        "summary.json": lambda path: path.write_text(json.dumps(info, indent=2) + "\n"),
        "graphs.json": lambda path: path.write_text(json.dumps([g.to_json() for g in graphs], indent=2) + "\n"),
        "flow.html": lambda path: write_html(path, [class_figure(flows)] + [graph_figure(g) for g in graphs])})
