"""TensorRT backend of the image-level API (torch-free): runs a plan written by madf-build.

    from madf.inpaint.inpainter import Inpainter
    from madf.runtime.tensorrt import TensorRTBackend
    inpainter = Inpainter(TensorRTBackend("places2.plan", plugin_libs=["build/plugins/libmadf_plugins.so"]))

Before TensorRT sees the file, the sidecar (madf-build's ``places2.plan.json``) is checked: file size and sha256
(truncated or corrupt plans), the plugin library the plugin lowering needs, the TensorRT version (unless the plan is
version-compatible) and the GPU's compute capability. Then TensorRT deserializes it (with TensorRT, TensorRT-RTX, or
for version-compatible plans the lean / dispatch runtime) and its own errors are reported in one line. Each call
sets the input shapes within the optimization profile (larger batches are split, smaller ones padded), copies
through pinned host buffers on one CUDA stream, and optionally replays a CUDA graph per input shape.
"""
from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from madf.common.errors import DeviceError, InputError, ModelError, PluginError
from madf.engines.plugin_files import require_plugin_file
from madf.engines.sidecar import check_gpu, check_version
from madf.export.onnx_file import check_file_kind, uses_plugin
from madf.inpaint.backend import BackendBase
from madf.runtime import cuda, uint8
from madf.runtime.batching import in_profile_batches

log = logging.getLogger("madf")

# Python modules per TensorRT flavour; a version-compatible plan also runs on the lean or dispatch runtime.
FLAVOURS = {
    "tensorrt": ("tensorrt",),
    "tensorrt-rtx": ("tensorrt_rtx", "tensorrt_rtx_bindings"),
    "lean": ("tensorrt_lean",),
    "dispatch": ("tensorrt_dispatch",),
}
INPUTS, OUTPUT = ("image", "mask"), "inpainted"


def check_plugins(path: Path, sidecar: Dict, plugin_libs: Sequence[Path]) -> None:
    carried = sidecar.get("version_compatible") and any(p.get("serialized") for p in sidecar.get("plugins", []))
    if uses_plugin(sidecar.get("lowering")) and not plugin_libs and not carried:
        raise ModelError(f"{path} uses the MADFDynamicFilter plugin ({sidecar.get('lowering')} lowering): pass "
                         f"--plugin-lib "
                         f"build/plugins/libmadf_plugins.so (built with cmake -S madf/csrc -B build)")
    for lib in plugin_libs:
        require_plugin_file(lib)


def read_engine_file(path: Path, plugin_libs: Sequence[Path] = (), checked: Optional[bytes] = None
                     ) -> Tuple[Dict, bytes]:
    """(sidecar, plan bytes) of an engine file, after everything that can be checked without a GPU: its kind, its
    sidecar, the plan against the sidecar, the plugin libraries it needs (madf-inpaint --ray checks this on the
    driver before any actor starts)."""
    from madf.engines.sidecar import read_plan, read_sidecar
    check_file_kind(path, "a TensorRT engine", "--engine")
    sidecar = read_sidecar(path)
    data = checked if checked is not None else read_plan(path, sidecar)   # a cache hit has checked its bytes
    check_plugins(path, sidecar, [Path(p) for p in plugin_libs])
    return sidecar, data


def import_runtime(sidecar: Dict, flavour: str = "auto") -> Tuple[object, str]:
    """(module, flavour) able to deserialize this plan; a clear error naming what to install."""
    built = sidecar["tensorrt"]["backend"]
    if flavour == "auto":
        if built == "tensorrt-rtx":
            order = ["tensorrt-rtx"]
        elif sidecar.get("version_compatible"):
            order = ["tensorrt", "lean", "dispatch"]
        else:
            order = ["tensorrt"]
    elif flavour in FLAVOURS:
        order = [flavour]
    else:
        raise DeviceError(f"unknown TensorRT runtime {flavour!r}; choose auto, {', '.join(FLAVOURS)}")
    for name in order:
        for module in FLAVOURS[name]:
            try:
                return importlib.import_module(module), name
            except ImportError:
                continue
    wanted = {"tensorrt": "tensorrt-cu13", "tensorrt-rtx": "tensorrt-rtx-cu13-libs tensorrt-rtx-cu13-bindings",
              "lean": "tensorrt-lean-cu13", "dispatch": "tensorrt-dispatch-cu13"}
    raise DeviceError(f"no Python module to run a {built} {sidecar['tensorrt']['version']} plan: pip install "
                      f"{wanted[order[0]]}")


def profile_range(profile: Dict[str, List[List[int]]], io: str = "float"
                  ) -> Tuple[Tuple[int, int, int], Tuple[int, int, int]]:
    """((N, H, W) min, (N, H, W) max) of the image input: NCHW for float files, NHWC for uint8 ones."""
    lo, hi = profile["image"]["min"], profile["image"]["max"]
    axes = (0, 1, 2) if io == "uint8" else (0, 2, 3)
    return tuple(lo[a] for a in axes), tuple(hi[a] for a in axes)


def check_size(path: Path, profile: Dict, height: int, width: int, io: str = "float") -> None:
    (_, h0, w0), (n1, h1, w1) = profile_range(profile, io)
    if not (h0 <= height <= h1 and w0 <= width <= w1):
        padded = ", padded" if io == "float" else ""
        raise InputError(f"{height}x{width} (HxW{padded}) is outside {path.name}'s profile {h0}x{w0}..{h1}x{w1}; "
                         f"rebuild it with madf-build --max {n1}x{max(height, h1)}x{max(width, w1)}")


def _logger_class(trt):
    class CapturingLogger(trt.ILogger):
        """Forwards TensorRT's warnings to madf's log and keeps its errors for the one-line message."""

        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: List[str] = []

        def log(self, severity, msg):
            if int(severity) <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(str(msg).strip())
            elif int(severity) <= int(trt.ILogger.Severity.WARNING):
                log.warning("TensorRT: %s", msg)

    return CapturingLogger


class TensorRTBackend(BackendBase):
    """The contract (image, mask 1 = hole -> inpainted) on a TensorRT engine."""

    def __init__(self, engine, plugin_libs: Sequence = (), device: int = 0, cuda_graph: bool = False,
                 runtime: str = "auto", cache=None, build_options=None):
        """``engine``: a plan from madf-build, or an ONNX file together with ``cache`` (a folder): the plan for
        this GPU and TensorRT is looked up there and built once on a miss (madf.engines.cache; ``build_options``:
        madf.engines.build.BuildOptions for the profile)."""
        path, checked = Path(engine), None
        if path.suffix.lower() == ".onnx" and cache is not None:
            path, checked = self._cached_plan(path, cache, build_options, plugin_libs, device)
        self.path, self.cuda_graph = path, cuda_graph
        self.sidecar, data = read_engine_file(path, plugin_libs, checked)
        plugin_libs = [Path(p) for p in plugin_libs]
        trt, self.flavour = import_runtime(self.sidecar, runtime)
        check_version(path, self.sidecar, trt.__version__, self.flavour)
        cuda.require_gpu(device)
        self.device = device
        with cuda.on_device(device):   # every allocation and the context on this GPU, whichever thread calls
            self._start(path, data, trt, plugin_libs)

    def _start(self, path: Path, data: bytes, trt, plugin_libs: Sequence[Path]) -> None:
        device = self.device
        self.gpu = cuda.device_info(device)
        check_gpu(path, self.sidecar, self.gpu)
        self.trt = trt
        self._memory_baseline = cuda.memory_used_mb()
        self.logger = _logger_class(trt)()
        registry = trt.get_plugin_registry()
        for lib in plugin_libs:
            if registry.load_library(str(lib.resolve())) is None:
                raise PluginError(f"TensorRT could not load plugin library {lib}: {self._last_error()}")
        self.runtime = trt.Runtime(self.logger)
        if self.sidecar.get("version_compatible"):
            self.runtime.engine_host_code_allowed = True   # the plan carries its lean runtime / plugin code
        self.engine = self.runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise ModelError(f"{path}: {self.flavour} {trt.__version__} cannot deserialize it ({self._last_error()}); "
                             f"rebuild it with madf-build on this machine")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        if sorted(names) != sorted(INPUTS + (OUTPUT,)):
            raise ModelError(f"{path}: tensors {names} are not the madf contract (image, mask -> inpainted)")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise DeviceError(f"{path}: TensorRT could not create an execution context ({self._last_error()})")
        self.multiple = int(self.sidecar["multiple"])
        self.io = self.sidecar.get("io", "float")   # "uint8": raw photos in, the composite out (run_uint8)
        self.inverted_mask = self.sidecar.get("mask") == "inverted"
        self.metadata = {"madf.precision": self.sidecar.get("precision", "fp32"),
                         "madf.lowering": self.sidecar.get("lowering", "native"), "madf.io": self.io}
        (self.min_batch, *_), (self.max_batch, h1, w1) = profile_range(self.sidecar["profile"], self.io)
        self.max_side = min(h1, w1)   # the Inpainter crops larger photos to fit the profile
        self.fixed_size = None
        self.stream = cuda.Stream()
        self.buffers = {name: cuda.DeviceBuffer() for name in names}
        self.host = {name: cuda.PinnedBuffer() for name in names}
        self.dtypes = {name: np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))) for name in names}
        self.graphs: Dict[Tuple[int, ...], cuda.Graph] = {}
        self.start, self.end = cuda.Event(), cuda.Event()
        self.last_gpu_ms: Optional[float] = None
        self.peak_memory_mb = 0.0

    @staticmethod
    def _cached_plan(onnx_path: Path, cache, build_options, plugin_libs, device: int) -> Tuple[Path, Optional[bytes]]:
        import dataclasses

        from madf.engines.build import BuildOptions
        from madf.engines.cache import EngineCache
        cuda.require_gpu(device)
        options = build_options or BuildOptions()
        # TensorRT-RTX builds for the GPU it is told: this one
        options = dataclasses.replace(options, compute_capability=cuda.device_info(device)["compute_capability"],
                                      plugin_libs=tuple(options.plugin_libs or plugin_libs))
        with cuda.on_device(device):   # a miss builds on this GPU
            result = EngineCache(cache).get_or_build(onnx_path, options)
        log.info("engine cache %s: %s in %.2f s", "hit" if result.hit else "miss, built", result.plan, result.seconds)
        return result.plan, result.data

    @property
    def config(self):
        return self.sidecar.get("model")

    @property
    def precision(self) -> str:
        return self.sidecar.get("precision", "fp32")


    def describe(self) -> str:
        return (f"{self.flavour} {self.trt.__version__}, {self.path.name} ({self.sidecar.get('precision')}, "
                f"{self.sidecar.get('lowering')} lowering), {self.gpu['name']}"
                + (", CUDA graph" if self.cuda_graph else ""))

    def _last_error(self) -> str:
        return self.logger.errors[-1].splitlines()[0][:300] if self.logger.errors else "no message from TensorRT"

    def gpu_memory_mb(self) -> float:
        """Peak GPU memory this backend added, as cudaMemGetInfo saw it (engine, activations, buffers)."""
        return self.peak_memory_mb

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The float contract (a uint8 engine converts it exactly)."""
        if self.io == "uint8":
            return uint8.run_contract(self, image, mask)
        check_size(self.path, self.sidecar["profile"], image.shape[2], image.shape[3])
        with cuda.on_device(self.device):
            return self._batched(image, mask)

    def run_uint8(self, images: np.ndarray, holes: np.ndarray) -> np.ndarray:
        """uint8 engines: (N,H,W,3) uint8 photos of any size in the profile and bool (N,H,W) holes -> composites."""
        if self.io != "uint8":
            raise ModelError(f"{self.path.name} takes the float contract; build it from an --io uint8 export")
        check_size(self.path, self.sidecar["profile"], images.shape[1], images.shape[2], self.io)
        with cuda.on_device(self.device):
            return self._batched(np.ascontiguousarray(images, np.uint8),
                                 uint8.encode_masks(holes, self.inverted_mask))

    def _batched(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Batches of the profile's sizes (madf.runtime.batching); the GPU time of all of them."""
        gpu_ms = []

        def timed(img, msk):
            result = self._infer(img, msk)
            gpu_ms.append(self.last_gpu_ms)
            return result
        out = in_profile_batches(timed, image, mask, self.min_batch, self.max_batch)
        self.last_gpu_ms = sum(gpu_ms)
        return out

    def _infer(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        ctx = self.context
        reallocated = False
        for name, array in (("image", image), ("mask", mask)):
            if not ctx.set_input_shape(name, tuple(array.shape)):
                raise InputError(f"{self.path.name}: TensorRT refused input shape {array.shape} for {name} "
                                 f"({self._last_error()})")
            nbytes = array.size * self.dtypes[name].itemsize
            reallocated |= nbytes > self.buffers[name].nbytes
            ctx.set_tensor_address(name, self.buffers[name].ensure(nbytes))
        out_shape = tuple(ctx.get_tensor_shape(OUTPUT))
        out_bytes = int(np.prod(out_shape)) * self.dtypes[OUTPUT].itemsize
        reallocated |= out_bytes > self.buffers[OUTPUT].nbytes
        ctx.set_tensor_address(OUTPUT, self.buffers[OUTPUT].ensure(out_bytes))
        if reallocated:
            self.graphs.clear()   # captured graphs hold the old addresses
        for name, array in (("image", image), ("mask", mask)):
            staged = self.host[name].array(array.shape, self.dtypes[name])
            staged[...] = array
            self.stream.copy_to_device(self.buffers[name].ptr, staged)
        self.start.record(self.stream)
        self._execute(tuple(image.shape) + tuple(mask.shape))
        self.end.record(self.stream)
        result = self.host[OUTPUT].array(out_shape, self.dtypes[OUTPUT])
        self.stream.copy_to_host(result, self.buffers[OUTPUT].ptr)
        self.stream.synchronize()
        self.last_gpu_ms = self.end.elapsed_ms(self.start)
        self.peak_memory_mb = max(self.peak_memory_mb, cuda.memory_used_mb() - self._memory_baseline)
        return result.copy() if self.io == "uint8" else result.astype(np.float32, copy=True)

    def _enqueue(self, stream) -> None:
        if not self.context.execute_async_v3(stream.ptr):
            raise DeviceError(f"{self.path.name}: TensorRT execution failed ({self._last_error()})")

    def _execute(self, key: Tuple[int, ...]) -> None:
        if not self.cuda_graph:
            self._enqueue(self.stream)
            return
        graph = self.graphs.get(key)
        if graph is None:
            self._enqueue(self.stream)   # TensorRT finishes shape-dependent setup outside the capture
            self.stream.synchronize()
            graph = self.graphs[key] = cuda.Graph(self.stream, self._enqueue)
        graph.launch(self.stream)
