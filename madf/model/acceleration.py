"""Fast inference options of the PyTorch backend: precision, channels_last, CUDA graphs and torch.compile.

Measured on an H200 (official-size network, 256x256; ../shared/measurements): batch 32 runs 1,344 images/s in FP32
eager (TF32 convolutions), 1,830 in FP16, 3,100 - 3,255 with FP16 + channels_last + torch.compile; batch 1 is
launch-bound at about 5.7 ms eager, 1.9 ms with a CUDA graph, 1.46 ms with torch.compile(mode="reduce-overhead").
FP16 is as accurate as TF32 against pure FP32 (75 vs 79 dB PSNR); BF16 only 57 dB. So on CUDA the default is FP16
with channels_last; the CPU stays FP32. The network runs in the chosen precision; normalization, compositing and
the known pixels stay FP32 and exact (madf.model.pipeline.InpaintModel), as in the FP16 ONNX export.
"""
from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import logging
from typing import Optional

from madf.common.errors import DeviceError, InputError

log = logging.getLogger("madf")

PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")


@dataclasses.dataclass(frozen=True)
class TorchOptions:
    """How the PyTorch backend runs. None means the device's default (resolved by ``resolve``)."""
    precision: Optional[str] = None        # fp32 | tf32 | fp16 | bf16; default fp16 on CUDA, fp32 on CPU
    channels_last: Optional[bool] = None   # default: on for CUDA (tensor-core convolutions prefer NHWC)
    cuda_graph: bool = False               # replay one CUDA graph per input shape
    compile: str = "off"                   # torch.compile mode
    graph_cache: int = 8                   # CUDA graphs kept (least recently used dropped)

    def resolve(self, device) -> "TorchOptions":
        """Defaults filled in for ``device`` (a torch.device), every combination checked."""
        cuda = device.type == "cuda"
        precision = self.precision or ("fp16" if cuda else "fp32")
        if precision not in PRECISIONS:
            raise InputError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        if precision == "tf32" and not cuda:
            raise DeviceError("precision tf32 is a CUDA tensor-core mode; on the CPU use fp32 (or bf16)")
        if self.compile not in COMPILE_MODES:
            raise InputError(f"compile {self.compile!r}: choose one of {', '.join(COMPILE_MODES)}")
        if self.cuda_graph and not cuda:
            raise DeviceError("CUDA graphs need --device cuda")
        cuda_graph = self.cuda_graph
        if cuda_graph and self.compile == "reduce-overhead":
            # torch.compile's reduce-overhead mode captures and replays CUDA graphs itself: wrapping it in another
            # capture would fail, so the request is met by its graphs
            log.info("--compile reduce-overhead replays CUDA graphs itself; --cuda-graph adds nothing to it")
            cuda_graph = False
        if self.graph_cache < 1:
            raise InputError(f"graph_cache must be at least 1, got {self.graph_cache}")
        channels_last = cuda if self.channels_last is None else self.channels_last
        return dataclasses.replace(self, precision=precision, channels_last=channels_last, cuda_graph=cuda_graph)

    def describe(self) -> str:
        parts = [self.precision]
        parts += ["channels_last"] if self.channels_last else []
        parts += [f"compile {self.compile}" + (" (CUDA graphs)" if self.compile == "reduce-overhead" else "")] \
            if self.compile != "off" else []
        parts += ["CUDA graph"] if self.cuda_graph else []
        return ", ".join(parts)


def _dtype(precision: str):
    import torch
    return {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def prepare(model, device, options: TorchOptions):
    """(model ready to call, the module it wraps): ``model`` (an InpaintModel) converted per ``options`` on ``device``.

    The network is copied before it is converted, so the caller's model keeps its precision and weights; its
    dynamic filters are frozen (the derived conv weights become constants) so graphs and compiled code hold no
    per-call weight permutation."""
    import torch

    from madf.model.precision import cast_network
    model = copy.deepcopy(model)
    net = model.net
    # normalization statistics folded in FP32 before the cast, every stored tensor checked to fit
    cast_network(net, _dtype(options.precision))
    net.freeze_dynamic_filters()
    from madf.model.dynamic_filter import device_arch
    net.arch = device_arch(torch.device(device))   # 'auto' decides per level for this GPU (madf.model.fused_table)
    model = model.to(device).eval()
    if options.channels_last:
        model = model.to(memory_format=torch.channels_last)
    run = model
    if options.compile != "off":
        log.info("torch.compile (mode %s): the first call for each input shape compiles; expect tens of seconds",
                 options.compile)
        run = torch.compile(model, mode=None if options.compile == "default" else options.compile, dynamic=False)
    if options.cuda_graph:
        run = GraphCache(run, options.graph_cache)
    return run, model


@contextlib.contextmanager
def precision_context(options: TorchOptions, device):
    """TF32 on for "tf32", off for everything else on CUDA (PyTorch allows TF32 convolutions by default, which
    would make "fp32" not FP32); restored afterwards, so other code in the process is unaffected."""
    import torch
    if device.type != "cuda":
        yield
        return
    allow = options.precision == "tf32"
    matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allow
    try:
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=allow):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul


class GraphCache:
    """One CUDA graph per input shape, captured on first use (after a warm-up on a side stream, as CUDA graph
    capture requires), then replayed; at most ``size`` kept, the least recently used dropped (its memory with it)."""

    def __init__(self, fn, size: int = 8):
        self.fn, self.size = fn, size
        self.graphs: "collections.OrderedDict" = collections.OrderedDict()
        self.captures = 0

    def _capture(self, image, mask):
        import torch
        static_image, static_mask = image.clone(), mask.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):   # warm-up: cuDNN algorithm choice, lazy initialization
                self.fn(static_image, static_mask)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.fn(static_image, static_mask)
        self.captures += 1
        return graph, static_image, static_mask, static_out

    def __call__(self, image, mask):
        key = (tuple(image.shape), tuple(mask.shape), image.dtype, image.is_contiguous())
        entry = self.graphs.pop(key, None) or self._capture(image, mask)
        self.graphs[key] = entry
        while len(self.graphs) > self.size:
            self.graphs.popitem(last=False)
        graph, static_image, static_mask, static_out = entry
        static_image.copy_(image)
        static_mask.copy_(mask)
        graph.replay()
        return static_out.clone()   # the next replay overwrites static_out
