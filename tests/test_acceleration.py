"""The PyTorch backend's fast-inference options (madf.model.acceleration): precision, channels_last, torch.compile and
CUDA
graphs, through the one inference path the Inpainter and the CLIs share. On the CPU: bf16, fp16, channels_last and
torch.compile against the eager FP32 model (numbers printed); CUDA-only options are GPU tests."""
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from madf.common.errors import DeviceError, InputError
from madf.inpaint import imaging
from madf.inpaint.inpainter import Inpainter, TorchBackend
from madf.model.acceleration import TorchOptions
from madf.model.checkpoint import save_checkpoint
from madf.model.network import build_model
from madf.runtime.parity import TOLERANCE

from conftest import TINY, random_pair


def _contract(n=2, size=32, seed=0):
    images, holes = zip(*[random_pair(size, size, seed=seed + i) for i in range(n)])
    return imaging.to_contract(list(images), list(holes), TINY.multiple)


def _compare(backend, reference, name):
    image, mask = _contract()
    out, ref = backend(image, mask), reference(image, mask)
    stats = imaging.compare(ref, out)
    print(f"{name} vs eager fp32: max abs {stats['max_abs']:.2e}, mean abs {stats['mean_abs']:.2e}, "
          f"PSNR {stats['psnr']:.1f} dB")
    known = mask < 0.5
    assert np.array_equal(np.broadcast_to(known, out.shape) * out, np.broadcast_to(known, out.shape) * image), \
        "known pixels must pass through exactly"
    return stats


@pytest.fixture(scope="module")
def net():
    return build_model(TINY, seed=0)


@pytest.fixture(scope="module")
def eager(net):
    return TorchBackend(net, "cpu", precision="fp32")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_on_cpu_is_within_its_tolerance(net, eager, precision):
    backend = TorchBackend(net, "cpu", precision=precision)
    wanted = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert backend.model.net.att_conv_1.conv[0].weight.dtype == wanted
    stats = _compare(backend, eager, precision)
    assert 0 < stats["max_abs"] < TOLERANCE[precision]
    assert backend.precision == precision


def test_channels_last_on_cpu_matches_fp32(net, eager):
    backend = TorchBackend(net, "cpu", channels_last=True)
    assert backend.model.net.att_conv_1.conv[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert _compare(backend, eager, "channels_last")["max_abs"] < 1e-5


@pytest.mark.slow
def test_torch_compile_on_cpu_matches_fp32(net, eager, caplog):
    with caplog.at_level("INFO", logger="madf"):
        backend = TorchBackend(net, "cpu", compile="default")
    assert "the first call for each input shape compiles" in caplog.text
    assert _compare(backend, eager, "torch.compile default")["max_abs"] < 1e-4


def test_the_callers_model_is_left_as_it_was(net):
    TorchBackend(net, "cpu", precision="bf16", channels_last=True)
    weight = net.att_conv_1.conv[0].weight
    assert weight.dtype == torch.float32 and weight.is_contiguous()
    assert net.enc_conv_1.frozen_weight is None


def test_cuda_graph_with_reduce_overhead_is_met_by_its_graphs():
    resolved = TorchOptions(cuda_graph=True, compile="reduce-overhead").resolve(torch.device("cuda"))
    assert resolved.cuda_graph is False and "compile reduce-overhead (CUDA graphs)" in resolved.describe()


def test_defaults_per_device():
    cpu = TorchOptions().resolve(torch.device("cpu"))
    cuda = TorchOptions().resolve(torch.device("cuda"))   # a device object; no GPU needed to resolve
    assert (cpu.precision, cpu.channels_last) == ("fp32", False)
    assert (cuda.precision, cuda.channels_last) == ("fp16", True)
    assert TorchOptions(precision="bf16", channels_last=False).resolve(torch.device("cuda")).describe() == "bf16"


@pytest.mark.parametrize("options, device, error, match", [
    ({"precision": "tf32"}, "cpu", DeviceError, "tf32 is a CUDA tensor-core mode"),
    ({"cuda_graph": True}, "cpu", DeviceError, "CUDA graphs need --device cuda"),
    ({"compile": "fast"}, "cpu", InputError, "choose one of off, default"),
    ({"precision": "int8"}, "cpu", InputError, "choose one of fp32, tf32, fp16, bf16"),
])
def test_impossible_combinations_are_one_clear_error(options, device, error, match):
    with pytest.raises(error, match=match):
        TorchOptions(**options).resolve(torch.device(device))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, net):
    path = tmp_path_factory.mktemp("accel") / "tiny.safetensors"
    save_checkpoint(net, path)
    return path


def test_cli_options_reach_the_backend(ckpt, tmp_path):
    from madf.cli.bench import main as bench
    from madf.cli.inpaint import main as inpaint
    from madf.cli.parity import main as parity
    image, hole = random_pair(32, 48, seed=2)
    imaging.write_png(tmp_path / "i.png", image)
    imaging.write_png(tmp_path / "m.png", (hole * 255).astype(np.uint8))
    result = CliRunner().invoke(inpaint, ["--ckpt", str(ckpt), "--image", str(tmp_path / "i.png"), "--mask",
                                          str(tmp_path / "m.png"), "--output", str(tmp_path / "o.png"),
                                          "--precision", "bf16", "--channels-last"])
    assert result.exit_code == 0, result.output
    assert "bf16, channels_last" in result.output
    assert np.array_equal(imaging.read_image(tmp_path / "o.png")[~hole], image[~hole])
    result = CliRunner().invoke(bench, ["--ckpt", str(ckpt), "--precision", "fp16", "--runs", "2", "--size", "32",
                                        "--warmup-s", "0", "--warmup-runs", "1"])
    assert result.exit_code == 0 and "cpu, fp16, rewrite filter" in result.output, result.output
    # madf-parity with only --ckpt: the options under test against the FP32 eager model, at the precision's tolerance
    result = CliRunner().invoke(parity, ["--ckpt", str(ckpt), "--precision", "bf16", "--size", "32", "--photos", "1"])
    assert result.exit_code == 0, result.output
    assert "tolerance max abs <= 0.05 (bf16)" in result.output and "torch bf16" in result.output
    result = CliRunner().invoke(parity, ["--ckpt", str(ckpt)])
    assert result.exit_code == 2 and "or --ckpt with --precision" in result.output
    result = CliRunner().invoke(inpaint, ["--ckpt", str(ckpt), "--image", str(tmp_path / "i.png"), "--mask",
                                          str(tmp_path / "m.png"), "--output", str(tmp_path / "o2.png"),
                                          "--precision", "tf32"])
    assert result.exit_code == 1 and result.output.strip().splitlines() == [
        "Error: precision tf32 is a CUDA tensor-core mode; on the CPU use fp32 (or bf16)"]


# ---- GPU ----------------------------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "bf16", "tf32"])
def test_cuda_precisions_within_tolerance(net, precision):
    reference = TorchBackend(net, "cuda", precision="fp32", channels_last=False)
    backend = TorchBackend(net, "cuda", precision=precision)
    stats = _compare(backend, reference, f"cuda {precision}")
    assert stats["max_abs"] < TOLERANCE[precision]


@pytest.mark.gpu
def test_cuda_graphs_replay_per_shape_within_a_bounded_cache(net):
    eager = TorchBackend(net, "cuda", precision="fp16")
    graphs = TorchBackend(net, "cuda", options=TorchOptions(precision="fp16", cuda_graph=True, graph_cache=2))
    for size in (32, 48, 64, 32):
        image, mask = _contract(size=size)
        out, ref = graphs(image, mask), eager(image, mask)
        assert np.abs(out - ref).max() < 1e-3, size
    cache = graphs.run
    assert len(cache.graphs) == 2 and cache.captures == 4   # 32 was dropped for 64, then captured again
    image, mask = _contract(size=32, seed=9)                 # new data, same shape: a replay, not a capture
    assert np.abs(graphs(image, mask) - eager(image, mask)).max() < 1e-3 and cache.captures == 4


@pytest.mark.gpu
@pytest.mark.slow
def test_compile_reduce_overhead_on_cuda(net):
    reference = TorchBackend(net, "cuda", precision="fp16")
    backend = TorchBackend(net, "cuda", precision="fp16", compile="reduce-overhead")
    assert _compare(backend, reference, "compile reduce-overhead")["max_abs"] < 1e-2


def test_inpainter_from_checkpoint_takes_the_options(ckpt):
    inpainter = Inpainter.from_checkpoint(ckpt, precision="bf16")
    image, hole = random_pair(20, 28, seed=4)
    out = inpainter(image, hole)
    assert out.shape == image.shape and np.array_equal(out[~hole], image[~hole])
    assert "bf16" in inpainter.backend.describe()
