"""InpaintModel: MADFNet behind the image-level contract every backend shares.

    image     (N, 3, H, W) float RGB in [0, 1]
    mask      (N, 1, H, W) float, 1 = hole to fill, 0 = keep
    inpainted (N, 3, H, W) float in [0, 1]

Normalization, masking, the network, compositing and clamping all happen here, so the ONNX graph exported from this
module needs no MADF knowledge at run time. H and W must be multiples of ``config.multiple`` (callers pad).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from madf.model.network import MADFNet

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class InpaintModel(nn.Module):
    def __init__(self, net: MADFNet, raw_outputs: bool = False):
        super().__init__()
        self.net = net
        self.raw_outputs = raw_outputs
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def config(self):
        return self.net.config

    def forward(self, image: torch.Tensor, mask: torch.Tensor):
        hole = mask >= 0.5
        known = (~hole).to(image.dtype)
        normalized = (image - self.mean) / self.std * known
        # A half-precision network (the FP16 export) runs in its dtype; I/O, normalization and compositing stay
        # in the inputs' precision.
        net_dtype = self.net.filter_gen_1.conv[0].weight.dtype
        outputs = self.net(normalized.to(net_dtype), known.expand(-1, 3, -1, -1).to(net_dtype))
        outputs = [o.to(image.dtype) for o in outputs]
        if self.raw_outputs:
            return tuple(outputs)
        filled = (outputs[-1] * self.std + self.mean).clamp(0, 1)
        # Known pixels are passed through untouched (bit-exact), not recomputed from the normalized copy.
        return torch.where(hole, filled, image.clamp(0, 1))
