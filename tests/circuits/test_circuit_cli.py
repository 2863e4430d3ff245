"""``sae circuit``: JSON, self-contained HTML, SVG only with graphviz, one-line errors."""

from __future__ import annotations

import json
import shutil

import pytest

from sae.cli import main


@pytest.fixture(scope="module")
def run_dir(tiny_saes):
    return next(iter(tiny_saes.values())).parent


def test_sae_circuit_writes_json_and_html(run_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "circuit"
    code = main(["circuit", "--dataset", "sva_pp", "--model", "tiny", "--saes", str(run_dir), "--out", str(out),
                 "--examples", "16", "--method", "atp", "--value", "20", "--sweep", "5,20"])
    assert code == 0
    doc = json.loads((out / "circuit.json").read_text())
    assert len(doc["nodes"]) == 20
    node = doc["nodes"][0]
    assert {"hook", "feature", "position", "attribution", "activation"} <= set(node)
    assert abs(node["attribution"]) >= max(abs(n["attribution"]) for n in doc["nodes"][1:])
    ids = {n["id"] for n in doc["nodes"]}
    assert doc["edges"] and all(e["source"] in ids and e["target"] in ids and "weight" in e for e in doc["edges"])
    assert [p["size"] for p in doc["meta"]["faithfulness_curve"]] == [5, 20]
    html = (out / "circuit.html").read_text()
    assert "<script src=" not in html and "Plotly.newPlot" in html  # plotly.js embedded
    assert (out / "circuit.svg").exists() == bool(shutil.which("dot"))
    assert "faithfulness" in capsys.readouterr().out
    # `sae dashboard --circuits OUT` reads the folder as is: each feature node of the SAE's hook.
    from circuits.dashboard.neighbours import read_neighbours
    features = [n for n in doc["nodes"] if n["kind"] == "feature"]
    hook = features[0]["hook"]
    members = read_neighbours(str(out), "--circuits", hook)
    expected = [n for n in features if n["hook"] == hook]
    assert sum(map(len, members.values())) == len(expected)
    for n in expected:
        entry = next(e for e in members[n["feature"]] if e["node"] == n["id"])
        assert entry["circuit"] == "sva_pp" and entry["attribution"] == n["attribution"]
        assert entry["rank"] == doc["nodes"].index(n) + 1 and entry["of"] == 20
    assert read_neighbours(str(out / "circuit.json"), "--circuits", hook) == members
    # the circuit is kept unless --overwrite: refused before any work, nothing rewritten
    before = {f.name: f.stat().st_mtime_ns for f in out.iterdir()}
    assert main(["circuit", "--dataset", "sva_pp", "--saes", str(run_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: '{out}' already holds circuit.json, circuit.html") and err.count("\n") == 1
    assert "pass --overwrite" in err and {f.name: f.stat().st_mtime_ns for f in out.iterdir()} == before
    (out / "circuit.svg").write_text("<svg>an older circuit</svg>")
    monkeypatch.setattr("circuits.render.shutil.which", lambda name: None)  # no graphviz this time
    assert main(["circuit", "--dataset", "sva_pp", "--saes", str(run_dir), "--out", str(out), "--examples", "16",
                 "--method", "atp", "--value", "5", "--sweep", "", "--no-edges", "--overwrite"]) == 0
    assert len(json.loads((out / "circuit.json").read_text())["nodes"]) == 5
    assert not (out / "circuit.svg").exists()  # no stale picture of the old circuit beside the new one


def test_user_json_dataset_and_per_position_nodes(run_dir, tmp_path):
    from activations.corpus import sva_examples
    data = tmp_path / "mine.jsonl"
    data.write_text("\n".join(json.dumps(e) for e in sva_examples(12, seed=4, kind="simple")))
    assert main(["circuit", "--dataset", str(data), "--saes", str(run_dir), "--out", str(tmp_path / "o"),
                 "--method", "atp", "--per-position", "--value", "10", "--sweep", "", "--no-edges",
                 "--check-top", "6"]) == 0
    doc = json.loads((tmp_path / "o" / "circuit.json").read_text())
    nodes = doc["nodes"]
    assert len(nodes) == 10 and all(isinstance(n["position"], int) for n in nodes)
    assert main(["circuit", "--dataset", str(data), "--saes", str(run_dir), "--out", str(tmp_path / "r"),
                 "--method", "atp", "--per-position", "--value", "10", "--sweep", "", "--no-edges",
                 "--refine", "1", "--refine-candidates", "4"]) == 0  # per-position nodes refine too
    refined = json.loads((tmp_path / "r" / "circuit.json").read_text())
    assert len(refined["nodes"]) == 10 and all(isinstance(n["position"], int) for n in refined["nodes"])
    history = refined["meta"]["refinement"]["discovery_metric"]
    assert refined["meta"]["refinement"]["swaps"] == 1 and len(history) == 2 and history[1] > history[0]
    assert {n["id"] for n in refined["nodes"]} != {n["id"] for n in nodes}  # the swap changed the circuit
    # the patching check covers the circuit's top nodes, with the circuit's scores as estimates
    check = doc["meta"]["patching_check"]
    assert check["n"] == 6 and -1 <= check["spearman"] <= 1
    assert [(c["hook"], c["feature"], c["position"], c["estimate"]) for c in check["nodes"]] == \
        [(n["hook"], n["feature"], n["position"], n["attribution"]) for n in nodes[:6]]
    assert all(isinstance(c["exact"], float) for c in check["nodes"])


def test_refine_swaps_nodes_and_records_the_search(run_dir, tmp_path, capsys):
    out = tmp_path / "refined"
    assert main(["circuit", "--dataset", "sva_pp", "--model", "tiny", "--saes", str(run_dir), "--out", str(out),
                 "--examples", "24", "--method", "atp", "--value", "20", "--sweep", "", "--no-edges",
                 "--refine", "2", "--refine-candidates", "3"]) == 0
    doc = json.loads((out / "circuit.json").read_text())
    refinement = doc["meta"]["refinement"]
    assert len(doc["nodes"]) == 20 and 1 <= refinement["swaps"] <= 2
    history = refinement["discovery_metric"]
    assert len(history) == refinement["swaps"] + 1 and all(b > a for a, b in zip(history, history[1:]))
    captured = capsys.readouterr()
    printed = captured.out
    assert f"refined by {refinement['swaps']} swaps" in printed
    assert f"metric={history[-1]:.3f}" in captured.err  # the progress bar ends on the last kept swap's metric
    assert f"{refinement['heldout_faithfulness_before']:.3f} -> {doc['meta']['evaluation']['faithfulness']:.3f}" in printed


def test_search_then_refine_records_both(run_dir, tmp_path, capsys):
    """--search runs the gradient search, then --refine swaps from its result; the record holds
    both, and the discovery metric rises through them."""
    out = tmp_path / "searched"
    assert main(["circuit", "--dataset", "sva_pp", "--model", "tiny", "--saes", str(run_dir), "--out", str(out),
                 "--examples", "24", "--method", "atp", "--value", "20", "--sweep", "", "--no-edges",
                 "--search", "8", "--refine", "1", "--refine-candidates", "3"]) == 0
    doc = json.loads((out / "circuit.json").read_text())
    refinement = doc["meta"]["refinement"]
    assert refinement["search_steps"] == 8 and refinement["rounds"] == 1 and len(doc["nodes"]) == 20
    history = refinement["discovery_metric"]
    assert len(history) >= 2 and all(b > a for a, b in zip(history, history[1:]))
    by_search = int(refinement["searched"].split(" by gradient search")[0])
    assert by_search >= 1 and refinement["swaps"] >= by_search
    printed = capsys.readouterr().out
    assert f"refined by {refinement['swaps']} swaps ({refinement['searched']})" in printed


def test_svg_needs_graphviz(monkeypatch, tmp_path):
    from circuits import render
    doc = {"meta": {}, "nodes": [{"id": "blocks.0.hook_mlp_out/3", "hook": "blocks.0.hook_mlp_out", "feature": 3,
                                  "kind": "feature", "position": None, "attribution": 1.0, "activation": 2.0}],
           "edges": []}
    monkeypatch.setattr(render.shutil, "which", lambda name: None)
    written = render.write_outputs(doc, tmp_path)
    assert [p.name for p in written] == ["circuit.json", "circuit.html"]


@pytest.mark.parametrize("args, words", [(["--dataset", "nope"], "unknown dataset"),
                                         (["--dataset", "ioi", "--threshold", "relative", "--value", "3"], "out of range"),
                                         (["--dataset", "ioi", "--check-top", "1"], "--check-top 1"),
                                         (["--dataset", "ioi", "--refine", "-1"], "--refine -1"),
                                         (["--dataset", "ioi", "--search", "-2"], "--search -2"),
                                         (["--dataset", "ioi", "--search-kicks", "2"], "needs --search"),
                                         (["--dataset", "ioi", "--value", "nan"], "not a finite number"),
                                         (["--dataset", "ioi", "--sweep", "10,abc"], "comma-separated"),
                                         (["--dataset", "ioi", "--sweep", "-5"], "at least 1"),
                                         (["--dataset", "ioi", "--draw-edges", "-1"], "--draw-edges -1")])
def test_bad_arguments_are_one_line_errors(run_dir, tmp_path, capsys, args, words):
    code = main(["circuit", "--saes", str(run_dir), "--out", str(tmp_path), "--method", "atp", "--examples", "8", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and words in err and "\n" not in err


def test_missing_sae_folder_is_an_error(tmp_path, capsys):
    assert main(["circuit", "--dataset", "ioi", "--saes", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_saes_of_two_models_are_refused(run_dir, tmp_path, capsys):
    mixed = tmp_path / "mixed"
    for i, folder in enumerate(sorted(p for p in run_dir.iterdir() if (p / "cfg.json").is_file())[:2]):
        shutil.copytree(folder, mixed / folder.name)
        if i:
            cfg = json.loads((mixed / folder.name / "cfg.json").read_text())
            cfg.setdefault("metadata", {})["model_name"] = "gpt2"
            (mixed / folder.name / "cfg.json").write_text(json.dumps(cfg))
    assert main(["circuit", "--dataset", "ioi", "--saes", str(mixed), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "different models" in err and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_left_out_examples_are_reported(run_dir, tmp_path, capsys):
    """Examples whose answer is not one token are dropped, and the run says how many and why."""
    from circuits.datasets import load_examples
    good = load_examples("sva_pp", 8, seed=5)
    bad = [{**e, "clean_answer": " are definitely"} for e in load_examples("sva_pp", 3, seed=6)]
    assert not {e["clean_prefix"] for e in good} & {e["clean_prefix"] for e in bad}
    data = tmp_path / "d.json"
    data.write_text(json.dumps(good + bad))
    assert main(["circuit", "--dataset", str(data), "--saes", str(run_dir), "--out", str(tmp_path / "o"),
                 "--method", "atp", "--no-edges", "--sweep", "", "--value", "5"]) == 0
    err = capsys.readouterr().err
    assert "note: 3 of 11 examples left out (3 an answer is not one token)" in err


def test_outputs_are_written_together_or_not_at_all(tmp_path, monkeypatch):
    """A failure while writing the page leaves the earlier circuit.json whole and no partial file."""
    from circuits import render
    doc = {"meta": {}, "nodes": [], "edges": []}
    monkeypatch.setattr(render.shutil, "which", lambda name: None)
    render.write_outputs(doc, tmp_path)
    before = (tmp_path / "circuit.json").read_bytes()

    def broken(doc, path, max_edges):
        path.write_text("<html>half")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(render, "write_html", broken)
    with pytest.raises(OSError):
        render.write_outputs({"meta": {"dataset": "new"}, "nodes": [], "edges": []}, tmp_path)
    assert (tmp_path / "circuit.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["circuit.html", "circuit.json"]
