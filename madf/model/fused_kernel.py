"""The fused dynamic-filter CUDA kernel (madf/csrc/plugins/dynamicFilter) as a torch op, for tests and benchmarks.

The extension is compiled on first use with torch.utils.cpp_extension (needs a CUDA build of torch and nvcc), from
the very sources the TensorRT plugin links, so a test of this op is a test of the plugin's math. The same binding
built with MADF_EMULATE against madf/csrc/emulation takes CPU tensors and runs the kernels under the CPU
emulation (``load_emulated_extension``), so the op's checks and the whole model on it are tested without a GPU.
``FusedKernel(module).register()`` makes either selectable as impl="fused" in madf.model.dynamic_filter (and MADFNet).
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Optional

from madf.common.errors import DeviceError

# the native tree ships inside the package (setup.cfg package_data), so an installed madf builds these too
CSRC = Path(__file__).resolve().parents[1] / "csrc"
SOURCES = CSRC / "plugins" / "dynamicFilter"
EMULATION = CSRC / "emulation"
# madfAlgo of dynamicFilterKernel.cuh (tests/test_fused_kernel.py checks this copy) and its tactics: split-K with the
# split count S in bits 8-15 (MADF_TACTIC), "split_k" choosing S per call
KINDS = {"auto": 0, "simt": 1, "tensor_core": 2, "pipelined": 3, "split_k": 4}
MAX_SPLITS = 8
SPLITS = (2, 4, MAX_SPLITS)
ALGOS = {**KINDS, **{f"split_k{s}": KINDS["split_k"] | s << 8 for s in SPLITS}}
# what the torch binding and the plugin offer as variants of the tensor-core path (timed per level by benchmarks/gpu.py)
VARIANTS = ("tensor_core", "pipelined", "split_k2", "split_k4", "split_k8")


def tactic_name(tactic: int) -> str:
    """The name of a tactic the binding reports: 'tensor_core', 'pipelined', 'split_k4' (split-K in 4), ..."""
    kind = next(name for name, value in KINDS.items() if value == tactic & 0xFF)
    return f"{kind}{tactic >> 8}" if kind == "split_k" else kind
DTYPES = ("float32", "float16")


def cuda_home() -> Optional[Path]:
    """The CUDA toolkit's root: $CUDA_HOME, else where nvcc says it lives (it may be a wrapper script on PATH)."""
    if os.environ.get("CUDA_HOME"):
        return Path(os.environ["CUDA_HOME"])
    if shutil.which("nvcc") is None:
        return None
    # `nvcc --dryrun` prints its own folder as _HERE_, which a symlink or wrapper script would hide
    out = subprocess.run(["nvcc", "--dryrun", "-x", "cu", "-c", os.devnull, "-o", os.devnull], capture_output=True,
                         text=True).stderr
    here = re.search(r"^#\$ _HERE_=(.+)$", out, re.MULTILINE)
    return Path(here.group(1).strip()).parent if here else None


def extension_spec(emulation_dir: Optional[Path] = None) -> dict:
    """Arguments for torch.utils.cpp_extension.load: the CUDA build, or (``emulation_dir`` = madf/csrc/emulation)
    the same binding on the CPU emulation of the kernels. The CI compiles the CUDA build from this very dict."""
    binding = str(SOURCES / "torchBinding.cpp")
    if emulation_dir is None:
        return dict(name="madf_dynamic_filter_cuda", sources=[binding, str(SOURCES / "dynamicFilterKernel.cu")],
                    extra_include_paths=[str(SOURCES)], extra_cflags=["-O3"], extra_cuda_cflags=["-O3"])
    cuda = cuda_home()
    if cuda is None:
        raise DeviceError("the emulated fused kernel needs the CUDA toolkit's headers (nvcc on PATH or CUDA_HOME)")
    # cudart (static, no GPU needed) only for cudaGetErrorString
    return dict(name="madf_dynamic_filter_emulated",
                sources=[binding, str(Path(emulation_dir) / "emulatedKernel.cpp")],
                extra_include_paths=[str(SOURCES), str(emulation_dir), str(cuda / "include")],
                extra_cflags=["-O2", "-DMADF_EMULATE=1"],
                extra_ldflags=[f"-L{cuda / 'lib64'}", "-lcudart_static", "-ldl", "-lrt", "-lpthread"])


def runtime_libstdcxx() -> Optional[str]:
    """The libstdc++ shared library this process runs on (torch loaded it), from /proc/self/maps; None elsewhere."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                if "/libstdc++.so" in path and os.path.isfile(path):
                    return path
    except OSError:
        pass
    return None


def _link_runtime_libstdcxx(spec: dict) -> dict:
    """Link the extension against the process's own libstdc++ (named first, so it resolves every C++ runtime symbol).
    A compiler that links libstdc++ statically (seen: a GCC in /opt/gcc on a GPU machine) otherwise puts a second
    copy of the C++ runtime into the extension; its streams then read locale facets of the other copy and the first
    error message that formats a number crashes (SIGSEGV in std::ostream::_M_insert<long>) or comes out cut short."""
    import torch  # noqa: F401 - loads the libstdc++ to find
    lib = runtime_libstdcxx()
    if lib:
        spec["extra_ldflags"] = [lib] + spec.get("extra_ldflags", [])
    return spec


@functools.lru_cache(maxsize=None)
def load_extension(verbose: bool = False):
    """Build (or reuse from torch's extension cache) and import the torch binding of the kernel, on CUDA."""
    import torch
    if not torch.cuda.is_available():
        raise DeviceError("the fused dynamic filter needs a CUDA GPU and a CUDA build of torch")
    from torch.utils.cpp_extension import load
    return load(**_link_runtime_libstdcxx(extension_spec()), verbose=verbose)


@functools.lru_cache(maxsize=None)
def load_emulated_extension(emulation_dir: Path = EMULATION, verbose: bool = False):
    """The same binding over the CPU emulation of the kernels (madf/csrc/emulation): CPU tensors, no GPU."""
    from torch.utils.cpp_extension import load
    return load(**_link_runtime_libstdcxx(extension_spec(Path(emulation_dir))), verbose=verbose)


class FusedKernel:
    """The op on one build of the binding. Arguments are checked here the way madf.model.dynamic_filter checks them
    (same
    errors as the other implementations); the binding checks them again before it touches memory."""

    def __init__(self, module, device_type: str = "cuda"):
        self.module, self.device_type = module, device_type

    def _args(self, x, m, weight, bias, kernel_size, stride, padding, algo):
        import torch

        from madf.model.dynamic_filter import _check
        if algo not in ALGOS:
            raise ValueError(f"unknown fused-kernel algorithm {algo!r}; choose one of {', '.join(ALGOS)}")
        tensors = {"features": x, "mask_features": m, "weight": weight, "bias": bias}
        for name, t in tensors.items():
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name} must be a tensor, not {type(t).__name__}")
            if t.device.type != self.device_type or t.device != x.device:
                raise ValueError(f"the fused dynamic filter runs on {self.device_type} tensors, all on one device; "
                                 f"{name} is on {t.device}, features on {x.device}")
            if t.dtype != x.dtype or str(t.dtype).replace("torch.", "") not in DTYPES:
                raise TypeError(f"the fused dynamic filter takes float32 or float16, one dtype for all inputs; "
                                f"{name} is {t.dtype}, features {x.dtype}")
        cout = _check(x, m, weight, kernel_size, stride, padding)
        if weight.dim() != 4 or weight.shape[2:] != (1, 1) or bias.shape != (weight.shape[0],):
            raise ValueError(f"kernel generator weight must be (Cin*k*k*Cout, Cm, 1, 1) and bias (Cin*k*k*Cout,); "
                             f"got {tuple(weight.shape)} and {tuple(bias.shape)}")
        if cout == 0:
            raise ValueError("kernel generator weight has no rows (Cout = 0)")
        return x, m, weight, bias, int(kernel_size), int(stride), int(padding), ALGOS[algo]

    def __call__(self, x, m, weight, bias, kernel_size: int, stride: int, padding: int, algo: str = "auto"):
        """Same arguments as madf.model.dynamic_filter.dynamic_filter_unfold; float32 or float16."""
        return self.module.forward(*self._args(x, m, weight, bias, kernel_size, stride, padding, algo))

    def selected(self, x, m, weight, bias, kernel_size: int, stride: int, padding: int, algo: str = "auto") -> str:
        """What a call with these inputs runs on this device: 'simt', 'tensor_core', 'pipelined' or 'split_kS' (S the
        split count, 1 when a split-K call runs unsplit)."""
        return tactic_name(self.module.selected(*self._args(x, m, weight, bias, kernel_size, stride, padding, algo)))

    def register(self, name: str = "fused") -> "FusedKernel":
        """Make this kernel selectable as impl=name in madf.model.dynamic_filter (and so in MADFNet)."""
        from madf.model import dynamic_filter
        dynamic_filter.register(name)(self)
        return self


@functools.lru_cache(maxsize=None)
def compilable(fused: FusedKernel, name: str = "madf::dynamic_filter_fused"):
    """``fused`` as a torch custom op (same arguments), so torch.compile keeps it in one graph instead of breaking
    the graph at the extension call; register the result as an impl (``dynamic_filter.register("fused")(op)``)."""
    import torch

    schema = "(Tensor x, Tensor m, Tensor weight, Tensor bias, int kernel_size, int stride, int padding) -> Tensor"

    @torch.library.custom_op(name, mutates_args=(), schema=schema)
    def op(x, m, weight, bias, kernel_size, stride, padding):
        return fused(x, m, weight, bias, kernel_size, stride, padding)

    @op.register_fake
    def _(x, m, weight, bias, kernel_size, stride, padding):
        cout = weight.shape[0] // (x.shape[1] * kernel_size * kernel_size)
        return x.new_empty(m.shape[0], cout, m.shape[2], m.shape[3])
    return op


def cuda_kernel(verbose: bool = False) -> FusedKernel:
    """The fused kernel on CUDA tensors (builds the extension on first use)."""
    return FusedKernel(load_extension(verbose))


def dynamic_filter_fused(x, m, weight, bias, kernel_size: int, stride: int, padding: int, algo: str = "auto"):
    """The op on CUDA tensors (float32 or float16), same arguments as
    madf.model.dynamic_filter.dynamic_filter_unfold."""
    return cuda_kernel()(x, m, weight, bias, kernel_size, stride, padding, algo)


def register() -> None:
    """Make the CUDA kernel selectable as impl="fused" (and so "auto") in madf.model.dynamic_filter and MADFNet, as a
    custom op, so torch.compile keeps it in its graph."""
    from madf.model import dynamic_filter
    dynamic_filter.register("fused")(compilable(cuda_kernel()))
