"""The torch devices madf runs on, parsed in one place: cpu, cuda, cuda:N. Anything else (mps, xpu, meta, a typo)
is one DeviceError naming what to use, before a model is loaded."""
from __future__ import annotations

from madf.common.errors import DeviceError

SUPPORTED = "cpu, cuda or cuda:N"


def torch_device(device: str):
    """``device`` as a torch.device that exists on this machine."""
    import torch
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(f"device {device!r} is not a device; use {SUPPORTED}") from None
    if parsed.type not in ("cpu", "cuda"):
        raise DeviceError(f"device {device!r} is not supported by madf-trt; use {SUPPORTED}")
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f"device {device!r}: torch {torch.__version__} sees no CUDA GPU; use --device cpu")
        if (parsed.index or 0) >= count:
            raise DeviceError(f"device {device!r}: only {count} CUDA GPU(s) visible; use cuda:0..cuda:{count - 1}")
    return parsed
