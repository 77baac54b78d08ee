"""FP16 / BF16 must never silently corrupt: normalization statistics past FP16's range (the bundled model has three)
are folded in FP32 before the cast, a stored tensor that cannot fit is refused by name, and `madf-export --fp16`
verifies itself against FP32 and leaves no file when it does not match."""
import numpy as np
import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

from madf.common.errors import ModelError
from madf.model.checkpoint import save_checkpoint
from madf.model.network import build_model
from madf.model.pipeline import InpaintModel
from madf.model.precision import FoldedNorm, cast_network, fold_norms

from conftest import TINY


def _huge_variance_net():
    """TINY with every BatchNorm's running statistics scaled past FP16 (var 1e6, as a trained net can have)."""
    net = build_model(TINY, seed=0).eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.mul_(1e6)
            m.running_mean.mul_(1e3)
    return net


def _psnr(a, b):
    return float(10 * np.log10(1.0 / max(float(((a - b) ** 2).mean()), 1e-20)))


def _contract_outputs(net, dtype):
    torch.manual_seed(0)
    image = torch.rand(2, 3, 48, 64)
    mask = (torch.rand(2, 1, 48, 64) > 0.6).float()
    with torch.no_grad():
        return InpaintModel(net.to(dtype) if dtype == torch.float32 else net)(image, mask)


def test_folded_norm_is_the_batch_norm():
    bn = nn.BatchNorm2d(5).eval()
    bn.running_mean.uniform_(-300, 300)
    bn.running_var.uniform_(1e5, 1e6)
    bn.weight.data.uniform_(0.5, 2)
    bn.bias.data.uniform_(-1, 1)
    x = torch.randn(2, 5, 7, 9) * 500
    err = float((FoldedNorm(bn)(x) - bn(x)).abs().max())
    print(f"folded vs BatchNorm2d: max abs {err:.2e}")
    assert err < 1e-5


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cast_keeps_a_net_whose_statistics_overflow_fp16(dtype):
    net = _huge_variance_net()
    reference = _contract_outputs(net, torch.float32)
    naive = _contract_outputs(_huge_variance_net().to(dtype), dtype)
    cast = cast_network(_huge_variance_net(), dtype)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in cast.modules())
    ours = _contract_outputs(cast, dtype)
    good, bad = _psnr(ours, reference), _psnr(naive, reference)
    print(f"{dtype}: folded {good:.1f} dB, plain cast {bad:.1f} dB against FP32")
    assert float((ours - reference).abs().max()) < 5e-2 and good > 40
    if dtype == torch.float16:
        assert bad < good - 10   # the plain cast is what the fold fixes (inf variances)


def test_a_tensor_past_fp16_is_refused_by_name():
    net = build_model(TINY, seed=0).eval()
    with torch.no_grad():
        net.filter_gen_1.conv[0].weight[0, 0, 0, 0] = 1e5
    with pytest.raises(ModelError, match=r"filter_gen_1\.conv\.0\.weight holds 1e\+05.*run this model in FP32"):
        cast_network(net, torch.float16)
    assert cast_network(build_model(TINY, seed=0).eval(), torch.float32) is not None


def test_fold_needs_eval_mode():
    with pytest.raises(ModelError, match="eval-mode"):
        fold_norms(build_model(TINY, seed=0).train())


@pytest.fixture(scope="module")
def huge_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("precision") / "huge.safetensors"
    save_checkpoint(_huge_variance_net(), path)
    return path


def test_fp16_export_verifies_itself(huge_ckpt, tmp_path):
    pytest.importorskip("onnxruntime")
    from madf.cli.export import main as export_main
    out = tmp_path / "m16.onnx"
    result = CliRunner().invoke(export_main, ["--ckpt", str(huge_ckpt), "--output", str(out), "--fp16",
                                              "--check-size", "64"])
    print(result.output)
    assert result.exit_code == 0, result.output
    assert "verifying the FP16 model against FP32" in result.output and "FAIL" not in result.output
    assert out.is_file()


def test_the_bundled_model_in_fp16_matches_fp32(tmp_path):
    """The bundled model's three running variances past 65504 made its FP16 path fail at 0.55 (32.6 dB) before the
    fold; PyTorch FP16 and the verified FP16 ONNX file must now be within FP16's tolerance of FP32."""
    pytest.importorskip("onnxruntime")
    from madf.cli.export import main as export_main
    from madf.cli.parity import main as parity_main
    from madf.weights import BUNDLED
    torch_fp16 = CliRunner().invoke(parity_main, ["--ckpt", str(BUNDLED), "--precision", "fp16", "--size", "128"])
    print(torch_fp16.output)
    assert torch_fp16.exit_code == 0 and "FAIL" not in torch_fp16.output, torch_fp16.output
    onnx_fp16 = CliRunner().invoke(export_main, ["--ckpt", str(BUNDLED), "--output", str(tmp_path / "b16.onnx"),
                                                 "--fp16", "--check-size", "128"])
    print(onnx_fp16.output)
    assert onnx_fp16.exit_code == 0 and "FAIL" not in onnx_fp16.output, onnx_fp16.output


def test_a_failed_verification_leaves_no_file(huge_ckpt, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    import madf.cli.export as export_cli
    monkeypatch.setattr(export_cli, "parity_report", lambda *a, **k: False)
    out = tmp_path / "m16.onnx"
    result = CliRunner().invoke(export_cli.main, ["--ckpt", str(huge_ckpt), "--output", str(out), "--fp16",
                                                  "--check-size", "64"])
    assert result.exit_code == 1 and "nothing was written" in result.output, result.output
    assert list(tmp_path.iterdir()) == []
    skipped = CliRunner().invoke(export_cli.main, ["--ckpt", str(huge_ckpt), "--output", str(out), "--fp16",
                                                   "--no-verify"])
    assert skipped.exit_code == 0 and out.is_file(), skipped.output
