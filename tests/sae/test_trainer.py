"""The trainer: schedule, initialisation, one pass for many coders, checkpoints, exact resume
after SIGKILL, NaN handling, and the errors for bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from activations.errors import ToolkitError
from sae.config import load_config
from sae.data import TensorSource
from sae.io import load_sae
from sae.architectures.base import geometric_median
from sae.trainer import Trainer, learning_rate, train
from tests.sae.resume_run import config as resume_config
from tests.sae.synthetic import IN_HOOK, OUT_HOOK, synthetic_source

RESUME_SCRIPT = Path(__file__).with_name("resume_run.py")


def small_config(out, **overrides):
    fields = {"out": str(out), "hook": IN_HOOK, "d_sae": 64, "k": 4, "tokens": 20 * 256, "batch_size": 256,
              "checkpoint_every": 5, "log_every": 5, "eval_tokens": 2048, "eval_contexts": 0, "warmup_steps": 2}
    return load_config(None, {**fields, **overrides})


class CountingSource(TensorSource):
    def __init__(self, source, poison_at: int | None = None):
        super().__init__(source.acts)
        self.yielded, self.calls, self.poison_at = 0, 0, poison_at

    def batches(self, *args, **kwargs):
        self.calls += 1
        for batch in super().batches(*args, **kwargs):
            self.yielded += 1
            if self.yielded == self.poison_at:
                batch = {h: torch.full_like(a, float("inf")) for h, a in batch.items()}
            yield batch


def test_learning_rate_warms_up_holds_and_decays():
    lr = [learning_rate(s, 100, 1.0, 10, 0.2) for s in range(100)]
    assert lr[0] == pytest.approx(0.1) and lr[9] == 1.0 and lr[50] == 1.0 and lr[80] == 1.0
    assert lr[90] == pytest.approx(0.5) and lr[99] == pytest.approx(0.05)


def test_the_decoder_start_is_the_seeds_and_the_table_shows_how_far_training_moved_from_it(tmp_path):
    """Two trainers of one config (a resumed run builds its coders the same way) start from the
    same decoder, and the run's table gains a start-cosine column that ``sae eval`` lacks."""
    from sae.evaluate import format_table
    first, second = (Trainer(small_config(tmp_path / name), synthetic_source()) for name in ("a", "b"))
    assert torch.equal(first.coders[0].start, second.coders[0].start)
    results = train(small_config(tmp_path / "run"), synthetic_source())
    scores = next(iter(results.values()))
    assert 0.0 < scores["decoder_start_cos"] < 1.0
    assert "start cos" in format_table(results)
    assert "start cos" not in format_table({name: {k: v for k, v in s.items() if k != "decoder_start_cos"}
                                            for name, s in results.items()})


def test_geometric_median_ignores_outliers():
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [100.0, 0.0]])
    assert torch.allclose(geometric_median(points), torch.tensor([1.0, 0.0]), atol=1e-3)
    square = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0], [1.0, 1.0]])
    assert torch.allclose(geometric_median(square), torch.tensor([1.0, 1.0]), atol=1e-4)


def test_a_sweep_reads_each_batch_once_and_saves_every_coder(tmp_path):
    source = CountingSource(synthetic_source())
    cfg = small_config(tmp_path / "run", k=[2, 4, 8], architecture=["topk", "batchtopk"])
    results = train(cfg, source)
    assert source.calls == 2  # training, then the evaluation window
    assert source.yielded == 20 + 2048 // 256
    assert len(results) == 6 and {r["k"] for r in results.values()} == {2, 4, 8}
    saved = sorted(p.name for p in (tmp_path / "run" / "saes").iterdir())
    assert saved == sorted(results) and all((tmp_path / "run" / "saes" / n / "sparsity.safetensors").exists()
                                            for n in saved)
    assert json.loads((tmp_path / "run" / "eval.json").read_text()).keys() == results.keys()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {r["sae"] for r in records} == set(results) and {"loss", "l0", "fvu", "dead_fraction"} <= set(records[0])
    assert [d.name for d in (tmp_path / "run" / "checkpoints").iterdir()] == ["step-00000020"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["sweep"]["k"] == [2, 4, 8]


def test_normalisation_is_folded_into_the_saved_coder(tmp_path):
    source = synthetic_source()
    cfg = small_config(tmp_path / "run", tokens=60 * 256)
    trainer = Trainer(cfg, source)
    assert trainer.scales[IN_HOOK] == pytest.approx(32**0.5 / source.mean_norm[IN_HOOK])
    results = train(cfg, source)
    (name, scores), = results.items()
    last = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][-1]
    assert scores["fvu"] < 0.5 and scores["fvu"] == pytest.approx(last["fvu"], abs=0.05)
    raw = source.acts[IN_HOOK][:512]
    sae = load_sae(tmp_path / "run" / "saes" / name)
    with torch.no_grad():
        assert float(((sae(raw) - raw) ** 2).sum() / ((raw - raw.mean(0)) ** 2).sum()) < 0.5


def test_transcoder_learns_its_output_hook(tmp_path):
    source = synthetic_source(transcoder=True)
    cfg = small_config(tmp_path / "run", hook_out=OUT_HOOK, skip=True, tokens=60 * 256, k=8)
    (scores,) = train(cfg, source).values()
    assert scores["hook_out"] == OUT_HOOK and scores["fvu"] < 0.3


@pytest.mark.parametrize("poison_at, kept, checkpoints", [
    (8, "the last good checkpoint is kept in", ["step-00000005"]),
    (3, "no checkpoint had been written yet", []),
])
def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, poison_at, kept, checkpoints):
    source = CountingSource(synthetic_source(), poison_at=poison_at)
    with pytest.raises(ToolkitError, match=f"became (nan|inf) at step {poison_at}; training stopped and {kept}"):
        train(small_config(tmp_path / "run"), source)
    assert [d.name for d in (tmp_path / "run" / "checkpoints").glob("*")] == checkpoints
    assert not (tmp_path / "run" / "saes").exists()


def test_run_folder_guards(tmp_path):
    cfg = small_config(tmp_path / "run")
    with pytest.raises(ToolkitError, match="nothing to resume"):
        Trainer(cfg, synthetic_source()).fit(resume=True)
    train(cfg, synthetic_source())
    with pytest.raises(ToolkitError, match="already holds checkpoints; pass --resume"):
        Trainer(cfg, synthetic_source()).fit()


def test_bad_hooks_and_widths_are_refused(tmp_path):
    with pytest.raises(ToolkitError, match=f"no hook blocks.5.hook_resid_post; available hooks: {IN_HOOK}"):
        Trainer(small_config(tmp_path, hook="blocks.5.hook_resid_post"), synthetic_source())
    with pytest.raises(ToolkitError, match="d_in = 768 in the config does not match the width 32"):
        Trainer(small_config(tmp_path, d_in=768), synthetic_source())


def test_relu_coders_resample_dead_latents(tmp_path):
    cfg = small_config(tmp_path / "run", architecture="relu", dead_window=1024)
    trainer = Trainer(cfg, synthetic_source())
    coder = trainer.coders[0]
    with torch.no_grad():
        coder.sae.b_enc[:10] = -1000.0  # latents 0..9 can never fire
    resampled, moments = [], []
    original = coder.sae.resample

    def spy(dead, *args):
        resampled.append(dead.tolist())
        original(dead, *args)

    def after_resample():
        moments.append(float(coder.optimizer.state[coder.sae.W_dec]["exp_avg"][:10].abs().sum()))

    coder.sae.resample = spy
    step = trainer.train_step
    trainer.train_step = lambda inputs: (step(inputs), after_resample() if resampled and not moments else None)[0]
    trainer.fit()
    assert resampled and set(range(10)) <= set(resampled[0])
    assert moments == [0.0]  # their Adam moments restart
    assert (coder.sae.b_enc[:10] > -100).all()


def wait_for_checkpoint(run_dir: Path, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list((run_dir / "checkpoints").glob("step-*")) and process.poll() is None:
            return
        assert process.poll() is None, "the run finished before it could be killed"
        time.sleep(0.02)
    raise AssertionError("no checkpoint appeared")


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    subprocess.run([sys.executable, str(RESUME_SCRIPT), str(whole)], check=True, env=env, capture_output=True)
    process = subprocess.Popen([sys.executable, str(RESUME_SCRIPT), str(broken)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_checkpoint(broken, process)
    time.sleep(0.1)  # a little past the checkpoint, mid-window
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = sorted((broken / "checkpoints").glob("step-*"))[-1].name
    assert killed_at != "step-00000040" and not (broken / "saes").exists()
    subprocess.run([sys.executable, str(RESUME_SCRIPT), str(broken), "--resume"], check=True, env=env,
                   capture_output=True)
    names = [c.slug() for c in resume_config(str(whole)).sae_configs()]
    for name in names:
        for file in ("sae_weights.safetensors", "sparsity.safetensors"):
            a, b = load_file(whole / "saes" / name / file), load_file(broken / "saes" / name / file)
            assert all(torch.equal(a[k], b[k]) for k in a), (name, file)
        for file in (f"{name}.safetensors", f"{name}.optim.safetensors"):
            a = load_file(whole / "checkpoints" / "step-00000040" / file)
            b = load_file(broken / "checkpoints" / "step-00000040" / file)
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), (name, file)
    def records(run):  # wall-clock times differ; everything else must not
        return [{k: v for k, v in json.loads(line).items() if k != "elapsed_s"}
                for line in (run / "metrics.jsonl").read_text().splitlines()]

    assert records(whole) == records(broken) and len(records(whole)) == 4 * 14
