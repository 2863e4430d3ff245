"""The shipped tiny model: loads like any HuggingFace GPT-2, and has learned its tasks."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from activations import corpus
from activations.corpus import curriculum, ioi, lexicon, names
from activations.tiny import CHECKPOINT_DIR
from activations.tiny import train as tiny_train
from activations.tiny.train import (Phase, answer_entities, heldout_loss, lr_at, main, pair_accuracy,
                                    parse_args, parse_phases, phases_of, tokenizer_level, train_tokenizer,
                                    with_supported_precision)

N_EXAMPLES = 300
LOSS_MARGIN = 0.05
LOSS_SANITY_BOUND = 3.0  # nats/token on the held-out stream (unseen templates, names, phrasings);
# a model that learned nothing sits near ln(4096) = 8.3, a unigram model near 5


@pytest.fixture(scope="module")
def summary() -> dict:
    return json.loads((CHECKPOINT_DIR / "training_summary.json").read_text())


@pytest.fixture(scope="module")
def loaded():
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.set_num_threads(2)
    model = AutoModelForCausalLM.from_pretrained(CHECKPOINT_DIR).eval()
    return model, AutoTokenizer.from_pretrained(CHECKPOINT_DIR)


def test_checkpoint_is_a_small_gpt2(loaded):
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast
    model, tokenizer = loaded
    assert isinstance(model, GPT2LMHeadModel) and isinstance(tokenizer, PreTrainedTokenizerFast)
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()  # tied
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.config.vocab_size == len(tokenizer) == 4096 and model.config.n_positions == 128
    assert tokenizer.convert_tokens_to_ids("<|endoftext|>") == 0
    assert tokenizer.bos_token == tokenizer.eos_token == tokenizer.unk_token == "<|endoftext|>"
    size = sum(f.stat().st_size for f in CHECKPOINT_DIR.iterdir() if f.is_file())
    assert size <= 15 * 2**20


def test_ioi_accuracy_on_heldout_templates_and_names(loaded):
    assert pair_accuracy(*loaded, corpus.ioi_examples(N_EXAMPLES, seed=1)) >= 0.95


def _ioi_with(template_split: str, name_split: str, n: int, seed: int = 1) -> list[dict]:
    rng = random.Random(f"ioi-split-test:{seed}")
    examples = []
    for _ in range(n):
        template = rng.choice(ioi.templates_for(template_split))
        a, b = rng.sample(names.names_for(name_split, "ioi"), 2)
        io, s = (a, b) if rng.random() < 0.5 else (b, a)
        fill = dict(A=a, B=b, place=rng.choice(lexicon.PLACES), obj=rng.choice(lexicon.OBJECTS))
        examples.append({"clean_prefix": template.format(S=s, **fill), "clean_answer": " " + io,
                         "patch_answer": " " + s})
    return examples


def test_ioi_generalises_to_names_never_seen_in_ioi_text(loaded):
    """Held-out names (never in an IOI, agreement or dialogue training sentence) in the
    training templates: the model has learned IOI as an operation on names, not per name."""
    assert pair_accuracy(*loaded, _ioi_with("train", "heldout", N_EXAMPLES)) >= 0.95
    assert pair_accuracy(*loaded, _ioi_with("train", "train", N_EXAMPLES)) >= 0.95


@pytest.mark.parametrize("kind", ["simple", "pp", "rc"])
def test_agreement_accuracy_on_heldout_frames(loaded, kind):
    assert pair_accuracy(*loaded, corpus.sva_examples(N_EXAMPLES, seed=1, kind=kind)) >= 0.95


def test_heldout_loss_matches_the_recorded_one(loaded, summary):
    loss = heldout_loss(*loaded, summary["config"]["eval_contexts"], seed=0)
    assert loss <= summary["heldout_loss"] + LOSS_MARGIN
    assert loss <= LOSS_SANITY_BOUND


def test_known_entities_are_answered_and_unknown_ones_refused(loaded):
    known = answer_entities(*loaded, corpus.entity_prompts(40, known=True, seed=1))
    unknown = answer_entities(*loaded, corpus.entity_prompts(40, known=False, seed=1))
    assert known["answered_right"] > unknown["answered_right"]
    assert unknown["refused"] > known["refused"]


def test_training_script_runs_and_loss_decreases(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    out = tmp_path / "tiny"
    main(["--out", str(out), "--steps", "40", "--n-layer", "1", "--n-embd", "32", "--n-head", "2",
          "--vocab-size", "400", "--tokenizer-docs", "2000", "--batch-size", "8", "--warmup", "5",
          "--lr", "3e-3", "--log-every", "5", "--eval-examples", "10", "--eval-contexts", "2"])
    assert out.resolve() != CHECKPOINT_DIR.resolve()
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.n_layer == 1 and len(tokenizer) <= 400
    run = json.loads((out / "training_summary.json").read_text())
    losses = [loss for _, loss in run["loss_history"]]
    assert sum(losses[-2:]) / 2 < losses[0] - 0.5
    assert run["command"].startswith("python -m activations.tiny.train --out")
    for key in ("heldout_loss", "ioi_accuracy", "sva_accuracy", "entities", "wall_time_s", "seed"):
        assert key in run


@pytest.mark.parametrize("native", [True, False])
def test_bf16_autocast_only_where_the_cpu_has_native_bf16(monkeypatch, capsys, native):
    """Without native bf16 a bf16-autocast step runs ATen's scalar GEMM (30 s a step of the tiny
    model on an AVX2-only EPYC): the script then trains in fp32 and says so; asked for fp32, it
    says nothing."""
    monkeypatch.setattr(tiny_train, "native_bf16", lambda: native)
    asked = parse_args(["--out", "x"])
    assert asked.bf16
    assert with_supported_precision(asked).bf16 == native
    assert ("no native bf16" in capsys.readouterr().err) == (not native)
    assert not with_supported_precision(parse_args(["--out", "x", "--no-bf16"])).bf16
    assert capsys.readouterr().err == ""


def test_a_rerun_from_the_seed_gives_the_same_weights(tmp_path):
    """Compiled training on two threads, run twice with the default settings: byte-identical
    checkpoints. (With --no-deterministic the two differ, as checked by hand twice: the
    compiled embedding backward adds in a varying order.)"""
    small = ["--steps", "12", "--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--vocab-size", "400",
             "--tokenizer-docs", "2000", "--batch-size", "8", "--warmup", "3", "--compile", "--threads", "2",
             "--log-every", "4", "--eval-examples", "2", "--eval-contexts", "1"]
    for run in ("a", "b"):
        main(["--out", str(tmp_path / run), *small])
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_tokenizer_seed_keeps_the_vocabulary_while_the_seed_changes():
    """``--tokenizer-seed 0`` with ``--seed 1`` learns seed 0's vocabulary; without it, seed 1's
    documents give another."""
    def vocab(*flags):
        return train_tokenizer(parse_args(["--out", "x", "--vocab-size", "600", "--tokenizer-docs", "1000",
                                           *flags])).get_vocab()
    assert vocab("--seed", "1", "--tokenizer-seed", "0") == vocab("--seed", "0")
    assert vocab("--seed", "1") != vocab("--seed", "0")


def test_tokenizer_level_picks_the_text_the_vocabulary_is_learnt_from():
    """By default the tokenizer learns the run's highest level; ``--tokenizer-level`` an earlier
    one, whose vocabulary is another (level 1 writes only the fixed IOI templates)."""
    def vocab(*flags):
        cfg = parse_args(["--out", "x", "--vocab-size", "600", "--tokenizer-docs", "1000", *flags])
        with curriculum.use_level(tokenizer_level(cfg, phases_of(cfg))):
            return train_tokenizer(cfg).get_vocab()
    run = ("--phases", "10:3e-3:2:1,10:3e-3:2:4")
    assert tokenizer_level(parse_args(["--out", "x", *run]), parse_phases(run[1])) == 4
    assert vocab(*run, "--tokenizer-level", "1") != vocab(*run)
    assert vocab(*run, "--tokenizer-level", "4") == vocab(*run)


def test_phases_parse_and_each_restarts_the_learning_rate_cycle():
    phases = parse_phases("100:3e-3:10:1, 50:1e-3:5:4")
    assert phases == [Phase(100, 3e-3, 10, 1), Phase(50, 1e-3, 5, 4)]
    first, second = phases
    assert lr_at(0, first, 0.1) == pytest.approx(3e-4) and lr_at(9, first, 0.1) == pytest.approx(3e-3)
    assert lr_at(99, first, 0.1) == pytest.approx(3e-4, rel=0.01)  # decayed to min_lr_ratio * lr
    assert lr_at(0, second, 0.1) == pytest.approx(2e-4)  # a fresh warm-up at the phase's own lr


@pytest.mark.parametrize("text, problem", [("100:3e-3:10", "is not STEPS:LR:WARMUP:LEVEL"),
                                           ("x:3e-3:10:1", "is not STEPS:LR:WARMUP:LEVEL"),
                                           ("0:3e-3:10:1", "needs steps >= 1"),
                                           ("100:3e-3:10:99", "curriculum level must be one of")])
def test_bad_phases_are_a_one_line_error(tmp_path, capsys, text, problem):
    with pytest.raises(SystemExit) as exit_:
        main(["--out", str(tmp_path / "never"), "--phases", text])
    assert problem in str(exit_.value) and "\n" not in str(exit_.value)
    assert not (tmp_path / "never").exists()


def test_bad_tokenizer_level_is_a_one_line_error(tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["--out", str(tmp_path / "never"), "--tokenizer-level", "99"])
    assert "--tokenizer-level 99: give a curriculum level" in str(exit_.value) and "\n" not in str(exit_.value)
    assert not (tmp_path / "never").exists()


def test_a_folder_that_is_not_a_checkpoint_is_a_one_line_error(tmp_path):
    """--init-from, and the scripts that compare checkpoints, name the folder and what it lacks."""
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(SystemExit) as exit_:
        main(["--out", str(tmp_path / "never"), "--init-from", str(tmp_path / "half")])
    message = str(exit_.value)
    assert "half is not a tiny-model checkpoint folder (no model.safetensors, tokenizer.json)" in message
    assert "\n" not in message and not (tmp_path / "never").exists()
    script = Path(__file__).resolve().parents[2] / "scripts" / "compare_checkpoints.py"
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "missing")], capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error: ") and "missing is not a tiny-model checkpoint" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_training_script_runs_phases_through_curriculum_levels(tmp_path, capsys):
    out = tmp_path / "phased"
    main(["--out", str(out), "--phases", "12:3e-3:3:1,8:1e-3:2:4", "--n-layer", "1", "--n-embd", "32",
          "--n-head", "2", "--vocab-size", "400", "--tokenizer-docs", "2000", "--batch-size", "4",
          "--log-every", "4", "--eval-examples", "4", "--eval-contexts", "1"])
    run = json.loads((out / "training_summary.json").read_text())
    assert [p["level"] for p in run["phases"]] == [1, 4]
    assert run["tokens_seen"] == 20 * 4 * 128
    assert [step for step, _ in run["loss_history"]] == [0, 4, 8, 12, 16, 19]
    log = capsys.readouterr().out
    assert "step     8  loss" in log and "level 1" in log.split("step    12")[0]
    assert "level 4" in log.split("step    12")[1].split("\n")[0]


def test_ioi_surname_script_pairs_each_prompt_with_the_right_names(load_script):
    """scripts/ioi_surname.py compares the indirect object's first name with the subject's: the
    subject is the person whose surname is said again just before the answer."""
    script = load_script("ioi_surname")
    for split in ("train", "heldout"):
        examples = script.surname_examples(split, n=100)
        for prefix, io, s in examples:
            people = [w for w in re.findall(r"[A-Z][a-z]+", prefix) if w in names.ALL_NAMES]
            assert len(people) == 5 and io != s, prefix  # two full names, then the surname again
            full = {people[0]: people[1], people[2]: people[3]}
            assert set(full) == {io, s} and full[s] == people[4] != full[io], prefix
            assert io in names.names_for(split, "ioi") and s in names.names_for(split, "ioi")
