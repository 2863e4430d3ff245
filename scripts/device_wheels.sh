#!/usr/bin/env bash
# Wheels, into .whl/ (git-ignored), of the packages that the device machine's image lacks or
# holds at another version: its python3 is 3.12 with torch, tokenizers, safetensors, numpy,
# pandas, pyarrow and huggingface-hub, but no TransformerLens, and nothing can be fetched
# there. scripts/device_check.sh installs them there with --no-deps. Versions: this venv's.
#
#   bash scripts/device_wheels.sh            # here, before a device run that carries .whl
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir .whl
for name in transformer-lens transformers datasets dill multiprocess fancy-einsum beartype typeguard \
            transformers-stream-generator; do
  version=$($PY -c "import importlib.metadata as m; print(m.version('$name'))")
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "$name==$version" 2>/dev/null \
  || $PY -m pip download -q --no-deps --no-binary=:all: -d .whl "$name==$version"  # sdist-only packages
done
# an sdist cannot be installed without a build step there: build pure-python wheels of them here
for sdist in .whl/*.tar.gz; do
  [ -e "$sdist" ] || continue
  $PY -m pip wheel -q --no-deps --no-build-isolation -w .whl "$sdist" && rm "$sdist"
done
ls -la .whl; du -sh .whl
