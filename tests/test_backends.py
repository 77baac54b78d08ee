"""One Backend interface (madf.inpaint.backend.Backend) and one way to open a backend without the CLI
(madf.backends.spec): every backend provides the Protocol, a spec picks its backend from the file and pickles, the
Inpainter opens ONNX files itself, and a profile's batch range is handled once (madf.runtime.batching)."""
import pickle

import numpy as np
import pytest

from madf.backends.spec import BackendSpec, check_backend_file, open_backend
from madf.common.errors import ModelError
from madf.inpaint.backend import Backend
from madf.inpaint.inpainter import Inpainter, TorchBackend
from madf.model.network import build_model
from madf.runtime.batching import in_profile_batches

from conftest import TINY, random_pair

INFO_KEYS = {"backend", "precision", "io", "multiple", "max_side", "model"}


def test_torch_and_onnxruntime_backends_provide_the_protocol(exported):
    from madf.runtime.onnxruntime import OnnxRuntimeBackend
    _, paths = exported
    for backend in (TorchBackend(build_model(TINY, seed=0)), OnnxRuntimeBackend(paths["native"])):
        assert isinstance(backend, Backend), type(backend)
        info = backend.info()
        assert set(info) == INFO_KEYS and info["multiple"] == 16 and info["io"] == "float", info
        assert info["precision"] == "fp32" and info["model"]["levels"] == 4
        assert backend.gpu_memory_mb() is None and backend.last_gpu_ms is None


def test_the_tensorrt_backend_class_has_every_method_of_the_protocol():
    """Its instances need a GPU; the methods and properties are checked on the class."""
    from madf.runtime.tensorrt import TensorRTBackend
    for member in ("config", "precision", "describe", "info", "gpu_memory_mb", "__call__", "run_uint8"):
        assert hasattr(TensorRTBackend, member), member


def test_a_spec_picks_its_backend_from_the_file_and_pickles(tmp_path):
    assert BackendSpec("m.onnx").backend == "onnxruntime"
    assert BackendSpec("m.plan").backend == "tensorrt" and BackendSpec("m.plan").gpus == 1.0
    assert BackendSpec("places2.pth").backend == "torch" and BackendSpec("places2.pth").gpus == 0.0
    assert BackendSpec("m.onnx", device="cuda:1").gpus == 1.0
    spec = BackendSpec("m.plan", plugin_libs=["lib.so"])
    assert pickle.loads(pickle.dumps(spec)) == spec and spec.inputs[1].name == "lib.so"
    with pytest.raises(ModelError, match="which backend runs a .bin file"):
        BackendSpec("weights.bin")
    with pytest.raises(ModelError, match="unknown backend 'tflite'"):
        BackendSpec("m.onnx", backend="tflite")
    with pytest.raises(ModelError, match="no such ONNX file"):
        check_backend_file(BackendSpec(tmp_path / "missing.onnx"))


def test_the_inpainter_opens_onnx_files_and_matches_the_spec_path(exported):
    _, paths = exported
    image, hole = random_pair(40, 56, seed=3)
    from_onnx = Inpainter.from_onnx(paths["native"])
    opened = Inpainter(open_backend(BackendSpec(paths["native"])))
    out = from_onnx(image, hole)
    assert np.array_equal(out, opened(image, hole)) and np.array_equal(out[~hole], image[~hole])
    assert from_onnx.backend.describe().startswith("onnxruntime")


def test_profile_batches_split_and_pad_once():
    seen = []

    def run(image, mask):
        seen.append(image.shape[0])
        return image * 2
    image = np.arange(7, dtype=np.float32).reshape(7, 1, 1, 1)
    out = in_profile_batches(run, image, image, min_batch=2, max_batch=3)
    assert seen == [3, 3, 2] and np.array_equal(out, image * 2)   # the last one (1 item) padded to 2, cut back
    seen.clear()
    out = in_profile_batches(run, image[:1], image[:1], min_batch=4, max_batch=4)
    assert seen == [4] and out.shape[0] == 1
