"""Thresholds, faithfulness/completeness by mean ablation, and the validation circuits (SVA, IOI)."""

from __future__ import annotations

import pytest
import torch

from activations.errors import ToolkitError
from circuits.attribution import SplicedModel, attribute, logit_diff
from circuits.circuit import ablated_metric, count, evaluate, mean_values, select_nodes
from circuits.commands.circuit import load_saes
from circuits.datasets import load_examples, tokenize_pairs, train_test_split
from circuits.refine import _best_pairs, gradient_search, refine


@pytest.fixture(scope="module")
def model():
    from activations.models import load_model
    return load_model("tiny", device="cpu")


@pytest.fixture(scope="module")
def spliced(model, tiny_saes):
    return SplicedModel(model, load_saes(next(iter(tiny_saes.values())).parent))


def test_thresholds_pick_the_right_nodes():
    scores = {"a": torch.tensor([0.1, -3.0, 0.5]), "b": torch.tensor([[2.0, 0.0], [-0.2, 1.0]])}
    absolute = select_nodes(scores, "absolute", 1.0)
    assert absolute["a"].tolist() == [False, True, False] and absolute["b"].tolist() == [[True, False], [False, True]]
    relative = select_nodes(scores, "relative", 0.5)  # |s| >= 1.5
    assert count(relative) == 2 and relative["b"][0, 0] and relative["a"][1]
    top = select_nodes(scores, "topk", 3)
    assert count(top) == 3 and not top["a"][2] and top["b"][1, 1]
    with pytest.raises(ToolkitError, match="threshold"):
        select_nodes(scores, "median", 1)
    with pytest.raises(ToolkitError, match="out of range"):
        select_nodes(scores, "relative", 2.0)


def test_full_and_empty_circuits_bound_faithfulness(model, spliced):
    batch = tokenize_pairs(model, load_examples("sva_pp", 12, seed=5))
    scores = attribute(spliced, batch, "atp").scores
    everything = select_nodes(scores, "absolute", 0.0)
    full = evaluate(spliced, batch, everything)
    assert full["faithfulness"] == pytest.approx(1.0) and full["completeness"] == pytest.approx(0.0)
    nothing = {h: torch.zeros_like(m) for h, m in everything.items()}
    empty = evaluate(spliced, batch, nothing)
    assert empty["faithfulness"] == pytest.approx(0.0) and empty["completeness"] == pytest.approx(1.0)
    with torch.no_grad():  # m(M) is the unablated model's metric
        assert full["m_full"] == pytest.approx(float(logit_diff(model.forward(batch.clean), batch).mean()), abs=1e-3)


def test_refinement_keeps_the_size_and_raises_the_discovery_metric(model, spliced):
    batch = tokenize_pairs(model, load_examples("sva_pp", 24, seed=3))
    start = select_nodes(attribute(spliced, batch, "atp").scores, "topk", 30)
    result = refine(spliced, batch, start, rounds=3, candidates=4)
    assert count(result.masks) == 30
    assert result.swaps and len(result.metric_history) == len(result.swaps) + 1
    assert all(b > a for a, b in zip(result.metric_history, result.metric_history[1:]))
    means = mean_values(spliced, batch)
    assert ablated_metric(spliced, batch, start, means) == pytest.approx(result.metric_history[0], abs=1e-5)
    assert ablated_metric(spliced, batch, result.masks, means) == pytest.approx(result.metric_history[-1], abs=1e-5)
    for (drop_hook, drop), (add_hook, add) in result.swaps:  # each swap drops a member for a non-member
        assert start[drop_hook].flatten()[drop] and not result.masks[drop_hook].flatten()[drop]
        assert result.masks[add_hook].flatten()[add]
    changed = sum(int((start[h] != result.masks[h]).sum()) for h in start)
    assert 0 < changed <= 2 * len(result.swaps)
    with pytest.raises(ToolkitError, match="some nodes but not all"):
        refine(spliced, batch, {h: torch.zeros_like(m) for h, m in start.items()})


def test_gradient_search_keeps_the_size_and_returns_the_best_circuit_it_ran(model, spliced):
    """Each step's forward pass is the circuit's exact metric: the history rises, starts at the
    start's metric and ends at the returned circuit's, whose changes are the recorded swaps."""
    batch = tokenize_pairs(model, load_examples("sva_pp", 24, seed=3))
    start = select_nodes(attribute(spliced, batch, "atp").scores, "topk", 30)
    result = gradient_search(spliced, batch, start, steps=12)
    means = mean_values(spliced, batch)
    assert count(result.masks) == 30
    assert ablated_metric(spliced, batch, start, means) == pytest.approx(result.metric_history[0], abs=1e-5)
    assert ablated_metric(spliced, batch, result.masks, means) == pytest.approx(result.metric_history[-1], abs=1e-5)
    assert len(result.metric_history) >= 2, "twelve steps along the in-context gradient found no better circuit"
    assert all(b > a for a, b in zip(result.metric_history, result.metric_history[1:]))
    changed = {(h, i) for h in start for i in (start[h] != result.masks[h]).flatten().nonzero().flatten().tolist()}
    assert changed == {node for pair in result.swaps for node in pair}
    for (drop_hook, drop), (add_hook, add) in result.swaps:
        assert start[drop_hook].flatten()[drop] and result.masks[add_hook].flatten()[add]
    assert gradient_search(spliced, batch, start, steps=0).metric_history == pytest.approx(result.metric_history[:1], abs=1e-5)
    with pytest.raises(ToolkitError, match="lr > 0"):
        gradient_search(spliced, batch, start, lr=0)
    with pytest.raises(ToolkitError, match="some nodes but not all"):
        gradient_search(spliced, batch, {h: torch.ones_like(m) for h, m in start.items()})


def test_kicks_restart_from_the_best_circuit_and_never_lose_it(model, spliced):
    """A kick swaps a random share of the best circuit's nodes for the non-members with the
    largest in-context gradient there. The first round is the plain search, and the rounds
    after it only add better circuits to the history. (Whether a kick finds a better circuit
    depends on the dictionary: 3 kicks of 6 steps did with two of the five measured in
    docs/circuits.md, "Narrower dictionaries", 6 kicks with all five.)"""
    from circuits.refine import _kicked
    best = torch.tensor([True, True, True, True, False, False, False, False])
    grad = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.1, 0.9, -1.0, 0.5])
    moved = _kicked(best, grad, 2, torch.Generator().manual_seed(0))
    assert int(moved.sum()) == 4 and moved[[5, 7]].all() and not moved[[4, 6]].any()
    assert int((best & ~moved).sum()) == 2
    batch = tokenize_pairs(model, load_examples("sva_pp", 24, seed=3))
    start = select_nodes(attribute(spliced, batch, "atp").scores, "topk", 30)
    plain = gradient_search(spliced, batch, start, steps=6)
    kicked = gradient_search(spliced, batch, start, steps=6, kicks=6)
    print("history without kicks", [round(m, 3) for m in plain.metric_history], "with 6 kicks",
          [round(m, 3) for m in kicked.metric_history])
    assert kicked.metric_history[:len(plain.metric_history)] == pytest.approx(plain.metric_history, abs=1e-6)
    assert len(kicked.metric_history) > len(plain.metric_history), "no round after a kick found a better circuit"
    assert all(b > a for a, b in zip(kicked.metric_history, kicked.metric_history[1:]))
    assert count(kicked.masks) == 30
    means = mean_values(spliced, batch)
    assert ablated_metric(spliced, batch, kicked.masks, means) == pytest.approx(kicked.metric_history[-1], abs=1e-5)
    with pytest.raises(ToolkitError, match="kick_share"):
        gradient_search(spliced, batch, start, kicks=1, kick_share=1.5)


def test_gradient_search_brings_the_metric_to_the_full_model_and_not_past_it(model, spliced):
    """The searches maximise m folded at m(M). With 300 nodes of 24 prompts the full model's
    metric is within reach, and maximising m itself overshoots it (faithfulness 1.038 in 25
    steps, measured); the folded search lands on it and gets closer with every better circuit.
    (25 steps landed within 0.01 with three dictionaries of five measured; 100 steps with all five:
    docs/circuits.md, "Narrower dictionaries".)"""
    batch = tokenize_pairs(model, load_examples("sva_pp", 24, seed=3))
    start = select_nodes(attribute(spliced, batch, "atp").scores, "topk", 300)
    result = gradient_search(spliced, batch, start, steps=100)
    scores = evaluate(spliced, batch, result.masks)
    assert abs(scores["faithfulness"] - 1) < 0.01
    gaps = [abs(m - scores["m_full"]) for m in result.metric_history]
    assert all(b < a for a, b in zip(gaps, gaps[1:]))


def test_refinement_ranks_swaps_by_their_single_exact_gains():
    """With an additive metric (the sum of the kept nodes' weights) a swap's gain is exactly
    the sum of its drop's and its add's: the pairs come back in that order, from one run per
    candidate node, and a retry on the same circuit reuses those runs."""
    weights = torch.tensor([5.0, -1.0, 2.0, 0.5, -3.0, 4.0, 1.5, -2.0])
    selected = torch.tensor([True, True, True, True, False, False, False, False])
    calls = []

    def run(trial):
        calls.append(trial.clone())
        return float(weights[trial].sum())
    drops, adds, alone = [1, 3, 2], [5, 6, 7], {}
    pairs = _best_pairs(selected, drops, adds, run, 4, alone)
    gain = {(d, a): float(weights[a] - weights[d]) for d in drops for a in adds}
    assert pairs == sorted(gain, key=gain.get, reverse=True)[:4]
    assert pairs[0] == (1, 5) and len(calls) == len(drops) + len(adds)
    assert all(int(c.sum()) in (3, 5) for c in calls)  # each run flips one node
    assert _best_pairs(selected, drops, adds, run, 4, alone) == pairs and len(calls) == 6


@pytest.mark.slow
def test_sva_circuit_of_at_most_100_nodes_is_faithful(model, spliced):
    """A 100-node sva_pp circuit: the top 100 nodes by IG on 256 discovery prompts, improved
    there by the gradient search (``circuits.refine``), and evaluated on 256 held-out prompts —
    the same as ``sae circuit --dataset sva_pp --examples 512 --search 120``."""
    discover, evaluate_on = train_test_split(load_examples("sva_pp", 512, seed=0), 0.5, seed=0)
    found, held = tokenize_pairs(model, discover), tokenize_pairs(model, evaluate_on)
    assert not {e["clean_prefix"] for e in discover} & {e["clean_prefix"] for e in evaluate_on}
    scores = attribute(spliced, found, "ig").scores
    top = select_nodes(scores, "topk", 100)
    searched = gradient_search(spliced, found, top, steps=120).masks
    before, after = evaluate(spliced, held, top), evaluate(spliced, held, searched)
    print(f"SVA (pp), {len(held)} held-out prompts: top 100 by IG {before['faithfulness']:.3f}, "
          f"after the gradient search {after['faithfulness']:.3f}")
    assert count(searched) == 100
    assert after["faithfulness"] >= 0.7
    assert after["faithfulness"] > before["faithfulness"]


DATASET = "ioi_abc"
FRESH_NAMES = ("Victor", "Oscar", "Hugo", "Simon")  # training names, one token each


def duplicated_name_positions(model, batch, fresh_names=FRESH_NAMES) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The S2 position of each clean IOI prompt (the repeated name), and, for each fresh name,
    control prompts in which the *first* occurrence (S1) is that name instead, so that S2
    holds the same token but is no longer a duplicate: [N] positions, one [N, T] per name."""
    positions, firsts = [], []
    for row, tokens in enumerate(batch.clean.tolist()):
        words = [model.tokenizer.decode([t]).strip() for t in tokens]  # "Mary" and " Mary" are one name
        s2 = max(t for t in range(1, batch.last[row] + 1) if words[t] in words[1:t] and words[t].istitle())
        positions.append(s2)
        firsts.append([t for t in range(1, s2) if words[t] == words[s2]])
    controls = []
    for name in fresh_names:
        ids = {True: model.tokenizer.encode(name), False: model.tokenizer.encode(" " + name)}
        assert all(len(i) == 1 for i in ids.values()), name
        control = batch.clean.clone()
        for row, s1s in enumerate(firsts):
            for s1 in s1s:
                control[row, s1] = ids[s1 == 1][0]  # the first token of a prompt has no leading space
        controls.append(control)
    return torch.tensor(positions), controls


def tracks_repeat(a: torch.Tensor, bs: torch.Tensor) -> torch.Tensor:
    """The tracking rule, per feature: mean activation ``a`` [F] on the repeats against the means
    ``bs`` [K, F] with each of K fresh names: a >= 2b, a - b >= 0.5 and a - b >= twice the
    spread of the b_k."""
    b, spread = bs.mean(0), bs.max(0).values - bs.min(0).values
    return (a >= 2 * b) & (a - b >= 0.5) & (a - b >= 2 * spread)


def duplicated_name_features(spliced, batch, masks, s2, controls) -> tuple[list, list]:
    """The features of ``masks`` that track the duplicated name, and the diagnostic rows of all.

    At S2 or at the final position, a feature's mean activation on the clean prompts (a) is
    compared with its mean over the fresh-name controls (b, one mean b_k per name). It tracks
    the duplication when a >= 2b, a - b >= 0.5, and a - b is at least twice the spread of the
    b_k: making the name a repeat must move it more than swapping one fresh name for another
    does, so that features of one particular name cannot pass."""
    rows = torch.arange(len(batch))
    with torch.no_grad():
        dup, fresh = spliced.values(batch.clean), [spliced.values(c) for c in controls]
    tracking, table = [], []
    for hook, mask in masks.items():
        features = mask.nonzero().squeeze(1)
        for where, position in (("S2", s2), ("end", batch.last)):
            a = dup[hook][0][rows, position][:, features].mean(0)
            bs = torch.stack([f[hook][0][rows, position][:, features].mean(0) for f in fresh])
            passes = tracks_repeat(a, bs)
            for j, feature in enumerate(features.tolist()):
                row = (hook, feature, where, round(float(a[j]), 2), [round(float(x), 2) for x in bs[:, j]])
                table.append(row)
                if passes[j]:
                    tracking.append(row)
    return tracking, table


@pytest.mark.xfail(strict=True, reason="known shortfall (issue 5): no top-30 feature of the fixture SAEs tracks the duplicated name once the control uses several fresh names; the model does not use the repeat for IOI (scripts/ioi_repeat_patching.py: removing it at S2 moves m by 0.1%; docs/circuits.md, IOI)")
@pytest.mark.slow
def test_ioi_circuit_has_duplicated_name_features(model, spliced):
    """Among the top 30 nodes of the IOI circuit, a feature tracks the duplicated name where
    the duplication is read: at S2 (the repeated subject; the duplicate-token stage) or at the
    final position (where it is used to decide against S). See ``duplicated_name_features``."""
    examples = [e for e in load_examples(DATASET, 48, seed=1)
                if not any(" " + name in e.values() for name in FRESH_NAMES)]
    batch = tokenize_pairs(model, examples)
    attribution = attribute(spliced, batch, "ig")
    assert attribution.total > 1.0, "the model does not prefer the indirect object"
    masks = select_nodes({h: s[:-1] for h, s in attribution.scores.items()}, "topk", 30)
    s2, controls = duplicated_name_positions(model, batch)
    tracking, table = duplicated_name_features(spliced, batch, masks, s2, controls)
    largest = sorted(table, key=lambda r: r[3] - sum(r[4]) / len(r[4]), reverse=True)[:3]
    print(f"{len(batch)} prompts; duplicated-name features among the top 30:", tracking, "largest a - b:", largest)
    assert tracking


def test_mean_ablation_values_ignore_the_padding(model, spliced):
    """Right padding repeats BOS, whose activations are outliers: a position only the longer
    prompt reaches must get that prompt's own values, not their average with padding."""
    from circuits.circuit import mean_values
    examples = [e for e in load_examples("sva_pp", 40, seed=3)]
    batch = tokenize_pairs(model, examples)
    assert len(set(batch.last.tolist())) > 1, "need prompts of different lengths"
    means = mean_values(spliced, batch)
    values = spliced.values(batch.patch)
    longest = int(batch.last.max())
    reach = batch.last == longest
    hook = spliced.hooks[-1]
    for part in (0, 1):
        torch.testing.assert_close(means[hook][part][longest], values[hook][part][reach, longest].mean(0))
    shortest = int(batch.last.min())
    torch.testing.assert_close(means[hook][1][shortest], values[hook][1][:, shortest].mean(0))
