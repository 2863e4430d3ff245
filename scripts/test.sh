#!/usr/bin/env bash
# The test command: builds its own environment, runs the whole suite offline, fails if no test ran.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# the dashboard tests drive a real headless browser (Debian's chromium); install it when we may
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
  if command -v apt-get >/dev/null 2>&1; then
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium; } >/dev/null 2>&1 \
      || echo "warning: could not install chromium; the browser tests will be skipped" >&2
  fi
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
log="$(mktemp)"
set +e
.venv/bin/python -m pytest -q --durations=30 "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
if ! grep -Eq "[0-9]+ passed" "$log"; then
  echo "error: no test ran" >&2
  exit 1
fi
exit "$status"
