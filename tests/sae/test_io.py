"""SAELens-compatible folders: fixtures laid out as SAELens 6.x writes them, round trips,
normalisation folding, legacy configs and pretrained releases."""

import json

import huggingface_hub
import huggingface_hub.constants
import huggingface_hub.errors
import pytest
import torch
from safetensors.torch import load_file, save_file

from activations.errors import ToolkitError
from sae.architectures import ARCHITECTURES, StepContext, build
from sae.cli import main
from sae.config import SAEConfig
from sae.io import load_log_density, load_pretrained, load_sae, one_sae_folder, sae_folders, save_sae

D_IN, D_SAE, D_OUT = 16, 40, 10
HOOK = "blocks.3.hook_resid_pre"


def saelens_folder(folder, architecture: str, seed: int = 0):
    """Write ``folder`` as SAELens 6.x's ``SAE.save_model`` (+ sparsity) lays it out."""
    gen = torch.Generator().manual_seed(seed)
    transcoder = architecture.endswith("transcoder")
    d_out = D_OUT if transcoder else D_IN
    weights = {"W_enc": torch.randn(D_IN, D_SAE, generator=gen) / 4,
               "W_dec": torch.randn(D_SAE, d_out, generator=gen) / 4, "b_dec": torch.randn(d_out, generator=gen) / 4}
    if architecture == "gated":
        weights.update(b_gate=torch.randn(D_SAE, generator=gen) / 4, b_mag=torch.randn(D_SAE, generator=gen) / 4,
                       r_mag=torch.randn(D_SAE, generator=gen) / 4)
    else:
        weights["b_enc"] = torch.randn(D_SAE, generator=gen) / 4
    if architecture.startswith("jumprelu"):
        weights["threshold"] = torch.rand(D_SAE, generator=gen) / 2
    if architecture == "skip_transcoder":
        weights["W_skip"] = torch.randn(d_out, D_IN, generator=gen) / 4
    cfg = {"d_in": D_IN, "d_sae": D_SAE, "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": True,
           "normalize_activations": "none", "reshape_activations": "none",
           "metadata": {"sae_lens_version": "6.12.1", "sae_lens_training_version": "6.12.1", "model_name": "gpt2",
                        "hook_name": HOOK, "hook_head_index": None, "prepend_bos": True,
                        "dataset_path": "monology/pile-uncopyrighted", "context_size": 128,
                        "model_from_pretrained_kwargs": {}, "seqpos_slice": [None], "neuronpedia_id": None,
                        "exclude_special_tokens": False},
           "architecture": architecture}
    if architecture == "topk":
        cfg.update(k=6, rescale_acts_by_decoder_norm=False)
    if transcoder:
        cfg.update(d_out=d_out, hook_name_out="blocks.3.hook_mlp_out", hook_layer_out=3, hook_head_index_out=None)
    folder.mkdir(parents=True)
    save_file(weights, folder / "sae_weights.safetensors")
    save_file({"sparsity": torch.rand(D_SAE, generator=gen) * -5}, folder / "sparsity.safetensors")
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return weights, cfg


def saelens_reference(weights: dict, cfg: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(feature_acts, sae_out) by SAELens's formulas for each architecture."""
    w = weights
    arch = cfg["architecture"]
    sae_in = x if arch.endswith("transcoder") else x - w["b_dec"] * cfg["apply_b_dec_to_input"]
    if arch == "gated":
        h = sae_in @ w["W_enc"]
        acts = (h + w["b_gate"] > 0) * torch.relu(h * w["r_mag"].exp() + w["b_mag"])
    else:
        pre = sae_in @ w["W_enc"] + w["b_enc"]
        if arch == "topk":
            top = pre.topk(cfg["k"], dim=-1)
            acts = torch.zeros_like(pre).scatter_(-1, top.indices, torch.relu(top.values))
        elif arch.startswith("jumprelu"):
            acts = torch.relu(pre) * (pre > w["threshold"])
        else:
            acts = torch.relu(pre)
    out = acts @ w["W_dec"] + w["b_dec"]
    if "W_skip" in w:
        out = out + x @ w["W_skip"].T
    return acts, out


ALL_SAELENS = ["standard", "topk", "jumprelu", "gated", "transcoder", "skip_transcoder", "jumprelu_transcoder"]


@pytest.mark.parametrize("architecture", ALL_SAELENS)
def test_saelens_folders_load_and_compute_as_saelens_does(tmp_path, architecture):
    weights, cfg = saelens_folder(tmp_path / "sae", architecture)
    sae = load_sae(tmp_path / "sae")
    x = torch.randn(32, D_IN, generator=torch.Generator().manual_seed(5))
    acts, out = saelens_reference(weights, cfg, x)
    assert torch.allclose(sae.encode(x), acts, atol=1e-6)
    assert torch.allclose(sae(x), out, atol=1e-5)
    assert sae.cfg.hook == HOOK and sae.metadata["model_name"] == "gpt2"
    stored = load_file(tmp_path / "sae" / "sparsity.safetensors")["sparsity"]
    assert torch.equal(load_log_density(tmp_path / "sae"), stored)


@pytest.mark.parametrize("architecture", ALL_SAELENS)
def test_round_trip_keeps_saelens_layout(tmp_path, architecture):
    weights, cfg = saelens_folder(tmp_path / "in", architecture)
    save_sae(load_sae(tmp_path / "in"), tmp_path / "out", metadata={"model_name": "gpt2"})
    saved_weights = load_file(tmp_path / "out" / "sae_weights.safetensors")
    assert set(saved_weights) == set(weights)
    for key, value in weights.items():
        assert torch.equal(saved_weights[key], value), key
    saved_cfg = json.loads((tmp_path / "out" / "cfg.json").read_text())
    for key in ("d_in", "d_sae", "dtype", "device", "normalize_activations", "reshape_activations", "architecture",
                "k", "d_out", "hook_name_out"):
        assert saved_cfg.get(key) == cfg.get(key), key
    assert saved_cfg["metadata"]["hook_name"] == HOOK
    assert saved_cfg["apply_b_dec_to_input"] == (not architecture.endswith("transcoder"))


def test_a_save_that_fails_midway_leaves_the_previous_sae_whole(tmp_path, monkeypatch):
    """Overwriting an SAE folder: a failure while the new weights are being written (here, the
    disk refusing to sync) leaves the old weights and config byte for byte, still loadable."""
    import activations.store
    saelens_folder(tmp_path / "in", "standard")
    sae = load_sae(tmp_path / "in")
    out = save_sae(sae, tmp_path / "out")
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    with torch.no_grad():
        sae.W_dec.mul_(2.0)

    def refuse(_fd):
        raise OSError("disk full")
    monkeypatch.setattr(activations.store.os, "fsync", refuse)
    with pytest.raises(OSError, match="disk full"):
        save_sae(sae, out)
    monkeypatch.undo()
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.suffix != ".tmp"} == before
    assert not list(out.glob("*.tmp")), "the failed write left its partial file behind"
    assert torch.equal(load_sae(out).W_dec, load_sae(tmp_path / "in").W_dec)


@pytest.mark.parametrize("architecture, transcoder", [(a, t) for a in ARCHITECTURES for t in (False, True)
                                                      if not (t and a == "matryoshka")])
def test_saved_coders_work_on_raw_activations(tmp_path, architecture, transcoder):
    """A coder trained on x·s_in -> y·s_out, saved with those scales, maps raw x to raw y."""
    d_out = D_OUT if transcoder else D_IN
    cfg = SAEConfig(architecture=architecture, hook=HOOK, hook_out="blocks.3.hook_mlp_out" if transcoder else "",
                    skip=transcoder, d_sae=D_SAE, k=5).resolved(D_IN, d_out)
    torch.manual_seed(0)
    sae = build(cfg, d_out)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(64, D_IN) * 7.0
    s_in, s_out = 0.25, (0.5 if transcoder else 0.25)
    sae.training_forward(x * s_in, torch.zeros(64, d_out), StepContext(0.5, None))  # batchtopk threshold
    loaded = load_sae(save_sae(sae, tmp_path / "sae", s_in, s_out))
    with torch.no_grad():
        assert torch.allclose(loaded.encode(x), sae.encode(x * s_in), atol=1e-5)
        assert torch.allclose(loaded(x), sae(x * s_in) / s_out, atol=1e-4)


def test_legacy_saelens_config_loads(tmp_path):
    """The layout of jbloom/GPT2-Small-SAEs-Reformatted (no architecture, hook_point)."""
    weights, _ = saelens_folder(tmp_path / "sae", "standard")
    legacy = {"d_in": D_IN, "d_sae": D_SAE, "hook_point": HOOK, "hook_point_layer": 3, "model_name": "gpt2-small",
              "dtype": "torch.float32", "device": "cpu", "apply_b_dec_to_input": True, "context_size": 128}
    (tmp_path / "sae" / "cfg.json").write_text(json.dumps(legacy))
    sae = load_sae(tmp_path / "sae")
    x = torch.randn(8, D_IN)
    assert sae.cfg.architecture == "relu" and sae.cfg.hook == HOOK and sae.metadata["model_name"] == "gpt2-small"
    assert torch.allclose(sae(x), saelens_reference(weights, {"architecture": "standard",
                                                             "apply_b_dec_to_input": True}, x)[1], atol=1e-5)


def test_sae_folders_finds_the_saes_a_path_names(tmp_path):
    """An SAE folder names itself; a run folder names its saes/, a folder of SAE folders its
    children (sorted); anything else is refused in one line, and so is a choice among several."""
    for name in ("b", "a"):
        saelens_folder(tmp_path / "run" / "saes" / name, "standard")
    (tmp_path / "run" / "saes" / "notes").mkdir()
    found = [tmp_path / "run" / "saes" / name for name in ("a", "b")]
    assert sae_folders(found[1]) == [found[1]]
    assert sae_folders(tmp_path / "run") == found == sae_folders(tmp_path / "run" / "saes")
    assert one_sae_folder(found[0]) == found[0]
    with pytest.raises(ToolkitError, match="holds 2 SAEs; pass one of them: .*saes/a, .*saes/b$"):
        one_sae_folder(tmp_path / "run")
    with pytest.raises(ToolkitError, match="does not exist"):
        sae_folders(tmp_path / "missing")
    with pytest.raises(ToolkitError, match="is a file"):
        sae_folders(found[0] / "cfg.json")
    with pytest.raises(ToolkitError, match="is not an SAE folder .* and holds none"):
        sae_folders(tmp_path / "run" / "saes" / "notes")
    (tmp_path / "unfinished" / "checkpoints" / "step-00000010").mkdir(parents=True)
    with pytest.raises(ToolkitError, match=r"run folder .*unfinished holds no finished SAEs yet \(no saes/\); finish "
                                           r"the run with `sae train --out .*unfinished --resume`"):
        sae_folders(tmp_path / "unfinished")


def test_bad_folders_are_refused(tmp_path):
    with pytest.raises(ToolkitError, match="is not an SAE folder"):
        load_sae(tmp_path)
    saelens_folder(tmp_path / "sae", "standard")
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    (tmp_path / "sae" / "cfg.json").write_text(json.dumps({**cfg, "architecture": "temporal"}))
    with pytest.raises(ToolkitError, match="cannot load SAE architecture 'temporal'; loadable"):
        load_sae(tmp_path / "sae")
    (tmp_path / "sae" / "cfg.json").write_text(json.dumps({**cfg, "d_sae": D_SAE + 1}))
    with pytest.raises(ToolkitError, match="do not fit"):
        load_sae(tmp_path / "sae")


def test_pretrained_release_offline_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ToolkitError, match="not in the local Hugging Face cache and the hub is"):
        load_pretrained("gpt2-small-res-jb", "blocks.8.hook_resid_pre")


def test_pretrained_release_resolves_to_its_repository(tmp_path, monkeypatch):
    saelens_folder(tmp_path / "jbloom" / "blocks.8.hook_resid_pre", "standard")
    requested = []

    def fake_download(repo_id, filename, **_):
        requested.append((repo_id, filename))
        path = tmp_path / repo_id.split("/")[0] / filename
        if not path.exists():
            raise huggingface_hub.errors.EntryNotFoundError(filename)
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    sae = load_pretrained("gpt2-small-res-jb", "blocks.8.hook_resid_pre")
    assert sae.d_sae == D_SAE
    assert requested[0] == ("jbloom/GPT2-Small-SAEs-Reformatted", "blocks.8.hook_resid_pre/cfg.json")
    with pytest.raises(ToolkitError, match="has no SAE 'blocks.99.hook_resid_pre'"):
        load_pretrained("gpt2-small-res-jb", "blocks.99.hook_resid_pre")
    with pytest.raises(ToolkitError, match="unknown SAELens release 'no-such-release'"):
        load_pretrained("no-such-release", "x")


def test_a_pretrained_sae_is_named_release_colon_id_wherever_sae_folders_are_taken(tmp_path, monkeypatch, capsys):
    """RELEASE:SAE_ID names a pretrained SAE for every verb that takes SAE folders (they all go
    through sae_folders); offline and uncached it is one line, and an existing path wins."""
    from sae.io import release_spec
    saelens_folder(tmp_path / "jbloom" / "blocks.8.hook_resid_pre", "standard")

    def fake_download(repo_id, filename, **_):
        path = tmp_path / repo_id.split("/")[0] / filename
        if not path.exists():
            raise huggingface_hub.errors.EntryNotFoundError(filename)
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    spec = "gpt2-small-res-jb:blocks.8.hook_resid_pre"
    assert release_spec(spec) == ("gpt2-small-res-jb", "blocks.8.hook_resid_pre")
    assert release_spec("jbloom/GPT2-Small-SAEs-Reformatted:blocks.8.hook_resid_pre") is not None
    assert release_spec("no-such-release:x") is None and release_spec("runs/sae") is None
    assert sae_folders(spec) == [tmp_path / "jbloom" / "blocks.8.hook_resid_pre"]
    assert one_sae_folder(spec) == tmp_path / "jbloom" / "blocks.8.hook_resid_pre"
    assert main(["inspect", spec]) == 0
    assert f"1 SAE in {spec}; weights loaded and finite" in capsys.readouterr().out
    local = tmp_path / "gpt2-small-res-jb:local"  # a local folder of that shape is a folder
    saelens_folder(local, "standard")
    assert release_spec(local) is None and sae_folders(local) == [local]
    with pytest.raises(ToolkitError, match="or a pretrained SAE as RELEASE:SAE_ID"):
        sae_folders(tmp_path / "missing")
    monkeypatch.undo()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    assert main(["inspect", spec]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot load SAE 'blocks.8.hook_resid_pre' of release 'gpt2-small-res-jb'")
    assert err.count("\n") == 1


def _edit(**changes):
    """A cfg.json damage: set (or, with None, drop) top-level fields."""
    def damage(data: bytes) -> bytes:
        cfg = {**json.loads(data), **changes}
        return json.dumps({k: v for k, v in cfg.items() if v is not None}).encode()
    return damage


def _no_hook(data: bytes) -> bytes:
    cfg = json.loads(data)
    del cfg["metadata"]["hook_name"]
    return json.dumps(cfg).encode()


@pytest.mark.parametrize("file, damage, message", [
    ("cfg.json", lambda data: data[:30], "cfg.json is not valid JSON"),
    ("cfg.json", lambda data: b"", "cfg.json is not valid JSON"),
    ("cfg.json", lambda data: b"[]", "cfg.json must hold a JSON object, not list"),
    ("cfg.json", _edit(metadata="gpt2"), "cfg.json has metadata 'gpt2', which is not an object"),
    ("cfg.json", _edit(d_in=None), "cfg.json needs 'd_in', a positive whole number, got None"),
    ("cfg.json", _edit(k="abc"), "cfg.json needs 'k', a positive whole number, got 'abc'"),
    ("cfg.json", _edit(k=0), "cfg.json needs 'k', a positive whole number, got 0"),
    ("cfg.json", _edit(k=100000), "cfg.json has k = 100000, more than its d_sae = 40 latents"),
    ("cfg.json", _edit(d_sae=-4), "cfg.json needs 'd_sae', a positive whole number, got -4"),
    ("cfg.json", _no_hook, "cfg.json names no hook (metadata.hook_name)"),
    ("sae_weights.safetensors", lambda data: data[:50], "sae_weights.safetensors is not a readable safetensors"),
    ("sae_weights.safetensors", lambda data: b"", "sae_weights.safetensors is not a readable safetensors"),
])
def test_damaged_sae_folders_are_one_line(tmp_path, capsys, file, damage, message):
    saelens_folder(tmp_path / "sae", "topk")
    path = tmp_path / "sae" / file
    path.write_bytes(damage(path.read_bytes()))
    assert main(["eval", str(tmp_path / "sae"), "--contexts", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'sae'}/") and message in err and len(err.splitlines()) == 1, err
