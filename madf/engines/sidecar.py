"""The JSON written beside every engine (``model.plan`` -> ``model.plan.json``): what a runtime needs to refuse a
mismatch with a clear message before TensorRT does it with an opaque one, and what madf-bench records.

Fields: format, engine (file name, bytes, sha256), onnx (file name, sha256), model (ModelConfig), multiple, contract
(inputs/outputs with shapes and dtypes, the ONNX contract string), io (float or uint8) and mask (hole or inverted:
the uint8 mask's polarity), lowering, precision, profile (min/opt/max per input),
tensorrt (backend, version), target (compute capability, and the GPU name when built on one), version_compatible,
lean_runtime_excluded,
plugins (library file names and whether the plan carries them), built (UTC time, seconds, madf version).
"""
from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from typing import Any, Dict, Optional

from madf.common.atomic import atomic_path
from madf.common.errors import ModelError
from madf.engines.build import MAX_SIDE
from madf.export.onnx_file import QUANTIZED, plugin_levels_of

FORMAT = "madf-engine/1"
# what every reader of a sidecar relies on (the runtimes, Triton, the cache); checked once, in read_sidecar
REQUIRED = ("engine.bytes", "engine.sha256", "multiple", "contract", "precision", "lowering", "profile",
            "tensorrt.backend", "tensorrt.version")


def sidecar_path(engine) -> Path:
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def sha256(path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def current_gpu() -> Optional[Dict[str, str]]:
    """{'name', 'compute_capability'} of the calling thread's current CUDA device (what TensorRT builds and runs
    on; madf.runtime.cuda.on_device sets it) through cuda-python, or None without one."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6 layout
        except ImportError:
            return None
    err, device = cudart.cudaGetDevice()
    if int(err) != 0:
        return None
    err, props = cudart.cudaGetDeviceProperties(device)
    if int(err) != 0:
        return None
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return {"name": name.strip("\x00 "), "compute_capability": f"{props.major}.{props.minor}"}


def build_sidecar(engine, onnx_path, report) -> Dict[str, Any]:
    """The sidecar for an engine just written by engines.build.build_engine (``report``)."""
    engine, onnx_path = Path(engine), Path(onnx_path)
    meta = report.metadata
    if report.compute_capability:
        target = {"compute_capability": report.compute_capability, "gpu": None}
    else:
        gpu = current_gpu() or {}
        target = {"compute_capability": gpu.get("compute_capability"), "gpu": gpu.get("name")}
    return {
        "format": FORMAT,
        "engine": {"file": engine.name, "bytes": report.engine_bytes, "sha256": sha256(engine)},
        "onnx": {"file": onnx_path.name, "sha256": sha256(onnx_path)},
        "model": json.loads(meta["madf.config"]) if "madf.config" in meta else None,
        "multiple": int(meta["madf.multiple"]),
        "contract": {"inputs": report.inputs, "outputs": report.outputs, "text": meta.get("madf.contract")},
        "io": meta.get("madf.io", "float"),
        "mask": meta.get("madf.mask", "hole"),
        "lowering": report.lowering,
        # the levels whose dynamic filter is the MADFDynamicFilter plugin ([] native; all of them for plugin)
        "plugin_levels": plugin_levels_of(meta),
        "precision": report.precision,
        # int8/fp8 only: {input data type: [ONNX convolutions]} as the builder logged them (None: not logged)
        **({"convolutions": report.convolutions} if report.precision in QUANTIZED else {}),
        "profile": {name: dict(zip(("min", "opt", "max"), map(list, shapes)))
                    for name, shapes in report.profile.items()},
        "tensorrt": {"backend": report.backend, "version": report.version},
        "target": target,
        "version_compatible": report.version_compatible,
        "lean_runtime_excluded": report.exclude_lean_runtime,
        "plugins": [{"file": Path(p).name, "serialized": report.version_compatible} for p in report.plugin_libs],
        "built": {"utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "seconds": round(report.seconds, 2), "madf_version": meta.get("madf.version")},
    }


def read_plan(path: Path, sidecar: Dict) -> bytes:
    """The plan's bytes, after checking them against its sidecar (``check_plan``)."""
    data = Path(path).read_bytes()
    check_plan(path, sidecar, data)
    return data


# The checks below are the one sidecar contract: madf/csrc/runtime/src/sidecar.cpp applies the same ones with the
# same messages, and tests/fixtures/sidecars.json holds the cases both runtimes are run on
# (tests/test_sidecar_contract.py).


def check_plan(path, sidecar: Dict, data: bytes) -> None:
    """The plan's bytes against its sidecar: size first (truncation is the common case), then SHA-256."""
    expected = sidecar["engine"]
    if not isinstance(expected["bytes"], int) or len(data) != expected["bytes"]:
        said = expected["bytes"] if isinstance(expected["bytes"], int) else -1
        raise ModelError(f"{path} is {len(data)} bytes, its sidecar says {said}: the file is truncated "
                         f"or was replaced; copy it again or rebuild it with madf-build")
    if hashlib.sha256(data).hexdigest() != expected["sha256"]:
        raise ModelError(f"{path} does not match the sha256 in its sidecar: the file is corrupt or was modified; "
                         f"copy it again or rebuild it with madf-build")


def check_version(path, sidecar: Dict, version: str, flavour: str = "tensorrt") -> None:
    """The TensorRT (or TensorRT-RTX) version a plan was built with against the one loading it; a version-compatible
    plan, or the lean / dispatch runtime, leaves the check to TensorRT (same major version line)."""
    built = sidecar["tensorrt"]["version"]
    if flavour in ("lean", "dispatch") or sidecar.get("version_compatible"):
        return
    if _release(version) != _release(built):
        raise ModelError(f"{path} was built with {sidecar['tensorrt']['backend']} {built}, this is {version}: "
                         f"rebuild it here with madf-build, or build it with --version-compatible")


def _release(version: str) -> str:
    """major.minor.patch: a plan is tied to a TensorRT release, not to its build number (the C++ runtime knows only
    the release its library reports)."""
    return ".".join(str(version).split(".")[:3])


def check_gpu(path, sidecar: Dict, gpu: Dict[str, str]) -> None:
    """The compute capability a plan was built for against this GPU's."""
    target = sidecar.get("target") or {}
    wanted = target.get("compute_capability")
    if wanted and wanted != gpu["compute_capability"]:
        built_for = f"SM {wanted}" + (f" ({target['gpu']})" if target.get("gpu") else "")
        raise ModelError(f"{path} was built for {built_for}, this GPU is SM {gpu['compute_capability']} "
                         f"({gpu['name']}): rebuild the engine for this GPU with madf-build")


def write_sidecar(engine, data: Dict[str, Any]) -> Path:
    path = sidecar_path(engine)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def read_sidecar(engine, required: bool = True) -> Optional[Dict[str, Any]]:
    """The sidecar of ``engine``; a clear error when it is missing (``required``), unreadable or of another format."""
    path = sidecar_path(engine)
    if not path.is_file():
        if required:
            raise ModelError(f"{path} not found: engines carry a sidecar JSON from madf-build; rebuild the engine "
                             f"with madf-build")
        return None
    try:
        text = path.read_text()
    except (OSError, ValueError):
        raise ModelError(f"{path} is not valid JSON; rebuild the engine with madf-build") from None
    return parse_sidecar(path, text)


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise _Duplicate(twice[0])
    return dict(pairs)


class _Duplicate(ValueError):
    pass


def parse_sidecar(path, text: str) -> Dict[str, Any]:
    """A sidecar's text, checked: JSON with no key given twice (which value would a reader take?), this format, every
    REQUIRED field present."""
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except _Duplicate as exc:
        raise ModelError(f"{path} gives the key {exc.args[0]!r} twice (edited by hand, or written by another tool); "
                         f"rebuild the engine with madf-build") from None
    except ValueError:
        raise ModelError(f"{path} is not valid JSON; rebuild the engine with madf-build") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelError(f"{path} is not a {FORMAT} sidecar; rebuild the engine with this madf-build")
    for field in REQUIRED:
        node = data
        for part in field.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            raise ModelError(f"{path} lacks the field {field!r} (edited by hand, or written by another tool); "
                             f"rebuild the engine with madf-build")
    multiple = data["multiple"]   # divides every size a runtime computes
    if (not isinstance(multiple, int) or isinstance(multiple, bool) or not 1 <= multiple <= MAX_SIDE
            or multiple & (multiple - 1)):
        raise ModelError(f"{path} gives multiple {json.dumps(multiple)}, not a power of two from 1 to {MAX_SIDE} "
                         f"(2^levels); rebuild the engine with madf-build")
    return data
