"""ONNX Runtime backend of the image-level API (torch-free): runs a file written by madf-export.

    from madf.inpaint.inpainter import Inpainter
    from madf.runtime.onnxruntime import OnnxRuntimeBackend
    inpainter = Inpainter(OnnxRuntimeBackend("model.onnx", device="cpu"))

``device``: ``cpu`` (CPUExecutionProvider), ``cuda`` (CUDAExecutionProvider) or ``tensorrt`` (TensorRT execution
provider with CUDA fallback); the GPU ones need the onnxruntime-gpu package.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from madf.common.errors import DeviceError, InputError, ModelError, first_line, is_out_of_memory
from madf.common.threads import threads_from_env
from madf.export.onnx_file import check_file_kind
from madf.inpaint.backend import BackendBase
from madf.runtime import uint8
from madf.runtime.batching import in_profile_batches

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


class OnnxRuntimeBackend(BackendBase):
    def __init__(self, path, device: str = "cpu", threads: Optional[int] = None, verify_digest: bool = True):
        """``threads``: compute threads (default: OMP_NUM_THREADS where set, which ONNX Runtime itself ignores, so
        one setting holds for every backend; else ONNX Runtime's own default). ``verify_digest=False`` runs a file
        whose weights no longer match the export's digest (a rewrite on its way to madf-parity --restamp); the finite
        check still holds."""
        try:
            import onnxruntime as ort
        except ImportError:
            raise DeviceError("the onnxruntime backend needs onnxruntime: pip install 'madf-trt[onnx]' "
                              "(or onnxruntime-gpu)") from None
        path = Path(path)
        check_file_kind(path, "an ONNX file", "--model")
        kind = device.split(":")[0]
        if kind not in PROVIDERS:
            raise DeviceError(f"device {device!r} for onnxruntime: use one of {', '.join(PROVIDERS)}")
        providers = PROVIDERS[kind]
        if providers[0] not in ort.get_available_providers():
            raise DeviceError(f"onnxruntime {ort.__version__} has no {providers[0]} here (available: "
                              f"{', '.join(ort.get_available_providers())}); install onnxruntime-gpu or use cpu")
        options = ort.SessionOptions()
        options.log_severity_level = 4   # fatal only: every failure reaches the user as madf's line (_session_run)
        threads = threads or threads_from_env()
        if threads:   # one Ray actor per core wants one thread each
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        data = path.read_bytes()   # read once: the session and the weights check share the bytes
        try:
            self.session = ort.InferenceSession(data, options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types per failure
            msg = first_line(exc)[:300]
            if "MADFDynamicFilter" in msg:
                raise ModelError(f"{path} uses the madf::MADFDynamicFilter custom op (plugin or mixed lowering), which "
                                 f"only TensorRT with the plugin runs; export with --dynconv native for ONNX "
                                 f"Runtime") from None
            raise ModelError(f"{path}: onnxruntime cannot load it ({msg}); export it again with madf-export") from None
        self.path, self.device = path, device
        from madf.export.onnx_file import check_weights, load_model, ort_graph_level, validate_metadata
        self.metadata = validate_metadata(dict(self.session.get_modelmeta().custom_metadata_map), path)
        level = ort_graph_level(self.precision)
        if level != "ORT_ENABLE_ALL":   # known only once the file's metadata is read: a second session
            options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
            self.session = ort.InferenceSession(data, options, providers=providers)
        check_weights(path, load_model(path, data), digest=verify_digest)
        if self.metadata.get("madf.raw_outputs") == "1":
            raise ModelError(f"{path} was exported with --raw-outputs (network outputs, no compositing); export "
                             f"without it for inpainting")
        names = [i.name for i in self.session.get_inputs()]
        if names != ["image", "mask"] or [o.name for o in self.session.get_outputs()] != ["inpainted"]:
            raise ModelError(f"{path}: inputs {names} are not the madf contract (image, mask -> inpainted)")
        self.multiple = int(self.metadata["madf.multiple"])
        self.io = uint8.io_kind(self.metadata)   # "uint8": raw photos in, the composite out (run_uint8)
        self.inverted_mask = self.metadata.get("madf.mask") == "inverted"
        shape = self.session.get_inputs()[0].shape
        spatial = shape[1:3] if self.io == "uint8" else shape[2:]
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None
        self.fixed_size = tuple(spatial) if all(isinstance(d, int) for d in spatial) else None
        self.max_side = None   # any size (a fixed-size file is fixed_size: other sizes are refused, not cropped)

    @property
    def config(self):
        return json.loads(self.metadata["madf.config"]) if "madf.config" in self.metadata else None

    @property
    def precision(self) -> str:
        return self.metadata.get("madf.precision", "fp32")


    def describe(self) -> str:
        return (f"onnxruntime {self.session.get_providers()[0]}, {self.path.name} "
                f"({self.metadata.get('madf.precision')}, {self.metadata.get('madf.lowering')} lowering, "
                f"{self.io} I/O)")

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The float contract (a uint8 file converts it exactly)."""
        if self.io == "uint8":
            return uint8.run_contract(self, image, mask)
        self._check_size(image.shape[2], image.shape[3], "pads to ")
        return self._run(image, mask)

    def run_uint8(self, images: np.ndarray, holes: np.ndarray) -> np.ndarray:
        """uint8 files: (N,H,W,3) uint8 photos of any size and bool (N,H,W) holes -> the (N,H,W,3) composites."""
        if self.io != "uint8":
            raise ModelError(f"{self.path.name} takes the float contract; export it with --io uint8 for raw photos")
        self._check_size(images.shape[1], images.shape[2], "is ")
        return self._run(np.ascontiguousarray(images, np.uint8), uint8.encode_masks(holes, self.inverted_mask))

    def _check_size(self, h: int, w: int, verb: str) -> None:
        if self.fixed_size and (h, w) != self.fixed_size:
            raise InputError(f"{self.path.name} was exported for {self.fixed_size[1]}x{self.fixed_size[0]} (WxH) "
                             f"but this image {verb}{w}x{h}; export without --height/--width for any size")

    def _session_run(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """session.run with ONNX Runtime's errors (plain Exceptions, the arena's raw text) as madf's kinds."""
        try:
            return self.session.run(["inpainted"], {"image": image, "mask": mask})[0]
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises Fail, RuntimeException, ... (not RuntimeError)
            if is_out_of_memory(exc):
                raise MemoryError(f"out of memory running {self.path.name} on {'x'.join(map(str, image.shape))}"
                                  ) from None
            raise ModelError(f"{self.path.name}: ONNX Runtime could not run it ({first_line(exc)[:300]})") from None

    def _run(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if not self.fixed_batch:
            return self._session_run(image, mask)
        return in_profile_batches(self._session_run, image, mask, self.fixed_batch, self.fixed_batch)
