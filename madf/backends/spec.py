"""A backend named by a picklable spec, opened where it runs: the library's one way from a model file to a
madf.inpaint.backend.Backend (the CLIs turn their options into a spec; a Ray actor or replica gets the spec and
opens it on its own node). Errors are madf's own kinds, never the CLI's.

    from madf.backends.spec import BackendSpec, open_backend
    backend = open_backend(BackendSpec("model.onnx"))                 # the backend follows the file's kind
    backend = open_backend(BackendSpec("m.plan", plugin_libs=("build/plugins/libmadf_plugins.so",)))
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional, Tuple

from madf.common.errors import DeviceError, ModelError

BACKENDS = ("torch", "onnxruntime", "tensorrt")
# The backend each kind of file runs on (by its suffix), and the option the CLIs take it with.
BY_SUFFIX = {".onnx": "onnxruntime", ".plan": "tensorrt", ".engine": "tensorrt", ".pth": "torch", ".pt": "torch",
             ".safetensors": "torch"}
FILES = {"torch": ("--ckpt", "a checkpoint"), "onnxruntime": ("--model", "an ONNX file from madf-export"),
         "tensorrt": ("--engine", "a plan from madf-build")}


@dataclasses.dataclass(frozen=True)
class BackendSpec:
    """What to open: ``path`` (a checkpoint, an ONNX file or a TensorRT plan) on ``backend`` (default: the one its
    suffix implies), ``device`` (torch: cpu / cuda / cuda:N; onnxruntime: cpu / cuda / tensorrt; tensorrt:
    cuda:N), plugin libraries for plugin-lowered engines, CUDA graphs, the torch options (madf.model.acceleration:
    precision, channels_last, compile, dynamic_filter) and ONNX Runtime's thread count."""
    path: Path
    backend: Optional[str] = None
    device: Optional[str] = None
    plugin_libs: Tuple[Path, ...] = ()
    cuda_graph: bool = False
    torch_options: Optional[dict] = None
    threads: Optional[int] = None

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))
        object.__setattr__(self, "plugin_libs", tuple(Path(p) for p in self.plugin_libs))
        backend = self.backend or BY_SUFFIX.get(self.path.suffix.lower())
        if backend is None:
            raise ModelError(f"{self.path}: which backend runs a {self.path.suffix or 'suffix-less'} file? name one "
                             f"({', '.join(BACKENDS)}), or give a .onnx, .plan or checkpoint file")
        if backend not in BACKENDS:
            raise ModelError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        object.__setattr__(self, "backend", backend)

    @property
    def gpus(self) -> float:
        """GPUs a Ray actor or replica reserves for it unless told: one on a CUDA device or for an engine."""
        return 1.0 if (self.device or "").startswith("cuda") or self.backend == "tensorrt" else 0.0

    @property
    def inputs(self) -> list:
        """The files it reads: inputs no output may replace."""
        return [self.path, *self.plugin_libs]


def check_backend_file(spec: BackendSpec) -> None:
    """What open_backend would refuse about the file itself (missing, another kind, damaged, a digest that does
    not match, a plan without its sidecar or plugin), checked before Ray starts actors or replicas that would each
    fail on it; nothing is loaded onto a device."""
    if spec.backend == "torch":
        from madf.model.checkpoint import read_checkpoint
        read_checkpoint(spec.path)
    elif spec.backend == "onnxruntime":
        from madf.export.onnx_file import check_file_kind, read_checked
        check_file_kind(spec.path, "an ONNX file", "--model")
        read_checked(spec.path)
    else:
        from madf.runtime.tensorrt import read_engine_file
        read_engine_file(spec.path, spec.plugin_libs)


def _gpu_index(device: Optional[str]) -> int:
    if device in (None, "cuda"):
        return 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return int(device[5:])
    raise DeviceError(f"device {device!r} for tensorrt: TensorRT runs on a GPU; use cuda or cuda:N")


def open_backend(spec: BackendSpec):
    """The backend ``spec`` names, opened here (a madf.inpaint.backend.Backend)."""
    if spec.backend == "torch":
        return _open_torch(spec)
    if spec.backend == "onnxruntime":
        from madf.runtime.onnxruntime import OnnxRuntimeBackend
        return OnnxRuntimeBackend(spec.path, device=spec.device or "cpu", threads=spec.threads)
    from madf.runtime.tensorrt import TensorRTBackend
    return TensorRTBackend(spec.path, plugin_libs=spec.plugin_libs, device=_gpu_index(spec.device),
                           cuda_graph=spec.cuda_graph)


def _open_torch(spec: BackendSpec):
    from madf.common.device import torch_device
    from madf.inpaint.inpainter import TorchBackend
    from madf.model.acceleration import TorchOptions
    from madf.model.checkpoint import load_checkpoint
    # options are checked before the checkpoint is read
    given = dict(spec.torch_options or {})
    dynamic_filter = given.pop("dynamic_filter", None) or "rewrite"
    target = torch_device(spec.device or "cpu")
    options = TorchOptions(cuda_graph=spec.cuda_graph, **given).resolve(target)
    if dynamic_filter in ("fused", "auto") and target.type == "cuda":
        from madf.model import fused_kernel as kernel
        kernel.register()   # builds the extension on first use (about a minute), then reuses it
    elif dynamic_filter == "fused":
        raise DeviceError("--dynamic-filter fused runs the CUDA kernel: add --device cuda (auto uses the rewrite on "
                          "the CPU)")
    return TorchBackend(load_checkpoint(spec.path, dynamic_filter=dynamic_filter), device=spec.device or "cpu",
                        options=options)


def open_inpainter(spec: BackendSpec, batch_size: int = 1, strategy=None):
    """An Inpainter on open_backend(spec): what each Ray actor or replica builds for itself (pass it as
    functools.partial(open_inpainter, spec, ...): picklable, evaluated where it runs)."""
    from madf.inpaint.inpainter import Inpainter
    return Inpainter(open_backend(spec), batch_size=batch_size, strategy=strategy)
