"""Engine building from an ONNX file of the madf contract, with TensorRT 10/11 or TensorRT-RTX behind one adapter.

TensorRT-RTX mirrors TensorRT's Python API, so one code path serves both: parse, one optimization profile over
(N, H, W), serialize. TensorRT-RTX can build on a machine with no GPU when given a target compute capability (CI
does exactly that); deserializing and running an engine always needs a GPU. TensorRT 11 networks are strongly
typed: an FP16 engine comes from an FP16 ONNX file (madf-export --fp16), not from a builder flag.
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from madf.atomic import atomic_path
from madf.errors import DeviceError, ModelError

log = logging.getLogger("madf")

# Import names, in the order "auto" tries them. The standalone TensorRT-RTX wheel names its module
# tensorrt_rtx_bindings; the tensorrt-rtx metapackage names it tensorrt_rtx.
MODULES = {"tensorrt": ("tensorrt",), "tensorrt-rtx": ("tensorrt_rtx", "tensorrt_rtx_bindings")}
Shape = Tuple[int, int, int]   # (N, H, W)


def load_tensorrt(backend: str = "auto"):
    """(module, backend name) of the first TensorRT flavour importable here."""
    names = list(MODULES) if backend == "auto" else [backend]
    for name in names:
        if name not in MODULES:
            raise DeviceError(f"unknown TensorRT backend {name!r}; choose auto, tensorrt or tensorrt-rtx")
        for module in MODULES[name]:
            try:
                return importlib.import_module(module), name
            except ImportError:
                continue
    wanted = " or ".join(names)
    raise DeviceError(f"no {wanted} Python module here: pip install tensorrt-cu13 (with a GPU) or "
                      f"tensorrt-rtx-cu13-libs tensorrt-rtx-cu13-bindings (builds without one)")


def parse_shape(text: str) -> Shape:
    """'NxHxW' -> (N, H, W)."""
    try:
        n, h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"shape {text!r} is not NxHxW (for example 1x512x512)") from None
    return n, h, w


@dataclasses.dataclass
class BuildOptions:
    min_shape: Optional[Shape] = None   # None: the network's fixed dims, else N=1, H=W=multiple
    opt_shape: Optional[Shape] = None   # None: N=1, 512x512 (clipped into [min, max])
    max_shape: Optional[Shape] = None   # None: N=4, 1024x1024
    compute_capability: Optional[str] = "8.9"   # TensorRT-RTX only: build for this GPU without one present
    workspace_mb: Optional[int] = None


@dataclasses.dataclass
class BuildReport:
    backend: str
    version: str
    inputs: List[Dict]
    outputs: List[Dict]
    profile: Dict[str, Tuple[Tuple[int, ...], ...]]
    engine_bytes: int
    compute_capability: Optional[str]


def _profile_shapes(network, options: BuildOptions, multiple: int) -> Dict[str, Tuple[Tuple[int, ...], ...]]:
    """(min, opt, max) per input, honouring fixed dims in the network and the multiple-of-2^levels rule."""
    dims = tuple(network.get_input(0).shape)             # image: (N, 3, H, W), -1 where dynamic
    defaults = {"min": (1, multiple, multiple), "opt": (1, 512, 512), "max": (4, 1024, 1024)}
    chosen = {}
    for key, given in (("min", options.min_shape), ("max", options.max_shape), ("opt", options.opt_shape)):
        shape = list(given or defaults[key])
        for i, axis in enumerate((0, 2, 3)):
            fixed = dims[axis]
            if fixed != -1:
                if given and given[i] != fixed:
                    raise ModelError(f"--{key} {'x'.join(map(str, given))}: the network fixes "
                                     f"{'NHW'[i]} = {fixed}; export with dynamic shapes or use {fixed}")
                shape[i] = fixed
            elif i > 0 and shape[i] % multiple:
                raise ModelError(f"--{key} {'x'.join(map(str, shape))}: H and W must be multiples of {multiple}")
        if key == "opt" and not given:
            shape = [min(max(s, lo), hi) for s, lo, hi in zip(shape, chosen["min"], chosen["max"])]
        chosen[key] = tuple(shape)
    if not all(a <= b <= c for a, b, c in zip(chosen["min"], chosen["opt"], chosen["max"])):
        raise ModelError(f"profile needs min <= opt <= max on every axis, got {chosen}")
    return {name: tuple((s[0], c) + s[1:] for s in (chosen["min"], chosen["opt"], chosen["max"]))
            for name, c in (("image", 3), ("mask", 1))}


def _onnx_multiple(path: Path) -> int:
    import onnx
    model = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    if "madf.multiple" not in meta:
        raise ModelError(f"{path}: no madf metadata; build engines from files written by madf-export")
    return int(meta["madf.multiple"])


def build_engine(onnx_path, output, options: Optional[BuildOptions] = None, backend: str = "auto") -> BuildReport:
    """Parse ``onnx_path``, build with one optimization profile, write the serialized engine atomically."""
    options = options or BuildOptions()
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ModelError(f"{onnx_path}: no such ONNX file; write one with madf-export")
    multiple = _onnx_multiple(onnx_path)
    trt, name = load_tensorrt(backend)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if name == "tensorrt" and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)   # TRT 10; TRT 11 always is
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        found = [parser.get_error(i) for i in range(parser.num_errors)]
        errors = "; ".join(dict.fromkeys(e.desc() for e in found))   # one line per distinct error
        ops = {getattr(e, "node_operator", lambda: "")() for e in found}
        hint = (" (the plugin lowering needs the MADFDynamicFilter plugin library: --plugin-lib)"
                if "MADFDynamicFilter" in ops or "Plugin not found" in errors else "")
        raise ModelError(f"{onnx_path}: {name} cannot parse it: {errors}{hint}")
    config = builder.create_builder_config()
    profile_shapes = _profile_shapes(network, options, multiple)
    profile = builder.create_optimization_profile()
    for input_name, (lo, opt, hi) in profile_shapes.items():
        profile.set_shape(input_name, lo, opt, hi)
    config.add_optimization_profile(profile)
    if options.workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    cc = None
    if name == "tensorrt-rtx" and options.compute_capability:
        cc = options.compute_capability
        member = "SM" + cc.replace(".", "")
        if not hasattr(trt.ComputeCapability, member):
            known = [m[2:] for m in dir(trt.ComputeCapability) if m.startswith("SM")]
            raise DeviceError(f"TensorRT-RTX cannot target compute capability {cc}; it knows {', '.join(known)}")
        config.num_compute_capabilities = 1
        config.set_compute_capability(getattr(trt.ComputeCapability, member), 0)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelError(f"{name} failed to build an engine from {onnx_path} (its log above says why)")
    with atomic_path(output) as tmp:
        tmp.write_bytes(memoryview(serialized))
    tensors = lambda get, n: [{"name": get(i).name, "shape": tuple(get(i).shape), "dtype": str(get(i).dtype)}
                              for i in range(n)]
    report = BuildReport(backend=name, version=trt.__version__,
                         inputs=tensors(network.get_input, network.num_inputs),
                         outputs=tensors(network.get_output, network.num_outputs),
                         profile=profile_shapes, engine_bytes=serialized.nbytes, compute_capability=cc)
    log.info("wrote %s (%s %s, %.1f MB)", output, name, trt.__version__, report.engine_bytes / 1e6)
    return report
