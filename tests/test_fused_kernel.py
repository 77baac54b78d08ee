"""The fused CUDA kernel (engines/plugins/dynamicFilter) against the float64 CPU reference; GPU only.

Tolerances (relative to the output's largest magnitude): FP32 1e-5 on both algorithms; FP16 2e-3 (inputs rounded to
FP16 first, so the reference sees the same values; the kernel accumulates in FP32 and rounds the output once).
"""
import pytest
import torch

from madf.config import OFFICIAL
from madf.dynamic_filter import dynamic_filter_unfold

pytestmark = pytest.mark.gpu

OFFICIAL_SHAPES = sorted({(s["cin"], s["cout"], s["kernel"], s["padding"]) for s in OFFICIAL.level_shapes()})
SIZES = [(1, 32, 32), (8, 16, 16), (2, 13, 9), (3, 7, 12), (1, 1, 1)]   # batch 1 and 8, odd, mixed, one pixel
TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3}


@pytest.fixture(scope="module")
def kernel():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from madf.engines import kernel
    kernel.load_extension()
    return kernel


def _case(cin, cout, k, pad, n, h, w, dtype, seed=0, cm=16):
    g = torch.Generator().manual_seed(seed)
    ho, wo = (h + 2 * pad - k) // 2 + 1, (w + 2 * pad - k) // 2 + 1
    x = torch.randn(n, cin, h, w, generator=g)
    m = torch.relu(torch.randn(n, cm, ho, wo, generator=g))
    weight = torch.randn(cin * k * k * cout, cm, 1, 1, generator=g) * 0.1
    bias = torch.randn(cin * k * k * cout, generator=g) * 0.1
    inputs = [t.to(dtype) for t in (x, m, weight, bias)]          # the values the kernel sees
    ref = dynamic_filter_unfold(*[t.double() for t in inputs], k, 2, pad)
    return [t.cuda() for t in inputs], ref


def _relative_error(out, ref):
    err = (out.double().cpu() - ref).abs()
    return err.max().item() / max(ref.abs().max().item(), 1e-12), err.mean().item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("algo", ["simt", "tensor_core"])
@pytest.mark.parametrize("shape", OFFICIAL_SHAPES, ids=lambda s: f"cin{s[0]}_cout{s[1]}_k{s[2]}")
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"n{s[0]}_{s[1]}x{s[2]}")
def test_fused_matches_reference(kernel, dtype, algo, shape, size):
    cin, cout, k, pad = shape
    inputs, ref = _case(cin, cout, k, pad, *size, dtype)
    out = kernel.dynamic_filter_fused(*inputs, k, 2, pad, algo=algo)
    ran = kernel.selected_algorithm(inputs[0], inputs[1], inputs[2], k, 2, pad, algo=algo)
    rel, mean = _relative_error(out, ref)
    print(f"{dtype} {algo}->{ran} cin={cin} cout={cout} k={k} size={size}: max rel {rel:.2e}, mean abs {mean:.2e}")
    assert out.dtype == dtype and out.shape == ref.shape
    assert ran == ("tensor_core" if (algo == "tensor_core" and dtype == torch.float16) else "simt")
    assert rel < TOLERANCE[dtype]


@pytest.mark.parametrize("cm", [1, 2, 16, 24])
def test_fused_any_mask_channels_and_partial_tiles(kernel, cm):
    # Cm > 16 has no tensor-core path (one accumulator per c): auto must fall back to SIMT and stay right.
    inputs, ref = _case(3, 5, 3, 1, 2, 11, 17, torch.float16, cm=cm)
    out = kernel.dynamic_filter_fused(*inputs, 3, 2, 1)
    rel, _ = _relative_error(out, ref)
    expect = "simt" if cm > 16 else "tensor_core"
    assert kernel.selected_algorithm(inputs[0], inputs[1], inputs[2], 3, 2, 1) == expect
    assert rel < TOLERANCE[torch.float16]


def test_fused_errors_are_clear(kernel):
    inputs, _ = _case(4, 16, 7, 3, 1, 16, 16, torch.float32)
    with pytest.raises(RuntimeError, match="do not match the output grid"):
        kernel.dynamic_filter_fused(inputs[0], inputs[1][:, :, :4], *inputs[2:], 7, 2, 3)
    with pytest.raises(RuntimeError, match="CUDA tensors"):
        kernel.dynamic_filter_fused(inputs[0].cpu(), *inputs[1:], 7, 2, 3)
    with pytest.raises(ValueError, match="unknown fused-kernel algorithm"):
        kernel.dynamic_filter_fused(*inputs, 7, 2, 3, algo="fast")


def test_whole_model_with_the_fused_kernel(kernel):
    from madf.config import ModelConfig
    from madf.model import build_model
    kernel.register()
    net = build_model(ModelConfig(levels=5, width=0.25, refinement_decoders=2), seed=0).cuda().eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 96, generator=g).cuda()
    mask = (torch.rand(2, 1, 64, 96, generator=g) > 0.7).float().expand(-1, 3, -1, -1).cuda()
    with torch.no_grad():
        net.dynamic_filter("rewrite")
        ref = net(x * (1 - mask), 1 - mask)[-1]
        net.dynamic_filter("fused")
        out = net(x * (1 - mask), 1 - mask)[-1]
    err = (out - ref).abs().max().item()
    print(f"whole model fused vs rewrite (fp32): max abs {err:.2e}")
    assert err < 1e-4
