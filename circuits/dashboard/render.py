"""HTML pages of a dashboard: one per feature and a sortable, searchable index.

Every piece of data-derived text (token strings above all) goes through ``html.escape``;
data for scripts is embedded as JSON in ``<script type="application/json">`` with ``<``, ``>``
and ``&`` written as ``\\u003c`` etc., so no string can close the element or open a comment,
and scripts only read it with ``JSON.parse`` and write it with ``textContent``. plotly.js is
not inlined: every page loads the one shared copy, ``plotly.min.js``, next to ``index.html``.
"""

from __future__ import annotations

import html
import math
import json

PLOTLY_FILE = "plotly.min.js"
CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1100px;padding:0 1em;color:#222}
h1{margin:.2em 0}h2{font-size:1.1em;margin:1.4em 0 .4em;border-bottom:1px solid #ddd}
h3{font-size:.95em;margin:.8em 0 .3em;color:#555}.meta{color:#666}
.cards{display:flex;gap:1em;flex-wrap:wrap}.card{background:#f5f5f7;border-radius:6px;padding:.5em .9em}
.card b{display:block;font-size:1.2em}.cols{display:flex;gap:2em;flex-wrap:wrap}
table{border-collapse:collapse}td,th{padding:2px 8px;text-align:left;border-bottom:1px solid #eee}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.ctx{font-family:ui-monospace,monospace;white-space:pre;overflow-x:auto;margin:2px 0;padding:3px 4px;
background:#fafafa;border-radius:3px}.tok{border-radius:2px}.focus{outline:1px solid #c40;font-weight:bold}
.plot{height:260px}th button{font:inherit;border:0;background:none;cursor:pointer;padding:0;text-decoration:underline}
#search{width:24em;padding:4px;margin:.5em 0}.lg{white-space:pre;font-family:ui-monospace,monospace}
"""


def esc(value) -> str:
    """Text for HTML content or a quoted attribute."""
    return html.escape(str(value), quote=True)


def script_json(obj) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' survives literally."""
    text = json.dumps(obj, allow_nan=False)
    for raw, safe in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                      ("\u2029", "\\u2029")):
        text = text.replace(raw, safe)
    return text


def _page(title: str, body: str, scripts: str) -> str:
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{CSS}</style></head>'
            f'<body>\n{body}\n{scripts}\n</body></html>\n')


def _token_text(token: str) -> str:
    return token.replace("\n", "\u23ce").replace("\t", "\u21e5") or "\u2205"


def render_context(context: dict, scale: float) -> str:
    """One context as a line of spans shaded by activation / ``scale``; hover shows the value."""
    spans = []
    for i, (token, act) in enumerate(zip(context["tokens"], context["activations"])):
        alpha = min(max(act / scale, 0.0), 1.0) if scale > 0 else 0.0
        cls = "tok focus" if i == context["focus"] else "tok"
        spans.append(f'<span class="{cls}" style="background:rgba(255,120,0,{alpha:.3f})" '
                     f'title="{esc(f"{token!r}: {act:.4g}")}">{esc(_token_text(token))}</span>')
    return f'<div class="ctx">{"".join(spans)}</div>'


def _table(rows: list[dict], columns: list[str], links: dict[int, str] | None = None) -> str:
    if not rows:
        return '<p class="meta">none</p>'
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            text = f"{value:.4g}" if isinstance(value, float) else "" if value is None else str(value)
            if links and c == "feature" and value in links:
                cells.append(f'<td><a href="{esc(links[value])}">{esc(text)}</a></td>')
            else:
                cells.append(f'<td class="{"num" if isinstance(value, (int, float)) else ""}">{esc(text)}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _neighbour_section(title: str, entries: list[dict] | None, links: dict[int, str]) -> str:
    if entries is None:
        return ""
    columns = list(dict.fromkeys(k for e in entries for k in e))
    return f"<section><h2>{esc(title)}</h2>{_table(entries, columns, links)}</section>"


_HISTOGRAM_JS = """
(function () {
  var d = JSON.parse(document.getElementById('histogram-data').textContent);
  Plotly.newPlot('histogram', [{type: 'bar', name: d.name, x: d.x, y: d.y, width: d.width, marker: {color: '#f28e2b'},
    hovertemplate: 'activation %{x:.3g}: %{y} tokens<extra></extra>'}],
    {margin: {l: 50, r: 10, t: 10, b: 40}, xaxis: {title: {text: 'activation'}},
     yaxis: {title: {text: 'tokens'}}, bargap: 0}, {displayModeBar: false, responsive: true});
})();
"""


def feature_page(record: dict, links: dict[int, str]) -> str:
    """The HTML page of one feature record (see ``schema``); ``links`` maps feature -> href."""
    f = record["feature"]
    scale = record["max_activation"]
    cards = "".join(f'<div class="card">{esc(name)}<b>{esc(value)}</b></div>' for name, value in [
        ("density", f"{record['density']:.3g}"), ("firing tokens", f"{record['n_fired']:,} / {record['n_tokens']:,}"),
        ("max activation", f"{record['max_activation']:.4g}"), ("mean when firing", f"{record['mean_activation']:.4g}")])
    logits = record.get("logit_effects")
    if logits:
        logit_html = (f"<div><h2>Positive logits</h2>{_table(logits['positive'], ['token', 'value'])}</div>"
                      f"<div><h2>Negative logits</h2>{_table(logits['negative'], ['token', 'value'])}</div>")
        logit_note = f'<p class="meta">{esc(logits["note"])}</p>'
    else:
        logit_html, logit_note = "", '<p class="meta">no logit effects: the decoder does not write to the residual stream</p>'
    top = "".join(render_context(c, scale) for c in record["top_contexts"]) or '<p class="meta">never fired</p>'
    quantiles = []
    for group in record["quantile_contexts"]:
        (q0, q1), (a0, a1) = group["quantiles"], group["activations"]
        quantiles.append(f"<h3>quantiles {q0:.0%}\u2013{q1:.0%} \u00b7 activations {a0:.3g}\u2013{a1:.3g}</h3>"
                         + "".join(render_context(c, scale) for c in group["contexts"]))
    start, width, counts = (record["histogram"][k] for k in ("start", "bin_width", "counts"))
    histogram = {"x": [start + (i + 0.5) * width for i in range(len(counts))], "y": counts, "width": width,
                 "name": f"{record['sae']} #{f}"}
    body = f"""<nav><a href="../index.html">&larr; all features</a></nav>
<h1>Feature {f}</h1><p class="meta">{esc(record['model'])} \u00b7 {esc(record['hook'])} \u00b7 {esc(record['sae'])}</p>
<section class="cards">{cards}</section>
<section><h2>Activation histogram (tokens with activation &gt; 0)</h2><div id="histogram" class="plot"></div></section>
<section class="cols">{logit_html}<div><h2>Correlated features (Pearson)</h2>{_table(record['correlated_features'], ['feature', 'pearson'], links)}</div></section>
{logit_note}
{_neighbour_section('Flow neighbours', record.get('flow_neighbours'), links)}
{_neighbour_section('Circuits', record.get('circuits'), links)}
{_neighbour_section('Attribute values it detects best (sae supervised)', record.get('attribute_detectors'), links)}
{_neighbour_section('Its match in another SAE (sae compare)', record.get('matches'), links)}
<section><h2>Top activations</h2>{top}</section>
<section><h2>Samples across the activation distribution</h2>{''.join(quantiles) or '<p class="meta">none</p>'}</section>"""
    scripts = (f'<script src="../{PLOTLY_FILE}"></script>\n<script type="application/json" id="histogram-data">'
               f'{script_json(histogram)}</script>\n<script>{_HISTOGRAM_JS}</script>')
    return _page(f"Feature {f} \u00b7 {record['hook']}", body, scripts)


_INDEX_JS = """
(function () {
  var body = document.querySelector('#features tbody');
  var rows = Array.prototype.slice.call(body.rows);
  var order = {};
  document.querySelectorAll('th button').forEach(function (button) {
    button.addEventListener('click', function () {
      var key = button.getAttribute('data-key');
      order[key] = order[key] === 'desc' ? 'asc' : 'desc';
      var sign = order[key] === 'desc' ? -1 : 1;
      rows.sort(function (a, b) { return sign * (parseFloat(a.getAttribute('data-' + key)) -
                                                parseFloat(b.getAttribute('data-' + key))); });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
  document.getElementById('search').addEventListener('input', function (event) {
    var query = event.target.value.toLowerCase();
    rows.forEach(function (row) { row.hidden = query !== '' && row.textContent.toLowerCase().indexOf(query) < 0; });
  });
  var d = JSON.parse(document.getElementById('density-data').textContent);
  Plotly.newPlot('density', [{type: 'histogram', x: d.log10_density, marker: {color: '#4e79a7'}}],
    {margin: {l: 50, r: 10, t: 10, b: 40}, xaxis: {title: {text: 'log10 density'}},
     yaxis: {title: {text: 'features'}}}, {displayModeBar: false, responsive: true});
})();
"""


def _logit_tokens(tokens: list[str]) -> str:
    """Tokens as Python reprs (spaces show), each kept on one line."""
    return " ".join(f'<span class="lg">{esc(repr(t))}</span>' for t in tokens)


def _top_context(context: dict | None, scale: float) -> str:
    return render_context(context, scale) if context else '<span class="meta">never fired</span>'


def index_page(meta: dict, rows: list[dict]) -> str:
    """The index: ``rows`` of {feature, density, max_activation, top_logits [str], top_context
    (the feature's highest-activating Context, or None), shaded like the feature pages}."""
    lines = []
    for r in rows:
        f = r["feature"]
        lines.append(f'<tr data-feature="{f}" data-density="{r["density"]:.6g}" data-max="{r["max_activation"]:.6g}">'
                     f'<td><a href="features/{f}.html">{f}</a></td><td class="num">{r["density"]:.3g}</td>'
                     f'<td class="num">{r["max_activation"]:.4g}</td><td>{_logit_tokens(r["top_logits"])}</td>'
                     f'<td>{_top_context(r["top_context"], r["max_activation"])}</td></tr>')
    densities = {"log10_density": [math.log10(r["density"]) for r in rows if r["density"] > 0]}
    body = f"""<h1>{esc(meta['sae'])}</h1>
<p class="meta">{esc(meta['model'])} \u00b7 {esc(meta['hook'])} \u00b7 {len(rows)} features \u00b7 {meta['n_tokens']:,} tokens</p>
<div id="density" class="plot"></div>
<input id="search" type="search" placeholder="search features, logits and contexts" aria-label="search">
<table id="features"><thead><tr><th><button data-key="feature">feature</button></th>
<th class="num"><button data-key="density">density</button></th><th class="num"><button data-key="max">max act.</button></th>
<th>top logits</th><th>top context</th></tr></thead><tbody>
{chr(10).join(lines)}
</tbody></table>"""
    scripts = (f'<script src="{PLOTLY_FILE}"></script>\n<script type="application/json" id="density-data">'
               f'{script_json(densities)}</script>\n<script>{_INDEX_JS}</script>')
    return _page(f"{meta['sae']} \u00b7 features", body, scripts)
