"""The plugin CMake tree compiles here: the fused kernel with nvcc for sm_80/86/89/90 (so it never rots), its host
ABI checks run, the torch binding compiles against torch's headers, and the plugin library is skipped with one clear
line where TensorRT's headers are missing."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from madf.model.fused_kernel import SOURCES

PLUGINS = SOURCES.parent
ARCHS = ["sm_80", "sm_86", "sm_89", "sm_90"]


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    if not (shutil.which("cmake") and shutil.which("nvcc")):
        pytest.skip("needs cmake and nvcc (the CUDA toolkit)")
    build = tmp_path_factory.mktemp("plugins")
    env = dict(os.environ)
    configure = subprocess.run(["cmake", "-S", str(PLUGINS), "-B", str(build)], capture_output=True, text=True,
                               env=env)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    compiled = subprocess.run(["cmake", "--build", str(build), "-j2"], capture_output=True, text=True, env=env)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    return build, configure.stdout


def test_kernel_library_has_every_architecture_and_the_c_abi(build_dir):
    build, _ = build_dir
    lib = build / "dynamicFilter" / "libmadf_dynamic_filter_kernel.a"
    data = lib.read_bytes()
    missing = [a for a in ARCHS if a.encode() not in data]
    assert not missing, f"no code for {missing} in {lib}"
    symbols = subprocess.run(["nm", "-g", "--defined-only", str(lib)], capture_output=True, text=True).stdout
    for name in ("madfDynamicFilterForward", "madfDynamicFilterCheck", "madfDynamicFilterSelect",
                 "madfDynamicFilterOutputSize"):
        assert f" T {name}\n" in symbols, f"{name} is not exported with C linkage"


def test_abi_checks_pass_without_a_gpu(build_dir):
    build, _ = build_dir
    run = subprocess.run([str(build / "dynamicFilter" / "madf_dynamic_filter_abi_check")], capture_output=True,
                         text=True, timeout=60)
    print(run.stdout)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 failure(s)" in run.stdout and run.stdout.count("ok ") >= 14


def test_plugin_library_is_skipped_or_built(build_dir):
    build, configure = build_dir
    plugin = build / "libmadf_plugins.so"
    if "TensorRT headers not found" in configure:
        assert "skipping the plugin library, building the kernel only" in configure
        assert not plugin.exists()
    else:   # TensorRT present: only the two entry points are exported, and libnvinfer is not linked
        exported = subprocess.run(["nm", "-D", "--defined-only", str(plugin)], capture_output=True, text=True).stdout
        names = {line.split()[-1] for line in exported.splitlines() if line.strip()}
        assert {"getCreators", "setLoggerFinder"} <= names and not any(n.startswith("_Z") for n in names)
        needed = subprocess.run(["readelf", "-d", str(plugin)], capture_output=True, text=True).stdout
        assert "libnvinfer" not in needed and "cublas" not in needed and "cudnn" not in needed


# What a CUDA build of torch links the extension against; anything else undefined would fail at import on a GPU.
EXTERNAL = re.compile(r"^(_?Py|c10::cuda::|at::cuda::|cuda[A-Z]|__cuda|_ITM_|__gmon_start__)")


def test_torch_extension_compiles_with_torchs_own_flags(tmp_path, monkeypatch):
    """The binding and the .cu as madf.model.fused_kernel.load_extension() builds them on a GPU machine: torch's
    cpp_extension writes the ninja file (its nvcc flags, -D__CUDA_NO_HALF_CONVERSIONS__ and friends, included), for
    sm_80 and sm_90, and ninja compiles and links it. A CPU build of torch only lacks one generated CUDA header,
    which holds a single define, and the c10_cuda library, whose symbols are left for the GPU machine to resolve."""
    import torch
    import torch.utils.cpp_extension as cpp

    from madf.model.fused_kernel import cuda_home, extension_spec
    cuda = cuda_home()
    if cuda is None or shutil.which("ninja") is None:
        pytest.skip("needs nvcc (the CUDA toolkit) and ninja")
    monkeypatch.setattr(cpp, "CUDA_HOME", str(cuda))   # a CPU build of torch leaves it unset
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    shim = tmp_path / "shim"
    (shim / "c10" / "cuda" / "impl").mkdir(parents=True)
    (shim / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h").write_text(
        "#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
    spec = extension_spec()
    cpp._write_ninja_file_to_build_library(
        path=str(tmp_path / "build.ninja"), name=spec["name"], sources=spec["sources"],
        extra_cflags=spec["extra_cflags"], extra_cuda_cflags=spec["extra_cuda_cflags"], extra_sycl_cflags=[],
        extra_ldflags=[], extra_include_paths=spec["extra_include_paths"] + [str(shim)], with_cuda=True,
        with_sycl=False, is_standalone=False)
    ninja = (tmp_path / "build.ninja").read_text()
    nvcc_line = next(line for line in ninja.splitlines() if line.startswith("cuda_cflags"))
    for flag in cpp.COMMON_NVCC_FLAGS + ["arch=compute_80,code=sm_80", "arch=compute_90,code=sm_90"]:
        assert flag in nvcc_line, f"torch's cpp_extension no longer passes {flag}"
    built = subprocess.run(["ninja", "-C", str(tmp_path)], capture_output=True, text=True)
    assert built.returncode == 0, built.stdout[-6000:] + built.stderr[-2000:]
    library = tmp_path / f"{spec['name']}.so"
    data = library.read_bytes()
    assert b"sm_80" in data and b"sm_90" in data, "the extension lacks code for sm_80 or sm_90"
    defined = set()
    for lib in (Path(torch.__file__).parent / "lib").glob("*.so"):
        out = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True).stdout
        defined.update(line.split()[-1] for line in out.splitlines() if line.strip())
    undefined = subprocess.run(["nm", "-u", "-C", str(library)], capture_output=True, text=True).stdout.splitlines()
    mangled = subprocess.run(["nm", "-u", str(library)], capture_output=True, text=True).stdout.splitlines()
    unresolved = [pretty.split(maxsplit=1)[1] for pretty, raw in zip(undefined, mangled)
                  if "@" not in raw and raw.split()[-1] not in defined]
    strange = [name for name in unresolved if not EXTERNAL.match(name)]
    assert not strange, f"symbols neither torch, Python nor CUDA would provide: {strange[:10]}"
    assert any(name.startswith("c10::cuda::") for name in unresolved)   # the real CUDA binding, not the emulated one
