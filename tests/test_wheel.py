"""An installed wheel is complete: built from this checkout, installed (not editable) into a fresh venv outside it,
madf imports from that venv, the native tree is there, and the emulated fused-kernel extension builds from the
installed sources and passes the kernel emulation tests (run against the installed package, not the checkout)."""
from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(args, **kwargs):
    run = subprocess.run(args, capture_output=True, text=True, **kwargs)
    assert run.returncode == 0, (f"{' '.join(map(str, args))}: exit {run.returncode}\n{run.stdout[-4000:]}\n"
                                 f"{run.stderr[-4000:]}")
    return run


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    if shutil.which("nvcc") is None and not os.environ.get("CUDA_HOME"):
        pytest.skip("needs the CUDA toolkit's headers (nvcc) for the emulated extension")
    work = tmp_path_factory.mktemp("wheel")
    # built from a copy: setuptools keeps a build/ folder in the source tree, and a stale one there (modules since
    # moved) would ride into the wheel and into the checkout
    source = work / "source"
    patterns = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".hypothesis",
                                      ".ruff_cache")

    def ignore(folder, names):   # and the top level's data/ and outputs (git-ignored, possibly large or dangling)
        top = {"data", "demo_out"} if Path(folder) == ROOT else set()
        return set(patterns(folder, names)) | (top & set(names))
    shutil.copytree(ROOT, source, ignore=ignore)
    _run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "--quiet",
          "-w", str(work / "dist")])
    wheel = next((work / "dist").glob("madf_trt-*.whl"))
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    # dependencies (torch, numpy, ...) from this venv, as plain path entries: its .pth files (the editable madf
    # install among them) are not processed, so madf can only come from the wheel
    Path(purelib, "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet", str(wheel)]
         if _pip_has_python_option() else
         [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", purelib, str(wheel)])
    return python, work, Path(purelib)


def _pip_has_python_option() -> bool:
    import pip
    return tuple(int(x) for x in pip.__version__.split(".")[:2]) >= (22, 3)


def test_wheel_holds_the_native_tree_and_imports_from_the_venv(installed):
    python, work, purelib = installed
    where = _run([str(python), "-c", "import madf, madf.model.fused_kernel as k; print(madf.__file__); "
                  "print(k.SOURCES); print(k.EMULATION)"], cwd=work).stdout.split()
    assert all(Path(p).is_relative_to(purelib) for p in where), where
    csrc = purelib / "madf" / "csrc"
    for rel in ("CMakeLists.txt", "plugins/CMakeLists.txt", "plugins/dynamicFilter/dynamicFilterKernel.cu",
                "plugins/dynamicFilter/torchBinding.cpp", "plugins/dynamicFilter/dynamicFilterPlugin.cpp",
                "emulation/emulate.h", "emulation/emulatedKernel.cpp", "runtime/include/madf/runtime.h"):
        assert (csrc / rel).is_file(), f"the wheel lacks madf/csrc/{rel}"
    assert (purelib / "madf" / "weights" / "madf-small-photos.safetensors").is_file()
    assert (purelib / "madf" / "serve" / "static" / "index.html").is_file()


def test_installed_package_builds_and_passes_the_kernel_emulation(installed):
    python, work, purelib = installed
    # the tests themselves are copied out too: nothing of the checkout is on the path
    shutil.copytree(ROOT / "tests", work / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, TORCH_EXTENSIONS_DIR=str(work / "torch_extensions"))
    run = _run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_fused_kernel.py",
                "-k", "emulated"], cwd=work, env=env, timeout=1500)
    print(run.stdout[-800:])
    assert " passed" in run.stdout and " failed" not in run.stdout
    built = list((work / "torch_extensions").rglob("*.so"))
    assert built, "the emulated extension was not built from the installed sources"
    ninja = next((work / "torch_extensions").rglob("build.ninja")).read_text()
    assert str(purelib / "madf" / "csrc") in ninja and str(ROOT / "madf") not in ninja
