"""Bad input to the public Python API: a ToolkitError naming the problem, raised at the entry point."""

import signal
from contextlib import contextmanager

import pytest
import torch

from activations.errors import ToolkitError
from circuits.circuit import select_nodes
from circuits.datasets import load_examples
from circuits.flow import feature_flow
from circuits.interventions import FeatureAblation, generate, schedule
from sae.evaluate import reconstruction_scores
from sae.io import load_sae, save_sae
from sae.trainer import Trainer

H = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def model():
    from activations.models import load_model
    return load_model("tiny", device="cpu")


@pytest.fixture(scope="module")
def store(model, tmp_path_factory):
    from activations.harvest import HarvestConfig, harvest
    from activations.store import StoreSource
    out = tmp_path_factory.mktemp("store") / "acts"
    harvest(HarvestConfig(model="tiny", hooks=[H], tokens=512, out=str(out), progress=False, device="cpu"), model=model)
    return StoreSource(out)


@pytest.fixture(scope="module")
def live(model):
    from activations.onthefly import OnTheFlySource
    return OnTheFlySource(model, [H], context=32, buffer_tokens=256)


@pytest.fixture(scope="module")
def sae():
    from sae.architectures import build
    from sae.config import SAEConfig
    return build(SAEConfig(architecture="topk", hook=H, k=4, d_sae=32).resolved(192, 192), 192)


@contextmanager
def no_hang(seconds: int = 20):
    """A call that would loop forever fails after ``seconds`` instead (the fixtures' set-up,
    loading the model, is not timed)."""
    def hang(*_):
        raise TimeoutError("the call hung")
    signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)


def _tensor_source(rows=64):
    from sae.data import TensorSource
    return TensorSource({H: torch.randn(rows, 192)})


def _train_config(**fields):
    from sae.config import TrainConfig
    return TrainConfig(out="/nonexistent-run-dir", tokens=64, **fields)


def _steer_with(model, direction):
    from circuits.interventions import Steering, steer
    with steer(model, [Steering(H, direction, 2.0)]):
        return generate(model, "Mary and John", 2)


TOKENS = torch.tensor([[1, 2, 3, 4]])
# (what is called, given the fixtures, -> the words the error must contain)
CASES = {
    "capture one hook string": (lambda f: f["model"].capture(TOKENS, "blocks.1.hook_resid_pst"),
                                "unknown hook name 'blocks.1.hook_resid_pst'"),
    "capture float tokens": (lambda f: f["model"].capture(TOKENS.float(), [H]), "integer tensor"),
    "capture 1-D tokens": (lambda f: f["model"].capture(TOKENS[0], [H]), r"\[batch, positions\]"),
    "capture list tokens": (lambda f: f["model"].capture([[1, 2]], [H]), "to_tokens"),
    "capture id past vocab": (lambda f: f["model"].capture(TOKENS + 10**6, [H]), "ids in 0..4095"),
    "forward too long": (lambda f: f["model"].forward(torch.zeros(1, 200, dtype=torch.long)), "at most 128 positions"),
    "to_tokens one string": (lambda f: f["model"].to_tokens("hello world"), "list of prompts"),
    "to_tokens empty list": (lambda f: f["model"].to_tokens([]), "non-empty list of prompts"),
    "store batch size 0": (lambda f: next(f["store"].batches(0)), "batch_size must be a positive whole number, got 0"),
    "store batch size -1": (lambda f: next(f["store"].batches(-1)), "batch_size must be a positive"),
    "store batch size float": (lambda f: next(f["store"].batches(16.5)), "got 16.5"),
    "store hook string misspelt": (lambda f: next(f["store"].batches(8, hooks="blocks.1.hook_resid_pst")),
                           "no hook 'blocks.1.hook_resid_pst'"),
    "store batch above one epoch": (lambda f: next(f["store"].batches(600, epochs=1)), "more than the 512 rows"),
    "store mean unknown hook": (lambda f: f["store"].store.mean("nope"), "has no hook 'nope'"),
    "live buffer 0": (lambda f: type(f["live"])(f["model"], [H], buffer_tokens=0), "buffer_tokens must be a positive"),
    "live batch_contexts 0": (lambda f: type(f["live"])(f["model"], [H], batch_contexts=0),
                              "batch_contexts must be a positive"),
    "live batch size 0": (lambda f: next(f["live"].batches(0)), "batch_size must be a positive"),
    "live batch size -4": (lambda f: next(f["live"].batches(-4)), "batch_size must be a positive"),
    "live batch above buffer": (lambda f: next(f["live"].batches(1000)), "raise buffer_tokens"),
    "live hook not served": (lambda f: next(f["live"].batches(8, hooks=["blocks.0.hook_resid_post"])),
                             "no hook 'blocks.0.hook_resid_post'"),
    "tensor source batch above rows": (lambda f: next(_tensor_source().batches(100)), "more than the 64 rows"),
    "tensor source batch 0": (lambda f: next(_tensor_source().batches(0)), "batch_size must be a positive"),
    "tensor source 1-D": (lambda f: type(_tensor_source())({H: torch.randn(10)}), r"\[n_tokens, d\]"),
    "reconstruction n_tokens 0": (lambda f: reconstruction_scores(
        [f["sae"]], _tensor_source(), 0, batch_size=8), "n_tokens must be a positive"),
    "sweep unknown field": (lambda f: _train_config(sweep={"kk": [1]}).sae_configs(), "unknown config field 'kk'"),
    "sweep scalar": (lambda f: _train_config(sweep={"k": 16}).sae_configs(), "non-empty list"),
    "coders unknown field": (lambda f: _train_config(coders=[{"hok": H}]).sae_configs(), "unknown config field 'hok'"),
    "coders hook string": (lambda f: _train_config(coders=[H]).sae_configs(), "must be a table of coder fields"),
    "trainer bad device": (lambda f: Trainer(_train_config(device="gpu"), _tensor_source()), "unknown device 'gpu'"),
    "load_sae bad device": (lambda f: load_sae("/nonexistent", device="gpu"), "unknown device 'gpu'"),
    "load_examples n 0": (lambda f: load_examples("sva_pp", 0), "n must be a positive"),
    "select_nodes nan": (lambda f: select_nodes({H: torch.randn(8)}, "topk", float("nan")), "threshold value nan"),
    "select_nodes no scores": (lambda f: select_nodes({}, "topk", 3), "no scores"),
    "feature_flow empty": (lambda f: feature_flow([]), "non-empty list of SAE folders"),
    "encode wrong width": (lambda f: f["sae"].encode(torch.randn(5, 100)), "width 192, got shape \\[5, 100\\]"),
    "decode wrong width": (lambda f: f["sae"].decode(torch.randn(5, 10)), "codes of 32 latents, got shape \\[5, 10\\]"),
    "steering wrong width": (lambda f: _steer_with(f["model"], torch.randn(100)),
                             "vector of width 192, got shape \\[100\\]"),
    "generate negative": (lambda f: generate(f["model"], "hello", max_new_tokens=-1),
                          "max_new_tokens must be a positive"),
    "ablation no features": (lambda f: FeatureAblation(f["sae"], []), "no features to ablate"),
    "ablation means of the wrong length": (lambda f: FeatureAblation(f["sae"], [1, 2, 3], "mean", torch.zeros(2)),
                                           r"one per feature \(3\), got shape \(2,\)"),
    "schedule no layers": (lambda f: schedule(0), "at least one layer, got 0"),
    "save_sae onto a file": (lambda f: save_sae(f["sae"], __file__), "it is a file, not a folder"),
    "save_sae under a file": (lambda f: save_sae(f["sae"], f"{__file__}/sae"), "cannot create the SAE folder"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_named(case, request):
    call, words = CASES[case]
    fixtures = {name: request.getfixturevalue(name) for name in ("model", "sae")}
    if case.startswith("store"):
        fixtures["store"] = request.getfixturevalue("store")
    if case.startswith("live"):
        fixtures["live"] = request.getfixturevalue("live")
    with pytest.raises(ToolkitError, match=words), no_hang():
        call(fixtures)
