"""benchmarks/gpu.py on the CPU (a smoke run of a tiny network): every section's table is written, with numbers where
numbers belong, so the one-command GPU benchmark does not first break on the GPU machine it was made for."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_smoke_run_on_the_cpu(tmp_path):
    out = tmp_path / "results.md"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu", "--levels", "3",
                          "--width", "0.125", "--sizes", "32", "--batches", "1", "2", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    text = out.read_text()
    for heading in ("## 1. Dynamic filter alone", "### batch 1", "### batch 2", "## 2. Whole model",
                    "## 3. Accuracy against pure FP32"):
        assert heading in text, heading
    model, accuracy = text.split("## 2. Whole model")[1].split("## 3. Accuracy")

    def rows(section):
        return {line.split(" | ")[0].strip("| "): line.split(" | ") for line in section.splitlines()
                if line.startswith("| ")}
    # three levels per batch, each timed: unfold and rewrite milliseconds are positive numbers
    levels = [line for line in text.splitlines() if re.match(r"\| [123] \| ", line)]
    assert len(levels) == 6 and all(float(line.split(" | ")[5]) > 0 for line in levels)
    assert float(rows(model)["rewrite, FP16"][2].replace(",", "")) > 0                 # images/s
    psnr = float(rows(accuracy)["rewrite, FP16, channels_last"][2])
    assert 60 < psnr < 140                                                              # FP16 against FP32
    assert "command: `python benchmarks/gpu.py --device cpu" in text


def test_variant_and_lowering_sections_on_the_emulation(tmp_path):
    """Sections 1b and 1c (every variant per level, the lowering table) on the CPU emulation of the kernel: each
    variant is checked, then timed, the best is named, the lowering table's JSON rows parse, and the whole model
    runs with the best variant per level."""
    import json
    out = tmp_path / "results.md"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu", "--emulated",
                          "--levels", "3", "--width", "0.125", "--sizes", "32", "--batches", "1", "--skip", "levels",
                          "accuracy", "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    text = out.read_text()
    variants = text.split("## 1b.")[1].split("## 1c.")[0]
    rows = [line.split(" | ") for line in variants.splitlines() if re.match(r"\| [123] \| ", line)]
    assert len(rows) == 3 and not any("WRONG" in cell for row in rows for cell in row), variants
    assert all(row[-2] in ("tensor_core", "pipelined", "split_k2", "split_k4", "split_k8", "pipelined+nhwc",
                           "split_k4+nhwc") for row in rows), rows
    table = json.loads(text.split("```json")[1].split("```")[0])
    assert [s["level"] for s in table["emulated"]["shapes"]] == [1, 2, 3]
    assert all(s["speedup_batch1"] > 0 for s in table["emulated"]["shapes"])
    best = next(line for line in text.splitlines() if line.startswith("| fused, the best variant per level"))
    assert float(best.split(" | ")[2].replace(",", "")) > 0, best


def test_gpu_session_kernel_stage_without_a_gpu(tmp_path):
    """The kernel round's GPU script on a machine without one: the SASS step runs (nvcc + cuobjdump), every GPU step
    says so on one line, and the script returns in seconds with its logs under $OUT."""
    if shutil.which("nvcc") is None:
        pytest.skip("needs nvcc (the CUDA toolkit)")
    env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable, PATH=os.environ["PATH"])
    env.pop("CUDA_VISIBLE_DEVICES", None)
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_session.sh"), "kernel"], capture_output=True,
                         text=True, timeout=300, env=env, cwd=ROOT)
    print(run.stdout[-3000:])
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    if "== gpu: none" not in run.stdout:
        pytest.skip("a GPU is here: the script ran for real")
    for name in ("install", "build", "gpu_tests", "results", "memcheck_level1", "racecheck_level5_hwc8", "ncu"):
        assert f"== {name}: skipped (no GPU)\n" in run.stdout, name
    assert "== sass: exit 0" in run.stdout, (tmp_path / "sass.log").read_text()[-2000:]
    # the cheaper stage is cheaper: per-stage SASS of the main loop, round 1 against the pipelined kernel (NHWC)
    rows = {m.group(1): int(m.group(2)) for m in re.finditer(r"^\| (\w+Kernel<[^>]+>) \| (\d+) \|",
                                                              (tmp_path / "sass.log").read_text(), re.MULTILINE)}
    assert rows["pipelinedKernel<8 warps, tap-major NHWC>"] < 0.5 * rows["tensorCoreKernel<8 warps>"], rows
