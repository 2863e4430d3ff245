"""Shared fixtures: locally built GPT-2-shaped checkpoints (random weights, no downloads)."""

from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from activations.synthetic import build_gpt2_checkpoint  # noqa: E402


@pytest.fixture(scope="session")
def toy_gpt2_dir(tmp_path_factory) -> str:
    """A 2-layer, d_model 64 GPT-2 checkpoint folder."""
    return build_gpt2_checkpoint(tmp_path_factory.mktemp("toy_gpt2"), n_layer=2, n_embd=64, n_head=4,
                                 n_positions=64)


@pytest.fixture(scope="session")
def gpt2_small_dir(tmp_path_factory) -> str:
    """A GPT-2-small-shaped checkpoint: 12 layers, d_model 768, 12 heads, random weights."""
    return build_gpt2_checkpoint(tmp_path_factory.mktemp("gpt2_small"), n_layer=12, n_embd=768, n_head=12)


@pytest.fixture(scope="session")
def load_script():
    """Import a file of scripts/ as a module by its name (scripts/ is not a package)."""
    import importlib.util
    from pathlib import Path

    scripts = Path(__file__).resolve().parents[1] / "scripts"

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, scripts / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(scripts))  # as when run: a script imports its neighbours (checkpoint_script)
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(scripts))
        return module
    return load
