"""``build_dashboard``: validate the inputs, stream the store once, write the dashboard folder.

Output (written to a temporary sibling folder, renamed into place only when complete)::

    dash/
      index.html            sortable, searchable list of the features
      plotly.min.js         the one copy of plotly.js, from the installed plotly package
      features/<f>.html     one page per feature
      data/<f>.json         one record per feature (schema in ``circuits.dashboard.schema``)
      dashboard.json        model, hook, SAE, settings and the feature list
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from activations.errors import ToolkitError
from activations.models import load_model
from activations.store import ActivationStore
from circuits.dashboard import render
from circuits.dashboard.contexts import Context, gather_contexts
from circuits.dashboard.logits import logit_effects, writes_residual
from circuits.dashboard.neighbours import read_detectors, read_matches, read_neighbours
from circuits.dashboard.schema import INDEX_SCHEMA, SCHEMA
from circuits.dashboard.stats import FeatureStats
from sae.io import load_sae, one_sae_folder


@dataclass
class DashboardConfig:
    """What to show and how much of it. ``features``: "0:500", "3,7,10:20" or "all"."""

    sae: str
    acts: str
    out: str = "dash"
    features: str = "0:100"
    tokens: int | None = None
    top_k: int = 10
    quantile_intervals: int = 5
    per_interval: int = 3
    reservoir: int = 48
    context_before: int = 12
    context_after: int = 4
    histogram_bins: int = 48
    correlated: int = 8
    logits: int = 10
    batch_size: int = 4096
    seed: int = 0
    flow: str | list[str] | None = None  # `sae flow` --out folder(s), or flat JSON (circuits.dashboard.neighbours)
    circuits: str | list[str] | None = None  # `sae circuit` --out folder(s) / circuit.json, or flat JSON
    supervised: str | list[str] | None = None  # `sae supervised --out` report(s): the values each feature detects
    compare: str | list[str] | None = None  # `sae compare --json` file(s): each feature's match in another SAE
    overwrite: bool = False
    progress: bool = True


def parse_features(spec: str, d_sae: int) -> list[int]:
    """"0:500", "3,7,10:20" or "all" -> sorted distinct indices, each checked against d_sae."""
    if spec.strip() == "all":
        return list(range(d_sae))
    chosen: set[int] = set()
    try:
        for part in spec.split(","):
            start, _, stop = part.partition(":")
            chosen.update(range(int(start), int(stop)) if _ else [int(start)])
    except ValueError as err:
        raise ToolkitError(f"cannot read --features '{spec}'; write e.g. 0:500, 3,7,10:20 or all") from err
    if not chosen:
        raise ToolkitError(f"--features '{spec}' selects no feature")
    bad = [f for f in chosen if not 0 <= f < d_sae]
    if bad:
        raise ToolkitError(f"feature {min(bad) if min(bad) < 0 else max(bad)} is out of range: the SAE has "
                           f"{d_sae} features (0..{d_sae - 1})")
    return sorted(chosen)


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not (out / "dashboard.json").is_file():
            raise ToolkitError(f"'{out}' exists and is not an empty folder or a dashboard; choose another --out")
        if not overwrite:
            raise ToolkitError(f"'{out}' already holds a dashboard; pass --overwrite to replace it")


@torch.no_grad()
def _stream(store: ActivationStore, hook: str, sae, stats: FeatureStats, cfg: DashboardConfig) -> None:
    limit = cfg.tokens or store.n_tokens
    start = 0
    bar = tqdm(total=min(limit, store.n_tokens), unit="tok", unit_scale=True, disable=not cfg.progress)
    for tensors in store.iter_shards():
        acts = tensors[hook]
        n = min(len(acts), limit - start)
        for a in range(0, n, cfg.batch_size):
            b = min(a + cfg.batch_size, n)
            x = acts[a:b].float()
            if not torch.isfinite(x).all():
                raise ToolkitError(f"activations of {hook} in store '{store.folder}' contain NaN or inf")
            stats.update(sae.encode(x), torch.arange(start + a, start + b))
            bar.update(b - a)
        start += n
        if start >= limit:
            break
    bar.close()


def _token_strings(model) -> list[str]:
    """Each token id's text; ids the tokenizer lacks (a padded unembedding) read "<id>"."""
    known = len(model.tokenizer)
    return (model.tokenizer.batch_decode([[i] for i in range(known)])
            + [f"<{i}>" for i in range(known, model.dims.d_vocab)])


def _context_json(context: Context, vocab: list[str]) -> dict:
    return {"tokens": [vocab[t] for t in context.token_ids],
            **{k: v for k, v in asdict(context).items()}}


def _records(cfg, meta, chosen, stats, plans, contexts, logits, vocab, flow, circuits, detectors,
             matches) -> list[dict]:
    top_i, top_v, bot_i, bot_v, note = logits if logits else (None,) * 5
    corr_i, corr_r = stats.pearson.most_correlated(cfg.correlated)
    records = []
    for slot, f in enumerate(chosen):
        n_fired = int(stats.n_fired[slot])
        start, width, counts = stats.histogram.coarse(slot, cfg.histogram_bins)
        top_rows, groups = plans[slot]
        top = [_context_json(next(contexts), vocab) for _ in top_rows]
        for group in groups:
            group["contexts"] = [_context_json(next(contexts), vocab) for _ in group.pop("rows")]
        effects = None
        if logits:
            effects = {"note": note,
                       "positive": [{"token": vocab[t], "token_id": t, "value": v}
                                    for t, v in zip(top_i[slot].tolist(), top_v[slot].tolist())],
                       "negative": [{"token": vocab[t], "token_id": t, "value": v}
                                    for t, v in zip(bot_i[slot].tolist(), bot_v[slot].tolist())]}
        records.append({
            "schema": SCHEMA, "feature": f, "model": meta["model"], "hook": meta["hook"], "sae": meta["sae"],
            "n_tokens": stats.n_tokens, "n_fired": n_fired, "density": n_fired / max(stats.n_tokens, 1),
            "max_activation": float(stats.max[slot]),
            "mean_activation": float(stats.total[slot]) / n_fired if n_fired else 0.0,
            "histogram": {"start": start, "bin_width": width, "counts": counts}, "top_contexts": top, "quantile_contexts": groups,
            "logit_effects": effects,
            "correlated_features": [{"feature": j, "pearson": round(r, 6)}
                                    for j, r in zip(corr_i[slot].tolist(), corr_r[slot].tolist()) if r > 0],
            "flow_neighbours": flow.get(f, []) if flow is not None else None,
            "circuits": circuits.get(f, []) if circuits is not None else None,
            "attribute_detectors": detectors.get(f, []) if detectors is not None else None,
            "matches": matches.get(f, []) if matches is not None else None})
    return records


def _write(folder: Path, meta: dict, records: list[dict]) -> None:
    import plotly
    (folder / "features").mkdir(parents=True)
    (folder / "data").mkdir()
    shutil.copyfile(Path(plotly.__file__).parent / "package_data" / render.PLOTLY_FILE, folder / render.PLOTLY_FILE)
    links = {r["feature"]: f"{r['feature']}.html" for r in records}
    rows = []
    for record in records:
        f = record["feature"]
        (folder / "data" / f"{f}.json").write_text(json.dumps(record))
        (folder / "features" / f"{f}.html").write_text(render.feature_page(record, links), encoding="utf-8")
        top = record["top_contexts"][0] if record["top_contexts"] else None
        logits = record["logit_effects"]["positive"][:5] if record["logit_effects"] else []
        rows.append({"feature": f, "density": record["density"], "max_activation": record["max_activation"],
                     "top_logits": [t["token"] for t in logits], "top_context": top})
    (folder / "index.html").write_text(render.index_page(meta, rows), encoding="utf-8")
    (folder / "dashboard.json").write_text(json.dumps({**meta, "features": [r["feature"] for r in records]}, indent=1))


def build_dashboard(cfg: DashboardConfig) -> Path:
    """Compute and write the dashboard described by ``cfg``; returns the output folder."""
    out = Path(cfg.out)
    _check_out(out, cfg.overwrite)
    sae_folder = one_sae_folder(cfg.sae)
    sae = load_sae(sae_folder)
    store = ActivationStore(cfg.acts)
    hook = sae.cfg.hook
    store.check_hooks([hook])
    if sae.metadata.get("model_name"):
        store.check_model(sae.metadata["model_name"])
    if store.widths[hook] != sae.d_in:
        raise ToolkitError(f"the SAE reads {sae.d_in}-wide activations but {hook} in '{cfg.acts}' is "
                           f"{store.widths[hook]} wide")
    chosen = parse_features(cfg.features, sae.d_sae)
    flow, circuits = read_neighbours(cfg.flow, "--flow", hook), read_neighbours(cfg.circuits, "--circuits", hook)
    detectors = read_detectors(cfg.supervised, sae_folder.resolve().name, hook)
    matches = read_matches(cfg.compare, sae_folder)
    model = load_model(store.model_name, device="cpu")
    vocab = _token_strings(model)
    stats = FeatureStats(torch.tensor(chosen), sae.d_sae, cfg.top_k, cfg.reservoir, seed=cfg.seed)
    _stream(store, hook, sae, stats, cfg)
    plans = [([r for r in stats.top.row[slot].tolist() if r >= 0],
              stats.quantile_samples(slot, cfg.quantile_intervals, cfg.per_interval)) for slot in range(len(chosen))]
    requests = [(chosen[slot], r) for slot, (top, groups) in enumerate(plans)
                for r in top + [r for g in groups for r in g["rows"]]]
    wanted = torch.tensor(requests, dtype=torch.long).reshape(-1, 2)
    contexts = gather_contexts(store, hook, sae, wanted[:, 0], wanted[:, 1], cfg.context_before, cfg.context_after)
    hook_out = sae.cfg.hook_out or hook
    logits = (logit_effects(sae.W_dec[chosen].detach(), model, cfg.logits)
              if writes_residual(hook_out) and sae.d_out == model.dims.d_model else None)
    meta = {"schema": INDEX_SCHEMA, "model": store.model_name, "hook": hook, "sae": sae_folder.resolve().name,
            "n_tokens": stats.n_tokens, "context_length": store.manifest.get("dataset", {}).get("context"),
            "dataset": str(store.manifest.get("dataset", {}).get("name", "")),
            "settings": {k: v for k, v in asdict(cfg).items() if k not in ("sae", "acts", "out", "progress")}}
    records = _records(cfg, meta, chosen, stats, plans, iter(contexts), logits, vocab, flow, circuits, detectors,
                       matches)
    _publish(out, lambda folder: _write(folder, meta, records))
    return out


def _publish(out: Path, write) -> None:
    """Run ``write(tmp)`` into a temporary sibling of ``out``, then move it into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write(tmp)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
