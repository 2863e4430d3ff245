"""Streaming summaries of the dashboard pass, against brute-force references."""

import json

import numpy as np
import pytest
import torch

from activations.errors import ToolkitError
from circuits.dashboard import correlation
from circuits.dashboard.build import parse_features
from circuits.dashboard.correlation import StreamingPearson
from circuits.dashboard.histogram import StreamingHistogram
from circuits.dashboard.render import feature_page, script_json
from circuits.dashboard.schema import load_neighbours
from circuits.dashboard.selection import BestPerFeature
from circuits.dashboard.stats import FeatureStats


def test_histogram_counts_are_exact_while_the_range_grows():
    gen = torch.Generator().manual_seed(0)
    values = [torch.rand(500, generator=gen) * scale for scale in (0.01, 1.0, 30.0, 2.0)]
    hist = StreamingHistogram(2, n_bins=64)
    for batch in values:  # feature 1 sees the same values doubled
        hist.update(torch.cat([torch.zeros(500), torch.ones(500)]).long(), torch.cat([batch, 2 * batch]))
    everything = torch.cat(values).double().numpy()
    for f, data in ((0, everything), (1, 2 * everything)):
        width = hist.width(f)
        assert data.max() < 64 * width <= 2 * data.max()  # the narrowest power-of-two width that fits
        expected, _ = np.histogram(data, bins=64, range=(0, 64 * width))
        assert hist.counts[f].tolist() == expected.tolist()
        levels = torch.tensor([0.1, 0.5, 0.9])
        assert np.allclose(hist.quantiles(f, levels).numpy(), np.quantile(data, levels.numpy()), atol=width)
        start, coarse_width, counts = hist.coarse(f, 10)
        assert sum(counts) == len(data) and len(counts) <= 10 and start <= data.min() < start + coarse_width


def test_best_per_feature_keeps_the_top_k_of_each_feature_across_batches():
    gen = torch.Generator().manual_seed(1)
    feature, score = torch.randint(0, 5, (1000,), generator=gen), torch.rand(1000, generator=gen)
    best = BestPerFeature(6, 7)  # feature 5 never appears
    for a in range(0, 1000, 128):
        best.update(feature[a:a + 128], score[a:a + 128], torch.arange(a, min(a + 128, 1000)), score[a:a + 128])
    for f in range(5):
        expected = score[feature == f].sort(descending=True)
        assert best.value[f].tolist() == expected.values[:7].tolist()
        assert (score[best.row[f]] == best.value[f]).all() and (feature[best.row[f]] == f).all()
    assert (best.row[5] == -1).all()


def test_reservoir_of_random_keys_is_a_uniform_sample():
    n, k, trials = 20, 5, 3000
    hits = torch.zeros(n)
    for seed in range(trials):
        stats = FeatureStats(torch.tensor([0]), 1, top_k=1, reservoir=k, seed=seed)
        for a in range(0, n, 6):  # activations rise along the stream: a biased sampler would show it
            rows = torch.arange(a, min(a + 6, n))
            stats.update((rows.float() + 1)[:, None], rows)
        hits[stats.sample.row[0]] += 1
    assert torch.allclose(hits / trials, torch.full((n,), k / n), atol=0.04)


@pytest.mark.parametrize("dense", [False, True])
def test_streaming_pearson_matches_numpy_over_all_tokens(dense, monkeypatch):
    if dense:
        monkeypatch.setattr(correlation, "_PAIR_COST", 10 ** 9)
    gen = torch.Generator().manual_seed(2)
    latents = torch.relu(torch.randn(3000, 40, generator=gen) - 1.2)
    latents[:, 5] += 3 * latents[:, 17]  # a planted partner for feature 5
    chosen = torch.tensor([5, 17, 30])
    pearson = StreamingPearson(chosen, 40)
    for a in range(0, 3000, 700):  # batches of different sizes: no per-batch statistics
        pearson.update(latents[a:a + 700])
    expected = np.corrcoef(latents.double().numpy().T)[chosen.numpy()]
    assert np.allclose(pearson.pearson().numpy(), expected, atol=1e-6)
    indices, values = pearson.most_correlated(3)
    assert indices[0, 0] == 17 and indices[1, 0] == 5 and (indices != chosen[:, None]).all()
    assert np.allclose(values[0, 0], expected[0, 17], atol=1e-6)


def test_quantile_samples_fall_in_their_true_quantile_interval():
    gen = torch.Generator().manual_seed(3)
    acts = torch.relu(torch.randn(20_000, 1, generator=gen)) ** 2
    stats = FeatureStats(torch.tensor([0]), 1, top_k=3, reservoir=200)
    stats.update(acts, torch.arange(len(acts)))
    positive = acts[acts > 0].double().numpy()
    groups = stats.quantile_samples(0, 4, 5)
    assert [g["quantiles"] for g in groups] == [[0.0, 0.25], [0.25, 0.5], [0.5, 0.75], [0.75, 1.0]]
    for g in groups:
        low, high = g["activations"]
        share = ((positive >= low) & (positive <= high)).mean()
        assert abs(share - 0.25) < 0.02
        assert len(g["rows"]) == 5 and all(low <= float(acts[r, 0]) <= high for r in g["rows"])


def test_script_json_cannot_close_the_script_element():
    payload = {"s": "</script><script>alert(1)</script><!-- & \u2028"}
    text = script_json(payload)
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == payload


def test_feature_page_escapes_every_data_string():
    bad = "<script>alert(1)</script>"
    context = {"tokens": [bad, "<img src=x onerror=alert(2)>", '" onmouseover="x'], "token_ids": [1, 2, 3],
               "activations": [0.0, 1.0, 0.5], "focus": 1, "sequence_id": 0, "position": 5}
    record = {"feature": 3, "model": bad, "hook": bad, "sae": bad, "n_tokens": 10, "n_fired": 1, "density": 0.1,
              "max_activation": 1.0, "mean_activation": 1.0, "histogram": {"start": 0.0, "bin_width": 1.0, "counts": [1]},
              "top_contexts": [context], "quantile_contexts": [], "correlated_features": [],
              "logit_effects": {"note": bad, "positive": [{"token": bad, "token_id": 1, "value": 1.0}], "negative": []},
              "flow_neighbours": [{"hook": bad, "feature": 1}], "circuits": None}
    page = feature_page(record, {})
    assert "<script>alert" not in page and "<img" not in page and '" onmouseover' not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 6


def test_parse_features_and_neighbour_files(tmp_path):
    assert parse_features("0:3,7,2", 10) == [0, 1, 2, 7] and parse_features("all", 3) == [0, 1, 2]
    with pytest.raises(ToolkitError, match="feature 12 is out of range: the SAE has 10 features"):
        parse_features("5:13", 10)
    with pytest.raises(ToolkitError, match="cannot read --features 'a:b'"):
        parse_features("a:b", 10)
    good = tmp_path / "flow.json"
    good.write_text(json.dumps({"features": {"3": [{"hook": "blocks.1.hook_resid_post", "feature": 9,
                                                    "similarity": 0.5}]}}))
    assert load_neighbours(good, "--flow") == {3: [{"hook": "blocks.1.hook_resid_post", "feature": 9,
                                                    "similarity": 0.5}]}
    nested = tmp_path / "nested.json"
    nested.write_text(json.dumps({"features": {"3": [{"deep": {"x": 1}}]}}))
    with pytest.raises(ToolkitError, match="entry '3' must map a feature index to a list of flat objects"):
        load_neighbours(nested, "--flow")
    with pytest.raises(ToolkitError, match="--circuits file .* does not exist"):
        load_neighbours(tmp_path / "missing.json", "--circuits")
