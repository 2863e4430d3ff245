"""The flow and circuit pages in real headless Chromium: they load without errors, every
plotly figure renders, and text from the data (a dataset named like an attack) stays text.

Needs Debian's ``chromium`` (apt-get install -y chromium); skipped with that reason otherwise.
"""

from __future__ import annotations

import pytest
import torch

from tests.circuits.browser import CHROMIUM, INSTALL_HINT, load_page
from tests.circuits.test_dashboard_browser import ATTACKS
from tests.circuits.test_flow import _chain

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=INSTALL_HINT)

COUNT_PLOTS = """window.__result = {plots: document.querySelectorAll('.js-plotly-plot .main-svg').length > 0 ?
  document.querySelectorAll('.js-plotly-plot').length : 0,
  titles: Array.prototype.map.call(document.querySelectorAll('.gtitle'), function (t) { return t.textContent; })};"""


def test_flow_page_renders_every_figure(tmp_path):
    from sae.cli import main
    out = tmp_path / "flow"
    assert main(["flow", *map(str, _chain(tmp_path)), "--out", str(out), "--seeds", "2", "--chain-threshold", "0.5"]) == 0
    report, _ = load_page(out / "flow.html", COUNT_PLOTS)
    assert report["errors"] == [] and report["alerts"] == 0
    assert report["result"]["plots"] == 3  # the class shares and two seed graphs
    assert report["result"]["titles"][0] == "Where residual features come from"


def test_circuit_page_renders_and_keeps_data_as_text(tmp_path):
    from circuits.render import write_html
    hook = "blocks.0.hook_mlp_out"
    nodes = [{"id": f"{hook}/{i}", "hook": hook, "feature": i, "kind": "feature", "position": None,
              "attribution": 1.0 - i / 10, "activation": 2.0} for i in range(3)]
    dataset = " ".join(ATTACKS) + ' <a href="javascript:window.__pwned=\'link\'">click</a>'
    doc = {"meta": {"dataset": dataset}, "nodes": nodes,
           "edges": [{"source": nodes[0]["id"], "target": nodes[1]["id"], "weight": 0.5}]}
    page = write_html(doc, tmp_path / "circuit.html")
    report, _ = load_page(page, COUNT_PLOTS + """
      var links = document.querySelectorAll('.gtitle a');
      for (var i = 0; i < links.length; i++) { links[i].dispatchEvent(new MouseEvent('click')); }
      window.__result.links = links.length;""")
    assert report["errors"] == [] and report["alerts"] == 0 and report["pwned"] is None
    assert report["result"]["plots"] == 1 and report["result"]["links"] == 0
    assert report["result"]["titles"] == [f"Sparse feature circuit: {dataset}"]  # shown as written



def test_circuit_graph_draws_only_the_strongest_edges(tmp_path):
    """200 edges: the page draws the 20 of largest |weight| and says so in its title; the DOT
    source (for the SVG) holds the same 20."""
    from circuits.render import to_dot, write_html
    hooks = ["blocks.0.hook_mlp_out", "blocks.0.hook_resid_post"]
    nodes = [{"id": f"{h}/{i}", "hook": h, "feature": i, "kind": "feature", "position": None,
              "attribution": 1.0 - i / 40, "activation": 1.0} for h in hooks for i in range(20)]
    weights = torch.randn(200, generator=torch.Generator().manual_seed(0)).tolist()
    edges = [{"source": f"{hooks[0]}/{k % 20}", "target": f"{hooks[1]}/{k // 10}", "weight": w}
             for k, w in enumerate(weights)]
    doc = {"meta": {"dataset": "toy"}, "nodes": nodes, "edges": edges}
    report, _ = load_page(write_html(doc, tmp_path / "circuit.html", max_edges=20), COUNT_PLOTS + """
      var graph = document.querySelectorAll('.js-plotly-plot')[0];
      window.__result.lines = graph.data.filter(function (t) { return t.mode === 'lines'; })
                                        .map(function (t) { return t.text; });""")
    assert report["errors"] == [] and report["alerts"] == 0
    strongest = sorted(edges, key=lambda e: -abs(e["weight"]))[:20]
    assert sorted(report["result"]["lines"]) == sorted(f"{e['source']} → {e['target']}: {e['weight']:.3g}"
                                                       for e in strongest)
    assert report["result"]["titles"][0] == ("Sparse feature circuit: toy "
                                             "(20 strongest of 200 edges drawn; all in circuit.json)")
    arrows = [line for line in to_dot(doc, 20).splitlines() if "->" in line]
    assert sorted(a.split(" [")[0].strip() for a in arrows) == sorted(f'"{e["source"]}" -> "{e["target"]}"'
                                                                     for e in strongest)

def test_circuit_page_draws_the_faithfulness_curve_and_marks_the_refined_circuit(tmp_path):
    """With a sweep the page has a second figure: the top-k curve as measured, and this
    circuit's held-out faithfulness before and after refinement at its own size."""
    from circuits.render import write_html
    hook = "blocks.0.hook_mlp_out"
    nodes = [{"id": f"{hook}/{i}", "hook": hook, "feature": i, "kind": "feature", "position": None,
              "attribution": 1.0 - i / 10, "activation": 2.0} for i in range(3)]
    curve = [{"size": 2, "faithfulness": 0.1, "completeness": 0.5}, {"size": 5, "faithfulness": 0.4, "completeness": 0.2}]
    doc = {"meta": {"dataset": "sva_pp", "faithfulness_curve": curve, "n_evaluate": 256,
                    "evaluation": {"faithfulness": 0.76, "completeness": 0.01},
                    "refinement": {"heldout_faithfulness_before": 0.38}}, "nodes": nodes, "edges": []}
    page = write_html(doc, tmp_path / "circuit.html")
    report, _ = load_page(page, COUNT_PLOTS + """
      var curve = document.querySelectorAll('.js-plotly-plot')[1];
      window.__result.traces = curve.data.map(function (t) {
        return {name: t.name, x: Array.prototype.slice.call(t.x), y: Array.prototype.slice.call(t.y)}; });""")
    assert report["errors"] == [] and report["alerts"] == 0
    assert report["result"]["plots"] == 2
    assert report["result"]["titles"][1] == "Held-out faithfulness by circuit size (256 examples)"
    traces = {t["name"]: (t["x"], t["y"]) for t in report["result"]["traces"]}
    assert traces["top-k by attribution: faithfulness"] == ([2, 5], [0.1, 0.4])
    assert traces["top-k by attribution: completeness"] == ([2, 5], [0.5, 0.2])
    assert traces["this circuit before refinement"] == ([3], [0.38])
    assert traces["this circuit (refined): faithfulness"] == ([3], [0.76])
    doc["meta"]["faithfulness_curve"] = []
    report, _ = load_page(write_html(doc, tmp_path / "plain.html"), COUNT_PLOTS)
    assert report["errors"] == [] and report["result"]["plots"] == 1
