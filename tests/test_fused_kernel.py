"""The fused CUDA kernel (engines/plugins/dynamicFilter) against the float64 CPU reference; GPU only.
Cases and tolerances: dynamic_filter_cases.py (the CPU emulation, test_kernel_emulation.py, runs the same)."""
import pytest
import torch

from dynamic_filter_cases import (OFFICIAL_SHAPES, SIZES, STRIDE, TOLERANCE, make_case, relative_error, shape_id,
                                  size_id)

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def kernel():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from madf.engines import kernel
    kernel.load_extension()
    return kernel


def _case(*args, **kwargs):
    inputs, ref = make_case(*args, **kwargs)
    return [t.cuda() for t in inputs], ref


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("algo", ["simt", "tensor_core"])
@pytest.mark.parametrize("shape", OFFICIAL_SHAPES, ids=shape_id)
@pytest.mark.parametrize("size", SIZES, ids=size_id)
def test_fused_matches_reference(kernel, dtype, algo, shape, size):
    cin, cout, k, pad = shape
    inputs, ref = _case(cin, cout, k, pad, *size, dtype)
    out = kernel.dynamic_filter_fused(*inputs, k, STRIDE, pad, algo=algo)
    ran = kernel.selected_algorithm(inputs[0], inputs[1], inputs[2], k, STRIDE, pad, algo=algo)
    rel, mean = relative_error(out, ref)
    print(f"{dtype} {algo}->{ran} cin={cin} cout={cout} k={k} size={size}: max rel {rel:.2e}, mean abs {mean:.2e}")
    assert out.dtype == dtype and out.shape == ref.shape
    assert ran == ("tensor_core" if (algo == "tensor_core" and dtype == torch.float16) else "simt")
    assert rel < TOLERANCE[dtype]


@pytest.mark.parametrize("cm", [1, 2, 16, 24])
def test_fused_any_mask_channels_and_partial_tiles(kernel, cm):
    # Cm > 16 has no tensor-core path (one accumulator per c): auto must fall back to SIMT and stay right.
    inputs, ref = _case(3, 5, 3, 1, 2, 11, 17, torch.float16, cm=cm)
    out = kernel.dynamic_filter_fused(*inputs, 3, STRIDE, 1)
    rel, _ = relative_error(out, ref)
    expect = "simt" if cm > 16 else "tensor_core"
    assert kernel.selected_algorithm(inputs[0], inputs[1], inputs[2], 3, STRIDE, 1) == expect
    assert rel < TOLERANCE[torch.float16]


def test_fused_errors_are_clear(kernel):
    inputs, _ = _case(4, 16, 7, 3, 1, 16, 16, torch.float32)
    with pytest.raises(RuntimeError, match="do not match the output grid"):
        kernel.dynamic_filter_fused(inputs[0], inputs[1][:, :, :4], *inputs[2:], 7, STRIDE, 3)
    with pytest.raises(RuntimeError, match="CUDA tensors"):
        kernel.dynamic_filter_fused(inputs[0].cpu(), *inputs[1:], 7, STRIDE, 3)
    with pytest.raises(ValueError, match="unknown fused-kernel algorithm"):
        kernel.dynamic_filter_fused(*inputs, 7, STRIDE, 3, algo="fast")


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
