"""CUDA through cuda-python (NVIDIA's own bindings, as TensorRT's samples use): device facts, device and pinned
host buffers, streams, events and graphs for the TensorRT backend and madf-bench. No torch, no pycuda.
"""
from __future__ import annotations

import contextlib
import ctypes
from typing import Dict, Optional

import numpy as np

from madf.common.errors import DeviceError


def cudart():
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime  # cuda-python < 12.6
        except ImportError:
            raise DeviceError("the TensorRT runtime needs cuda-python: pip install 'madf-trt[trt]'") from None
    return runtime


def check(result, what: str = "CUDA call"):
    """cuda-python returns (error, *values): raise a one-line DeviceError on error, else return the value(s)."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        rt = cudart()
        name = rt.cudaGetErrorName(err)[1]
        text = rt.cudaGetErrorString(err)[1]
        decode = lambda b: b.decode() if isinstance(b, bytes) else str(b)
        raise DeviceError(f"{what} failed: {decode(name)} ({decode(text)})")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


@contextlib.contextmanager
def on_device(device: int):
    """Run the block with ``device`` current on the calling thread, then give the thread its device back.

    The CUDA runtime's current device is per thread: a backend built on one thread and called from another (a
    server's batcher, a Ray actor's worker thread) would otherwise allocate and launch on that thread's device,
    device 0 unless someone set it."""
    rt = cudart()
    before = check(rt.cudaGetDevice(), "cudaGetDevice")
    if before != device:
        check(rt.cudaSetDevice(device), "cudaSetDevice")
    try:
        yield
    finally:
        if before != device:
            check(rt.cudaSetDevice(before), "cudaSetDevice")


def device_count() -> int:
    err, count = cudart().cudaGetDeviceCount()
    return int(count) if int(err) == 0 else 0


def require_gpu(device: int = 0) -> None:
    count = device_count()
    if count == 0:
        raise DeviceError("no CUDA GPU visible (or no NVIDIA driver): TensorRT engines need one; use the "
                          "onnxruntime or torch backend on this machine")
    if device >= count:
        raise DeviceError(f"CUDA device {device} does not exist: {count} visible (0..{count - 1})")


def device_info(device: int = 0) -> Optional[Dict[str, str]]:
    """Name, compute capability, memory, driver and runtime versions of ``device``; None without a GPU."""
    if device_count() <= device:
        return None
    rt = cudart()
    props = check(rt.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    version = lambda v: f"{v // 1000}.{(v % 1000) // 10}"
    return {"name": name.strip("\x00 "), "compute_capability": f"{props.major}.{props.minor}",
            "memory_mb": str(props.totalGlobalMem >> 20),
            "driver": version(check(rt.cudaDriverGetVersion(), "cudaDriverGetVersion")),
            "cuda_runtime": version(check(rt.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion"))}


def memory_used_mb() -> float:
    free, total = check(cudart().cudaMemGetInfo(), "cudaMemGetInfo")
    return (total - free) / 2**20


class _GrowOnly:
    """A grow-only allocation: reallocated only when a call needs more than it holds."""
    allocate = release = None   # set by subclasses: cuda-python function names

    def __init__(self):
        self.ptr, self.nbytes = 0, 0

    def ensure(self, nbytes: int) -> int:
        if nbytes > self.nbytes:
            self.free()
            self.ptr = int(check(getattr(cudart(), self.allocate)(nbytes), f"{self.allocate}({nbytes} bytes)"))
            self.nbytes = nbytes
        return self.ptr

    def free(self) -> None:
        if self.ptr:
            getattr(cudart(), self.release)(self.ptr)
            self.ptr, self.nbytes = 0, 0


class DeviceBuffer(_GrowOnly):
    allocate, release = "cudaMalloc", "cudaFree"


class PinnedBuffer(_GrowOnly):
    """Page-locked host memory, viewed as a numpy array (fast, asynchronous copies)."""
    allocate, release = "cudaMallocHost", "cudaFreeHost"

    def array(self, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        count = int(np.prod(shape))
        self.ensure(count * dtype.itemsize)
        raw = (ctypes.c_byte * (count * dtype.itemsize)).from_address(self.ptr)
        return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)


class Stream:
    def __init__(self):
        rt = cudart()
        self.handle = check(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking), "cudaStreamCreate")

    @property
    def ptr(self) -> int:
        return int(self.handle)

    def copy_to_device(self, dst: int, src: np.ndarray) -> None:
        rt = cudart()
        check(rt.cudaMemcpyAsync(dst, src.ctypes.data, src.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
                                 self.handle), "cudaMemcpyAsync H2D")

    def copy_to_host(self, dst: np.ndarray, src: int) -> None:
        rt = cudart()
        check(rt.cudaMemcpyAsync(dst.ctypes.data, src, dst.nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                                 self.handle), "cudaMemcpyAsync D2H")

    def synchronize(self) -> None:
        check(cudart().cudaStreamSynchronize(self.handle), "cudaStreamSynchronize")


class Event:
    def __init__(self):
        self.handle = check(cudart().cudaEventCreate(), "cudaEventCreate")

    def record(self, stream: Stream) -> None:
        check(cudart().cudaEventRecord(self.handle, stream.handle), "cudaEventRecord")

    def elapsed_ms(self, since: "Event") -> float:
        return float(check(cudart().cudaEventElapsedTime(since.handle, self.handle), "cudaEventElapsedTime"))


class Graph:
    """A CUDA graph captured from whatever ``enqueue(stream)`` launches, replayed with ``launch``."""

    def __init__(self, stream: Stream, enqueue):
        rt = cudart()
        check(rt.cudaStreamBeginCapture(stream.handle, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal),
              "cudaStreamBeginCapture")
        try:
            enqueue(stream)
        finally:
            graph = check(rt.cudaStreamEndCapture(stream.handle), "cudaStreamEndCapture")
        self.graph = graph
        self.exec = check(rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")

    def launch(self, stream: Stream) -> None:
        check(cudart().cudaGraphLaunch(self.exec, stream.handle), "cudaGraphLaunch")
