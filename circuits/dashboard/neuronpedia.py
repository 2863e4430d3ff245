"""Convert dashboard JSON to Neuronpedia's batch upload format (as SAEDashboard writes it).

A batch is ``{"model_id", "layer", "sae_set", "features": [...]}`` saved as
``batch-<i>.json``. Each feature carries ``feature_index``, ``pos_str``/``pos_values`` and
``neg_str``/``neg_values`` (logit effects), ``frac_nonzero`` (density),
``freq_hist_data_bar_values``/``_heights`` (histogram bin centres and counts),
``correlated_features_indices``/``_pearson``, and ``activations``: the top contexts with
``bin_min = bin_max = -1`` and the quantile samples with their interval's activation bounds
and ``bin_contains`` = the interval's share of firing tokens. Fields the toolkit does not
compute (neuron alignment, correlated neurons, logit histograms, decoder weight
distribution) are empty lists.
"""

from __future__ import annotations

import json
from pathlib import Path

from circuits.dashboard.schema import validate_feature

EMPTY_FIELDS = ("neuron_alignment_indices", "neuron_alignment_values", "neuron_alignment_l1",
                "correlated_neurons_indices", "correlated_neurons_l1", "correlated_neurons_pearson",
                "correlated_features_l1", "logits_hist_data_bar_heights", "logits_hist_data_bar_values",
                "decoder_weights_dist")


def _activation(context: dict, bin_min: float, bin_max: float, bin_contains: float) -> dict:
    return {"bin_min": bin_min, "bin_max": bin_max, "bin_contains": bin_contains,
            "tokens": context["tokens"], "values": context["activations"]}


def neuronpedia_feature(record: dict, context_length: int = 0, dataset: str = "") -> dict:
    """One feature record (our schema) -> one Neuronpedia feature object."""
    logits = record.get("logit_effects") or {"positive": [], "negative": []}
    start, width, counts = (record["histogram"][k] for k in ("start", "bin_width", "counts"))
    activations = [_activation(c, -1, -1, -1) for c in record["top_contexts"]]
    for group in record["quantile_contexts"]:
        low, high = group["activations"]
        share = group["quantiles"][1] - group["quantiles"][0]
        activations += [_activation(c, low, high, share) for c in group["contexts"]]
    return {"feature_index": record["feature"], **{name: [] for name in EMPTY_FIELDS},
            "correlated_features_indices": [c["feature"] for c in record["correlated_features"]],
            "correlated_features_pearson": [c["pearson"] for c in record["correlated_features"]],
            "pos_str": [t["token"] for t in logits["positive"]], "pos_values": [t["value"] for t in logits["positive"]],
            "neg_str": [t["token"] for t in logits["negative"]], "neg_values": [t["value"] for t in logits["negative"]],
            "frac_nonzero": record["density"],
            "freq_hist_data_bar_values": [start + (i + 0.5) * width for i in range(len(counts))],
            "freq_hist_data_bar_heights": counts,
            "n_prompts_total": record["n_tokens"] // context_length if context_length else 0,
            "n_tokens_in_prompt": context_length, "dataset": dataset, "activations": activations}


def neuronpedia_batches(records: list[dict], model_id: str, layer: int, sae_set: str, batch_size: int = 128,
                        context_length: int = 0, dataset: str = "") -> list[dict]:
    """Feature records -> Neuronpedia batches of at most ``batch_size`` features."""
    features = [neuronpedia_feature(r, context_length, dataset) for r in records]
    return [{"model_id": model_id, "layer": layer, "sae_set": sae_set, "features": features[i:i + batch_size]}
            for i in range(0, len(features), batch_size)]


def convert_dashboard(dash: str | Path, out: str | Path, model_id: str | None = None, sae_set: str | None = None,
                      batch_size: int = 128) -> list[Path]:
    """Write ``out/batch-<i>.json`` from a dashboard folder's JSON; returns the files."""
    dash, out = Path(dash), Path(out)
    index = json.loads((dash / "dashboard.json").read_text())
    records = [validate_feature(json.loads((dash / "data" / f"{f}.json").read_text()), f"data/{f}.json")
               for f in index["features"]]
    hook = index["hook"]
    layer = int(hook.split(".")[1]) if hook.startswith("blocks.") else 0
    batches = neuronpedia_batches(records, model_id or index["model"], layer, sae_set or index["sae"], batch_size,
                                  index.get("context_length") or 0, index.get("dataset") or "")
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, batch in enumerate(batches):
        paths.append(out / f"batch-{i}.json")
        paths[-1].write_text(json.dumps(batch))
    return paths
