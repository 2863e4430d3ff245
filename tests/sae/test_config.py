"""Run configuration: TOML, sweeps, overrides, and the errors for bad input."""

import pytest

from activations.errors import ToolkitError
from sae.cli import main
from sae.config import DEFAULT_LR, SAEConfig, load_config, name_coders

RUN_TOML = """
tokens = 1_000_000
acts = "acts/tiny"
batch_size = 2048

[sae]
architecture = "topk"
hook = "blocks.1.hook_resid_post"
d_sae = 1024

[sweep]
k = [16, 32]
hook = ["blocks.1.hook_resid_post", "blocks.2.hook_resid_post"]
"""


@pytest.fixture
def run_toml(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(RUN_TOML)
    return path


def test_toml_sweep_is_a_cartesian_product(run_toml):
    cfg = load_config(run_toml)
    assert (cfg.tokens, cfg.acts, cfg.batch_size) == (1_000_000, "acts/tiny", 2048)
    combos = {(c.k, c.hook, c.d_sae) for c in cfg.sae_configs()}
    assert combos == {(16, "blocks.1.hook_resid_post", 1024), (32, "blocks.1.hook_resid_post", 1024),
                      (16, "blocks.2.hook_resid_post", 1024), (32, "blocks.2.hook_resid_post", 1024)}
    assert cfg.hooks() == ["blocks.1.hook_resid_post", "blocks.2.hook_resid_post"]


def test_coders_tables_give_different_coders_each_swept(tmp_path):
    path = tmp_path / "mixed.toml"
    path.write_text('[sae]\nd_sae = 512\n[[coders]]\narchitecture = "topk"\n'
                    '[[coders]]\narchitecture = "relu"\nl1_coefficient = 2\n[sweep]\nhook = ["blocks.0.hook_resid_post", '
                    '"blocks.1.hook_resid_post"]\n')
    configs = load_config(path).sae_configs()
    assert [(c.architecture, c.hook[:8], c.d_sae) for c in configs] == [
        ("topk", "blocks.0", 512), ("topk", "blocks.1", 512), ("relu", "blocks.0", 512), ("relu", "blocks.1", 512)]
    assert configs[2].l1_coefficient == 2.0 and isinstance(configs[2].l1_coefficient, float)
    path.write_text("[[coders]]\nkay = 3\n")
    with pytest.raises(ToolkitError, match="unknown config field 'kay' in \\[\\[coders\\]\\]"):
        load_config(path)


def test_a_sweep_over_a_field_some_coder_ignores_is_refused():
    with pytest.raises(ToolkitError, match="identical coders .*topk-x16-k32.*move it into \\[\\[coders\\]\\]"):
        load_config(None, {"architecture": "topk", "l1_coefficient": [1.0, 2.0]})


def test_jumprelu_target_weight_is_swept_and_named_apart_from_the_plain_l0_weight():
    cfg = load_config(None, {"architecture": "jumprelu", "target_l0": 32.0, "target_l0_coefficient": [5.0, 50.0]})
    assert [c.slug().split("-")[-2:] for c in cfg.sae_configs()] == [["l0_32", "c5"], ["l0_32", "c50"]]
    with pytest.raises(ToolkitError, match="identical coders"):  # the plain L0 weight does not apply with a target
        load_config(None, {"architecture": "jumprelu", "target_l0": 32.0, "l0_coefficient": [0.05, 1.0]})


def test_a_learning_rate_sweep_names_its_coders_apart_and_a_single_learning_rate_is_not_named():
    cfg = load_config(None, {"architecture": "topk", "d_sae": 3072, "lr": [4.6e-4, 1.5e-3]})
    assert name_coders(cfg.sae_configs()) == ["blocks.2.hook_resid_post-topk-d3072-k32-lr0.00046",
                                              "blocks.2.hook_resid_post-topk-d3072-k32-lr0.0015"]
    cfg.check_distinct()
    one = load_config(None, {"d_sae": 3072, "lr": 1e-3, "hook": ["blocks.1.hook_resid_post", "blocks.2.hook_resid_post"]})
    assert [n.split("-", 1)[1] for n in name_coders(one.sae_configs())] == ["topk-d3072-k32"] * 2
    mixed = load_config(None, {"d_sae": 3072, "lr": [0.0, 1e-3]})  # the default beside a hand-set one
    assert name_coders(mixed.sae_configs()) == ["blocks.2.hook_resid_post-topk-d3072-k32",
                                                "blocks.2.hook_resid_post-topk-d3072-k32-lr0.001"]


def test_overrides_replace_fields_and_lists_become_sweeps(run_toml):
    cfg = load_config(run_toml, {"tokens": 5000, "k": 8, "lr": 1e-3, "d_sae": [256, 512]})
    assert cfg.tokens == 5000
    assert "k" not in cfg.sweep and cfg.sae.k == 8 and cfg.sae.lr == 1e-3
    assert sorted(c.d_sae for c in cfg.sae_configs()) == [256, 256, 512, 512]


@pytest.mark.parametrize("text, field, listed", [("tokenz = 5\n", "tokenz", "tokens"),
                                                 ("[sae]\nkk = 3\n", "kk", "architecture"),
                                                 ("[sweep]\nlrr = [1.0]\n", "lrr", "l1_coefficient")])
def test_typo_names_the_field_and_lists_valid_ones(tmp_path, text, field, listed):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ToolkitError, match=f"unknown config field '{field}'.*valid fields: .*{listed}"):
        load_config(path)


def test_coder_field_at_top_level_points_to_the_sae_table(tmp_path):
    path = tmp_path / "misplaced.toml"
    path.write_text("k = 32\n")
    with pytest.raises(ToolkitError, match=r"'k'.*put it under \[sae\]"):
        load_config(path)


def test_override_typo_and_wrong_type_are_refused():
    with pytest.raises(ToolkitError, match="unknown config field 'd_sea'.*d_sae"):
        load_config(None, {"d_sea": 12})
    with pytest.raises(ToolkitError, match="'k'.*must be int"):
        load_config(None, {"k": "many"})


def test_a_wrong_type_names_where_the_value_came_from(run_toml, tmp_path):
    """A bad --set value is the command line's, even on top of a config file; a bad value in
    the file is the file's."""
    with pytest.raises(ToolkitError, match="'batch_size' in the command line must be int, got 'abc'"):
        load_config(run_toml, {"batch_size": "abc"})
    with pytest.raises(ToolkitError, match="'k' in the command line must be int, got 'a'"):
        load_config(None, {"k": [4, "a"]})
    path = tmp_path / "bad.toml"
    path.write_text('batch_size = "x"\n')
    with pytest.raises(ToolkitError, match=f"'batch_size' in {path} must be int"):
        load_config(path, {"k": 8})


def test_resolved_fills_width_lr_and_prefixes():
    cfg = SAEConfig(architecture="matryoshka", expansion_factor=8).resolved(64, 64)
    assert cfg.d_in == 64 and cfg.d_sae == 512
    assert cfg.lr == pytest.approx(DEFAULT_LR / (512 / 16384) ** 0.5) and DEFAULT_LR == 6e-4
    assert cfg.matryoshka_prefixes == [32, 64, 128, 256, 512]


@pytest.mark.parametrize("cfg, message", [
    (SAEConfig(d_in=32), "d_in = 32 in the config does not match the width 64"),
    (SAEConfig(k=100, d_sae=64), "k = 100 must be between 1 and d_sae = 64"),
    (SAEConfig(architecture="sparsemax"), "unknown architecture 'sparsemax'; valid architectures: relu, topk, "
                                          "batchtopk, jumprelu, gated, matryoshka"),
    (SAEConfig(skip=True), "skip = true needs a transcoder"),
    (SAEConfig(architecture="matryoshka", d_sae=64, matryoshka_prefixes=[16, 8, 64]), "must increase"),
])
def test_bad_coder_configs_are_refused(cfg, message):
    with pytest.raises(ToolkitError, match=message):
        cfg.resolved(64, 64)


@pytest.mark.parametrize("name, text, message", [
    ("run.toml", "sae = 5\n", "[sae] in {path} must be a table of fields, got 5"),
    ("run.toml", "sweep = 5\n", "[sweep] in {path} must be a table of fields, got 5"),
    ("run.toml", "coders = 5\n", "coders in {path} must be a list of [[coders]] tables, got 5"),
    ("run.json", "[]", "the top level in {path} must be a table of fields, got []"),
    ("run.json", "null", "the top level in {path} must be a table of fields, got None"),
    ("run.toml", b"tokens = 5 # \xff\xfe\n", "cannot parse {path}: 'utf-8' codec can't decode"),
])
def test_config_files_of_the_wrong_shape_are_one_line(tmp_path, capsys, name, text, message):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert main(["train", "--config", str(path), "--k", "8", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message.format(path=path) in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run").exists()
