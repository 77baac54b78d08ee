#!/usr/bin/env bash
# One short call on a borrowed GPU machine (nothing to download there): build the fused kernel (CUDA and emulated, in
# parallel), check it, time it, and leave every log and table under $OUT.
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

# The CUDA build (madf_dynamic_filter_cuda) and, for comparison, the CPU-emulated one, compiled at once.
cat >"$OUT/build.py" <<'EOF'
import sys
from pathlib import Path
from madf.model import fused_kernel as kernel
if sys.argv[1] == "cuda":
    kernel.load_extension(verbose=True)
else:
    kernel.load_emulated_extension(kernel.EMULATION, verbose=True)
print("built", sys.argv[1])
EOF
for v in cuda emulated; do (timeout 240 python3 "$OUT/build.py" $v >"$OUT/build_$v.log" 2>&1; echo "build $v: exit $?") & done
wait
so=$(ls "$TORCH_EXTENSIONS_DIR"/madf_dynamic_filter_cuda/*.so 2>/dev/null | head -1)
[ -n "$so" ] && cuobjdump -sass "$so" 2>/dev/null | awk '/Function : .*tensorCoreKernel/{f=1; print; next} /Function :/{f=0} f' \
  | grep -oE "Function : .*|(HMMA|HGMMA|LDGSTS|LDSM|LDS|LDG|STS|BAR|LDL|STL)(\.[A-Z0-9_]+)*" | sort | uniq -c \
  | tee "$OUT/sass.txt" | grep -v Function | head -30

if [ "$stage" = check ]; then
  # the binding's error path: which case, where (Python and native stack), on the CUDA build and the emulated one
  python3 - "$OUT" <<'EOF'
import sys
sys.path.insert(0, "tests")
import test_fused_kernel as t
for backend in ("cuda", "emulated"):
    script = t.BINDING_CASES.format(tests="tests", backend=backend, emulation=str(t.EMULATION))
    open(f"{sys.argv[1]}/child_{backend}.py", "w").write(t.textwrap.dedent(script))
EOF
  for b in cuda emulated; do
    step child_$b 60 python3 -X faulthandler -u "$OUT/child_$b.py"
    tail -15 "$OUT/child_$b.log"
  done
  step child_gdb 90 cuda-gdb -batch -ex run -ex bt -ex "info sharedlibrary" --args python3 -u "$OUT/child_cuda.py"
  grep -A30 "SIGSEGV\|signal" "$OUT/child_gdb.log" | head -45
  step fused_tests 100 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_fused_kernel.py
  tail -4 "$OUT/fused_tests.log"
  step levels 100 python3 benchmarks/gpu.py --sizes 256 --batches 1 32 --skip model accuracy --out "$OUT/check.md"
  grep -A12 "^### batch" "$OUT/check.md" 2>/dev/null || tail -30 "$OUT/levels.log"
else
  python3 -c "import torch; from madf.model import fused_kernel as k; print('libstdc++: runtime', k.runtime_libstdcxx(),
    'of $CXX', k._compiler_libstdcxx('${CXX:-c++}'), '-> build with', k.host_compilers())" 2>&1 | tee "$OUT/compilers.txt"
  step gpu_tests 120 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_fused_kernel.py \
    tests/test_acceleration.py
  grep -E "passed|failed|FAILED|Error" "$OUT/gpu_tests.log" | tail -8
  step results 330 python3 benchmarks/gpu.py --out "$OUT/RESULTS.md"
  tail -45 "$OUT/results.log"
fi
echo "session: $((SECONDS - start)) s"
