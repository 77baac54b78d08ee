"""Benchmarking contract backends the same way on every device (madf-bench): warm-up by time and count, N timed
calls, latency percentiles and coefficient of variation, throughput over wall time, GPU compute time from CUDA
events apart from host-device copies (where the backend records it), peak GPU memory, and the environment.

Latency is host wall time per call, copies included (trtexec's "Latency"); GPU compute is the backend's CUDA-event
time around execution alone (trtexec's "GPU Compute Time"). Torch-free: backends bring their own timers.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import platform
import time
from typing import Dict, List, Optional

import numpy as np

from madf.inpaint import imaging


@dataclasses.dataclass
class BenchSettings:
    batch: int = 1
    height: int = 256
    width: int = 256
    warmup_s: float = 1.0     # warm up for at least this long ...
    warmup_runs: int = 5      # ... and at least this many calls
    runs: int = 50
    seed: int = 0


def make_inputs(settings: BenchSettings, multiple: int):
    """A real photo (resized to W x H) with a seeded procedural mask, repeated to the batch: contract tensors."""
    from PIL import Image

    from madf.data.masks import free_form_mask
    from madf.data.photos import sample_photos
    h, w = settings.height, settings.width
    if h % multiple or w % multiple:
        raise ValueError(f"{h}x{w} is not a multiple of {multiple} (2^levels): benchmark padded sizes")
    rgb = np.asarray(Image.open(sample_photos()[0]).convert("RGB").resize((w, h), Image.BICUBIC))
    hole = free_form_mask(h, w, seed=settings.seed)
    return imaging.to_contract([rgb] * settings.batch, [hole] * settings.batch, multiple)


def latency_stats(ms: List[float]) -> Dict[str, float]:
    a = np.asarray(ms, dtype=np.float64)
    p = np.percentile(a, [50, 90, 95, 99])
    return {"min": float(a.min()), "mean": float(a.mean()), "p50": float(p[0]), "p90": float(p[1]),
            "p95": float(p[2]), "p99": float(p[3]), "max": float(a.max()),
            "cv": float(a.std() / a.mean()) if a.mean() > 0 else 0.0}


def run_benchmark(backend, image: np.ndarray, mask: np.ndarray, settings: BenchSettings,
                  progress=None) -> Dict[str, object]:
    """Warm up, then time ``settings.runs`` calls of ``backend(image, mask)`` (float contract tensors); a uint8
    file is timed on its own call, ``run_uint8`` on the same photos as uint8 (what its clients send)."""
    from madf.runtime import uint8
    io = backend.io
    call = backend
    if io == "uint8":
        photos, holes = uint8.from_contract(image, mask)
        call = lambda *_: backend.run_uint8(photos, holes)  # noqa: E731 - the uint8 call, same signature
    warm_start, warm_runs = time.perf_counter(), 0
    while warm_runs < settings.warmup_runs or time.perf_counter() - warm_start < settings.warmup_s:
        call(image, mask)
        warm_runs += 1
    host_ms, gpu_ms = [], []
    wall_start = time.perf_counter()
    for _ in range(settings.runs):
        t0 = time.perf_counter()
        call(image, mask)
        host_ms.append((time.perf_counter() - t0) * 1e3)
        if backend.last_gpu_ms is not None:
            gpu_ms.append(backend.last_gpu_ms)
        if progress is not None:
            progress.update(1)
    wall = time.perf_counter() - wall_start
    n, h, w = image.shape[0], image.shape[2], image.shape[3]
    images_per_s = settings.runs * n / wall
    memory = backend.gpu_memory_mb()
    return {"backend": backend.describe(), "shape": [n, h, w], "warmup": {"runs": warm_runs,
            "seconds": round(time.perf_counter() - warm_start - wall, 3)}, "runs": settings.runs,
            "latency_ms": latency_stats(host_ms), "gpu_compute_ms": latency_stats(gpu_ms) if gpu_ms else None,
            "wall_s": wall, "images_per_s": images_per_s, "megapixels_per_s": images_per_s * h * w / 1e6,
            "peak_gpu_memory_mb": memory, "io": io, "bytes_per_call": uint8.bytes_moved(io, n, h, w)}


def _version(package: str) -> Optional[str]:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> Dict[str, object]:
    """What the numbers depend on: CPU, GPU (driver, CUDA), library versions."""
    gpu = None
    try:
        from madf.runtime import cuda
        gpu = cuda.device_info(0)
    except Exception:  # noqa: BLE001 - no cuda-python or no driver: a CPU-only record
        gpu = None
    packages = ["madf-trt", "numpy", "torch", "onnxruntime", "onnxruntime-gpu", "tensorrt", "tensorrt-cu13",
                "tensorrt-rtx-cu13-bindings", "tensorrt-lean-cu13", "cuda-python", "polygraphy"]
    return {"date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "platform": platform.platform(),
            "python": platform.python_version(), "cpu": _cpu_name(), "cpu_count": os.cpu_count(), "gpu": gpu,
            "versions": {p: v for p in packages if (v := _version(p))}}
