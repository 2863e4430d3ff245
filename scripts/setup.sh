#!/usr/bin/env bash
# Create .venv (if needed) and install the toolkit with its test extras, CPU torch first.
# Idempotent: reinstalls only when pyproject.toml changed since the last successful run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # torch first, pinned: a bare `torch` requirement would pull a multi-GB CUDA build. This
  # project's machines serve the CPU build of 2.13.0 from a local wheel folder; elsewhere, set
  # TORCH_INDEX=https://download.pytorch.org/whl/cpu (PyPI's Linux wheel is the CUDA one).
  .venv/bin/python -m pip install --quiet ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "torch==2.13.0"
  .venv/bin/python -m pip install --quiet -e ".[test]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
