"""The CLIs' model options (--ckpt / --model / --engine, --plugin-lib, --device, the torch options) and how they
become the library's BackendSpec (madf.backends.spec opens it; nothing here opens a model itself)."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Dict, Optional, Sequence

import click

from madf.backends.spec import BACKENDS, FILES, BackendSpec, open_backend
from madf.cli._common import PATH

__all__ = ["BACKENDS", "FILES", "CUDA_GRAPH", "choose_backend", "given_files", "model_inputs", "model_options",
           "open_file", "open_options", "spec_of", "torch_options"]

DYNAMIC_FILTERS = ("rewrite", "fused", "auto", "unfold")


def model_options(command):
    """--ckpt / --model / --engine (one per backend), --plugin-lib and --device, shared by the CLIs."""
    options = [
        click.option("--ckpt", type=PATH,
                     help="Official Pytorch-MADF .pth, a state dict, or a madf-trt .safetensors (torch backend)."),
        click.option("--model", "model_path", type=PATH,
                     help="An ONNX file from madf-export (onnxruntime backend; no torch needed)."),
        click.option("--engine", type=PATH,
                     help="A TensorRT plan from madf-build, with its sidecar JSON (tensorrt backend; no torch)."),
        click.option("--plugin-lib", "plugin_libs", multiple=True, type=PATH,
                     help="tensorrt: the MADFDynamicFilter plugin library, for plugin-lowered engines."),
        click.option("--device", default=None,
                     help="torch: cpu (default), cuda, cuda:N; onnxruntime: cpu (default), cuda, tensorrt; "
                          "tensorrt: cuda:N (default cuda:0)."),
    ]
    return functools.reduce(lambda f, option: option(f), reversed(options), command)


CUDA_GRAPH = click.option("--cuda-graph", is_flag=True,
                          help="torch (on CUDA) and tensorrt: replay a CUDA graph per input shape.")


def torch_options(command):
    """--precision, --channels-last/--no-channels-last and --compile for the torch backend (madf.model.acceleration),
    handed to the command as one ``torch_options`` dict (None values: the device's defaults)."""
    from madf.model.acceleration import COMPILE_MODES, PRECISIONS
    options = [
        click.option("--precision", type=click.Choice(PRECISIONS), default=None,
                     help="torch: network precision (default fp16 on CUDA, fp32 on CPU; I/O, normalization and "
                          "compositing stay FP32)."),
        click.option("--channels-last/--no-channels-last", default=None,
                     help="torch: NHWC memory format (default on for CUDA)."),
        click.option("--compile", "compile_mode", type=click.Choice(COMPILE_MODES), default="off", show_default=True,
                     help="torch: torch.compile mode (the first call per input shape compiles)."),
        click.option("--dynamic-filter", "dynamic_filter", type=click.Choice(DYNAMIC_FILTERS), default="rewrite",
                     show_default=True,
                     help="torch: rewrite = conv + contraction (cuDNN); fused = the CUDA kernel at every level; auto = "
                          "the kernel where it is faster (levels 1-3 of the official net), the rewrite elsewhere; "
                          "unfold = the official computation (reference; slow, large)."),
    ]

    @functools.wraps(command)
    def wrapper(*args, precision, channels_last, compile_mode, dynamic_filter, **kwargs):
        return command(*args, torch_options={"precision": precision, "channels_last": channels_last,
                                             "compile": compile_mode, "dynamic_filter": dynamic_filter}, **kwargs)
    return functools.reduce(lambda f, option: option(f), reversed(options), wrapper)


def given_files(ckpt: Optional[Path], model: Optional[Path], engine: Optional[Path]) -> Dict[str, Path]:
    """{backend: file} for the files given, in reference order (torch first)."""
    files = {"torch": ckpt, "onnxruntime": model, "tensorrt": engine}
    return {name: path for name, path in files.items() if path is not None}


def choose_backend(backend: Optional[str], ckpt: Optional[Path], model: Optional[Path],
                   engine: Optional[Path] = None) -> str:
    """The backend asked for, or the one the given file implies; a clear error when its file is missing."""
    files = given_files(ckpt, model, engine)
    if backend is None:
        if len(files) > 1:
            raise click.UsageError(f"give one of --ckpt, --model, --engine (got {len(files)}), or pick --backend")
        backend = next(iter(files), "torch")
    if backend not in files:
        option, what = FILES[backend]
        raise click.UsageError(f"--backend {backend} needs {option} ({what})")
    return backend


def spec_of(backend: str, ckpt: Optional[Path] = None, model: Optional[Path] = None, engine: Optional[Path] = None,
            device: Optional[str] = None, plugin_libs: Sequence[Path] = (), cuda_graph: bool = False,
            torch_options: Optional[dict] = None, threads: Optional[int] = None) -> BackendSpec:
    """The CLIs' options as the library's spec (madf.backends.spec): the one thing the CLI adds to opening a
    backend."""
    path = {"torch": ckpt, "onnxruntime": model, "tensorrt": engine}[backend]
    return BackendSpec(path, backend=backend, device=device, plugin_libs=tuple(plugin_libs), cuda_graph=cuda_graph,
                       torch_options=torch_options, threads=threads)


def open_options(backend: str, **options):
    """The backend the CLI's options name, opened by the library."""
    return open_backend(spec_of(backend, **options))


def open_file(backend: str, path: Path, plugin_libs: Sequence[Path] = (), **options):
    """The backend's file given positionally (the CLIs that hold {backend: file}), opened by the library."""
    return open_backend(BackendSpec(path, backend=backend, plugin_libs=tuple(plugin_libs), **options))


def model_inputs(ckpt: Optional[Path], model: Optional[Path], engine: Optional[Path], plugin_libs=()) -> list:
    """The files a run reads its model from: inputs no output may replace."""
    return [p for p in (ckpt, model, engine, *plugin_libs) if p is not None]
