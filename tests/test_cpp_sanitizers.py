"""The C++ runtime under AddressSanitizer + UndefinedBehaviorSanitizer (MADF_SANITIZE=ON) with -Werror: its tests
pass, and a bounded fuzz run over the PNG reader, the batch helpers, crop settings and sidecar text finds nothing.
Allocations are capped by ASan's max_allocation_size_mb, so a size taken from a file or a struct before it is
checked aborts the run (as the unchecked helpers of before did within seconds). MADF_FUZZ_SECONDS sets the run's
length (default 20)."""
import io
import json
import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "madf" / "csrc"
HEADERS = ROOT.parent / "shared" / "third_party" / "tensorrt"
# Any report aborts; no allocation past 1 GiB (the largest legitimate one in these tests is a few MB).
SANITIZERS = {"ASAN_OPTIONS": "max_allocation_size_mb=1024:allocator_may_return_null=0:detect_leaks=1",
              "UBSAN_OPTIONS": "abort_on_error=1:print_stacktrace=1:halt_on_error=1"}


def _configure(build: Path, headers: Path, *extra):
    if not (shutil.which("cmake") and shutil.which("c++")):
        pytest.skip("needs cmake and a C++ compiler")
    options = ["-DMADF_BUILD_PLUGINS=OFF", "-DMADF_SANITIZE=ON", "-DMADF_WARNINGS_AS_ERRORS=ON", *extra]
    if (headers / "NvInferRuntime.h").is_file():
        options.append(f"-DTENSORRT_ROOT={headers}")
    configure = subprocess.run(["cmake", "-S", str(CSRC), "-B", str(build), *options], capture_output=True, text=True)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    return configure.stdout


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("runtime-sanitized")
    configure = _configure(out, HEADERS / "11.1")
    compiled = subprocess.run(["cmake", "--build", str(out), "-j2"], capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stdout[-8000:] + compiled.stderr[-4000:]
    return out, configure


def _env():
    return {**os.environ, **SANITIZERS}


def test_tests_pass_under_the_sanitizers(build):
    out, _ = build
    run = subprocess.run(["ctest", "--output-on-failure"], cwd=out, capture_output=True, text=True, timeout=300,
                         env=_env())
    print(run.stdout[-3000:])
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]


@pytest.mark.parametrize("version", ["10.0", "11.1"])
def test_engine_compiles_with_sanitizers_and_werror(version, build, tmp_path):
    """engine.cpp (TensorRT's side) builds under -fsanitize=address,undefined with -Werror against both headers."""
    headers = HEADERS / version
    if not (headers / "NvInferRuntime.h").is_file() or not shutil.which("nvcc"):
        pytest.skip(f"needs TensorRT {version}'s headers in {HEADERS} and the CUDA toolkit")
    if version == "11.1":   # the module's build compiled it already
        out, configure = build
    else:
        out, configure = tmp_path, _configure(tmp_path, headers)
        compiled = subprocess.run(["cmake", "--build", str(out), "-j2", "--target", "madf_runtime_objects"],
                                  capture_output=True, text=True)
        assert compiled.returncode == 0, compiled.stdout[-8000:] + compiled.stderr[-4000:]
    assert "OpenSSL (libcrypto) not found" not in configure, "apt install libssl-dev"
    assert next(out.rglob("engine.cpp.o")).is_file()


def _png(array, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG", **options)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _pair(width, height, pixels, values) -> bytes:
    """A fuzz input's image + mask: declared sizes, then the buffers (fuzzInputs.cpp's layout)."""
    return (struct.pack("<ii", width, height) + bytes([1, 1]) + struct.pack("<H", len(pixels)) + pixels
            + struct.pack("<H", len(values)) + values)


def _seeds(folder: Path):
    """One valid input per case of fuzzInputs.cpp (the first byte picks the case)."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    pngs = {"rgb": _png(rgb), "gray": _png(rgb[..., 0]), "palette": _png(np.asarray(Image.fromarray(rgb).quantize())),
            "bits": _png(rgb[..., 0] > 127), "gray16": _png(rgb[..., 0].astype(np.uint16) * 257),
            "rgba": _png(np.dstack([rgb, rgb[..., :1]])),
            "header": b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 4000, 3000, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(b"\0" * 16)) + _chunk(b"IEND", b"")}
    seeds = {}
    for name, data in pngs.items():
        seeds[f"png-{name}"], seeds[f"mask-{name}"] = bytes([0]) + data, bytes([1]) + data
    one = _pair(5, 3, bytes(45), bytes([0, 255] * 7 + [0]))
    for case in range(3):
        seeds[f"batch-{case}"] = bytes([2, 1]) + one + one + struct.pack("<i", 8) + bytes([case])
    mask = bytearray(15 * 12)
    mask[50] = 255
    seeds["crop"] = (bytes([3]) + _pair(15, 12, bytes(540), bytes(mask)) + struct.pack("<iii", 4, 2, 8)
                     + struct.pack("<iiii", 0, 0, 4, 4))
    sidecar = json.loads((ROOT / "tests" / "fixtures" / "sidecars.json").read_text())["base"]
    sidecar["engine"] = {"file": "m.plan", "bytes": 10, "sha256": "0" * 64}
    seeds["sidecar"] = bytes([4]) + json.dumps(sidecar).encode()
    paths = []
    for name, data in seeds.items():
        (folder / name).write_bytes(data)
        paths.append(str(folder / name))
    return paths


def test_fuzz_finds_nothing(build, tmp_path):
    out, _ = build
    fuzz = out / "runtime" / "madf_fuzz_inputs"
    if not fuzz.is_file():
        pytest.skip("libpng not found: the fuzz target is not built")
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    seconds = float(os.environ.get("MADF_FUZZ_SECONDS", "20"))
    run = subprocess.run([str(fuzz), str(seconds), "1", str(tmp_path), *_seeds(seeds)], capture_output=True,
                         text=True, timeout=seconds + 120, env=_env())
    print(run.stdout, run.stderr[-4000:])
    assert run.returncode == 0 and "no failure" in run.stdout, run.stderr[-6000:]
    assert not (tmp_path / "crash").exists()
    assert int(run.stdout.split()[0]) > 1000   # it ran, not just the seeds
