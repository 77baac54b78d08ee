"""benchmarks/gpu.py on the CPU (a smoke run of a tiny network): every section's table is written, with numbers where
numbers belong, so the one-command GPU benchmark does not first break on the GPU machine it was made for."""
import re
import subprocess
import sys
from pathlib import Path

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
