"""Supervised feature dictionaries (IOI, agreement) and the Makelov et al. 2024 evaluations of SAEs."""

from __future__ import annotations

import json
import re

import pytest
import torch

from activations.models import load_model
from circuits.supervised import (SupervisedDictionary, best_f1, chance_f1, end_logits, evaluate_node, node_acts,
                                 sae_edits)
from circuits.supervised_tasks import TASKS, TaskPrompts

IOI, SVA = TASKS["ioi"], TASKS["sva"]
ATTRIBUTES = IOI.attributes
from sae.architectures import ARCHITECTURES
from sae.cli import main
from sae.config import SAEConfig
from sae.io import load_sae

HOOK = "blocks.2.hook_resid_post"


@pytest.fixture(scope="module")
def model():
    return load_model("tiny", device="cpu")


@pytest.mark.parametrize("attribute", ATTRIBUTES)
def test_a_counterfactual_changes_its_attribute_only(model, attribute):
    base, cf = IOI.prompts(model, 40, seed=3, attribute=attribute)
    assert base.tokens.shape == cf.tokens.shape and torch.equal(base.end, cf.end)
    assert torch.equal(base.at("s2"), cf.at("s2"))
    for other in ATTRIBUTES:
        assert torch.equal(base.values[other], cf.values[other]) == (other != attribute)
    assert (base.values[attribute] != cf.values[attribute]).all()
    rows = torch.arange(len(base))
    names = IOI.names(model)
    for p in (base, cf):
        s2, s_id, io_id = p.at("s2"), p.answers["s"], p.answers["io"]
        assert torch.equal(p.tokens[rows, s2], s_id) and (s2 < p.end).all()  # S2 is the subject's name
        later = torch.arange(p.tokens.shape[1])[None, :] > s2[:, None]
        assert not ((p.tokens == s_id[:, None]) & later).any()  # ... and its last mention
        for i in range(len(p)):
            text = model.tokenizer.decode(p.tokens[i, 1:p.end[i] + 1].tolist())
            io, s = names[p.values["io"][i]], names[p.values["s"][i]]
            words = re.findall(r"[A-Z][a-z]+", text)
            assert words.count(io) == 1 and words.count(s) == 2, text  # IO once, S twice
            assert (words.index(io) < words.index(s)) == (p.values["pos"][i] == 0), text
            assert model.tokenizer.decode([int(io_id[i])]) == " " + io and model.tokenizer.decode([int(s_id[i])]) == " " + s
    changed = (base.tokens != cf.tokens).sum(1)
    assert (changed == {"io": 1, "s": 2, "pos": 2}[attribute]).all()  # one name, both mentions, or the order


@pytest.mark.parametrize("attribute", SVA.attributes)
def test_an_agreement_counterfactual_changes_its_attribute_only(model, attribute):
    base, cf = SVA.prompts(model, 40, seed=3, attribute=attribute)
    assert base.tokens.shape == cf.tokens.shape and torch.equal(base.end, cf.end)
    assert torch.equal(base.at("subject"), cf.at("subject"))
    for other in SVA.attributes:
        assert torch.equal(base.values[other], cf.values[other]) == (other != attribute)
    lemmas = SVA.lemmas()
    for p in (base, cf):
        for i in range(len(p)):
            words = model.tokenizer.decode(p.tokens[i, 1:p.end[i] + 1].tolist()).split()
            noun = lemmas[p.values["noun"][i]][p.values["number"][i]]
            head = model.tokenizer.decode(p.tokens[i, 1:p.at("subject")[i] + 1].tolist())
            assert words[1] == noun and head.split() == words[:2], (words, head)  # "The {S} ...": the subject's last token
            right, wrong = (model.tokenizer.decode([int(p.answers[k][i])]) for k in ("right", "wrong"))
            assert right.endswith("s") != bool(p.values["number"][i]), (right, wrong)  # "is", "runs" / "are", "run"
    if attribute == "number":  # the right verb form of one is the wrong form of the other
        assert torch.equal(base.answers["right"], cf.answers["wrong"])


def test_the_supervised_dictionary_is_the_attributes_mean_differences():
    torch.manual_seed(0)
    value_names = {"io": ("A", "B", "C"), "s": ("A", "B", "C"), "pos": ("IO first", "IO second")}

    def prompts_of(io, s, pos):
        return TaskPrompts(torch.zeros(len(io), 3, dtype=torch.long), {"end": torch.zeros(len(io))},
                           {"io": io, "s": s, "pos": pos}, {}, value_names)

    io, s, pos = torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([1, 2, 0, 2, 0, 1]), torch.tensor([0, 1, 0, 1, 0, 1])
    prompts = prompts_of(io, s, pos)
    acts = torch.randn(6, 4)
    d = SupervisedDictionary.fit(acts, prompts)
    assert torch.allclose(d.mean, acts.mean(0))
    assert torch.allclose(d.u["io"][1], acts[[1, 4]].mean(0) - acts.mean(0))
    assert torch.allclose(d.u["pos"][1], acts[[1, 3, 5]].mean(0) - acts.mean(0))
    # activations additive in the attributes, over every combination once (a crossed design, in
    # which mean differences are the effects), are reconstructed and edited exactly
    io, s, pos = (column.flatten() for column in torch.meshgrid(torch.arange(3), torch.arange(3), torch.arange(2),
                                                                indexing="ij"))
    prompts = prompts_of(io, s, pos)
    mean, u_io, u_s, u_pos = torch.randn(4), torch.randn(3, 4), torch.randn(3, 4), torch.randn(2, 4)
    u_io, u_s, u_pos = u_io - u_io.mean(0), u_s - u_s.mean(0), u_pos - u_pos.mean(0)
    acts = mean + u_io[io] + u_s[s] + u_pos[pos]
    d = SupervisedDictionary.fit(acts, prompts)
    assert torch.allclose(d.u["s"], u_s, atol=1e-5)
    assert torch.allclose(d.reconstruct(prompts), acts, atol=1e-5)
    cf = prompts_of((io + 1) % 3, s, pos)
    assert torch.allclose(d.edit(acts, "io", prompts, cf), mean + u_io[(io + 1) % 3] + u_s[s] + u_pos[pos], atol=1e-5)


def test_sae_edits_change_the_largest_differences_first():
    coder = ARCHITECTURES["topk"](SAEConfig(architecture="topk", hook=HOOK, d_in=6, d_sae=6, k=6), 6).eval()
    with torch.no_grad():
        coder.W_dec.copy_(torch.eye(6))
        coder.encoder_weight.copy_(torch.eye(6))
        coder.b_enc.zero_()
        coder.b_dec.zero_()
    a = torch.tensor([[1.0, 2.0, 3.0, 0.5, 0.0, 1.0]])
    target = a + torch.tensor([[0.0, 0.0, 2.0, 0.0, 4.0, -0.5]])  # latent 4 starts to fire, 2 grows, 5 shrinks
    edits = sae_edits(coder, a, target, budgets=(1, 2, 3, 5))
    assert torch.allclose(edits[1], a + torch.tensor([[0, 0, 0, 0, 4.0, 0]]))
    assert torch.allclose(edits[2], a + torch.tensor([[0, 0, 2.0, 0, 4.0, 0]]))
    assert torch.allclose(edits[3], target) and torch.allclose(edits[5], target)  # nothing left to change


def test_best_f1_and_chance():
    labels = torch.tensor([0, 0, 1, 1])
    latents = torch.tensor([[1.0, 1, 0], [1, 1, 0], [0, 1, 1], [0, 1, 0]])
    best, index = best_f1(latents, labels)
    assert index.tolist() == [0, 1] and torch.allclose(best, torch.tensor([1.0, 2 * 2 / (2 + 4)]))
    assert chance_f1(labels) == pytest.approx(2 * 0.5 / 1.5)


def test_patching_the_last_residual_gives_the_counterfactuals_logits(model):
    """The final residual at the end fixes the end logits: patching it in at the right rows and
    positions gives the counterfactual's own logits, and patching a prompt's own is a no-op."""
    base, cf = IOI.prompts(model, 70, seed=2, attribute="io")  # more than one batch of 64
    hook = "blocks.3.hook_resid_post"
    clean = end_logits(model, base)
    assert torch.allclose(end_logits(model, base, hook, "end", node_acts(model, base, hook, "end")), clean, atol=1e-4)
    patched = end_logits(model, base, hook, "end", node_acts(model, cf, hook, "end"))
    assert torch.allclose(patched, end_logits(model, cf), atol=1e-3)
    assert not torch.allclose(patched, clean, atol=1e-1)


def test_the_supervised_dictionary_controls_the_indirect_object(model, tiny_saes):
    """At a middle residual at the end, patching in another IO's activation moves the logits by
    many nats, the supervised edit (two vectors) does about the same, and the SAE's edits do
    more as they may change more latents, without matching the supervised edit with one."""
    sae = load_sae(tiny_saes[HOOK])
    report = evaluate_node(model, sae, "end", n_fit=512, n_eval=96, budgets=(1, 4, 16))
    io = report["control"]["io"]
    assert io["patch_effect"] > 5
    assert 0.8 < io["supervised"] < 1.2
    assert io["sae_k1"] < io["sae_k4"] < io["sae_k16"] and io["sae_k1"] < 0.5 * io["supervised"]
    approx = report["approximation"]
    assert approx["logit_diff"] > 3 and approx["supervised"]["sufficiency"] > 0.7
    assert approx["supervised"]["necessity"] > 0.7
    f1 = report["interpretability"]["io"]
    assert f1["chance"] < f1["f1"] <= 1


def test_agreement_number_reaches_the_end_in_the_last_layer(model, tiny_saes):
    """SVA: at the last residual at the end, flipping the subject's number moves the verb by
    many nats; the supervised edit does the same with two vectors, one latent detects the
    number, and the SAE's edits do more the more latents they change. The attractor's number
    moves nothing there (the model agrees across attractors)."""
    sae = load_sae(tiny_saes["blocks.3.hook_resid_post"])
    report = evaluate_node(model, sae, "end", n_fit=512, n_eval=96, budgets=(1, 4, 16), task="sva")
    assert report["task"] == "sva"
    number = report["control"]["number"]
    assert number["patch_effect"] > 5 and 0.9 < number["supervised"] < 1.1
    assert number["sae_k1"] < number["sae_k4"] < number["sae_k16"]
    assert report["control"]["attractor"]["supervised"] is None  # |patch effect| < 0.5 logits
    assert report["interpretability"]["number"]["f1"] > 0.9 > report["interpretability"]["number"]["chance"]
    best = report["interpretability"]["number"]["best"]  # a latent each for singular and plural subjects
    assert set(best) == {"singular", "plural"} and best["singular"]["latent"] != best["plural"]["latent"]
    assert report["interpretability"]["number"]["f1"] == pytest.approx((best["singular"]["f1"] + best["plural"]["f1"]) / 2)


def test_sae_supervised_prints_tables_and_writes_json(tiny_saes, tmp_path, capsys):
    out = tmp_path / "report" / "supervised.json"
    code = main(["supervised", str(tiny_saes["blocks.1.hook_resid_post"]), "--positions", "end", "--fit-prompts", "256",
                 "--prompts", "48", "--budgets", "2,1", "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert f"{tiny_saes['blocks.1.hook_resid_post'].name} @end" in text and "k=1" in text and "k=2" in text and "k=4" not in text
    doc = json.loads(out.read_text())
    assert doc["settings"]["budgets"] == [1, 2] and len(doc["nodes"]) == 1
    node = doc["nodes"][0]
    assert node["position"] == "end" and set(node["control"]) == set(ATTRIBUTES)
    assert set(node["control"]["io"]) == {"patch_effect", "supervised", "sae_k1", "sae_k2"}
    # `sae dashboard --supervised` reads this report: each value's best latent, for this SAE
    from circuits.dashboard.neighbours import supervised_detectors
    folder = tiny_saes["blocks.1.hook_resid_post"]
    detectors = supervised_detectors(out, folder.name, "blocks.1.hook_resid_post")
    best = node["interpretability"]["io"]["best"]
    assert len(best) > 1 and all({"task": "ioi", "position": "end", "attribute": "io", "value": value, "f1": round(b["f1"], 3),
                                  "chance": round(node["interpretability"]["io"]["chance"], 3)} in detectors[b["latent"]]
                                 for value, b in best.items())


@pytest.mark.parametrize("args, words", [(["--positions", "middle"], "--positions 'middle'"),
                                         (["--task", "sva", "--positions", "s2"], "some of end, subject"),
                                         (["--task", "nope"], "unknown task 'nope'; use one of ioi, sva"),
                                         (["--budgets", "0"], "--budgets '0'"),
                                         (["--budgets", "x"], "comma-separated list of integers"),
                                         (["--prompts", "0"], "--prompts must be a positive"),
                                         (["--fit-prompts", "8"], "of the 25 io values never occur in the fitting")])
def test_bad_arguments_are_one_line_errors(tiny_saes, capsys, args, words):
    assert main(["supervised", str(tiny_saes[HOOK]), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and words in err and "\n" not in err


def test_a_transcoder_is_refused(model):
    coder = ARCHITECTURES["topk"](SAEConfig(architecture="topk", hook="blocks.1.ln2.hook_normalized",
                                            hook_out="blocks.1.hook_mlp_out", d_in=192, d_sae=64, k=4), 192).eval()
    from activations.errors import ToolkitError
    with pytest.raises(ToolkitError, match="is a transcoder"):
        evaluate_node(model, coder, "end", n_fit=8, n_eval=8)


def test_saes_at_one_hook_share_one_dictionary(tiny_saes, tmp_path, capsys, monkeypatch):
    """A sweep at one hook: the node (dictionary, prompts, patch effects) is built once, each
    SAE gets its own row, named by its folder, and equal SAEs get equal reports."""
    import shutil

    import circuits.supervised as supervised
    sweep = tmp_path / "sweep"
    for name in ("a-k16", "b-k16"):
        shutil.copytree(tiny_saes["blocks.1.hook_resid_post"], sweep / name)
    built = []
    real_init = supervised.Node.__init__
    monkeypatch.setattr(supervised.Node, "__init__", lambda self, *a, **kw: built.append(a[1:3]) or real_init(self, *a, **kw))
    out = tmp_path / "sweep.json"
    assert main(["supervised", str(sweep), "--positions", "end", "--fit-prompts", "128", "--prompts", "32",
                 "--budgets", "1", "--out", str(out)]) == 0
    assert built == [("blocks.1.hook_resid_post", "end")]
    text = capsys.readouterr().out
    assert "a-k16 @end" in text and "b-k16 @end" in text
    a, b = json.loads(out.read_text())["nodes"]
    assert a["sae"].endswith("a-k16") and b["sae"].endswith("b-k16")
    assert {k: v for k, v in a.items() if k != "sae"} == {k: v for k, v in b.items() if k != "sae"}
