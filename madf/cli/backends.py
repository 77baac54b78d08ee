"""Opening contract backends by name, for the CLIs that run any of them (inpaint, parity, bench, export --check)."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Dict, Optional, Sequence

import click

from madf.cli._common import PATH

BACKENDS = ("torch", "onnxruntime", "tensorrt")
DYNAMIC_FILTERS = ("rewrite", "fused", "auto", "unfold")
# The file each backend runs, as (option name, what it is).
FILES = {"torch": ("--ckpt", "a checkpoint"), "onnxruntime": ("--model", "an ONNX file from madf-export"),
         "tensorrt": ("--engine", "a plan from madf-build")}


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
    """--precision, --channels-last/--no-channels-last and --compile for the torch backend (madf.acceleration),
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


def open_file(backend: str, path: Path, **kwargs):
    """open_backend with the backend's file given positionally (the CLIs that hold {backend: file})."""
    keyword = {"torch": "ckpt", "onnxruntime": "model", "tensorrt": "engine"}[backend]
    return open_backend(backend, **{keyword: path}, **kwargs)


def _gpu_index(device: Optional[str]) -> int:
    if device in (None, "cuda"):
        return 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return int(device[5:])
    from madf.common.errors import DeviceError
    raise DeviceError(f"device {device!r} for tensorrt: TensorRT runs on a GPU; use cuda or cuda:N")


def default_gpus(backend: str, device: Optional[str]) -> float:
    """GPUs a Ray actor or replica reserves unless told: one on a CUDA device or for a TensorRT engine."""
    return 1.0 if (device or "").startswith("cuda") or backend == "tensorrt" else 0.0


def check_model(backend: str, ckpt: Optional[Path] = None, model: Optional[Path] = None,
                engine: Optional[Path] = None, plugin_libs: Sequence[Path] = (), **_) -> None:
    """What open_backend would refuse about the file itself (missing, another kind, damaged, a digest that does
    not match, a plan without its sidecar or plugin), checked here before Ray starts actors or replicas that would
    each fail on it; nothing is loaded onto a device."""
    if backend == "torch":
        from madf.model.checkpoint import read_checkpoint
        read_checkpoint(ckpt)
    elif backend == "onnxruntime":
        from madf.export.onnx_file import check_file_kind, read_checked
        check_file_kind(model, "an ONNX file", "--model")
        read_checked(Path(model))
    elif backend == "tensorrt":
        from madf.runtime.tensorrt import read_engine_file
        read_engine_file(Path(engine), plugin_libs)


def model_inputs(ckpt: Optional[Path], model: Optional[Path], engine: Optional[Path], plugin_libs=()) -> list:
    """The files a run reads its model from: inputs no output may replace."""
    return [p for p in (ckpt, model, engine, *plugin_libs) if p is not None]


def open_inpainter(backend: str, batch_size: int = 1, strategy=None, **open_kwargs):
    """An Inpainter on open_backend(backend, **open_kwargs): what each Ray actor or replica builds for itself
    (pass it as functools.partial(open_inpainter, ...): picklable, evaluated where it runs)."""
    from madf.inpaint.inpainter import Inpainter
    return Inpainter(open_backend(backend, **open_kwargs), batch_size=batch_size, strategy=strategy)


def open_backend(backend: str, ckpt: Optional[Path] = None, model: Optional[Path] = None,
                 engine: Optional[Path] = None, device: Optional[str] = None,
                 plugin_libs: Sequence[Path] = (), cuda_graph: bool = False, torch_options: Optional[dict] = None,
                 threads: Optional[int] = None):
    if backend == "torch":
        from madf.common.device import torch_device
        from madf.inpaint.inpainter import TorchBackend
        from madf.model.acceleration import TorchOptions
        from madf.model.checkpoint import load_checkpoint
        # options are checked before the checkpoint is read
        given = dict(torch_options or {})
        dynamic_filter = given.pop("dynamic_filter", None) or "rewrite"
        target = torch_device(device or "cpu")
        options = TorchOptions(cuda_graph=cuda_graph, **given).resolve(target)
        if dynamic_filter in ("fused", "auto") and target.type == "cuda":
            from madf.model import fused_kernel as kernel
            kernel.register()   # builds the extension on first use (about a minute), then reuses it
        elif dynamic_filter == "fused":
            from madf.common.errors import DeviceError
            raise DeviceError("--dynamic-filter fused runs the CUDA kernel: add --device cuda (auto uses the rewrite "
                              "on the CPU)")
        return TorchBackend(load_checkpoint(ckpt, dynamic_filter=dynamic_filter), device=device or "cpu",
                            options=options)
    if backend == "onnxruntime":
        from madf.runtime.onnxruntime import OnnxRuntimeBackend
        return OnnxRuntimeBackend(model, device=device or "cpu", threads=threads)
    if backend == "tensorrt":
        from madf.runtime.tensorrt import TensorRTBackend
        return TensorRTBackend(engine, plugin_libs=plugin_libs, device=_gpu_index(device), cuda_graph=cuda_graph)
    raise click.UsageError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
