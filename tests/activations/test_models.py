import subprocess
import sys

import pytest
import torch

from activations import models
from activations.errors import ToolkitError
from activations.hooks import valid_hook_names
from activations.models import load_model, native_on_cpu


def test_capture_equals_transformerlens_for_every_hook(toy_gpt2_dir):
    model = load_model(toy_gpt2_dir, device="cpu")
    hooks = valid_hook_names(model.dims.n_layers)
    tokens = torch.randint(0, model.dims.d_vocab, (3, 20))
    ours = model.capture(tokens, hooks)
    _, cache = model.bridge.run_with_cache(tokens, names_filter=hooks)
    for hook in hooks:
        theirs = cache[hook].flatten(-2) if cache[hook].dim() == 4 else cache[hook]
        assert ours[hook].shape == theirs.shape == (3, 20, model.hook_width(hook)), hook
        torch.testing.assert_close(ours[hook], theirs, rtol=0, atol=1e-5, msg=hook)


def test_capture_stops_after_deepest_hook(toy_gpt2_dir):
    model = load_model(toy_gpt2_dir, device="cpu")
    ran = []
    handle = model.hf_model.transformer.h[1].register_forward_pre_hook(lambda m, a: ran.append(1))
    model.capture(torch.zeros(1, 5, dtype=torch.long), ["blocks.0.hook_resid_post"])
    assert ran == []
    model.capture(torch.zeros(1, 5, dtype=torch.long), ["blocks.1.hook_resid_pre"])
    assert ran == [1]
    handle.remove()


def test_patch_changes_downstream_and_identity_patch_does_not(toy_gpt2_dir):
    model = load_model(toy_gpt2_dir, device="cpu")
    tokens = torch.randint(0, model.dims.d_vocab, (2, 10))
    with torch.no_grad():
        clean = model.forward(tokens)
        same = model.forward(tokens, {"blocks.0.hook_resid_mid": lambda a: a})
        zeroed = model.forward(tokens, {"blocks.0.hook_resid_mid": torch.zeros_like})
    torch.testing.assert_close(same, clean, rtol=0, atol=1e-5)
    assert (zeroed - clean).abs().max() > 1e-2


def test_gpt2_small_shape_residuals_match_hf_hidden_states(gpt2_small_dir):
    model = load_model(gpt2_small_dir, device="cpu")
    assert (model.dims.n_layers, model.dims.d_model) == (12, 768)
    assert not model.hf_model.training
    tokens = torch.randint(0, model.dims.d_vocab, (2, 32))
    hooks = [f"blocks.{layer}.hook_resid_post" for layer in range(11)]
    ours = model.capture(tokens, hooks)
    with torch.no_grad():
        hidden = model.hf_model(tokens, output_hidden_states=True).hidden_states
    for layer, hook in enumerate(hooks):
        torch.testing.assert_close(ours[hook], hidden[layer + 1], rtol=0, atol=1e-4)


def test_unknown_hook_lists_valid_ones(toy_gpt2_dir):
    model = load_model(toy_gpt2_dir, device="cpu")
    with pytest.raises(ToolkitError, match=r"unknown hook name 'blocks.7.hook_resid_post'.*hook_resid_post"):
        model.capture(torch.zeros(1, 4, dtype=torch.long), ["blocks.7.hook_resid_post"])


def test_float32_is_native_everywhere_and_half_precision_is_asked_of_onednn(monkeypatch):
    assert native_on_cpu(torch.float32)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_fp16_supported", lambda: True)
    assert not native_on_cpu(torch.bfloat16) and native_on_cpu(torch.float16)


@pytest.mark.parametrize("dtype,native,warned", [("bfloat16", False, True), ("bfloat16", True, False),
                                                 ("float32", False, False)])
def test_half_precision_on_a_cpu_without_it_warns_in_one_line(monkeypatch, capsys, dtype, native, warned):
    """A half-precision forward pass on a CPU's scalar GEMM runs ~60x slower than float32: say so."""
    monkeypatch.setattr(models, "native_on_cpu", lambda d: native or d == torch.float32)
    model = load_model("tiny", device="cpu", dtype=dtype)
    assert model.hf_model.dtype == models.resolve_dtype(dtype)
    err = capsys.readouterr().err
    assert ("no native torch.bfloat16 matrix multiply" in err) == warned
    assert err.count("\n") == int(warned)


def test_gpt2_offline_without_cache_fails_with_one_sentence(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin"}
    code = "from activations.models import load_model; load_model('gpt2')"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "cannot load model 'gpt2'" in last and "hf download gpt2" in last


def test_missing_local_folder_is_a_clear_error():
    with pytest.raises(ToolkitError, match="does not exist"):
        load_model("./no/such/folder")


def test_tiny_loads_through_the_gpt2_path_and_matches_transformerlens():
    from activations.tiny import CHECKPOINT_DIR
    model = load_model("tiny", device="cpu")
    assert model.is_gpt2 and model.checkpoint == str(CHECKPOINT_DIR)
    assert type(model.hf_model).__name__ == "GPT2LMHeadModel"
    tokens = model.to_tokens(["When Mary and John went to the store, John gave a drink to"])
    hooks = [f"blocks.{layer}.hook_resid_post" for layer in range(model.dims.n_layers)] + ["blocks.1.attn.hook_z"]
    ours = model.capture(tokens, hooks)
    _, cache = model.bridge.run_with_cache(tokens, names_filter=hooks)
    for hook in hooks:
        # float32 noise only: the residual stream reaches norms of ~100, so tolerance is relative
        torch.testing.assert_close(ours[hook], cache[hook].flatten(-2) if cache[hook].dim() == 4 else cache[hook],
                                   rtol=1e-5, atol=1e-5)


def test_aliases_and_folders_of_one_model_are_the_same_model(toy_gpt2_dir):
    """SAELens names GPT-2 small "gpt2-small"; a store of "gpt2" serves its SAEs (the
    TransformerLens alias table, no download); a folder is itself however it is written."""
    from activations.models import same_model
    from activations.tiny import CHECKPOINT_DIR
    assert same_model("gpt2-small", "gpt2") and same_model("gpt2", "gpt2")
    assert not same_model("gpt2", "gpt2-medium") and not same_model("gpt2", "tiny")
    assert same_model("tiny", str(CHECKPOINT_DIR)) and same_model(toy_gpt2_dir, toy_gpt2_dir + "/.")
    assert not same_model(toy_gpt2_dir, "./no-such-folder")
