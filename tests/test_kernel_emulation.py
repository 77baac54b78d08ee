"""The fused CUDA kernels, unchanged, run on the CPU (tests/kernel_emulation: each CUDA thread a fiber, barriers that
yield, WMMA on whole tiles) against the float64 reference: their indexing, tiling, barriers and epilogues are tested
on machines without a GPU. Same cases and tolerances as the GPU tests (dynamic_filter_cases.py); what emulation
cannot show (real tensor-core rounding, races between truly parallel threads, speed) is left to test_fused_kernel.py.
"""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from dynamic_filter_cases import OFFICIAL_SHAPES, STRIDE, TOLERANCE, make_case, relative_error, shape_id, size_id
from madf.engines.kernel import SOURCES

EMULATOR = Path(__file__).parent / "kernel_emulation" / "emulateKernels.cpp"
# batch 8 and 2, odd and mixed sizes, one pixel; several pixel tiles at the small levels (the emulator runs every
# CUDA thread in turn, so the big official sizes would take minutes)
SIZES = [(8, 6, 6), (2, 13, 9), (1, 1, 1), (1, 23, 20)]
ALGOS = [("simt", torch.float32), ("simt", torch.float16), ("tensor_core", torch.float16)]
DTYPE_NAME = {torch.float32: "fp32", torch.float16: "fp16"}


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    if shutil.which("nvcc") is None:
        pytest.skip("needs nvcc (the CUDA toolkit's headers: cuda_fp16.h, cuda_runtime_api.h)")
    exe = tmp_path_factory.mktemp("emulator") / "emulate_kernels"
    # nvcc -x c++ compiles host C++ with CUDA's include path; the kernels' .cu is #included with MADF_EMULATE set
    built = subprocess.run(["nvcc", "-x", "c++", "-std=c++17", "-O2", f"-I{SOURCES}", str(EMULATOR), "-o", str(exe)],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    return exe


def run_emulated(emulator, tmp_path, algo, inputs, k, pad, cout):
    x, m, weight, bias = inputs
    n, cin, h, w = x.shape
    files = []
    for name, t in zip(("x", "m", "weight", "bias"), inputs):
        files.append(tmp_path / f"{name}.bin")
        t.float().numpy().tofile(files[-1])   # FP16 values are exact in float32; the emulator rounds them back
    out = tmp_path / "out.bin"
    args = [algo, DTYPE_NAME[x.dtype], n, cin, h, w, m.shape[1], cout, k, STRIDE, pad, *files, out]
    run = subprocess.run([str(emulator), *map(str, args)], capture_output=True, text=True, timeout=120)
    if run.returncode != 0:
        raise RuntimeError(run.stderr.strip())
    return torch.from_numpy(np.fromfile(out, dtype=np.float32)).reshape(n, cout, *m.shape[2:])


@pytest.mark.parametrize("algo,dtype", ALGOS, ids=[f"{a}-{DTYPE_NAME[d]}" for a, d in ALGOS])
@pytest.mark.parametrize("shape", OFFICIAL_SHAPES, ids=shape_id)
@pytest.mark.parametrize("size", SIZES, ids=size_id)
def test_emulated_kernel_matches_reference(emulator, tmp_path, algo, dtype, shape, size):
    cin, cout, k, pad = shape
    inputs, ref = make_case(cin, cout, k, pad, *size, dtype)
    out = run_emulated(emulator, tmp_path, algo, inputs, k, pad, cout)   # the output buffer starts poisoned
    rel, mean = relative_error(out, ref)
    print(f"emulated {algo} {DTYPE_NAME[dtype]} cin={cin} cout={cout} k={k} size={size}: "
          f"max rel {rel:.2e}, mean abs {mean:.2e}")
    assert rel < TOLERANCE[dtype]


@pytest.mark.parametrize("cm", [1, 3, 16, 24])
def test_emulated_any_mask_channels_and_partial_tiles(emulator, tmp_path, cm):
    # Cout 5 and 20 leave partial channel tiles; Cm > 16 has no tensor-core path, so only SIMT runs it
    for cout, algo, dtype in [(5, "simt", torch.float32), (20, "tensor_core", torch.float16)]:
        if algo == "tensor_core" and cm > 16:
            continue
        inputs, ref = make_case(3, cout, 3, 1, 2, 11, 17, dtype, cm=cm)
        rel, _ = relative_error(run_emulated(emulator, tmp_path, algo, inputs, 3, 1, cout), ref)
        assert rel < TOLERANCE[dtype], (cm, cout, algo)


def test_emulator_refuses_what_the_tensor_core_kernel_cannot_run(emulator, tmp_path):
    inputs, _ = make_case(3, 5, 3, 1, 1, 8, 8, torch.float32, cm=24)
    with pytest.raises(RuntimeError, match="at most 16 mask channels"):
        run_emulated(emulator, tmp_path, "tensor_core", inputs, 3, 1, 5)
