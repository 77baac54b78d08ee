"""Casting the network to FP16 / BF16 without losing it.

A trained BatchNorm's running variance can exceed FP16's 65,504 (three of the bundled model's do): ``.half()`` turns
it into inf and whole decoder layers into zeros. So, before any cast, every normalization's statistics are folded
in FP32 into one per-channel scale and shift (what TensorRT does to a BatchNorm anyway), and every stored tensor
(parameters and buffers) is checked against the target's range by the rule activations are checked by
(``overflowing``): a peak at or past the largest finite value is refused, naming the tensor.
"""
from __future__ import annotations

from typing import Iterable, List, Tuple

import torch
import torch.nn as nn

from madf.common.errors import ModelError

FP16_MAX = 65504.0


class FoldedNorm(nn.Module):
    """An eval-mode BatchNorm2d as y = x * scale + shift, per channel (scale and shift computed in float64)."""

    def __init__(self, norm: nn.BatchNorm2d):
        super().__init__()
        var = norm.running_var.double()
        scale = 1.0 / torch.sqrt(var + norm.eps)
        shift = -norm.running_mean.double() * scale
        if norm.affine:
            scale, shift = scale * norm.weight.double(), shift * norm.weight.double() + norm.bias.double()
        self.register_buffer("scale", scale.float().view(1, -1, 1, 1))
        self.register_buffer("shift", shift.float().view(1, -1, 1, 1))

    def forward(self, x):
        return x * self.scale + self.shift


def fold_norms(module: nn.Module) -> int:
    """Replace every BatchNorm2d under ``module`` (in place; it must be in eval mode) by its FoldedNorm; the count."""
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            if child.training or child.running_var is None:
                raise ModelError(f"{name}: only an eval-mode BatchNorm with running statistics can be folded")
            setattr(module, name, FoldedNorm(child).to(child.running_var.device))
            count += 1
        else:
            count += fold_norms(child)
    return count


def overflowing(peaks: Iterable[Tuple[str, float]], dtype: torch.dtype) -> List[Tuple[str, float]]:
    """The (name, peak |value|) that do not fit ``dtype``: at or past its largest finite value, or not finite."""
    limit = float(torch.finfo(dtype).max)
    return [(name, peak) for name, peak in peaks if not peak < limit]


def stored_peaks(module: nn.Module) -> List[Tuple[str, float]]:
    """(name, max |value|) of every floating-point parameter and buffer, largest first."""
    tensors = list(module.named_parameters()) + list(module.named_buffers())
    peaks = [(n, float(t.detach().abs().max())) for n, t in tensors if t.is_floating_point() and t.numel()]
    return sorted(peaks, key=lambda kv: -kv[1])


def cast_network(net: nn.Module, dtype: torch.dtype) -> nn.Module:
    """``net`` (in place) with its normalizations folded and every stored tensor in ``dtype``, or a ModelError
    naming the first tensor that would overflow. FP32 is left as it is."""
    if dtype == torch.float32:
        return net
    fold_norms(net)
    bad = overflowing(stored_peaks(net), dtype)
    if bad:
        name, peak = bad[0]
        raise ModelError(f"{name} holds {peak:.4g}, past {str(dtype).replace('torch.', '')}'s largest value "
                         f"{torch.finfo(dtype).max:.4g} ({len(bad)} tensor(s) in all); run this model in FP32")
    return net.to(dtype)
