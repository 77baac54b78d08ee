"""The TensorRT backend: every check that runs before TensorRT touches the GPU is tested here on an engine that
TensorRT-RTX builds on the CPU; running engines is tested where a GPU and TensorRT exist (marked gpu)."""
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from madf.common.errors import DeviceError, InputError, ModelError, PluginError
from madf.runtime import tensorrt as rt


@pytest.fixture
def copy(plan, tmp_path):
    """A private copy of the plan and its sidecar, to damage."""
    dst = tmp_path / plan.name
    shutil.copy(plan, dst)
    shutil.copy(str(plan) + ".json", str(dst) + ".json")
    return dst


def _edit_sidecar(path, **changes):
    side_path = path.with_name(path.name + ".json")
    side = json.loads(side_path.read_text())
    for key, value in changes.items():
        node = side
        *parents, leaf = key.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    side_path.write_text(json.dumps(side))


def test_missing_engine_and_missing_sidecar(tmp_path, copy):
    with pytest.raises(ModelError, match="no such engine; build one with madf-build"):
        rt.TensorRTBackend(tmp_path / "none.plan")
    copy.with_name(copy.name + ".json").unlink()
    with pytest.raises(ModelError, match="rebuild the engine with madf-build"):
        rt.TensorRTBackend(copy)


def test_truncated_and_corrupt_engines_are_named(copy):
    data = copy.read_bytes()
    copy.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="truncated"):
        rt.TensorRTBackend(copy)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(flipped))
    with pytest.raises(ModelError, match="corrupt or was modified"):
        rt.TensorRTBackend(copy)


def test_plugin_engine_without_the_plugin_library(copy, tmp_path):
    _edit_sidecar(copy, lowering="plugin")
    with pytest.raises(ModelError, match="--plugin-lib build/plugins/libmadf_plugins.so"):
        rt.TensorRTBackend(copy)
    with pytest.raises(PluginError, match="plugin library .* not found"):
        rt.TensorRTBackend(copy, plugin_libs=[tmp_path / "libmadf_plugins.so"])


def test_tensorrt_version_mismatch(copy):
    _edit_sidecar(copy, tensorrt__version="0.9.0")
    with pytest.raises(ModelError, match=r"built with tensorrt-rtx 0\.9\.0, this is .*--version-compatible"):
        rt.TensorRTBackend(copy)


def test_missing_runtime_module_names_the_package(copy):
    _edit_sidecar(copy, tensorrt__backend="tensorrt")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    with pytest.raises(DeviceError, match="pip install tensorrt-cu13"):
        rt.TensorRTBackend(copy)
    with pytest.raises(DeviceError, match="unknown TensorRT runtime"):
        rt.TensorRTBackend(copy, runtime="fast")


def test_no_gpu_is_one_clear_error(plan):
    from madf.runtime import cuda
    if cuda.device_count():
        pytest.skip("a GPU is present")
    with pytest.raises(DeviceError, match="no CUDA GPU visible"):
        rt.TensorRTBackend(plan)


def test_gpu_and_profile_checks(plan):
    side = json.loads(plan.with_name(plan.name + ".json").read_text())
    rt.check_gpu(plan, side, {"name": "NVIDIA L4", "compute_capability": "8.9"})
    with pytest.raises(ModelError, match=r"built for SM 8\.9, this GPU is SM 9\.0 \(NVIDIA H100\)"):
        rt.check_gpu(plan, side, {"name": "NVIDIA H100", "compute_capability": "9.0"})
    assert rt.profile_range(side["profile"]) == ((1, 16, 16), (2, 128, 128))
    rt.check_size(plan, side["profile"], 128, 16)
    with pytest.raises(InputError, match=r"160x64 .* outside tiny.plan's profile 16x16..128x128; rebuild it with "
                                         r"madf-build --max 2x160x128"):
        rt.check_size(plan, side["profile"], 160, 64)


def test_inpaint_cli_with_an_engine_is_one_line(plan, tmp_path):
    from PIL import Image

    from madf.cli.inpaint import main as inpaint_main
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(tmp_path / "m.png")
    result = CliRunner().invoke(inpaint_main, ["--engine", str(plan), "--image", str(tmp_path / "a.png"), "--mask",
                                               str(tmp_path / "m.png"), "--output", str(tmp_path / "out.png"),
                                               "--device", "cpu"])
    assert result.exit_code == 1 and "TensorRT runs on a GPU; use cuda or cuda:N" in result.output
    result = CliRunner().invoke(inpaint_main, ["--backend", "tensorrt", "--image", str(tmp_path / "a.png"),
                                               "--mask", str(tmp_path / "m.png"), "--output", str(tmp_path / "o.png")])
    assert result.exit_code == 2 and "--backend tensorrt needs --engine" in result.output
    assert not (tmp_path / "out.png").exists()


@pytest.mark.gpu
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_engine_matches_pytorch_on_gpu(exported, tmp_path, cuda_graph):
    # TensorRT proper (TensorRT-RTX engines target RTX GPUs, not every GPU): build here, run, compare.
    pytest.importorskip("tensorrt")
    from madf.cli.build import main as build_main
    from madf.inpaint.inpainter import TorchBackend
    from madf.runtime.parity import photo_feeds
    net, paths = exported
    out = tmp_path / "gpu.plan"
    result = CliRunner().invoke(build_main, ["--onnx", str(paths["native"]), "--output", str(out),
                                             "--backend", "tensorrt", "--max", "4x128x128"])
    assert result.exit_code == 0, result.output
    backend = rt.TensorRTBackend(out, cuda_graph=cuda_graph)
    feed = photo_feeds(64, count=1)[0]
    image, mask = np.repeat(feed["image"], 5, 0), np.repeat(feed["mask"], 5, 0)   # 5 > max batch 4: split
    ref = TorchBackend(net)(image, mask)
    for _ in range(2):   # the second call replays the graph
        got = backend(image, mask)
        err = np.abs(got - ref).max()
        print(f"TensorRT vs PyTorch (cuda_graph={cuda_graph}): max abs {err:.2e}, GPU {backend.last_gpu_ms:.2f} ms")
        assert got.shape == ref.shape and err < 1e-3


def test_engine_and_bench_paths_import_no_torch(plan, exported, tmp_path):
    import os
    import subprocess
    import sys
    block = "import sys; sys.modules['torch'] = None; "
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    from madf.inpaint import imaging
    imaging.write_png(tmp_path / "a.png", np.zeros((16, 16, 3), np.uint8))
    imaging.write_png(tmp_path / "m.png", np.full((16, 16), 255, np.uint8))
    inpaint = subprocess.run([sys.executable, "-c", block + "from madf.cli.inpaint import main; main(sys.argv[1:])",
                              "--engine", str(plan), "--image", str(tmp_path / "a.png"), "--mask",
                              str(tmp_path / "m.png"), "--output", str(tmp_path / "o.png")],
                             capture_output=True, text=True, env=env)
    from madf.runtime import cuda
    if not cuda.device_count():   # without a GPU it gets as far as the GPU check, torch-free
        assert inpaint.returncode == 1 and "no CUDA GPU visible" in inpaint.stderr, inpaint.stderr
    _, paths = exported
    bench = subprocess.run([sys.executable, "-c", block + "from madf.cli.bench import main; main(sys.argv[1:])",
                            "--model", str(paths["native"]), "--size", "32", "--runs", "2", "--warmup-s", "0"],
                           capture_output=True, text=True, env=env)
    assert bench.returncode == 0 and "onnxruntime" in bench.stdout, bench.stderr


def test_parity_needs_two_models_and_reaches_the_engine(plan, tmp_path):
    from madf.cli.parity import main as parity_main
    from madf.model.checkpoint import save_checkpoint
    from madf.model.network import build_model
    from madf.runtime import cuda

    from conftest import TINY
    one = CliRunner().invoke(parity_main, ["--engine", str(plan)])
    assert one.exit_code == 2 and "give two of --ckpt, --model, --engine" in one.output
    if cuda.device_count():
        pytest.skip("a GPU is present: the GPU test compares for real")
    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(build_model(TINY, seed=0), ckpt)
    both = CliRunner().invoke(parity_main, ["--ckpt", str(ckpt), "--engine", str(plan), "--size", "64"])
    assert both.exit_code == 1 and "no CUDA GPU visible" in both.output and "Traceback" not in both.output
