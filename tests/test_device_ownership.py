"""The TensorRT runtime owns its GPU: every entry runs with the backend's device current on the calling thread
and gives the thread its device back. Proven on the CPU with a stand-in for the CUDA runtime whose current device is
per thread, as the real one's is."""
import threading
from pathlib import Path

import numpy as np
import pytest

from madf.runtime import cuda
from madf.runtime.tensorrt import TensorRTBackend


class FakeRuntime:
    """cudaGetDevice / cudaSetDevice with one current device per thread (device 0 until a thread sets one)."""

    def __init__(self):
        self.local = threading.local()
        self.sets = []

    def cudaGetDevice(self):
        return 0, getattr(self.local, "device", 0)

    def cudaSetDevice(self, device):
        self.sets.append((threading.current_thread().name, device))
        self.local.device = device
        return (0,)


@pytest.fixture
def runtime(monkeypatch):
    fake = FakeRuntime()
    monkeypatch.setattr(cuda, "cudart", lambda: fake)
    return fake


def test_on_device_sets_and_restores_the_callers_device(runtime):
    with cuda.on_device(1):
        assert runtime.cudaGetDevice()[1] == 1
    assert runtime.cudaGetDevice()[1] == 0
    with cuda.on_device(0):   # already current: nothing set
        pass
    assert runtime.sets == [("MainThread", 1), ("MainThread", 0)]
    with pytest.raises(RuntimeError):
        with cuda.on_device(2):
            raise RuntimeError("inside")
    assert runtime.cudaGetDevice()[1] == 0   # restored on the way out of an error too


def _backend(device: int, seen: list, runtime: FakeRuntime) -> TensorRTBackend:
    """A backend as __init__ leaves it, with the GPU work replaced by a probe of the calling thread's device."""
    backend = object.__new__(TensorRTBackend)
    backend.device, backend.io, backend.path = device, "float", Path("m.plan")
    backend.sidecar = {"profile": {"image": {"min": [1, 3, 16, 16], "opt": [1, 3, 64, 64], "max": [4, 3, 256, 256]}}}
    backend.inverted_mask = False

    def batched(image, mask):
        seen.append((threading.current_thread().name, runtime.cudaGetDevice()[1]))
        return image
    backend._batched = batched
    return backend


def test_a_backend_called_from_another_thread_runs_on_its_own_gpu(runtime):
    seen = []
    backend = _backend(1, seen, runtime)
    image, mask = np.zeros((1, 3, 32, 32), np.float32), np.zeros((1, 1, 32, 32), np.float32)
    after = []

    def server_thread():   # a batcher thread: its current device is 0, as every new thread's is
        backend(image, mask)
        backend.io = "uint8"   # a uint8 engine's profile is NHWC
        backend.sidecar = {"profile": {"image": {"min": [1, 16, 16, 3], "opt": [1, 64, 64, 3],
                                                 "max": [4, 256, 256, 3]}}}
        backend.run_uint8(np.zeros((1, 32, 32, 3), np.uint8), np.zeros((1, 32, 32), bool))
        after.append(runtime.cudaGetDevice()[1])

    worker = threading.Thread(target=server_thread, name="batcher")
    worker.start()
    worker.join()
    print("device seen inside the calls:", seen, "set calls:", runtime.sets)
    assert seen == [("batcher", 1), ("batcher", 1)]
    assert after == [0]                                   # the thread's own device given back
    assert runtime.cudaGetDevice()[1] == 0                # the main thread was never touched
