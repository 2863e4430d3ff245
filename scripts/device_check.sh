#!/usr/bin/env bash
# The GPU checks of issues 2 and 3, as one prepared run on a CUDA machine (the device tool's
# H200: about 5 minutes there, by the budgets below; each step is cut at its limit):
#
#   bash scripts/device_wheels.sh                  # here: the packages its image lacks, into .whl/
#   device run:  command "bash scripts/device_check.sh", carry [".whl"], timeout_s 540
#
# 1. tests/test_cuda.py: CUDA harvest = CPU harvest; fp16/bf16 harvest close to fp32; bf16
#    autocast training of every architecture reaches the CPU run's FVU.
# 2. benchmarks/bench_harvest.py on CUDA: harvest time / bare forward time (target <= 1.15),
#    tiny and GPT-2-small-shaped, fp32 and fp16 forward passes.
# 3. benchmarks/bench_train_step.py on CUDA: a training step / one encoder matmul, bf16 and fp32.
# 4. `sae train` (the main job) on CUDA.
# DDP over NCCL needs two GPUs (NCCL refuses two ranks on one device, and one rank runs no
# collective), so it is not here: the device machine lends one chip.
# Logs and summary.txt go to $OUT (./device-out when unset). DEVICE=cpu MODELS=tiny TOKENS=64k runs the
# same steps on the CPU: a dry run of this script (add WHEELS=none PYTHON=.venv/bin/python
# REPEATS=2 here, where .whl/ holds Python 3.12 wheels).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-device-out}
DEVICE=${DEVICE:-cuda}
TOKENS=${TOKENS:-1M}
MODELS=${MODELS:-tiny,gpt2-small-shape}
REPEATS=${REPEATS:-10}
WHEELS=${WHEELS:-.whl}
PY=${PYTHON:-python3}
mkdir -p "$OUT"; : > "$OUT/summary.txt"
if compgen -G "$WHEELS/*.whl" > /dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl \
    || { echo "installing .whl failed"; exit 1; }
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
WORK=$(mktemp -d)

check() {  # check NAME SECONDS COMMAND...: run it into $OUT/NAME.log, show its end, note its exit status
  local name=$1 limit=$2; shift 2
  echo "== $name: $*"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 15 "$OUT/$name.log"
  echo "== $name: exit $rc"; echo "$name exit $rc" >> "$OUT/summary.txt"
}

check env 60 bash -c "nvidia-smi -L 2>/dev/null; $PY -c 'import torch
from importlib.metadata import version
print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, torch.cuda.is_available(),
      *(f\"{n} {version(n)}\" for n in (\"transformers\", \"transformer-lens\", \"datasets\")))'"
check cuda-tests 240 $PY -m pytest -q -rs -p no:cacheprovider tests/test_cuda.py
check harvest-fp32 150 $PY benchmarks/bench_harvest.py --device "$DEVICE" --models "$MODELS" \
  --tokens "$TOKENS" --rss-tokens ""
if [ "$DEVICE" != cpu ]; then
  check harvest-fp16 120 $PY benchmarks/bench_harvest.py --device "$DEVICE" --models gpt2-small-shape \
    --tokens "$TOKENS" --model-dtype float16 --rss-tokens ""
fi
check train-step-bf16 120 $PY benchmarks/bench_train_step.py --device "$DEVICE" --repeats "$REPEATS"
check train-step-fp32 120 $PY benchmarks/bench_train_step.py --device "$DEVICE" --repeats "$REPEATS" --no-autocast
check main-job 240 $PY -m sae train --device "$DEVICE" --out "$WORK/main"
cp "$WORK"/main/eval.json "$OUT/main-eval.json" 2>/dev/null
rm -rf "$WORK"
echo "== summary"; cat "$OUT/summary.txt"
