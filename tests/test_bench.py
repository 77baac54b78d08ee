"""madf-bench measures CPU backends the same way it measures engines: stats, throughput, JSON, errors."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from madf.cli.bench import main as bench_main
from madf.inpaint.backend import BackendBase
from madf.runtime.bench import BenchSettings, latency_stats, run_benchmark


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from madf.model.checkpoint import save_checkpoint
    from madf.model.network import build_model

    from conftest import TINY
    path = tmp_path_factory.mktemp("bench") / "tiny.safetensors"
    save_checkpoint(build_model(TINY, seed=0), path)
    return path


def test_latency_stats_are_percentiles():
    ms = list(range(1, 101))   # 1..100 ms
    s = latency_stats(ms)
    assert s["min"] == 1 and s["max"] == 100 and s["mean"] == 50.5
    assert s["p50"] == pytest.approx(50.5) and s["p99"] == pytest.approx(99.01)
    assert s["min"] <= s["p50"] <= s["p90"] <= s["p95"] <= s["p99"] <= s["max"]
    assert s["cv"] == pytest.approx(np.std(ms) / np.mean(ms))


class _Sleeper(BackendBase):
    """A backend whose cost is known: 2 ms per call, with a fake GPU time."""
    multiple = 16

    def __init__(self):
        self.calls = 0

    def describe(self):
        return "sleeper"

    def __call__(self, image, mask):
        import time
        self.calls += 1
        time.sleep(0.002)
        self.last_gpu_ms = 1.5
        return image


def test_run_benchmark_warms_up_then_times_every_run():
    backend = _Sleeper()
    settings = BenchSettings(batch=2, height=16, width=32, warmup_s=0.0, warmup_runs=3, runs=10)
    image, mask = np.zeros((2, 3, 16, 32), np.float32), np.zeros((2, 1, 16, 32), np.float32)
    r = run_benchmark(backend, image, mask, settings)
    assert backend.calls == 13 and r["warmup"]["runs"] == 3 and r["runs"] == 10
    assert 2.0 <= r["latency_ms"]["min"] <= r["latency_ms"]["p50"]
    assert r["gpu_compute_ms"]["p50"] == 1.5 and r["shape"] == [2, 16, 32]
    assert r["images_per_s"] == pytest.approx(10 * 2 / r["wall_s"])
    assert r["megapixels_per_s"] == pytest.approx(r["images_per_s"] * 16 * 32 / 1e6)
    assert r["images_per_s"] < 2 / 0.002   # cannot beat the sleep


def test_bench_cli_on_cpu_backends(ckpt, exported, tmp_path):
    _, paths = exported
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(bench_main, ["--ckpt", str(ckpt), "--model", str(paths["native"]), "--size", "32",
                                             "--batch", "2", "--runs", "4", "--warmup-s", "0", "--warmup-runs", "1",
                                             "--json", str(out)])
    print(result.output)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(l.split()[:4] == ["backend", "NxHxW", "p50", "ms"] for l in lines)
    assert any(l.startswith("torch ") and "2x32x32" in l for l in lines)
    assert any(l.startswith("onnxruntime ") and "2x32x32" in l for l in lines)
    data = json.loads(out.read_text())
    assert set(data["results"]) == {"torch", "onnxruntime"}
    assert data["settings"]["batch"] == 2 and data["environment"]["cpu_count"] >= 1
    assert "numpy" in data["environment"]["versions"]
    for r in data["results"].values():
        assert r["runs"] == 4 and r["gpu_compute_ms"] is None and r["peak_gpu_memory_mb"] is None
        assert r["latency_ms"]["min"] <= r["latency_ms"]["p50"] <= r["latency_ms"]["max"]


@pytest.mark.parametrize("args, message", [
    ([], "give at least one of --ckpt, --model, --engine"),
    (["--size", "40"], "not a multiple of 16"),
    (["--cuda-graph"], "CUDA graphs need --device cuda"),
])
def test_bench_errors(ckpt, tmp_path, args, message):
    if args != []:
        args = ["--ckpt", str(ckpt), "--runs", "2", "--warmup-s", "0"] + args
    result = CliRunner().invoke(bench_main, args + ["--json", str(tmp_path / "b.json")])
    assert result.exit_code != 0 and message in result.output, result.output
    assert not (tmp_path / "b.json").exists()
