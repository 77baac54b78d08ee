#!/usr/bin/env bash
# Create .venv (once) and install madf-trt into it with the extras named in $MADF_EXTRAS (default: dev).
# torch is pinned to 2.13.0 (the CPU build on local disk) and installed first, so nothing pulls a CUDA build.
# Re-running is cheap: it reinstalls only when setup.cfg or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS=${MADF_EXTRAS:-dev}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# pip's own failure fails the set-up (pipefail); only grep's "nothing left to print" is not one
quiet() { grep -v '^WARNING: Location' || true; }
stamp=.venv/.madf-setup
want="$(cat setup.cfg scripts/setup.sh | sha256sum | cut -c1-16) $EXTRAS"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip 2>&1 | quiet
  .venv/bin/python -m pip install --quiet "torch==2.13.0" 2>&1 | quiet
  .venv/bin/python -m pip install --quiet -e ".[$EXTRAS]" 2>&1 | quiet
  .venv/bin/python -c "import torch, madf; print(f'madf {madf.__version__}, torch {torch.__version__}')"
  echo "$want" > "$stamp"
fi
