#!/usr/bin/env bash
# One short call on a borrowed GPU machine (nothing to download there): build the fused kernel, check it, time it, and
# leave every log and table under $OUT.
#   bash benchmarks/gpu_session.sh kernel  # the kernel round (at most ~8 minutes on an H100/H200, build included):
#       SASS per stage; the GPU tests (kernel, every plugin tactic); benchmarks/gpu.py at 256x256 (per-level timings,
#       every variant, the lowering table, the whole model) -> $OUT/RESULTS.md; compute-sanitizer memcheck and
#       racecheck over the plugin harness's enqueue of every tactic; ncu (source counters, warp states) at levels 1,
#       5, 7, batch 1 and 32. Without a GPU each GPU step says "skipped (no GPU)" on one line.
#   bash benchmarks/gpu_session.sh check   # GPU tests of the kernel and the plugin, SASS summary, per-level timings,
#                                          # the eager whole model at 256x256
#   bash benchmarks/gpu_session.sh full    # benchmarks/gpu.py in full -> $OUT/RESULTS.md, then every GPU test
# MADF_TENSORRT_HEADERS (a folder of TensorRT header versions; the run tool carries no folder outside the tree: copy
# ../shared/third_party/tensorrt into the tree first) enables the plugin library. Each step has its own time limit and
# the script stops starting steps near $BUDGET_S, so a call always returns its logs.
set -uo pipefail
stage=${1:-kernel}
OUT=${OUT:-/tmp/madf-gpu}
BUDGET_S=${BUDGET_S:-$([ "$stage" = kernel ] && echo 470 || echo 330)}
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

PY=${PYTHON:-python3}
if [ "$stage" = kernel ]; then
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
  gpu_step() {   # gpu_step NAME SECONDS COMMAND...: step, or one line without a GPU
    if [ -z "$gpu" ]; then echo "== $1: skipped (no GPU)"; return; fi
    step "$@"
  }
  echo "== gpu: ${gpu:-none}"
  [ -n "$gpu" ] && nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw \
    --format=csv >"$OUT/gpu.txt"
  # the main loop's SASS per stage, each variant (nvcc and cuobjdump; no GPU needed)
  step sass 90 "$PY" benchmarks/sass_stages.py --arch sm_90
  cat "$OUT/sass.log"
  gpu_step install 60 "$PY" -m pip install -q --no-deps --no-build-isolation -e .
  # the torch extension and (with TensorRT's headers) the plugin library and its harness, built at once
  headers=${MADF_TENSORRT_HEADERS:-../shared/third_party/tensorrt}/10.0
  build=/tmp/madf-plugins
  if [ -n "$gpu" ]; then
    arch=$("$PY" -c "import torch; print(''.join(map(str, torch.cuda.get_device_capability())))" 2>/dev/null || echo 90)
    (timeout 240 "$PY" -c "from madf.model import fused_kernel as k; k.load_extension(verbose=True)" \
      >"$OUT/build_cuda.log" 2>&1; echo "== build_cuda: exit $?") &
    if [ -f "$headers/NvInferRuntime.h" ]; then
      (timeout 240 bash -c "cmake -S madf/csrc/plugins -B $build -DTENSORRT_ROOT=$headers \
        -DCMAKE_CUDA_ARCHITECTURES=$arch && cmake --build $build -j16" >"$OUT/build_plugins.log" 2>&1
       echo "== build_plugins: exit $?") &
    else
      echo "== build_plugins: skipped (no TensorRT headers in $headers)"
    fi
    wait
  else
    echo "== build: skipped (no GPU)"
  fi
  gpu_step gpu_tests 100 "$PY" -m pytest -m gpu -q -p no:cacheprovider tests/test_fused_kernel.py \
    tests/test_plugin_harness.py
  [ -n "$gpu" ] && grep -E "passed|failed|FAILED" "$OUT/gpu_tests.log" | tail -5
  # the tables first (what the session is for): per level, every variant, the lowering table, the whole model at
  # 256x256 (accuracy: the full stage)
  gpu_step results 240 "$PY" benchmarks/gpu.py --sizes 256 --batches 1 32 --skip accuracy --out "$OUT/RESULTS.md"
  [ -n "$gpu" ] && grep -A12 "^## 1b" "$OUT/RESULTS.md" 2>/dev/null | head -14
  # compute-sanitizer over the plugin's enqueue of every tactic (the harness runs them all on one input): level 1
  # (window order) and level 5 (tap-major, NCHW and kHWC8), small grids so racecheck stays within its limit
  harness=$build/madf_plugin_harness
  for run in 1 5 5_hwc8; do
    level=${run%_hwc8}
    for tool in memcheck racecheck; do
      if [ -z "$gpu" ]; then echo "== ${tool}_level$run: skipped (no GPU)"; continue; fi
      if [ ! -x "$harness" ]; then echo "== ${tool}_level$run: skipped (no plugin harness)"; continue; fi
      args=$("$PY" benchmarks/kernel_cases.py harness-inputs "$OUT/inputs_$level" --level "$level" --batch 2 --size 64)
      [ "$run" != "$level" ] && args="$args hwc8"
      step "${tool}_level$run" 30 compute-sanitizer --tool "$tool" --error-exitcode 9 "$harness" \
        "$build/libmadf_plugins.so" $args
      tail -2 "$OUT/${tool}_level$run.log"
    done
  done
  # ncu: source counters and warp-state sampling of round 1, the pipelined kernel and split-K at levels 1, 5, 7,
  # batch 1 and 32
  gpu_step ncu 90 ncu --section SourceCounters --section WarpStateStats --section SpeedOfLight \
    -k "regex:pipelinedKernel|tensorCoreKernel|splitSumKernel" -o "$OUT/kernels" -f \
    "$PY" benchmarks/kernel_cases.py calls --levels 1,5,7 --batches 1,32 --algos tensor_core,pipelined,split_k4
  [ -n "$gpu" ] && ncu --import "$OUT/kernels.ncu-rep" --page details --csv >"$OUT/ncu_details.csv" 2>/dev/null
  echo "session: $((SECONDS - start)) s"
  exit 0
fi

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
