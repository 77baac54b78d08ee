"""The house rules, checked on the source: every module lives where its import name says, data flows one way
(a package imports only the packages before it), and no package reaches into another's internals (underscore
modules or names). Each rule is a walk over the AST of every module under madf/, function-local imports included."""
from __future__ import annotations

import ast
import configparser
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "madf"

# What each package may import (besides itself and the root's __version__); cli may import every one.
ALLOWED = {
    "common": set(),
    "weights": set(),
    "model": {"common"},
    "inpaint": {"common", "model"},
    "data": {"common", "inpaint"},
    "training": {"common", "model", "inpaint", "data"},
    "export": {"common", "model"},
    "engines": {"common", "export"},
    "runtime": {"common", "inpaint", "data", "export", "engines"},
    # calibration and the gate run on photos and ONNX files, never on the model
    "quantize": {"common", "inpaint", "data", "export"},
    # the library's opener: a spec (a file, a device, options) to a backend of any kind
    "backends": {"common", "model", "inpaint", "export", "engines", "runtime"},
    "serve": {"common", "inpaint"},
    # Ray: the actors and replicas get the model as a callable (built where they run), so no backend is imported
    "scale": {"common", "inpaint", "serve"},
}
# Of an earlier stage, the deployment stages read files only: these modules are the file contracts they may use.
# The runtime may also build through the engine cache (an ONNX file and a cache folder, as ORT's TensorRT provider).
CONTRACTS = {"engines": {"madf.export.onnx_file"}, "quantize": {"madf.export.onnx_file"},
             "runtime": {"madf.export.onnx_file", "madf.engines.sidecar", "madf.engines.cache",
                         "madf.engines.build", "madf.engines.plugin_files"}}


# Reaches back allowed by name, each for one reason: Inpainter.from_onnx / from_engine open their backend through
# the library's opener (a lazy import inside the classmethods; the Inpainter itself takes any backend).
LAZY = {("madf.inpaint.inpainter", "madf.backends.spec")}


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def imports(name: str, path: Path):
    """(imported module, imported names, line) for every madf import in the module, relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "madf":
                    yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] == "madf":
                yield base, [a.name for a in node.names], node.lineno


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def violations(name: str, path: Path):
    own = layer(name)
    for target, names, line in imports(name, path):
        where = f"{path.relative_to(ROOT)}:{line}"
        # `from madf.x import y` where y is a module is an import of madf.x.y
        targets = [f"{target}.{n}" if (PACKAGE / Path(*target.split(".")[1:]) / f"{n}.py").exists() else target
                   for n in names] or [target]
        for t in targets:
            other = layer(t)
            if other in ("", own) or own in ("", "cli") or (name, t) in LAZY:
                continue
            if other not in ALLOWED.get(own, set()):
                yield f"{where}: madf.{own} imports {t} (madf.{own} may import {sorted(ALLOWED[own]) or 'nothing'})"
            elif own in CONTRACTS and other not in ("common", "inpaint", "data") and t not in CONTRACTS[own]:
                yield f"{where}: madf.{own} imports {t}; of earlier stages it may read only {sorted(CONTRACTS[own])}"
            private = [p for p in t.split(".") if p.startswith("_") and not p.startswith("__")]
            private += [n for n in names if n.startswith("_") and not n.startswith("__") and t == target]
            if private:
                yield f"{where}: madf.{own} uses {', '.join(private)} of {t}, an internal of madf.{other}"


def test_no_layer_reaches_back():
    found = [v for name, path in modules() for v in violations(name, path)]
    assert not found, "\n".join(found)


def test_the_library_never_imports_the_cli_or_click():
    """madf.cli turns options into calls; no library package imports it, or click (whose errors are the CLI's)."""
    found = []
    for name, path in modules():
        if layer(name) == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.relative_to(ROOT)}:{node.lineno}: imports {n}" for n in names
                      if n.split(".")[0] == "click" or n.startswith("madf.cli")]
    assert not found, "\n".join(found)


def test_opening_a_backend_loads_neither_the_cli_nor_click(tmp_path):
    """The library opens a backend from a spec with madf.cli and click absent from sys.modules."""
    import subprocess
    import sys
    code = ("import sys, numpy as np\n"
            "from madf.backends.spec import BackendSpec, open_backend\n"
            "from madf.model.network import build_model\nfrom madf.model.config import ModelConfig\n"
            "from madf.model.checkpoint import save_checkpoint\n"
            f"path = {str(tmp_path / 'm.safetensors')!r}\n"
            "save_checkpoint(build_model(ModelConfig(levels=3, width=0.125, refinement_decoders=1), seed=0), path)\n"
            "backend = open_backend(BackendSpec(path))\n"
            "out = backend(np.zeros((1, 3, 16, 16), np.float32), np.ones((1, 1, 16, 16), np.float32))\n"
            "assert out.shape == (1, 3, 16, 16), out.shape\n"
            "print(sorted(m for m in sys.modules if m == 'click' or m.startswith('madf.cli')))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1] == "[]", run.stdout


def test_the_walk_sees_a_violation(tmp_path, monkeypatch):
    """The rule can fail: a runtime module importing the model, or an export module using a private name."""
    bad = tmp_path / "madf" / "runtime" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("def f():\n    from madf.model.network import MADFNet\n    from ..common.errors import _x\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    found = list(violations("madf.runtime.bad", bad))
    assert any("imports madf.model.network" in v for v in found), found
    assert any("_x" in v for v in found), found


def test_every_module_lives_at_its_import_name():
    """No package_dir remapping: madf.X.Y is madf/X/Y.py, every folder with Python in it is a package with a
    docstring saying what it holds and may import, and setuptools finds them all."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert not cfg.has_option("options", "package_dir")
    for folder in {p.parent for p in PACKAGE.rglob("*.py")}:
        init = folder / "__init__.py"
        assert init.exists(), f"{folder} holds Python but is not a package"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc, f"{init} has no docstring"
        if folder.parent == PACKAGE and folder.name in ALLOWED and folder.name not in ("weights",):
            assert "import" in doc, f"{init}'s docstring does not say what the package may import"
    pytest.importorskip("setuptools")
    from setuptools import find_packages
    found = set(find_packages(str(ROOT), include=["madf", "madf.*"]))
    assert {f"madf.{name}" for name in ALLOWED} | {"madf.cli"} <= found


def test_native_code_is_one_tree():
    """All C++/CUDA under madf/csrc, nowhere else in the repository."""
    native = {".cpp", ".cu", ".cuh", ".h", ".hpp"}
    if (ROOT / ".git").exists():   # the repository's files, not what git ignores (madf-data's unpacked packages)
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout.split()
        files = [ROOT / f for f in listed]
    else:
        files = [p for p in ROOT.rglob("*") if not {"build", ".venv", ".git"} & set(p.relative_to(ROOT).parts)]
    stray = [p for p in files if p.suffix in native and not p.is_relative_to(PACKAGE / "csrc")]
    assert not stray, stray
    assert (PACKAGE / "csrc" / "CMakeLists.txt").exists()
