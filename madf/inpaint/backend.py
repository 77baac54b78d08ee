"""What the Inpainter, madf-serve, madf-bench and madf-parity need of a backend, stated once as a Protocol: the
PyTorch backend (madf.inpaint.inpainter.TorchBackend), ONNX Runtime's and TensorRT's (madf.runtime) each provide
it, and a new backend is one class that does (tests/test_backends.py checks all three against it).

A float backend maps the contract ``image (N,3,H,W) [0,1], mask (N,1,H,W) 1 = hole -> inpainted (N,3,H,W)``
(float32 numpy, H and W multiples of ``multiple``); a uint8 one (``io == "uint8"``, madf/runtime/uint8.py) also runs
raw photos of any size through ``run_uint8``."""
from __future__ import annotations

from typing import Any, Dict, Optional, Protocol, Tuple, runtime_checkable

import numpy as np


@runtime_checkable
class Backend(Protocol):
    multiple: int                 # 2^levels: a float backend's H and W are multiples of it
    io: str                       # "float" (the contract above) or "uint8" (raw photos in, the composite out)
    max_side: Optional[int]       # the largest H or W one call takes (an engine's profile); None: any
    fixed_size: Optional[Tuple[int, int]]   # the one (H, W) a file was exported for; None: any
    last_gpu_ms: Optional[float]  # GPU time of the last call (None on a CPU)

    @property
    def config(self) -> Optional[Dict[str, Any]]:
        """The network's configuration (ModelConfig as a dict), when the file records it."""

    @property
    def precision(self) -> str:
        """fp32 or fp16 (what madf-parity's tolerance follows)."""

    def describe(self) -> str:
        """One line: what runs the network, on which file and device."""

    def info(self) -> Dict[str, Any]:
        """What /info, madf-bench and madf-parity report: backend, precision, io, multiple, config, max_side."""

    def gpu_memory_mb(self) -> Optional[float]:
        """Peak GPU memory the backend used (None where it is not measured: a CPU, ONNX Runtime)."""

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The float contract (a uint8 backend converts it exactly)."""

    def run_uint8(self, images: np.ndarray, holes: np.ndarray) -> np.ndarray:
        """uint8 backends: (N,H,W,3) uint8 photos and bool (N,H,W) holes -> the (N,H,W,3) composites."""


class BackendBase:
    """The Protocol's defaults, for a new backend to subclass: a float backend of any size, on no GPU, with no
    recorded configuration. A subclass sets ``multiple`` and defines ``describe`` and ``__call__``."""
    multiple: int
    io = "float"
    max_side: Optional[int] = None
    fixed_size: Optional[Tuple[int, int]] = None
    last_gpu_ms: Optional[float] = None
    config: Optional[Dict[str, Any]] = None
    precision = "fp32"

    def info(self) -> Dict[str, Any]:
        return backend_info(self)

    def gpu_memory_mb(self) -> Optional[float]:
        return None

    def run_uint8(self, images: np.ndarray, holes: np.ndarray) -> np.ndarray:
        from madf.common.errors import ModelError
        raise ModelError(f"{self.describe()} takes the float contract; run_uint8 is for --io uint8 files")


# The Protocol's members, read off its class (typing's own list is private before Python 3.12).
MEMBERS = tuple(sorted(set(Backend.__annotations__) | {
    name for name, value in vars(Backend).items()
    if (callable(value) or isinstance(value, property)) and (not name.startswith("_") or name == "__call__")}))


def check_backend(backend) -> None:
    """``backend`` provides the Protocol; a TypeError naming what it lacks (and the base class that has it)."""
    missing = [name for name in MEMBERS if not hasattr(backend, name)]
    if missing:
        raise TypeError(f"{type(backend).__name__} is not a madf backend: it lacks {', '.join(missing)}; "
                        f"subclass madf.inpaint.backend.BackendBase (see madf.inpaint.backend.Backend)")


def backend_info(backend) -> Dict[str, Any]:
    """The info dict every backend returns (its own fields filled in from the Protocol's)."""
    config = backend.config
    return {"backend": backend.describe(), "precision": backend.precision, "io": backend.io,
            "multiple": backend.multiple, "max_side": backend.max_side,
            "model": config.to_dict() if hasattr(config, "to_dict") else config}
