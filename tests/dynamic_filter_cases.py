"""Cases shared by the fused-kernel tests (test_fused_kernel.py: on a GPU, and on the CPU under the kernel emulation)
and the plugin harness (test_plugin_harness.py): every official level shape, batch 1 and 8, odd sizes, and one
tolerance per precision.

Tolerances are relative to the output's largest magnitude: FP32 1e-5; FP16 2e-3 (inputs rounded to FP16 first, so
the float64 reference sees the same values; the kernels accumulate in FP32 and round the output once).
"""
import torch

from madf.model.config import OFFICIAL
from madf.model.dynamic_filter import dynamic_filter_unfold

OFFICIAL_SHAPES = sorted({(s["cin"], s["cout"], s["kernel"], s["padding"]) for s in OFFICIAL.level_shapes()})
SIZES = [(1, 32, 32), (8, 16, 16), (2, 13, 9), (3, 7, 12), (1, 1, 1)]   # batch 1 and 8, odd, mixed, one pixel
# The emulation runs every CUDA thread in turn: batch 8 and 2, odd and mixed sizes, one pixel, several pixel tiles
EMULATED_SIZES = [(8, 6, 6), (2, 13, 9), (1, 1, 1), (2, 23, 20)]
TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3}
STRIDE = 2


def shape_id(shape):
    return f"cin{shape[0]}_cout{shape[1]}_k{shape[2]}"


def size_id(size):
    return f"n{size[0]}_{size[1]}x{size[2]}"


def make_case(cin, cout, k, pad, n, h, w, dtype, seed=0, cm=16):
    """(x, m, weight, bias) as `dtype` CPU tensors and the float64 reference output computed from those values."""
    g = torch.Generator().manual_seed(seed)
    ho, wo = (h + 2 * pad - k) // STRIDE + 1, (w + 2 * pad - k) // STRIDE + 1
    x = torch.randn(n, cin, h, w, generator=g)
    m = torch.relu(torch.randn(n, cm, ho, wo, generator=g))
    weight = torch.randn(cin * k * k * cout, cm, 1, 1, generator=g) * 0.1
    bias = torch.randn(cin * k * k * cout, generator=g) * 0.1
    inputs = [t.to(dtype) for t in (x, m, weight, bias)]          # the values the kernel sees
    ref = dynamic_filter_unfold(*[t.double() for t in inputs], k, STRIDE, pad)
    return inputs, ref


def relative_error(out, ref):
    """(max abs error / max |ref|, mean abs error) of `out` against the float64 reference."""
    err = (out.double().cpu() - ref).abs()
    return err.max().item() / max(ref.abs().max().item(), 1e-12), err.mean().item()
