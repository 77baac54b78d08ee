"""The fused dynamic-filter CUDA kernel (engines/plugins/dynamicFilter) as a torch op, for tests and benchmarks.

The extension is compiled on first use with torch.utils.cpp_extension (needs a CUDA build of torch and nvcc), from
the very sources the TensorRT plugin links, so a test of this op is a test of the plugin's math. ``register()`` adds
it to madf.dynamic_filter.IMPLEMENTATIONS as "fused".
"""
from __future__ import annotations

import functools
from pathlib import Path

from madf.errors import DeviceError

SOURCES = Path(__file__).resolve().parent / "plugins" / "dynamicFilter"
ALGOS = {"auto": 0, "simt": 1, "tensor_core": 2}


@functools.lru_cache(maxsize=None)
def load_extension(verbose: bool = False):
    """Build (or reuse from torch's extension cache) and import the torch binding of the kernel."""
    import torch
    if not torch.cuda.is_available():
        raise DeviceError("the fused dynamic filter needs a CUDA GPU and a CUDA build of torch")
    from torch.utils.cpp_extension import load
    return load(name="madf_dynamic_filter_cuda",
                sources=[str(SOURCES / "torchBinding.cpp"), str(SOURCES / "dynamicFilterKernel.cu")],
                extra_include_paths=[str(SOURCES)], extra_cflags=["-O3"],
                extra_cuda_cflags=["-O3"], verbose=verbose)


def _algo(name: str) -> int:
    if name not in ALGOS:
        raise ValueError(f"unknown fused-kernel algorithm {name!r}; choose one of {', '.join(ALGOS)}")
    return ALGOS[name]


def dynamic_filter_fused(x, m, weight, bias, kernel_size: int, stride: int, padding: int, algo: str = "auto"):
    """The op on CUDA tensors (float32 or float16), same arguments as madf.dynamic_filter.dynamic_filter_unfold."""
    return load_extension().forward(x, m, weight, bias, kernel_size, stride, padding, _algo(algo))


def selected_algorithm(x, m, weight, kernel_size: int, stride: int, padding: int, algo: str = "auto") -> str:
    """'simt' or 'tensor_core': what dynamic_filter_fused would run for these inputs on this GPU."""
    return load_extension().selected(x, m, weight, kernel_size, stride, padding, _algo(algo))


def register() -> None:
    """Make the kernel selectable as impl="fused" in madf.dynamic_filter (and so in MADFNet)."""
    from madf import dynamic_filter
    dynamic_filter.register("fused")(dynamic_filter_fused)
