"""``sae dashboard`` end to end on a small store of a toy GPT-2, checked against brute force."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from activations.harvest import HarvestConfig, harvest
from activations.models import load_model
from activations.store import ActivationStore
from circuits.dashboard.schema import validate_feature
from sae.architectures import ARCHITECTURES
from sae.cli import main
from sae.config import SAEConfig
from sae.io import load_sae, save_sae

HOOK = "blocks.1.hook_resid_post"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def setup(toy_gpt2_dir, tmp_path_factory):
    """(store folder, SAE folder): 4096 tokens with HTML in the text, a random TopK SAE."""
    root = tmp_path_factory.mktemp("dash")
    text = root / "docs.txt"
    text.write_text("\n\n".join(f"the cat <script>alert({i})</script> sat on the mat {i} and the dog ran"
                                for i in range(200)))
    acts = harvest(HarvestConfig(model=toy_gpt2_dir, hooks=[HOOK], tokens=4096, out=str(root / "acts"),
                                 dataset=str(text), context=32, shard_tokens=1024, dtype="float32",
                                 progress=False, device="cpu"))
    torch.manual_seed(0)
    sae = ARCHITECTURES["topk"](SAEConfig(architecture="topk", hook=HOOK, d_in=64, d_sae=96, k=6), 64)
    save_sae(sae, root / "sae", metadata={"model_name": toy_gpt2_dir})
    return str(acts), str(root / "sae")


@pytest.fixture(scope="module")
def dash(setup, tmp_path_factory):
    acts, sae = setup
    out = tmp_path_factory.mktemp("out") / "dash"
    flow = out.parent / "flow.json"
    flow.write_text(json.dumps({"features": {"2": [{"hook": "blocks.0.hook_resid_post", "feature": 11,
                                                    "similarity": 0.8}]}}))
    circuit = out.parent / "circ"  # the shape `sae circuit --out circ` writes (see test_circuit_cli)
    circuit.mkdir()
    (circuit / "circuit.json").write_text(json.dumps({"meta": {"dataset": "ioi"}, "edges": [], "nodes": [
        {"id": f"{HOOK}:2", "hook": HOOK, "feature": 2, "kind": "feature", "position": None,
         "attribution": 0.5, "activation": 1.5},
        {"id": f"{HOOK}:err", "hook": HOOK, "feature": None, "kind": "error", "position": None,
         "attribution": 0.2, "activation": 3.0},
        {"id": "blocks.9.hook_mlp_out:3", "hook": "blocks.9.hook_mlp_out", "feature": 3, "kind": "feature",
         "position": None, "attribution": 0.1, "activation": 1.0}]}))
    assert main(["dashboard", sae, "--acts", acts, "--features", "0:24,50", "--out", str(out), "--flow", str(flow),
                 "--circuits", str(circuit), "--neuronpedia", str(out.parent / "np"), "--no-progress"]) == 0
    return out


@pytest.fixture(scope="module")
def brute(setup):
    """Latents [N, d_sae] of every token of the store, encoded at once."""
    acts, sae_dir = setup
    store = ActivationStore(acts)
    with torch.no_grad():
        return load_sae(sae_dir).encode(store.rows(HOOK, torch.arange(store.n_tokens))), store


def _record(dash, f):
    return validate_feature(json.loads((dash / "data" / f"{f}.json").read_text()))


def test_writes_one_page_and_record_per_feature_and_one_plotly(dash):
    features = [*range(24), 50]
    assert json.loads((dash / "dashboard.json").read_text())["features"] == features
    assert sorted(int(p.stem) for p in (dash / "features").glob("*.html")) == features
    assert sorted(int(p.stem) for p in (dash / "data").glob("*.json")) == features
    assert [p.name for p in dash.rglob("plotly*.js")] == ["plotly.min.js"]
    assert (dash / "plotly.min.js").stat().st_size > 1_000_000
    for page in [dash / "index.html", *(dash / "features").glob("*.html")]:
        text = page.read_text()
        assert "cdn" not in text.lower() and "http://" not in text and "https://" not in text
        assert "plotly.min.js" in text and "<script>alert" not in text


def test_statistics_equal_brute_force_over_every_token(dash, brute):
    latents, store = brute
    for f in [*range(24), 50]:
        rec, column = _record(dash, f), latents[:, f]
        firing = column[column > 0]
        assert rec["n_tokens"] == store.n_tokens and rec["n_fired"] == len(firing)
        assert rec["density"] == pytest.approx(len(firing) / store.n_tokens)
        if not len(firing):
            assert rec["top_contexts"] == [] and rec["histogram"]["counts"] == []
            continue
        assert rec["max_activation"] == pytest.approx(float(firing.max()))
        assert rec["mean_activation"] == pytest.approx(float(firing.mean()), rel=1e-5)
        assert sum(rec["histogram"]["counts"]) == len(firing)
        top = [c["activations"][c["focus"]] for c in rec["top_contexts"]]
        assert top == pytest.approx(column.topk(min(10, len(firing))).values.tolist(), rel=1e-5)


def test_contexts_are_the_store_tokens_around_the_chosen_token(dash, brute):
    latents, store = brute
    vocab = load_model(store.model_name, device="cpu").tokenizer
    checked = 0
    for f in range(24):
        rec = _record(dash, f)
        contexts = rec["top_contexts"] + [c for g in rec["quantile_contexts"] for c in g["contexts"]]
        for c in contexts:
            shard = store.shard(c["sequence_id"] // store.manifest["contexts_per_shard"])
            seq = (shard["sequence_ids"] == c["sequence_id"]).nonzero().squeeze(1)
            row0 = int(seq[0]) + c["position"] - c["focus"]
            assert c["token_ids"] == shard["token_ids"][row0:row0 + len(c["token_ids"])].tolist()
            assert c["tokens"] == [vocab.decode([t]) for t in c["token_ids"]]
            first = sum(s["n_tokens"] for s in store.shards[:c["sequence_id"] // store.manifest["contexts_per_shard"]])
            rows = torch.arange(first + row0, first + row0 + len(c["token_ids"]))
            assert c["activations"] == pytest.approx(latents[rows, f].tolist(), abs=1e-5)
            checked += 1
        for g in rec["quantile_contexts"]:
            low, high = g["activations"]
            assert all(low - 1e-6 <= c["activations"][c["focus"]] <= high + 1e-6 for c in g["contexts"])
    assert checked > 100


def test_logit_effects_fold_the_final_layernorm(dash, setup):
    acts, sae_dir = setup
    model = load_model(ActivationStore(acts).model_name, device="cpu")
    w_dec = load_sae(sae_dir).W_dec.detach()
    gamma = model.hf_model.transformer.ln_f.weight.detach()
    w_u = model.hf_model.lm_head.weight.detach().t()
    for f in (0, 7, 50):
        direction = w_dec[f] - w_dec[f].mean()
        effects = (direction * gamma) @ w_u
        rec = _record(dash, f)["logit_effects"]
        assert [t["token_id"] for t in rec["positive"]] == effects.topk(10).indices.tolist()
        assert [t["token_id"] for t in rec["negative"]] == effects.topk(10, largest=False).indices.tolist()
        assert rec["positive"][0]["value"] == pytest.approx(float(effects.max()), rel=1e-4)
        assert "LayerNorm" in rec["note"]


def test_correlated_features_use_global_pearson(dash, brute):
    latents, _ = brute
    corr = np.nan_to_num(np.corrcoef(latents.double().numpy().T))
    for f in (1, 5, 50):
        listed = _record(dash, f)["correlated_features"]
        row = corr[f].copy()
        row[f] = -np.inf
        expected = [j for j in np.argsort(-row)[:len(listed)]]
        assert [c["feature"] for c in listed] == expected
        assert [c["pearson"] for c in listed] == pytest.approx(row[expected], abs=1e-5)


def test_flow_neighbours_and_neuronpedia_batches(dash):
    assert _record(dash, 2)["flow_neighbours"] == [{"hook": "blocks.0.hook_resid_post", "feature": 11,
                                                    "similarity": 0.8}]
    assert _record(dash, 3)["flow_neighbours"] == [] and _record(dash, 3)["circuits"] == []
    assert _record(dash, 2)["circuits"] == [{"circuit": "ioi", "node": f"{HOOK}:2", "rank": 1, "of": 3,
                                             "position": None, "attribution": 0.5, "activation": 1.5}]
    assert "blocks.0.hook_resid_post" in (dash / "features" / "2.html").read_text()
    (batch,) = [json.loads(p.read_text()) for p in (dash.parent / "np").glob("batch-*.json")]
    assert batch["layer"] == 1 and batch["sae_set"] == "sae" and len(batch["features"]) == 25
    feature = batch["features"][5]
    rec = _record(dash, 5)
    assert feature["feature_index"] == 5 and feature["frac_nonzero"] == rec["density"]
    assert feature["pos_str"] == [t["token"] for t in rec["logit_effects"]["positive"]]
    assert feature["freq_hist_data_bar_heights"] == rec["histogram"]["counts"]
    assert feature["activations"][0]["values"] == rec["top_contexts"][0]["activations"]


def _cli(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(["nice", "-n", "19", sys.executable, "-m", "sae", "dashboard", *args],
                          capture_output=True, text=True, env=env)


def test_bad_input_is_one_line_and_leaves_no_output(setup, tmp_path):
    acts, sae = setup
    bad_flow = tmp_path / "flow.json"
    bad_flow.write_text("{not json")
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep")
    cases = [(["--features", "90:100"], "feature 99 is out of range: the SAE has 96 features"),
             (["--flow", str(bad_flow)], "is not valid JSON"),
             (["--acts", str(tmp_path)], "it is not an activation store")]
    for extra, message in cases:
        out = tmp_path / "dash"
        result = _cli(sae, "--acts", acts, "--out", str(out), "--features", "0:4", "--no-progress", *extra)
        assert result.returncode == 2 and result.stderr.startswith("error: ") and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()
        assert not list(tmp_path.glob(".dash.tmp-*"))
    result = _cli(sae, "--acts", acts, "--out", str(other), "--no-progress")
    assert result.returncode == 2 and "is not an empty folder or a dashboard" in result.stderr
    assert [p.name for p in other.iterdir()] == ["mine.txt"]


def test_existing_dashboard_needs_overwrite_and_tokens_limit(setup, tmp_path):
    acts, sae = setup
    out = tmp_path / "dash"
    assert main(["dashboard", sae, "--acts", acts, "--features", "4", "--out", str(out), "--no-progress"]) == 0
    assert main(["dashboard", sae, "--acts", acts, "--features", "5", "--out", str(out), "--no-progress"]) == 2
    assert json.loads((out / "dashboard.json").read_text())["features"] == [4]
    assert main(["dashboard", sae, "--acts", acts, "--features", "5", "--out", str(out), "--tokens", "1500",
                 "--overwrite", "--no-progress"]) == 0
    assert json.loads((out / "dashboard.json").read_text())["features"] == [5]
    assert _record(out, 5)["n_tokens"] == 1500 and not (out / "data" / "4.json").exists()




def test_without_a_store_the_error_gives_the_harvest_command(setup, tmp_path, capsys, toy_gpt2_dir):
    _, sae = setup
    assert main(["dashboard", sae, "--out", str(tmp_path / "dash")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: --acts is required: the dashboard streams an activation store of {HOOK}; make one with "
                   f"`sae harvest --model {toy_gpt2_dir} --hooks {HOOK} --tokens 1M --out acts/`, then pass "
                   "--acts acts/")
    assert not (tmp_path / "dash").exists()

def test_a_run_folder_of_one_sae_stands_for_it(setup, tmp_path, capsys):
    """`sae dashboard RUN` works when RUN/saes holds one SAE (the same records as naming it), and
    lists the SAEs to choose from when it holds several."""
    import shutil
    acts, sae = setup
    shutil.copytree(sae, tmp_path / "run" / "saes" / "only")
    flags = ["--acts", acts, "--features", "3", "--no-progress"]
    assert main(["dashboard", str(tmp_path / "run"), *flags, "--out", str(tmp_path / "by_run")]) == 0
    assert main(["dashboard", sae, *flags, "--out", str(tmp_path / "by_sae")]) == 0
    strip = lambda r: {k: v for k, v in r.items() if k != "sae"}
    assert strip(_record(tmp_path / "by_run", 3)) == strip(_record(tmp_path / "by_sae", 3))
    shutil.copytree(sae, tmp_path / "run" / "saes" / "other")
    capsys.readouterr()
    assert main(["dashboard", str(tmp_path / "run"), *flags, "--out", str(tmp_path / "two")]) == 2
    err = capsys.readouterr().err
    assert "holds 2 SAEs; pass one of them:" in err and "saes/only" in err and not (tmp_path / "two").exists()

@pytest.mark.parametrize("files, words", [
    ({"summary.json": "[]", "flow.csv": "layer,hook\n"}, "no 'blocks' object"),
    ({"summary.json": '{"blocks": {}}', "flow.csv": "hook,feature\nx,1\n"}, "flow.csv' is damaged"),
    ({"summary.json": '{"blocks": {"0": {}}}', "flow.csv": "layer,hook,feature\n0,h,abc\n"}, "flow.csv' is damaged"),
    ({"circuit.json": '{"meta": {}, "nodes": [3]}'}, "not objects with an 'id'"),
    ({"circuit.json": '{"meta": {}, "nodes": [{"id": "a", "hook": "h", "feature": "abc"}]}'}, "not an integer"),
])
def test_malformed_flow_and_circuit_inputs_are_one_line(tmp_path, files, words):
    """--flow and --circuits read other commands' outputs: a damaged one is named, in one line."""
    from activations.errors import ToolkitError
    from circuits.dashboard.neighbours import read_neighbours
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    flag = "--circuits" if "circuit.json" in files else "--flow"
    with pytest.raises(ToolkitError, match=words) as err:
        read_neighbours(tmp_path, flag, "h")
    assert "\n" not in str(err.value)


def test_supervised_report_lists_the_values_each_feature_detects(setup, tmp_path, capsys):
    """--supervised reads a `sae supervised --out` report: a feature's page lists the attribute
    values it detects best (escaped like all data), only for this SAE; a report on other SAEs
    is refused in one line."""
    acts, sae = setup
    node = {"sae": f"/elsewhere/{Path(sae).name}", "task": "ioi", "hook": HOOK, "position": "end",
            "interpretability": {"io": {"f1": 0.5, "chance": 0.077, "best": {"<b>Bella</b>": {"latent": 2, "f1": 0.61},
                                                                           "Ivan": {"latent": 5, "f1": 0.4}}},
                                 "pos": {"f1": 0.7, "chance": 0.667, "best": {"IO first": {"latent": 2, "f1": 0.7}}}}}
    other = {**node, "sae": "/elsewhere/another-sae", "interpretability": {
        "io": {"f1": 0.9, "chance": 0.077, "best": {"Otto": {"latent": 3, "f1": 0.9}}}}}
    report = tmp_path / "supervised.json"
    report.write_text(json.dumps({"settings": {"task": "ioi"}, "nodes": [node, other]}))
    out = tmp_path / "dash"
    assert main(["dashboard", sae, "--acts", acts, "--features", "2,3,5", "--out", str(out), "--supervised", str(report),
                 "--no-progress"]) == 0
    two = _record(out, 2)["attribute_detectors"]
    assert two == [{"task": "ioi", "position": "end", "attribute": "io", "value": "<b>Bella</b>", "f1": 0.61,
                    "chance": 0.077},
                   {"task": "ioi", "position": "end", "attribute": "pos", "value": "IO first", "f1": 0.7,
                    "chance": 0.667}]
    assert _record(out, 3)["attribute_detectors"] == []  # latent 3 is the other SAE's detector
    assert [e["value"] for e in _record(out, 5)["attribute_detectors"]] == ["Ivan"]
    page = (out / "features" / "2.html").read_text()
    assert "&lt;b&gt;Bella&lt;/b&gt;" in page and "<b>Bella</b>" not in page
    capsys.readouterr()
    report.write_text(json.dumps({"settings": {"task": "ioi"}, "nodes": [other]}))
    assert main(["dashboard", sae, "--acts", acts, "--features", "2", "--out", str(tmp_path / "d2"), "--supervised",
                 str(report), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --supervised file") and "judges no SAE 'sae'" in err and err.count("\n") == 1
    assert not (tmp_path / "d2").exists()


def test_compare_json_gives_each_feature_its_match_in_the_other_sae(setup, tmp_path, capsys):
    """--compare reads `sae compare --json`: a feature's page gives its best match in the other
    SAE, whether they are shared, their correlation and its family (escaped like all data); the
    SAE is found by path when both have its folder name; a comparison of other SAEs is refused."""
    acts, sae = setup
    twin = tmp_path / "other" / Path(sae).name  # another run's SAE of the same name: a second seed
    original = load_sae(sae)
    with torch.no_grad():  # the twin has latents 2 and 5 swapped: encoders, biases and decoders
        for param in (original.encoder_weight, original.b_enc, original.W_dec):
            param[[2, 5]] = param[[5, 2]].clone()
    save_sae(original, twin, metadata={"model_name": original.metadata["model_name"]})
    cmp = tmp_path / "cmp.json"
    assert main(["compare", sae, str(twin), "--acts", acts, "--tokens", "2048", "--batch-size", "512",
                 "--json", str(cmp)]) == 0
    doc = json.loads(cmp.read_text())
    out = tmp_path / "dash"
    assert main(["dashboard", sae, "--acts", acts, "--features", "2,3", "--out", str(out), "--compare", str(cmp),
                 "--no-progress"]) == 0
    two, three = _record(out, 2)["matches"], _record(out, 3)["matches"]
    assert two[0]["best match"] == 5 and two[0]["cosine"] == pytest.approx(1.0) and two[0]["shared"]
    assert two[0]["correlation"] == pytest.approx(1.0, abs=1e-4) and two[0]["other SAE"] == Path(sae).name
    assert three[0]["best match"] == 3 and three[0]["shared"]
    assert "Its match in another SAE" in (out / "features" / "2.html").read_text()
    out_b = tmp_path / "dash_b"  # the same file seen from the twin's side
    assert main(["dashboard", str(twin), "--acts", acts, "--features", "5", "--out", str(out_b), "--compare", str(cmp),
                 "--no-progress"]) == 0
    assert _record(out_b, 5)["matches"][0]["best match"] == 2
    doc["a"], doc["b"] = f"/elsewhere/{Path(sae).name}", "/elsewhere/another"  # moved: found by its name
    cmp.write_text(json.dumps(doc))
    assert main(["dashboard", sae, "--acts", acts, "--features", "2", "--out", str(tmp_path / "d1"), "--compare",
                 str(cmp), "--no-progress"]) == 0
    assert _record(tmp_path / "d1", 2)["matches"][0]["other SAE"] == "another"
    capsys.readouterr()
    doc["a"], doc["b"] = "/elsewhere/x", "/elsewhere/y"
    cmp.write_text(json.dumps(doc))
    assert main(["dashboard", sae, "--acts", acts, "--features", "2", "--out", str(tmp_path / "d2"), "--compare",
                 str(cmp), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --compare file") and "compares neither" in err and err.count("\n") == 1
    assert not (tmp_path / "d2").exists()
