"""Dashboard pages in real headless Chromium: no console errors, plots render, data is inert.

Needs Debian's ``chromium`` (apt-get install -y chromium); skipped with that reason otherwise.
"""

import json

import pytest

from circuits.dashboard.build import _write
from circuits.dashboard.schema import SCHEMA
from tests.circuits.browser import CHROMIUM, INSTALL_HINT, load_page
from tests.circuits.test_dashboard import dash, setup  # noqa: F401  (module fixtures reused)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=INSTALL_HINT)

PAYLOAD = "<script>alert(1)</script>"
ATTACKS = [PAYLOAD, "<img src=x onerror=\"window.__pwned='img'\">", "</script><script>window.__pwned='json'</script>",
           "<!--", "\" onmouseover=\"window.__pwned='attr'", "<b>bold</b>"]


def test_index_loads_plots_sorts_and_searches(dash):  # noqa: F811
    action = """
      var plot = document.querySelectorAll('#density .main-svg').length;
      document.querySelector('button[data-key="max"]').click();
      var order = Array.prototype.map.call(document.querySelectorAll('#features tbody tr'),
                                           function (r) { return parseFloat(r.getAttribute('data-max')); });
      document.querySelector('button[data-key="density"]').click();
      document.querySelector('button[data-key="density"]').click();
      var dens = Array.prototype.map.call(document.querySelectorAll('#features tbody tr'),
                                          function (r) { return parseFloat(r.getAttribute('data-density')); });
      var box = document.getElementById('search'); box.value = 'feature-that-matches-nothing';
      box.dispatchEvent(new Event('input'));
      var hidden = document.querySelectorAll('#features tbody tr[hidden]').length;
      window.__result = {plot: plot, order: order, dens: dens, hidden: hidden};"""
    report, _ = load_page(dash / "index.html", action)
    assert report["errors"] == [] and report["alerts"] == 0
    result = report["result"]
    assert result["plot"] >= 1
    assert result["order"] == sorted(result["order"], reverse=True) and len(result["order"]) == 25
    assert result["dens"] == sorted(result["dens"]) and result["hidden"] == 25



def test_index_marks_the_token_each_feature_fires_most_on(dash):  # noqa: F811
    """Each index row shows its feature's top context shaded, with the top token marked (the
    context's focus), as the feature page does."""
    action = """window.__result = Array.prototype.map.call(document.querySelectorAll('#features tbody tr'),
      function (r) { var f = r.querySelector('.ctx .tok.focus');
                     return [r.getAttribute('data-feature'), f ? f.textContent : null,
                             r.querySelectorAll('.ctx .tok').length]; });"""
    report, _ = load_page(dash / "index.html", action)
    assert report["errors"] == [] and len(report["result"]) == 25
    for feature, focus, n_tokens in report["result"]:
        record = json.loads((dash / "data" / f"{feature}.json").read_text())
        if not record["top_contexts"]:
            assert focus is None and n_tokens == 0
            continue
        top = record["top_contexts"][0]
        assert focus == (top["tokens"][top["focus"]] or "\u2205").replace("\n", "\u23ce").replace("\t", "\u21e5")
        assert n_tokens == len(top["tokens"])

def test_feature_page_loads_and_renders_its_histogram(dash):  # noqa: F811
    record = json.loads((dash / "data" / "3.json").read_text())
    assert record["n_fired"] > 0
    action = """window.__result = {svg: document.querySelectorAll('#histogram .main-svg').length,
                 bars: document.querySelectorAll('#histogram .bars path').length,
                 spans: document.querySelectorAll('.ctx .tok').length};"""
    report, _ = load_page(dash / "features" / "3.html", action)
    assert report["errors"] == [] and report["alerts"] == 0
    assert report["result"]["svg"] >= 1 and report["result"]["bars"] >= 1
    assert report["result"]["spans"] == sum(len(c["tokens"]) for c in record["top_contexts"]) + sum(
        len(c["tokens"]) for g in record["quantile_contexts"] for c in g["contexts"])


def test_the_harness_does_report_a_broken_page(dash, tmp_path):  # noqa: F811
    page = tmp_path / "features" / "3.html"  # no plotly.min.js next to it
    page.parent.mkdir()
    page.write_text((dash / "features" / "3.html").read_text())
    report, _ = load_page(page)
    assert any("plotly.min.js" in e for e in report["errors"]) and any("Plotly" in e for e in report["errors"])
    unsafe = tmp_path / "unsafe.html"  # what an unescaped token would do
    unsafe.write_text(f"<html><head></head><body>{ATTACKS[1]}{PAYLOAD}</body></html>")
    report, _ = load_page(unsafe)
    assert report["pwned"] == "img" and report["alerts"] == 1


def _hostile_record(feature: int) -> dict:
    context = {"tokens": ATTACKS, "token_ids": list(range(len(ATTACKS))), "activations": [0.5] * len(ATTACKS),
               "focus": 0, "sequence_id": 0, "position": 0}
    logit = [{"token": t, "token_id": i, "value": 1.0 - i / 10} for i, t in enumerate(ATTACKS)]
    return {"schema": SCHEMA, "feature": feature, "model": ATTACKS[2], "hook": ATTACKS[1], "sae": ATTACKS[2],
            "n_tokens": 100, "n_fired": 6, "density": 0.06, "max_activation": 1.0, "mean_activation": 0.5,
            "histogram": {"start": 0.0, "bin_width": 0.5, "counts": [3, 3]}, "top_contexts": [context],
            "quantile_contexts": [{"quantiles": [0.0, 1.0], "activations": [0.0, 1.0], "contexts": [context]}],
            "logit_effects": {"note": ATTACKS[4], "positive": logit, "negative": logit},
            "correlated_features": [{"feature": feature + 1, "pearson": 0.5}],
            "flow_neighbours": [{"hook": a, "feature": 1} for a in ATTACKS], "circuits": [{"circuit": ATTACKS[0]}],
            "attribute_detectors": [{"task": "ioi", "attribute": a, "value": a, "f1": 0.5} for a in ATTACKS],
            "matches": [{"other SAE": a, "best match": 3, "cosine": 0.5, "shared": False, "family": a} for a in ATTACKS]}


def test_html_in_the_data_is_shown_as_text_and_never_runs(tmp_path):
    meta = {"model": ATTACKS[2], "hook": ATTACKS[1], "sae": ATTACKS[2], "n_tokens": 100}
    _write(tmp_path / "dash", meta, [_hostile_record(0), _hostile_record(1)])
    visible = "window.__result = document.body.innerText;"
    for page in (tmp_path / "dash" / "index.html", tmp_path / "dash" / "features" / "0.html"):
        report, dom = load_page(page, visible)
        assert report["errors"] == [] and report["alerts"] == 0 and report["pwned"] is None
        assert report["title"] in (f"{ATTACKS[2]} \u00b7 features", f"Feature 0 \u00b7 {ATTACKS[1]}")
        assert PAYLOAD in report["result"]  # the markup is visible, as text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
        assert "<img src=\"x\"" not in dom and "<b>bold</b>" not in dom
