"""Opening a contract backend by name, for the CLIs that can run any of them (inpaint, parity, export --check)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

BACKENDS = ("torch", "onnxruntime")


def choose_backend(backend: Optional[str], ckpt: Optional[Path], model: Optional[Path]) -> str:
    """The backend asked for, or the one the given file implies; a clear error when its file is missing."""
    backend = backend or ("onnxruntime" if model is not None and ckpt is None else "torch")
    if backend == "torch" and ckpt is None:
        raise click.UsageError("--backend torch needs --ckpt (a checkpoint); for an ONNX file use --model")
    if backend == "onnxruntime" and model is None:
        raise click.UsageError("--backend onnxruntime needs --model (an ONNX file from madf-export)")
    return backend


def open_backend(backend: str, ckpt: Optional[Path] = None, model: Optional[Path] = None, device: str = "cpu",
                 dynamic_filter: str = "rewrite"):
    if backend == "torch":
        from ..checkpoint import load_checkpoint
        from ..inpaint import TorchBackend
        return TorchBackend(load_checkpoint(ckpt, dynamic_filter=dynamic_filter), device=device)
    if backend == "onnxruntime":
        from madf.runtime.onnxruntime import OnnxRuntimeBackend
        return OnnxRuntimeBackend(model, device=device)
    raise click.UsageError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
