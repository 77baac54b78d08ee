#!/usr/bin/env bash
# One short call on a borrowed GPU machine (nothing to download there): build the fused kernel's variants in parallel,
# check them, time them, and leave every log and table under $OUT.
#   bash benchmarks/gpu_session.sh check   # GPU tests of the kernel and the plugin, SASS summary, per-level timings,
#                                          # the eager whole model at 256x256
#   bash benchmarks/gpu_session.sh full    # benchmarks/gpu.py in full -> $OUT/RESULTS.md, then every GPU test
# MADF_TENSORRT_HEADERS (a folder of TensorRT header versions) enables the plugin-library GPU test. Each step has its
# own time limit and the script stops starting steps near $BUDGET_S, so a call always returns its logs.
set -uo pipefail
stage=${1:-check}
OUT=${OUT:-/tmp/madf-gpu}
BUDGET_S=${BUDGET_S:-330}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 MAX_JOBS=16 TORCH_EXTENSIONS_DIR=/tmp/madf-torch-extensions
start=$SECONDS
left() { echo $((BUDGET_S - (SECONDS - start))); }
step() {   # step NAME SECONDS COMMAND...: run with a limit, log to $OUT/NAME.log, say how it ended
  local name=$1 limit=$2; shift 2
  if [ "$(left)" -lt 20 ]; then echo "== $name: skipped (time)"; return; fi
  [ "$limit" -gt "$(left)" ] && limit=$(left)
  echo "== $name (limit ${limit}s, $(left)s left)"
  timeout --kill-after=5 "$limit" "$@" >"$OUT/$name.log" 2>&1
  echo "== $name: exit $? after $((SECONDS - start))s total"
}

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw,memory.used \
  --format=csv | tee "$OUT/gpu.txt"
python3 -m pip install -q --no-deps --no-build-isolation -e . >"$OUT/install.log" 2>&1 || echo "pip install -e failed"

# The test build (madf_dynamic_filter_cuda) and the benchmark's variants, compiled at once on the 16 cores.
cat >"$OUT/build.py" <<'EOF'
import sys
from torch.utils.cpp_extension import load
sys.path.insert(0, "benchmarks")
from gpu import variant_spec
from madf.engines import kernel
load(**(kernel.extension_spec() if sys.argv[1] == "test" else variant_spec(sys.argv[1])), verbose=True)
print("built", sys.argv[1])
EOF
for v in test w8 w4; do (timeout 240 python3 "$OUT/build.py" $v >"$OUT/build_$v.log" 2>&1; echo "build $v: exit $?") & done
wait
grep -h -A3 "tensorCoreKernel" "$OUT"/build_w*.log | grep -h "registers\|spill" | sort | uniq -c
for v in w8 w4; do   # which instructions the tensor-core kernel really uses
  so=$(ls "$TORCH_EXTENSIONS_DIR"/madf_dynamic_filter_cuda_$v/*.so 2>/dev/null | head -1)
  [ -n "$so" ] && cuobjdump -sass "$so" 2>/dev/null | awk '/Function : .*tensorCoreKernel/{f=1;next} /Function :/{f=0} f' \
    | grep -oE "(HMMA|HGMMA|LDGSTS|LDSM|LDS|LDG|STS|BAR|LDL|STL)(\.[A-Z0-9_]+)*" | sort | uniq -c \
    | awk -v v=$v '{printf "%s %s=%s  ", v, $2, $1} END {print ""}' | tee -a "$OUT/sass.txt"
done

if [ "$stage" = check ]; then
  step fused_tests 120 python3 -m pytest -m gpu -q -x -p no:cacheprovider tests/test_fused_kernel.py
  tail -3 "$OUT/fused_tests.log"
  step levels 150 python3 benchmarks/gpu.py --sizes 256 --batches 1 32 --no-compile --skip accuracy \
    --out "$OUT/check.md"
  grep -A12 "^### batch\|^| configuration" "$OUT/check.md" 2>/dev/null || tail -30 "$OUT/levels.log"
  step plugin_gpu 90 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_plugin_harness.py
  tail -3 "$OUT/plugin_gpu.log"
else
  step results 420 python3 benchmarks/gpu.py --out "$OUT/RESULTS.md"
  tail -60 "$OUT/results.log"
  step gpu_tests 150 python3 -m pytest -m gpu -q -p no:cacheprovider tests
  tail -5 "$OUT/gpu_tests.log"
fi
echo "session: $((SECONDS - start)) s"
