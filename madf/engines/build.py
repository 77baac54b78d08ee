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
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from madf.common.atomic import atomic_path
from madf.common.errors import DeviceError, ModelError, PluginError, first_line
from madf.engines.layers import capturing_logger, convolution_precisions
from madf.engines.plugin_files import require_plugin_file
from madf.export.onnx_file import QUANTIZED, uses_plugin

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


# Bounds of a profile's shape: past them no GPU holds the network's activations (1x16384x16384 is already
# 3 GiB per float input and tens of GiB inside), so a larger request is a typo, refused before a build.
MAX_SIDE = 16384
MAX_BATCH = 1024


def parse_shape(text: str) -> Shape:
    """'NxHxW' -> (N, H, W), each side within 1..MAX_SIDE and N within 1..MAX_BATCH."""
    try:
        n, h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"shape {text!r} is not NxHxW (for example 1x512x512)") from None
    if not (1 <= n <= MAX_BATCH and 1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise ValueError(f"shape {text!r}: N must be 1-{MAX_BATCH} and H, W 1-{MAX_SIDE} (for example 1x512x512)")
    return n, h, w


@dataclasses.dataclass
class BuildOptions:
    min_shape: Optional[Shape] = None   # None: the network's fixed dims, else N=1, H=W=multiple
    opt_shape: Optional[Shape] = None   # None: N=1, 512x512 (clipped into [min, max])
    max_shape: Optional[Shape] = None   # None: N=4, 1024x1024
    compute_capability: Optional[str] = "8.9"   # TensorRT-RTX only: build for this GPU without one present
    workspace_mb: Optional[int] = None
    fp16: bool = False                  # require FP16 (an FP16 ONNX; TensorRT 10 may also cast an FP32 one)
    plugin_libs: Sequence[Path] = ()    # shared libraries with plugin creators (getCreators), e.g. libmadf_plugins.so
    version_compatible: bool = False    # plan runs on later TensorRT versions via the lean runtime; plugins ride along
    exclude_lean_runtime: bool = False  # version-compatible plan without the embedded lean runtime (the app brings it)
    timing_cache: Optional[Path] = None  # read if present, written back after the build
    progress: bool = True               # tqdm bars for the builder's phases


@dataclasses.dataclass
class BuildReport:
    backend: str
    version: str
    inputs: List[Dict]
    outputs: List[Dict]
    profile: Dict[str, Tuple[Tuple[int, ...], ...]]
    engine_bytes: int
    compute_capability: Optional[str]
    precision: str = "fp32"
    lowering: str = "native"
    metadata: Dict[str, str] = dataclasses.field(default_factory=dict)   # the ONNX file's madf.* properties
    version_compatible: bool = False
    exclude_lean_runtime: bool = False
    plugin_libs: List[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    # int8/fp8: {input data type: [ONNX convolutions]} from the build log (madf.engines.layers); None: not logged
    convolutions: Optional[Dict[str, List[str]]] = None


def image_nhw(dims: Sequence[int], io: str) -> Shape:
    """(N, H, W) of an image input's dims: NCHW in float files, NHWC in uint8 ones."""
    return (dims[0], dims[1], dims[2]) if io == "uint8" else (dims[0], dims[2], dims[3])


def _profile_shapes(network, options: BuildOptions, meta: Dict[str, str]) -> Dict[str, Tuple[Tuple[int, ...], ...]]:
    io = meta.get("madf.io", "float")
    return profile_shapes(image_nhw(tuple(network.get_input(0).shape), io), options, int(meta["madf.multiple"]), io)


def profile_shapes(dims: Sequence[int], options: BuildOptions, multiple: int, io: str = "float"
                   ) -> Dict[str, Tuple[Tuple[int, ...], ...]]:
    """(min, opt, max) per input for an image input of ``dims`` (N, H, W, -1 where dynamic), honouring its fixed
    dims; float files (NCHW) keep H and W multiples of 2^levels, uint8 files (NHWC) pad in the graph and take any
    size. Pure, so a caller can check a profile before it exports anything."""
    dims = tuple(dims)
    uint8 = io == "uint8"
    defaults = {"min": (1, 1, 1) if uint8 else (1, multiple, multiple), "opt": (1, 512, 512), "max": (4, 1024, 1024)}
    chosen = {}
    for key, given in (("min", options.min_shape), ("max", options.max_shape), ("opt", options.opt_shape)):
        shape = list(given or defaults[key])
        for i in range(3):
            fixed = dims[i]
            if fixed != -1:
                if given and given[i] != fixed:
                    raise ModelError(f"--{key} {'x'.join(map(str, given))}: the network fixes "
                                     f"{'NHW'[i]} = {fixed}; export with dynamic shapes or use {fixed}")
                shape[i] = fixed
            elif i > 0 and not uint8 and shape[i] % multiple:
                raise ModelError(f"--{key} {'x'.join(map(str, shape))}: H and W must be multiples of {multiple} "
                                 f"(a file from madf-export --io uint8 takes any size)")
        if key == "opt" and not given:
            shape = [min(max(s, lo), hi) for s, lo, hi in zip(shape, chosen["min"], chosen["max"])]
        chosen[key] = tuple(shape)
    if not all(a <= b <= c for a, b, c in zip(chosen["min"], chosen["opt"], chosen["max"])):
        raise ModelError(f"profile needs min <= opt <= max on every axis, got {chosen}")
    if uint8:
        return {name: tuple(s + (c,) for s in (chosen["min"], chosen["opt"], chosen["max"]))
                for name, c in (("image", 3), ("mask", 1))}
    return {name: tuple((s[0], c) + s[1:] for s in (chosen["min"], chosen["opt"], chosen["max"]))
            for name, c in (("image", 3), ("mask", 1))}


def read_input_dims(onnx_path: Path, data: Optional[bytes] = None) -> Tuple[Dict[str, str], Shape]:
    """The file's validated madf.* metadata and its image input's (N, H, W), -1 where dynamic, from one read and
    without TensorRT: what the profile build_engine will use depends on (checks before a minutes-long build, the
    engine cache's key). The weights are not checked here; build_engine checks them."""
    from madf.export.onnx_file import load_model, validate_metadata
    model = load_model(onnx_path, data)
    meta = validate_metadata({p.key: p.value for p in model.metadata_props}, onnx_path)
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    return meta, image_nhw(dims, meta.get("madf.io", "float"))


def read_onnx_metadata(path: Path) -> Dict[str, str]:
    """The madf.* metadata madf-export writes (config, multiple, lowering, precision, contract), validated, after
    checking that every weight in the file is finite (an engine built from NaN weights fills holes with black)."""
    from madf.export.onnx_file import read_checked
    return read_checked(path)


def load_plugin_libraries(trt, paths: Sequence[Path]) -> List[str]:
    """Register the plugin creators of each library with TensorRT (its getCreators entry point)."""
    loaded = []
    registry = trt.get_plugin_registry()
    for path in map(require_plugin_file, paths):
        try:
            handle = registry.load_library(str(path.resolve()))
        except Exception as exc:  # noqa: BLE001 - TensorRT raises a bare RuntimeError/TypeError here
            handle, why = None, first_line(exc)
        else:
            why = "TensorRT's log above says why"
        if handle is None:
            raise PluginError(f"TensorRT could not load plugin library {path} ({why}); was it built against "
                              f"this TensorRT version?")
        loaded.append(str(path.resolve()))
    return loaded


def _progress_monitor(trt):
    """A TensorRT IProgressMonitor drawing one tqdm bar per builder phase (None where the API lacks it)."""
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:
        return None
    from tqdm import tqdm

    class Monitor(base):
        def __init__(self):
            base.__init__(self)
            self.bars = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            if parent_phase is None:   # top-level phases only: nested ones flicker past in milliseconds
                self.bars[phase_name] = tqdm(total=num_steps, desc=phase_name, leave=False, dynamic_ncols=True,
                                             disable=None)   # None: no bars when stderr is not a terminal

        def step_complete(self, phase_name, step):
            bar = self.bars.get(phase_name)
            if bar is not None:
                bar.update(step + 1 - bar.n)
            return True   # keep building

        def phase_finish(self, phase_name):
            bar = self.bars.pop(phase_name, None)
            if bar is not None:
                bar.close()

    return Monitor()


def _parse(trt, name: str, builder, logger, onnx_path: Path, meta: Dict[str, str], weak_fp16: bool):
    flags = 0
    if name == "tensorrt" and not weak_fp16 and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)   # TRT 10; TRT 11 always is
    network = builder.create_network(flags)
    if uses_plugin(meta.get("madf.lowering")) and not hasattr(network, "add_plugin_v3"):
        # TensorRT-RTX (1.7) has no plugin layers; its parser aborts the process on a plugin node, so refuse first.
        raise ModelError(f"{onnx_path}: {name} {trt.__version__} has no plugin layers, so it cannot build the "
                         f"{meta.get('madf.lowering')} lowering (MADFDynamicFilter nodes at levels "
                         f"{meta.get('madf.plugin_levels') or 'all'}); build it with TensorRT, or export with "
                         f"--dynconv native")
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        found = [parser.get_error(i) for i in range(parser.num_errors)]
        errors = "; ".join(dict.fromkeys(e.desc() for e in found))   # one line per distinct error
        ops = {getattr(e, "node_operator", lambda: "")() for e in found}
        hint = (" (the plugin lowering needs the MADFDynamicFilter plugin library: --plugin-lib)"
                if "MADFDynamicFilter" in ops or "Plugin not found" in errors else "")
        raise ModelError(f"{onnx_path}: {name} cannot parse it: {errors}{hint}")
    return network, parser


def _precision(trt, name: str, meta: Dict[str, str], fp16: bool, onnx_path: Path) -> Tuple[str, bool]:
    """(precision, weak_fp16): FP16 comes from an FP16 ONNX; only TensorRT 10 can still cast FP32 weakly."""
    exported = meta.get("madf.precision", "fp32")
    if not fp16 or exported == "fp16":
        return exported, False
    if name == "tensorrt" and hasattr(trt.BuilderFlag, "FP16"):
        log.warning("%s is an FP32 ONNX: casting with TensorRT 10's deprecated FP16 flag (weak typing); "
                    "madf-export --fp16 gives the FP16 graph TensorRT 11 needs", onnx_path)
        return "fp16", True
    raise ModelError(f"{onnx_path} is an FP32 ONNX and {name} {trt.__version__} builds FP16 engines only from "
                     f"FP16 graphs: export it with madf-export --fp16, then build that file")


def _target(trt, name: str, config, options: BuildOptions) -> Optional[str]:
    if name != "tensorrt-rtx" or not options.compute_capability:
        return None
    cc = options.compute_capability
    member = "SM" + cc.replace(".", "")
    if not hasattr(trt.ComputeCapability, member):
        known = [m[2:] for m in dir(trt.ComputeCapability) if m.startswith("SM")]
        raise DeviceError(f"TensorRT-RTX cannot target compute capability {cc}; it knows {', '.join(known)}")
    config.num_compute_capabilities = 1
    config.set_compute_capability(getattr(trt.ComputeCapability, member), 0)
    return cc


def _timing_cache(name: str, config, path: Optional[Path]):
    if path is None:
        return None
    if name == "tensorrt-rtx":   # deprecated there since 1.2: its timing-cache calls are no-ops
        log.warning("TensorRT-RTX keeps no timing cache; --timing-cache %s ignored", path)
        return None
    data = Path(path).read_bytes() if Path(path).is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        raise ModelError(f"timing cache {path} does not fit this TensorRT/GPU; delete it to start a new one")
    return cache


def _dtype(trt, dtype) -> str:
    """TensorRT DataType -> numpy name ('float32', 'float16')."""
    import numpy as np
    try:
        return np.dtype(trt.nptype(dtype)).name
    except (TypeError, AttributeError):
        return str(dtype).rsplit(".", 1)[-1].lower()


def build_engine(onnx_path, output, options: Optional[BuildOptions] = None, backend: str = "auto") -> BuildReport:
    """Parse ``onnx_path``, build with one optimization profile, write the serialized engine atomically."""
    options = options or BuildOptions()
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ModelError(f"{onnx_path}: no such ONNX file; write one with madf-export")
    meta = read_onnx_metadata(onnx_path)
    trt, name = load_tensorrt(backend)
    started = time.perf_counter()
    precision, weak_fp16 = _precision(trt, name, meta, options.fp16, onnx_path)
    layer_log: List[str] = []   # int8/fp8: the builder's layer table, to say which convolutions run quantized
    quantized = precision in QUANTIZED
    logger = capturing_logger(trt, layer_log) if quantized else trt.Logger(trt.Logger.WARNING)
    plugins = load_plugin_libraries(trt, options.plugin_libs)
    builder = trt.Builder(logger)
    network, _parser = _parse(trt, name, builder, logger, onnx_path, meta, weak_fp16)
    config = builder.create_builder_config()
    if quantized:
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if weak_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile_shapes = _profile_shapes(network, options, meta)
    profile = builder.create_optimization_profile()
    for input_name, (lo, opt, hi) in profile_shapes.items():
        profile.set_shape(input_name, lo, opt, hi)
    config.add_optimization_profile(profile)
    if options.workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        config.plugins_to_serialize = plugins   # the plan carries its plugin library to the lean runtime
        if options.exclude_lean_runtime:
            config.set_flag(trt.BuilderFlag.EXCLUDE_LEAN_RUNTIME)
    elif options.exclude_lean_runtime:
        raise ModelError("--exclude-lean-runtime applies to --version-compatible engines only")
    cc = _target(trt, name, config, options)
    cache = _timing_cache(name, config, options.timing_cache)
    if options.progress:
        monitor = _progress_monitor(trt)
        if monitor is not None:
            config.progress_monitor = monitor
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        hint = ("; a version-compatible plan embeds TensorRT's lean runtime (libnvinfer_lean): install it or pass "
                "--exclude-lean-runtime" if options.version_compatible and not options.exclude_lean_runtime else "")
        raise ModelError(f"{name} failed to build an engine from {onnx_path} (its log above says why{hint})")
    with atomic_path(output) as tmp:
        tmp.write_bytes(memoryview(serialized))
    if cache is not None:
        with atomic_path(options.timing_cache) as tmp:
            tmp.write_bytes(memoryview(config.get_timing_cache().serialize()))
    tensors = lambda get, n: [{"name": get(i).name, "shape": tuple(get(i).shape), "dtype": _dtype(trt, get(i).dtype)}
                              for i in range(n)]
    report = BuildReport(backend=name, version=trt.__version__,
                         inputs=tensors(network.get_input, network.num_inputs),
                         outputs=tensors(network.get_output, network.num_outputs),
                         profile=profile_shapes, engine_bytes=serialized.nbytes, compute_capability=cc,
                         precision=precision, lowering=meta.get("madf.lowering", "native"), metadata=meta,
                         version_compatible=options.version_compatible,
                         exclude_lean_runtime=options.exclude_lean_runtime, plugin_libs=plugins,
                         seconds=time.perf_counter() - started,
                         convolutions=convolution_precisions(layer_log) if quantized else None)
    log.info("wrote %s (%s %s, %.1f MB, %.1f s)", output, name, trt.__version__, report.engine_bytes / 1e6,
             report.seconds)
    return report
