"""The mask-aware dynamic filter: one op, interchangeable implementations.

    y[n, o, p] = sum_{j} unfold(x)[n, j, p] * theta[n, p, j, o],   theta = W1 m + b1   (a 1x1 conv of the mask features)

with j = ci*k*k + ky*k + kx (F.unfold order) and theta's channel d = j*Cout + o (the official layout). No bias and no
activation: the model applies ReLU after it. Inputs:

    x       (N, Cin, H, W)            features e^{l-1}
    m       (N, Cm, Ho, Wo)           mask features m^l (already at the output resolution)
    weight  (Cin*k*k*Cout, Cm, 1, 1)  the official kernel generator's 1x1 conv weight
    bias    (Cin*k*k*Cout,)           and its bias

Implementations (``IMPLEMENTATIONS``):

- ``unfold``: the official code's computation (materializes theta, hundreds of MB per image); the reference.
- ``rewrite``: theta is affine in m, so y = sum_c m_c (W_c * x) + (B * x): ONE ordinary Conv2d with (Cm+1)*Cout
  outputs followed by a per-pixel contraction with [m; 1]. Same multiplies, no per-window kernel tensor, and plain
  Conv/Mul/ReduceSum in ONNX. Its conv weight is a permutation of the official (weight, bias): ``rewrite_weight``.

Later backends (the fused CUDA kernel, madf.model.fused_kernel) register here with ``register``; ``auto`` picks the
fused kernel per level where it is faster (``resolve``).
"""
from __future__ import annotations

import functools
from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F

from madf.model import fused_table

DynamicFilterFn = Callable[..., torch.Tensor]
IMPLEMENTATIONS: Dict[str, DynamicFilterFn] = {}
DEFAULT_IMPL = "rewrite"


def register(name: str):
    def wrap(fn: DynamicFilterFn) -> DynamicFilterFn:
        IMPLEMENTATIONS[name] = fn
        return fn
    return wrap


def _check(x: torch.Tensor, m: torch.Tensor, weight: torch.Tensor, kernel_size: int, stride: int, padding: int) -> int:
    """Validate shapes; return Cout."""
    if min(kernel_size, stride) < 1 or padding < 0:
        raise ValueError(f"dynamic filter wants kernel_size and stride >= 1 and padding >= 0, got {kernel_size}, "
                         f"{stride}, {padding}")
    if x.dim() != 4 or m.dim() != 4:
        raise ValueError(f"dynamic filter wants 4-D x and m, got {tuple(x.shape)} and {tuple(m.shape)}")
    n, cin, h, w = x.shape
    ho = (h + 2 * padding - kernel_size) // stride + 1
    wo = (w + 2 * padding - kernel_size) // stride + 1
    if m.shape[0] != n or m.shape[2:] != (ho, wo):
        raise ValueError(f"mask features {tuple(m.shape)} do not match the output grid (N={n}, {ho}x{wo}) of "
                         f"x {tuple(x.shape)} with k={kernel_size}, stride={stride}, pad={padding}")
    if weight.shape[1] != m.shape[1]:
        raise ValueError(f"kernel generator takes {weight.shape[1]} mask channels, m has {m.shape[1]}")
    window = cin * kernel_size * kernel_size
    if weight.shape[0] % window:
        raise ValueError(f"kernel generator emits {weight.shape[0]} channels, not a multiple of Cin*k*k = {window}")
    return weight.shape[0] // window


@register("unfold")
def dynamic_filter_unfold(x, m, weight, bias, kernel_size: int, stride: int, padding: int) -> torch.Tensor:
    """The official semantics: build theta per output position, then a (1 x Cin*k*k) @ (Cin*k*k x Cout) matmul."""
    cout = _check(x, m, weight, kernel_size, stride, padding)
    n, _, ho, wo = m.shape
    theta = F.conv2d(m, weight, bias)                                   # (N, D, Ho, Wo)
    theta = theta.view(n, -1, ho * wo).transpose(1, 2).reshape(n, ho * wo, -1, cout)
    cols = F.unfold(x, kernel_size, padding=padding, stride=stride)     # (N, Cin*k*k, Ho*Wo)
    y = cols.transpose(1, 2).unsqueeze(2).matmul(theta)                 # (N, Ho*Wo, 1, Cout)
    return y.squeeze(2).transpose(1, 2).reshape(n, cout, ho, wo)


def rewrite_weight(weight: torch.Tensor, bias: torch.Tensor, cin: int, kernel_size: int) -> torch.Tensor:
    """The official kernel generator's (weight, bias) as one Conv2d weight of shape ((Cm+1)*Cout, Cin, k, k).

    Output channel c*Cout + o holds W1[(ci*k*k + ky*k + kx)*Cout + o, c] at [ci, ky, kx]; c = Cm is the bias.
    """
    d, cm = weight.shape[:2]
    k = kernel_size
    cout = d // (cin * k * k)
    w = weight.reshape(cin, k, k, cout, cm).permute(4, 3, 0, 1, 2)      # (Cm, Cout, Cin, k, k)
    b = bias.reshape(1, cin, k, k, cout).permute(0, 4, 1, 2, 3)         # (1, Cout, Cin, k, k)
    return torch.cat([w, b], 0).reshape((cm + 1) * cout, cin, k, k)


def contract_with_mask(y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """y (N, (Cm+1)*Cout, H, W) contracted per pixel with [m; 1] -> (N, Cout, H, W)."""
    n, cm, h, w = m.shape
    y = y.view(n, cm + 1, -1, h, w)
    return (y[:, :cm] * m.unsqueeze(2)).sum(1) + y[:, cm]


@register("rewrite")
def dynamic_filter_rewrite(x, m, weight, bias, kernel_size: int, stride: int, padding: int,
                           conv_weight: torch.Tensor = None) -> torch.Tensor:
    """Exact algebraic rewrite: conv with (Cm+1)*Cout outputs, then contract with [m; 1].

    ``conv_weight`` is ``rewrite_weight(weight, bias, ...)`` precomputed by the caller (the model caches it).
    """
    _check(x, m, weight, kernel_size, stride, padding)
    if conv_weight is None:
        conv_weight = rewrite_weight(weight, bias, x.shape[1], kernel_size)
    return contract_with_mask(F.conv2d(x, conv_weight, None, stride, padding), m)


# "auto": the fused kernel where it beats cuDNN, the rewrite elsewhere, from the measured table
# (madf/model/fused_wins.json): on an H100, FP16, batch 32, 2.1x / 1.6x / 1.3x faster at the official levels 1-3
# (window Cin*k*k of 294, 400, 288) and slower from level 4 on (576 and more: its long reduction runs on too few
# blocks).
AUTO = "auto"
FUSED_MAX_WINDOW = fused_table.max_window(fused_table.REFERENCE_ARCH)


def check_name(impl: str) -> str:
    """``impl`` if it names a registered implementation or "auto", else the one error every caller gives."""
    if impl not in IMPLEMENTATIONS and impl != AUTO:
        raise ValueError(f"unknown dynamic-filter implementation {impl!r}; choose one of "
                         f"{sorted([*IMPLEMENTATIONS, AUTO])}")
    return impl


def resolve(impl: str, in_channels: int, kernel_size: int, arch: Optional[str] = None) -> str:
    """The implementation a call with ``impl`` runs: "auto" becomes "fused" (when registered) where the table says
    it wins on ``arch`` (a GPU's 'sm_XY'; None: the table's reference GPU), else "rewrite"; any other name is
    itself."""
    if impl != AUTO:
        return impl
    wins = fused_table.fused_wins(arch, in_channels, kernel_size)
    return "fused" if wins and "fused" in IMPLEMENTATIONS else "rewrite"


@functools.lru_cache(maxsize=None)
def _cuda_arch(index: int) -> str:
    return fused_table.arch_of(torch.cuda.get_device_capability(index))


def device_arch(device: torch.device) -> Optional[str]:
    """The 'sm_XY' of a CUDA device (None for the CPU). Asked once, outside any traced code (MADFNet.arch)."""
    return _cuda_arch(device.index if device.index is not None else torch.cuda.current_device()) \
        if device.type == "cuda" else None


def dynamic_filter(x, m, weight, bias, kernel_size: int, stride: int, padding: int,
                   impl: str = DEFAULT_IMPL, arch: Optional[str] = None) -> torch.Tensor:
    """Apply the dynamic filter with the named implementation (see module docs)."""
    fn = IMPLEMENTATIONS[resolve(check_name(impl), x.shape[1], kernel_size, arch)]
    return fn(x, m, weight, bias, kernel_size, stride, padding)
