import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from madf.model.config import ModelConfig  # noqa: E402
from madf.model.network import build_model  # noqa: E402

# Small but complete: every level kind (7x7, 5x5, 3x3 dynamic filters), both refinement decoders.
TINY = ModelConfig(levels=4, width=0.125, refinement_decoders=2)


def pytest_collection_modifyitems(config, items):
    """GPU tests skip cleanly (one reason, not an error) where torch sees no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def tiny_net():
    return build_model(TINY, seed=0)


def official_state_dict(net, seed=1):
    """The net's weights as the official code saves them: 'module.model.' prefix, the dead encoder BatchNorms
    (given values that would change outputs if applied) and the loss's VGG under 'module.extractor.'."""
    gen = torch.Generator().manual_seed(seed)
    sd = {f"module.model.{k}": v.clone() for k, v in net.state_dict().items()}
    for level in range(1, net.config.levels + 1):
        c = net.config.enc_channels(level)
        prefix = f"module.model.enc_conv_{level}.bn."
        sd[prefix + "weight"] = torch.rand(c, generator=gen) + 2
        sd[prefix + "bias"] = torch.rand(c, generator=gen) + 1
        sd[prefix + "running_mean"] = torch.rand(c, generator=gen)
        sd[prefix + "running_var"] = torch.rand(c, generator=gen) + 0.5
        sd[prefix + "num_batches_tracked"] = torch.tensor(7)
    sd["module.extractor.enc_1.0.weight"] = torch.randn(64, 3, 3, 3, generator=gen)
    sd["module.extractor.enc_1.0.bias"] = torch.randn(64, generator=gen)
    return sd


def write_official_checkpoint(net, path, seed=1, optimizer_state=True):
    """torch.save of {'n_iter', 'model', 'gen_optimizer'} as Pytorch-MADF's train.py writes it (Adam's moments
    make the file three times the model; ``optimizer_state=False`` keeps only its hyper-parameters)."""
    params = list(net.parameters())
    opt = torch.optim.Adam(params, lr=2e-4)
    if optimizer_state:
        for p in params:
            p.grad = torch.zeros_like(p)
        opt.step()
        for p in params:
            p.grad = None
    torch.save({"n_iter": 1000, "model": official_state_dict(net, seed), "gen_optimizer": opt.state_dict()}, path)
    return path


def random_pair(h, w, seed=0, hole_fraction=0.3):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    hole = rng.random((h, w)) < hole_fraction
    return image, hole


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """TINY exported once per session in the lowerings and precisions the tests share: {name: (net, path)}."""
    pytest.importorskip("onnx")
    from madf.export.onnx import ExportOptions, export_onnx
    net = build_model(TINY, seed=0)
    folder = tmp_path_factory.mktemp("onnx")
    variants = {"native": ExportOptions(), "fp16": ExportOptions(fp16=True),
                "plugin": ExportOptions(lowering="plugin")}
    out = {}
    for name, options in variants.items():
        export_onnx(net, folder / f"{name}.onnx", options)
        out[name] = folder / f"{name}.onnx"
    return net, out


@pytest.fixture(scope="session")
def plan(exported, tmp_path_factory):
    """TINY's native export built by TensorRT-RTX (or TensorRT) on this machine, with its sidecar."""
    from click.testing import CliRunner

    from madf.cli.build import main as build_main
    from madf.common.errors import DeviceError
    from madf.engines.build import load_tensorrt
    try:
        load_tensorrt("auto")
    except DeviceError as exc:
        pytest.skip(str(exc))
    _, paths = exported
    out = tmp_path_factory.mktemp("plan") / "tiny.plan"
    result = CliRunner().invoke(build_main, ["--onnx", str(paths["native"]), "--output", str(out),
                                             "--min", "1x16x16", "--opt", "1x64x64", "--max", "2x128x128"])
    assert result.exit_code == 0, result.output
    return out


# Every Ray cluster these tests start (ray.init here, and the CLIs' clusters in subprocesses, which inherit the
# variable) keeps its sockets and logs under this session's own folder: its processes are told from any other Ray
# cluster on the machine (another test session, a user's) by that path in their command lines.
RAY_TMPDIR = os.environ.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="madf-ray-", dir="/tmp"))


def raylets() -> int:
    """How many raylet processes of this session's Ray clusters run (read from /proc: no pgrep or psutil needed);
    other clusters on the machine are not counted."""
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
                count += args[0].rsplit(b"/", 1)[-1] == b"raylet" and any(RAY_TMPDIR.encode() in a for a in args)
            except OSError:   # the process ended while we looked
                pass
    return count


@pytest.fixture(scope="module")
def rtx():
    """TensorRT-RTX's module: it builds engines for a compute capability with no GPU present (skips elsewhere)."""
    from madf.engines.build import load_tensorrt
    try:
        trt, name = load_tensorrt("auto")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no TensorRT / TensorRT-RTX Python module: {exc}")
    if name != "tensorrt-rtx":
        pytest.skip("these builds target a compute capability without a GPU: TensorRT-RTX")
    return trt
