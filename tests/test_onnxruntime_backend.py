import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from madf.common.errors import DeviceError, InputError, ModelError
from madf.export.onnx import ExportOptions, export_onnx
from madf.inpaint import imaging
from madf.inpaint.inpainter import Inpainter, TorchBackend
from madf.model.network import build_model
from madf.runtime.onnxruntime import OnnxRuntimeBackend

from conftest import TINY, random_pair


def test_same_results_as_pytorch_through_the_image_api(exported):
    net, paths = exported
    ort_inpainter = Inpainter(OnnxRuntimeBackend(paths["native"]), batch_size=2)
    torch_inpainter = Inpainter(TorchBackend(net), batch_size=2)
    pairs = [random_pair(21, 37, seed=i) for i in range(3)]
    for (image, hole), a, b in zip(pairs, ort_inpainter.inpaint_many(pairs), torch_inpainter.inpaint_many(pairs)):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
        assert np.array_equal(a[~hole], image[~hole])


def test_fixed_size_and_batch(tmp_path):
    net = build_model(TINY, seed=0)
    export_onnx(net, tmp_path / "fixed.onnx", ExportOptions(batch=2, height=32, width=32))
    backend = OnnxRuntimeBackend(tmp_path / "fixed.onnx")
    assert backend.fixed_batch == 2 and backend.fixed_size == (32, 32)
    pairs = [random_pair(30, 32, seed=i) for i in range(3)]          # 3 images through a batch-2 model
    outs = list(Inpainter(backend, batch_size=3).inpaint_many(pairs))
    refs = list(Inpainter(TorchBackend(net)).inpaint_many(pairs))
    assert all(np.abs(a.astype(int) - b.astype(int)).max() <= 1 for a, b in zip(outs, refs))
    with pytest.raises(InputError, match="exported for 32x32 .* pads to 48x48"):
        Inpainter(backend)(*random_pair(40, 40))


def test_clear_errors_for_unusable_files(exported, tmp_path):
    _, paths = exported
    with pytest.raises(ModelError, match="custom op .* --dynconv native"):
        OnnxRuntimeBackend(paths["plugin"])
    (tmp_path / "bad.onnx").write_bytes(b"definitely not protobuf")
    with pytest.raises(ModelError, match="onnxruntime cannot load it"):
        OnnxRuntimeBackend(tmp_path / "bad.onnx")
    with pytest.raises(ModelError, match="no such ONNX file"):
        OnnxRuntimeBackend(tmp_path / "missing.onnx")
    export_onnx(build_model(TINY, seed=0), tmp_path / "raw.onnx", ExportOptions(raw_outputs=True))
    with pytest.raises(ModelError, match="--raw-outputs"):
        OnnxRuntimeBackend(tmp_path / "raw.onnx")
    with pytest.raises(DeviceError, match="no CUDAExecutionProvider|onnxruntime-gpu"):
        OnnxRuntimeBackend(paths["native"], device="cuda")


def test_madf_inpaint_onnxruntime_runs_without_torch(exported, tmp_path):
    _, paths = exported
    image, hole = random_pair(20, 30, seed=5)
    imaging.write_png(tmp_path / "img.png", image)
    imaging.write_png(tmp_path / "mask.png", (hole * 255).astype(np.uint8))
    code = ("import sys; sys.modules['torch'] = None; from madf.cli.inpaint import main; "
            "main(sys.argv[1:])")
    args = ["--model", str(paths["native"]), "--image", str(tmp_path / "img.png"), "--mask",
            str(tmp_path / "mask.png"), "--output", str(tmp_path / "out.png")]
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr
    out = imaging.read_image(tmp_path / "out.png")
    assert out.shape == image.shape and np.array_equal(out[~hole], image[~hole])
    # and the same torch-free process really cannot import torch
    assert subprocess.run([sys.executable, "-c", "import sys; sys.modules['torch'] = None; import torch"],
                          capture_output=True).returncode != 0


def test_backend_needs_its_file(exported, tmp_path):
    from madf.cli.inpaint import main
    result = CliRunner().invoke(main, ["--backend", "onnxruntime", "--image", "a.png", "--mask", "m.png",
                                       "--output", "o.png"])
    assert result.exit_code == 2 and "--backend onnxruntime needs --model" in result.output
    result = CliRunner().invoke(main, ["--image", "a.png", "--mask", "m.png", "--output", "o.png"])
    assert result.exit_code == 2 and "--backend torch needs --ckpt" in result.output


@pytest.mark.parametrize("env, explicit, expected", [("1", None, 1), ("3", 2, 2), ("0", None, 0), ("x", None, 0),
                                                     (None, None, 0)])
def test_one_thread_setting_for_every_backend(exported, monkeypatch, env, explicit, expected):
    """OMP_NUM_THREADS (what a Ray actor's --threads-per-actor sets, and torch reads) limits ONNX Runtime too, which
    ignores it itself; an explicit threads= wins; unset or not a positive int: ONNX Runtime's default (0)."""
    if env is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", env)
    backend = OnnxRuntimeBackend(exported[1]["native"], threads=explicit)
    assert backend.session.get_session_options().intra_op_num_threads == expected
