import pytest
import torch

from madf.model.config import OFFICIAL
from madf.model.dynamic_filter import (
    IMPLEMENTATIONS,
    dynamic_filter,
    dynamic_filter_rewrite,
    dynamic_filter_unfold,
    rewrite_weight,
)

# Every distinct dynamic-filter shape of the official model: (Cin, Cout, k, pad).
OFFICIAL_SHAPES = sorted({(s["cin"], s["cout"], s["kernel"], s["padding"]) for s in OFFICIAL.level_shapes()})
SIZES = [(1, 16, 16), (2, 13, 9), (3, 7, 12)]  # (batch, H, W): even, odd, mixed


def _inputs(cin, cout, k, pad, n, h, w, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cin, h, w, generator=g, dtype=dtype)
    ho, wo = (h + 2 * pad - k) // 2 + 1, (w + 2 * pad - k) // 2 + 1
    m = torch.relu(torch.randn(n, 16, ho, wo, generator=g, dtype=dtype))
    weight = torch.randn(cin * k * k * cout, 16, 1, 1, generator=g, dtype=dtype) * 0.1
    bias = torch.randn(cin * k * k * cout, generator=g, dtype=dtype) * 0.1
    return x, m, weight, bias


def test_official_shapes_are_the_spec_table():
    assert [s["cin"] * s["kernel"] ** 2 * s["cout"] for s in OFFICIAL.level_shapes()] == \
        [4704, 12800, 18432, 73728, 147456, 147456, 147456]
    assert len(OFFICIAL_SHAPES) == 5


@pytest.mark.parametrize("shape", OFFICIAL_SHAPES, ids=lambda s: f"cin{s[0]}_cout{s[1]}_k{s[2]}")
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"n{s[0]}_{s[1]}x{s[2]}")
def test_rewrite_equals_unfold_float64(shape, size):
    cin, cout, k, pad = shape
    x, m, weight, bias = _inputs(cin, cout, k, pad, *size)
    ref = dynamic_filter_unfold(x, m, weight, bias, k, 2, pad)
    out = dynamic_filter_rewrite(x, m, weight, bias, k, 2, pad)
    err = (ref - out).abs().max().item()
    print(f"cin={cin} cout={cout} k={k} size={size}: max abs {err:.2e} (output scale {ref.abs().max():.2f})")
    assert out.shape == ref.shape == (size[0], cout, (size[1] + 2 * pad - k) // 2 + 1, (size[2] + 2 * pad - k) // 2 + 1)
    assert err < 1e-10


def test_unfold_matches_a_direct_per_window_sum():
    """The reference itself, against the definition written out with loops over one output position."""
    cin, cout, k, pad = 3, 4, 5, 2
    x, m, weight, bias = _inputs(cin, cout, k, pad, 1, 9, 9)
    y = dynamic_filter_unfold(x, m, weight, bias, k, 2, pad)
    xp = torch.nn.functional.pad(x, (pad,) * 4)
    for oy, ox in [(0, 0), (2, 3), (4, 4)]:
        theta = weight[:, :, 0, 0] @ m[0, :, oy, ox] + bias                 # (D,)
        window = xp[0, :, 2 * oy:2 * oy + k, 2 * ox:2 * ox + k]            # (Cin, k, k)
        for o in range(cout):
            expected = sum(window[ci, ky, kx] * theta[((ci * k + ky) * k + kx) * cout + o]
                           for ci in range(cin) for ky in range(k) for kx in range(k))
            assert abs(y[0, o, oy, ox].item() - expected.item()) < 1e-10


def test_rewrite_gradients_equal_unfold():
    x, m, weight, bias = _inputs(6, 4, 7, 3, 2, 11, 10)
    grads = {}
    for name, fn in (("unfold", dynamic_filter_unfold), ("rewrite", dynamic_filter_rewrite)):
        leaves = [t.clone().requires_grad_() for t in (x, m, weight, bias)]
        (fn(*leaves, 7, 2, 3) ** 2).sum().backward()
        grads[name] = [t.grad for t in leaves]
    for g_ref, g in zip(grads["unfold"], grads["rewrite"]):
        assert (g_ref - g).abs().max().item() < 1e-9


def test_rewrite_weight_layout():
    """Output channel c*Cout + o at [ci, ky, kx] is W1[(ci*k*k + ky*k + kx)*Cout + o, c]; c = Cm is the bias."""
    cin, cout, k = 2, 3, 3
    _, _, weight, bias = _inputs(cin, cout, k, 1, 1, 5, 5)
    w = rewrite_weight(weight, bias, cin, k)
    assert w.shape == (17 * cout, cin, k, k)
    for c, o, ci, ky, kx in [(0, 0, 0, 0, 0), (5, 2, 1, 2, 1), (15, 1, 0, 1, 2)]:
        assert w[c * cout + o, ci, ky, kx] == weight[((ci * k + ky) * k + kx) * cout + o, c, 0, 0]
    assert w[16 * cout + 2, 1, 0, 2] == bias[((1 * k + 0) * k + 2) * cout + 2]


def test_dispatch_and_errors():
    x, m, weight, bias = _inputs(6, 4, 7, 3, 1, 8, 8)
    assert set(IMPLEMENTATIONS) >= {"unfold", "rewrite"}
    assert torch.equal(dynamic_filter(x, m, weight, bias, 7, 2, 3, impl="unfold"),
                       dynamic_filter_unfold(x, m, weight, bias, 7, 2, 3))
    with pytest.raises(ValueError, match="unknown dynamic-filter implementation 'fast'"):
        dynamic_filter(x, m, weight, bias, 7, 2, 3, impl="fast")
    with pytest.raises(ValueError, match="do not match the output grid"):
        dynamic_filter(x, m[:, :, :-1], weight, bias, 7, 2, 3)
    with pytest.raises(ValueError, match="mask channels"):
        dynamic_filter(x, m[:, :8], weight, bias, 7, 2, 3)
