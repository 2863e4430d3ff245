"""Feature flow: classification on planted decoders, blockwise matching, guards, graphs,
exports, the activation check and the `sae flow` command."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch

from activations.errors import ToolkitError
from circuits.flow import (CLASSES, FlowConfig, Thresholds, classify, feature_flow, load_directions,
                           stack_layers)
from circuits.flow_graph import chain_directions, flow_graph
from sae.architectures import ARCHITECTURES
from sae.config import SAEConfig
from sae.io import save_sae

D, N = 32, 12


def _save(folder, hook, decoder, model="tiny"):
    sae = ARCHITECTURES["topk"](SAEConfig(architecture="topk", hook=hook, d_in=decoder.shape[1],
                                          d_sae=decoder.shape[0], k=2), decoder.shape[1])
    with torch.no_grad():
        sae.W_dec.copy_(decoder)
    return save_sae(sae, folder, metadata={"model_name": model})


def _unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def _planted(tmp_path):
    """Block 0 SAEs where resid_out feature j is built to be class CLASSES[j % 6]."""
    gen = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(D, D, generator=gen))[0].T  # orthonormal rows
    resid_in, attn, mlp = basis[:N], basis[N:2 * N], basis[2 * N:2 * N + N // 2].repeat(2, 1)
    out = []
    for j in range(N):
        name = CLASSES[j % 6]
        if name == "persists":
            v = resid_in[j]
        elif name.startswith("processed"):
            v = resid_in[j] + (attn[j] if name.endswith("attn") else mlp[j])
        elif name.startswith("created"):
            v = attn[j] if name.endswith("attn") else mlp[j]
        else:
            v = basis[-1] + 0.01 * j * basis[-2]
        out.append(v)
    folders = [_save(tmp_path / "r0", "blocks.0.hook_resid_pre", resid_in),
               _save(tmp_path / "a0", "blocks.0.hook_attn_out", attn),
               _save(tmp_path / "m0", "blocks.0.hook_mlp_out", mlp),
               _save(tmp_path / "r1", "blocks.0.hook_resid_post", _unit(torch.stack(out)))]
    return folders


def test_planted_features_get_their_classes(tmp_path):
    _, flows = feature_flow(_planted(tmp_path), FlowConfig(Thresholds(resid=0.5, module=0.5)))
    got = [CLASSES[int(c)] for c in flows[0].classes]
    assert got == [CLASSES[j % 6] for j in range(N)]
    persists = flows[0].index[0]
    assert int(persists[0]) == 0 and flows[0].similarity[0, 0] == pytest.approx(1.0, abs=1e-5)



def test_a_run_folder_stands_for_the_saes_in_it(tmp_path):
    """feature_flow([RUN]) classifies as feature_flow(RUN/saes/*): a `sae train` run over the
    four hooks of a block can be passed whole."""
    folders = _planted(tmp_path / "run" / "saes")
    config = FlowConfig(Thresholds(resid=0.5, module=0.5))
    _, by_run = feature_flow([tmp_path / "run"], config)
    _, by_folder = feature_flow(folders, config)
    assert len(by_run) == 1 and torch.equal(by_run[0].classes, by_folder[0].classes)
    assert torch.equal(by_run[0].index, by_folder[0].index)

def test_classify_picks_the_more_similar_module_and_respects_thresholds():
    sim = torch.tensor([[0.9, 0.6, 0.7], [0.2, 0.8, 0.6], [0.9, 0.1, 0.2], [0.3, 0.3, 0.3]])
    names = [CLASSES[int(c)] for c in classify(sim, Thresholds(0.5, 0.5))]
    assert names == ["processed_mlp", "created_attn", "persists", "unexplained"]
    names = [CLASSES[int(c)] for c in classify(sim, Thresholds(0.95, 0.95))]
    assert names == ["unexplained"] * 4


def test_per_layer_thresholds_override_the_default(tmp_path):
    config = FlowConfig(Thresholds(0.5, 0.5), per_layer={0: Thresholds(1.01, 1.01)})
    _, flows = feature_flow(_planted(tmp_path), config)
    assert flows[0].counts()["unexplained"] == N and flows[0].thresholds == Thresholds(1.01, 1.01)


def test_guards_name_the_offending_sae(tmp_path):
    folders = _planted(tmp_path)
    gen = torch.Generator().manual_seed(2)
    wide = _save(tmp_path / "wide", "blocks.0.hook_mlp_out", _unit(torch.randn(N, D + 1, generator=gen)))
    other = _save(tmp_path / "gpt2", "blocks.0.hook_mlp_out", _unit(torch.randn(N, D, generator=gen)), "gpt2")
    z = _save(tmp_path / "z", "blocks.0.attn.hook_z", _unit(torch.randn(N, D, generator=gen)))
    cases = [(wide, "d_in"), (other, "model 'gpt2'"), (z, "another basis")]
    for bad, words in cases:
        with pytest.raises(ToolkitError, match=words) as err:
            feature_flow([*folders[:2], bad, folders[3]])
        assert str(bad) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ToolkitError, match="does not exist"):
        feature_flow([*folders[:3], tmp_path / "missing"])
    with pytest.raises(ToolkitError, match="no complete block"):
        feature_flow(folders[:3])
    with pytest.raises(ToolkitError, match="both cover"):
        stack_layers([load_directions(f) for f in [*folders, folders[2]]])


def test_damaged_sae_folders_and_bad_numbers_are_one_line(tmp_path, capsys):
    """A damaged cfg.json or weights file names the file; thresholds outside [-1, 1] (NaN
    included) and negative counts are refused before any SAE is read, and nothing is written."""
    from sae.cli import main
    folders = _planted(tmp_path)
    for name, damage in (("cfg.json", b"{not json"), ("cfg.json", b"[]"), ("sae_weights.safetensors", b"abc")):
        bad = tmp_path / f"bad-{len(damage)}"
        shutil.copytree(folders[2], bad)
        (bad / name).write_bytes(damage)
        with pytest.raises(ToolkitError, match=name) as err:
            load_directions(bad)
        assert "\n" not in str(err.value)
    for flags in (["--resid-threshold", "nan"], ["--module-threshold", "1.5"], ["--seeds", "-1"]):
        assert main(["flow", *map(str, folders), "--out", str(tmp_path / "out"), *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and flags[0] in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def _chain(tmp_path, n_layers=3):
    """Residual SAEs where feature j of each layer is feature j of the previous, slightly turned."""
    gen = torch.Generator().manual_seed(3)
    resid = _unit(torch.randn(N, D, generator=gen))
    folders = [_save(tmp_path / "r0", "blocks.0.hook_resid_pre", resid)]
    for layer in range(n_layers):
        attn = _unit(torch.randn(N, D, generator=gen))
        resid = _unit(resid + attn) if layer == 1 else _unit(resid + 0.05 * torch.randn(N, D, generator=gen))
        folders += [_save(tmp_path / f"a{layer}", f"blocks.{layer}.hook_attn_out", attn),
                    _save(tmp_path / f"m{layer}", f"blocks.{layer}.hook_mlp_out",
                          _unit(torch.randn(N, D, generator=gen))),
                    _save(tmp_path / f"r{layer + 1}", f"blocks.{layer}.hook_resid_post", resid)]
    return folders


def test_flow_graph_follows_the_chain_both_ways(tmp_path):
    stack, _ = feature_flow(_chain(tmp_path))
    graph = flow_graph(stack, "blocks.0.hook_resid_post", 5, chain_threshold=0.5, module_threshold=0.6)
    chain = graph.residual_chain()
    assert [n.hook for n in chain] == ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post",
                                       "blocks.1.hook_resid_post", "blocks.2.hook_resid_post"]
    assert all(n.feature == 5 for n in chain)
    steering = chain_directions(graph, stack)
    assert [h for h, _ in steering] == [n.hook for n in chain]
    assert torch.allclose(steering[0][1], stack[0].resid_in.directions[5])
    modules = [e for e in graph.edges if e.kind != "resid"]
    assert [(e.kind, e.source) for e in modules] == [("attn", "blocks.1.hook_attn_out:5")]
    cut = flow_graph(stack, "blocks.0.hook_resid_post", 5, chain_threshold=0.999)
    assert list(cut.nodes) == ["blocks.0.hook_resid_post:5"] and not cut.edges
    with pytest.raises(ToolkitError, match="out of range"):
        flow_graph(stack, "blocks.0.hook_resid_post", N)
    with pytest.raises(ToolkitError, match="no residual SAE"):
        flow_graph(stack, "blocks.0.hook_mlp_out", 0)


def test_sae_flow_writes_table_graphs_and_self_contained_html(tmp_path, capsys):
    from sae.cli import main
    out = tmp_path / "flow"
    assert main(["flow", *map(str, _chain(tmp_path)), "--out", str(out), "--seeds", "2",
                 "--chain-threshold", "0.5"]) == 0
    rows = (out / "flow.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * N and rows[0].startswith("layer,hook,feature,class")
    graphs = json.loads((out / "graphs.json").read_text())
    assert len(graphs) == 2 and all(len(g["nodes"]) >= 2 for g in graphs)
    html = (out / "flow.html").read_text()
    assert html.count("plotly.js v") == 1  # the library once, for the class chart and both graphs
    assert not re.search(r"<script[^>]*\bsrc=", html) and html.count("Plotly.newPlot") == 3
    summary = json.loads((out / "summary.json").read_text())
    assert sum(summary["blocks"]["1"]["counts"].values()) == N
    assert main(["flow", str(tmp_path / "nope"), "--out", str(tmp_path / "other")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: SAE folder")
    # an earlier result is kept unless --overwrite: refused before any work, files untouched
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    (out / "notes.txt").write_text("mine")
    assert main(["flow", *map(str, _chain(tmp_path)), "--out", str(out), "--seeds", "1"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: '{out}' already holds flow.csv, summary.json, graphs.json, flow.html from an earlier "
                   "sae flow; pass --overwrite to replace them, or choose another --out\n")
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.name != "notes.txt"} == before
    assert main(["flow", *map(str, _chain(tmp_path)), "--out", str(out), "--seeds", "1", "--overwrite"]) == 0
    assert len(json.loads((out / "graphs.json").read_text())) == 1 and (out / "notes.txt").read_text() == "mine"
    assert main(["flow", *map(str, _chain(tmp_path)), "--out", str(out / "flow.csv")]) == 2
    assert "is a file; give a folder" in capsys.readouterr().err


@pytest.mark.slow
def test_activation_check_beats_random_predecessors(tiny_saes):
    """On the tiny model's SAEs, persisting features' matched predecessors co-fire far more
    often than random ones, and no class's matched predecessors co-fire less often than random
    ones. (The issue asks for the agreement per class to be measured and reported; how high
    it is for the module classes is a finding about the model, recorded in docs/flow.md.)"""
    from activations.models import load_model
    from circuits.flow_check import activation_agreement
    from sae.data import eval_contexts
    model = load_model("tiny", device="cpu")
    stack, flows = feature_flow([tiny_saes[h] for h in tiny_saes if h.startswith(("blocks.0.", "blocks.1."))])
    tokens = eval_contexts(model, "tinyworld", 64, 24, seed=5)
    report = activation_agreement(model, stack[-1], flows[-1], tokens)
    print({name: row for name, row in report.items()})
    for name in ("processed_attn", "processed_mlp", "created_attn", "created_mlp"):
        row = report[name]
        if row["firings"] >= 50:
            assert row["agreement"] >= row["control"], (name, row)
    persists = report["persists"]
    assert persists["firings"] >= 50 and persists["agreement"] > 3 * persists["control"] + 0.05, persists


@pytest.mark.slow
def test_removing_a_flow_feature_changes_its_successor_more_than_random_features(tiny_saes):
    """Demonstration: for residual features that flow classifies as persisting, zero-ablating
    the matched predecessor f (error term kept) makes the successor g fall on the tokens
    where both fire far more often than ablating a random feature active there."""
    from activations.models import load_model
    from circuits.interventions import FeatureAblation, Recorder, intervene, logits
    from sae.data import eval_contexts
    from sae.io import load_sae
    model = load_model("tiny", device="cpu")
    hooks = [h for h in tiny_saes if h.startswith(("blocks.0.", "blocks.1."))]
    stack, flows = feature_flow([tiny_saes[h] for h in hooks])
    block, flow = stack[-1], flows[-1]
    sae_in, sae_out = load_sae(block.resid_in.folder), load_sae(block.resid_out.folder)
    tokens = eval_contexts(model, "tinyworld", 64, 32, seed=7)
    acts = model.capture(tokens, [sae_in.cfg.hook, sae_out.cfg.hook])
    a_in, a_out = sae_in.encode(acts[sae_in.cfg.hook]), sae_out.encode(acts[sae_out.cfg.hook])
    persists = torch.nonzero(flow.classes == CLASSES.index("persists")).squeeze(1)
    gen = torch.Generator().manual_seed(0)
    drops = {"flow": [], "random": []}
    tried = 0
    for g in persists[torch.randperm(len(persists), generator=gen)].tolist():
        f = int(flow.index[g, 0])
        both = (a_in[..., f] > 0) & (a_out[..., g] > 0)
        both[:, 0] = False
        if both.sum() < 3:
            continue
        others = torch.nonzero((a_in[both] > 0).any(0)).squeeze(1)
        r = int(others[torch.randint(len(others), (1,), generator=gen)]) if len(others) > 1 else f
        for name, feature in (("flow", f), ("random", r)):
            record = Recorder(sae_out.cfg.hook)
            with intervene(model, [FeatureAblation(sae_in, [feature]), record]):
                logits(model, tokens)
            after = sae_out.encode(record.seen[0])[..., g][both]
            drops[name].append(float((after < 0.5 * a_out[..., g][both]).float().mean()))
        tried += 1
        if tried == 25:
            break
    assert tried >= 10
    flow_rate, random_rate = sum(drops["flow"]) / tried, sum(drops["random"]) / tried
    print(f"successor at least halved: flow {flow_rate:.3f}, random {random_rate:.3f}")
    # The demonstration: the flow-matched predecessor's removal changes the successor
    # as predicted more often than a random active feature's does; by a wide margin, not noise.
    assert flow_rate > random_rate + 0.2 and flow_rate > 5 * random_rate, (flow_rate, random_rate)


def test_dashboard_reads_flow_neighbours_from_the_flow_folder(tmp_path):
    """`sae dashboard --flow FLOW_DIR` needs no conversion: each SAE gets its predecessors (as a
    block's outgoing residual) and its successors (as the next block's incoming residual)."""
    import csv

    from circuits.dashboard.neighbours import read_neighbours
    from sae.cli import main
    out = tmp_path / "flow"
    assert main(["flow", *map(str, _chain(tmp_path)), "--out", str(out), "--seeds", "0"]) == 0
    hook = "blocks.0.hook_resid_post"
    got = read_neighbours(str(out), "--flow", hook)
    pred = {(e["source"], e["hook"], e["feature"]) for e in got[5] if e["relation"] == "predecessor"}
    assert ("resid", "blocks.0.hook_resid_pre", 5) in pred and {p[0] for p in pred} == {"resid", "attn", "mlp"}
    succ = [e for e in got[5] if e["relation"] == "successor"]
    assert {"hook": "blocks.1.hook_resid_post", "feature": 5, "source": "resid"}.items() <= succ[0].items()
    rows = list(csv.DictReader(open(out / "flow.csv")))
    n_succ = sum(r["layer"] == "1" for r in rows)  # every block-1 row names one resid predecessor on `hook`
    assert sum(e["relation"] == "successor" for entries in got.values() for e in entries) == n_succ
    attn = read_neighbours(str(out), "--flow", "blocks.1.hook_attn_out")
    assert all(e["relation"] == "successor" and e["source"] == "attn" for es in attn.values() for e in es)
    assert sum(map(len, attn.values())) == n_succ
    assert read_neighbours([str(out), str(out)], "--flow", hook)[5] == got[5] + got[5]
    with pytest.raises(ToolkitError, match="neither a flow result"):
        read_neighbours(str(tmp_path), "--flow", hook)
