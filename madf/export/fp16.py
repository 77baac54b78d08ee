"""FP16 headroom: the largest activation magnitude per layer of the FP32 network on real inputs.

FP16 overflows past 65,504; an activation that gets near it would turn into inf in an FP16 engine. The check runs
the FP32 model once with forward hooks (a cheap pass, no export needed).
"""
from __future__ import annotations

from typing import List, Tuple

import torch

from madf.model.network import MADFNet
from madf.model.pipeline import InpaintModel
from madf.model.precision import FP16_MAX  # noqa: F401 - the limit activations are judged by


def activation_peaks(net: MADFNet, image: torch.Tensor, mask: torch.Tensor) -> List[Tuple[str, float]]:
    """(module name, max |output|) for every leaf module, largest first."""
    peaks = {}
    hooks = []
    for name, module in net.named_modules():
        if not list(module.children()) and name:
            def hook(mod, args, out, name=name):
                if isinstance(out, torch.Tensor):
                    peaks[name] = max(peaks.get(name, 0.0), float(out.detach().abs().max()))
            hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            InpaintModel(net.float().eval())(image, mask)
    finally:
        for h in hooks:
            h.remove()
    return sorted(peaks.items(), key=lambda kv: -kv[1])
