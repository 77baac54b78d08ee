"""The C++ runtime (madf/csrc/runtime) configures and builds here, through the native tree's top-level CMakeLists; its
image helpers and the example's PNG I/O pass their tests. The TensorRT part (madf_runtime, the example app) builds
where TensorRT is installed."""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

CSRC = Path(__file__).resolve().parents[1] / "madf" / "csrc"
HEADERS = Path(__file__).resolve().parents[2] / "shared" / "third_party" / "tensorrt" / "11.1"


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    if not (shutil.which("cmake") and shutil.which("c++")):
        pytest.skip("needs cmake and a C++ compiler")
    out = tmp_path_factory.mktemp("runtime-cpp")
    configure = subprocess.run(["cmake", "-S", str(CSRC), "-B", str(out), "-DMADF_BUILD_PLUGINS=OFF"],
                               capture_output=True, text=True)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    compiled = subprocess.run(["cmake", "--build", str(out), "-j2"], capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    return out, configure.stdout


def test_one_tree_holds_plugins_and_runtime(tmp_path):
    """The top-level CMakeLists configures the plugin library, the harness and the C++ runtime together."""
    if not (shutil.which("cmake") and shutil.which("nvcc") and HEADERS.exists()):
        pytest.skip("needs cmake, nvcc and TensorRT's headers")
    configure = subprocess.run(["cmake", "-S", str(CSRC), "-B", str(tmp_path), f"-DTENSORRT_ROOT={HEADERS}",
                                "-DCMAKE_CUDA_ARCHITECTURES=90"], capture_output=True, text=True)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    targets = subprocess.run(["cmake", "--build", str(tmp_path), "--target", "help"], capture_output=True,
                             text=True).stdout
    for target in ("madf_plugins", "madf_plugin_harness", "madf_dynamic_filter_kernel", "madf_runtime_objects",
                   "madf_imaging_test"):
        assert target in targets, targets


def test_cpp_tests_pass(build):
    out, _ = build
    run = subprocess.run(["ctest", "--output-on-failure"], cwd=out, capture_output=True, text=True, timeout=120)
    print(run.stdout)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "tests passed" in run.stdout
    detail = subprocess.run([str(out / "runtime" / "madf_imaging_test")], capture_output=True, text=True).stdout
    assert "0 failure(s)" in detail and detail.count("ok ") >= 9


def test_cpp_padding_expectations_are_numpys():
    # imagingTest.cpp hard-codes reflect indices; they must be what madf/inpaint/imaging.py (numpy) does.
    assert np.pad(np.arange(5), (0, 3), mode="reflect").tolist() == [0, 1, 2, 3, 4, 3, 2, 1]
    assert np.pad(np.arange(3), (0, 5), mode="reflect").tolist() == [0, 1, 2, 1, 0, 1, 2, 1]
    assert np.pad(np.arange(1), (0, 3), mode="edge").tolist() == [0, 0, 0, 0]
    assert (np.clip(np.float32(0.5), 0, 1) * 255 + 0.5).astype(np.uint8) == 128


def test_tensorrt_part_is_built_or_skipped_with_a_clear_line(build):
    out, configure = build
    if "TensorRT (headers + library) or CUDA not found" in configure:
        assert "building madf_imaging and its tests only" in configure
        assert not list((out / "runtime").glob("libmadf_runtime.so*"))
    else:
        assert list((out / "runtime").glob("libmadf_runtime.so*")) and (out / "runtime" / "madf_inpaint").is_file()


def test_cpp_crop_boxes_are_pythons(build, tmp_path):
    """madf::imaging::cropBoxes and madf.inpaint.strategy.crop_boxes give the same boxes on random stroke masks."""
    from madf.inpaint.strategy import crop_boxes
    out, _ = build
    rng = np.random.default_rng(0)
    for case in range(12):
        h, w = int(rng.integers(40, 900)), int(rng.integers(40, 900))
        hole = np.zeros((h, w), bool)
        for _ in range(int(rng.integers(1, 6))):
            y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
            hole[y:y + int(rng.integers(1, 60)), x:x + int(rng.integers(1, 60))] = True
        multiple, margin, cap = [(16, 32, 256), (128, 128, 1024), (8, 0, 64)][case % 3]
        path = tmp_path / f"mask{case}.bin"
        (hole.astype(np.uint8) * 255).tofile(path)
        run = subprocess.run([str(out / "runtime" / "madf_imaging_test"), "boxes", str(path), str(h), str(w),
                              str(multiple),
                              str(margin), str(cap)], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        cpp = [tuple(map(int, line.split())) for line in run.stdout.splitlines()]
        assert cpp == crop_boxes(hole, multiple, margin, cap), (case, h, w)
