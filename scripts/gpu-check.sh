#!/usr/bin/env bash
# For whoever has an NVIDIA GPU: build the fused kernel's torch extension (and, where TensorRT is installed, the
# plugin library) on this machine and run every GPU test, then print one summary line.
#   bash scripts/gpu-check.sh            # extra arguments go to pytest, e.g. -k whole_model -s
# It uses the Python whose torch is a CUDA build ($PYTHON, default python3; the repo's .venv holds a CPU torch) and
# installs madf-trt into it in place, without dependencies (nothing is downloaded).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu-check: $PY has no CUDA build of torch or sees no GPU; set PYTHON to one that does" >&2
  exit 1
fi
"$PY" -m pip install --quiet --no-deps --no-build-isolation -e . 2>&1 | grep -v '^WARNING' || true
report=$(mktemp --suffix=.xml)
set +e
"$PY" -m pytest -m gpu -rs -p no:cacheprovider --junitxml="$report" tests "$@"
rc=$?
set -e
"$PY" - "$report" <<'PYEOF'
import sys, xml.etree.ElementTree as ET
import torch
suite = ET.parse(sys.argv[1]).getroot()
suite = suite if suite.tag == "testsuite" else suite[0]
n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
passed = n["tests"] - n["failures"] - n["errors"] - n["skipped"]
print(f"gpu-check: {passed} passed, {n['failures']} failed, {n['errors']} errors, {n['skipped']} skipped on "
      f"{torch.cuda.get_device_name()} (torch {torch.__version__}, CUDA {torch.version.cuda})")
PYEOF
rm -f "$report"
exit "$rc"
