"""MADFNet: MADF encoder, recovery decoder and K refinement decoders with point-wise normalization (PN).

Module and parameter names are the official ones (``filter_gen_3.conv1.0.weight``, ``dec_ref1_4.bn.mlp_scale.bias``
...), so an official state dict loads with only its ``module.model.`` prefix removed. The one deliberate difference:
the official ``enc_conv_l`` registers a BatchNorm2d that its forward never applies (it compares the module with a
string), so it is not built here; ``madf.model.checkpoint`` drops those keys by name and says so.

``forward`` follows the released code: it takes the ImageNet-normalized image already multiplied by the known-pixel
mask, and the 3-channel known-pixel mask (1 = known), and returns K+1 images in normalized space. The image-level
contract (RGB in [0,1], 1 = hole, composited output) is ``madf.model.pipeline.InpaintModel``.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from madf.model.config import IMAGE_CHANNELS, OFFICIAL, STRIDE, ModelConfig
from madf.model.dynamic_filter import (
    DEFAULT_IMPL,
    check_name,
    dynamic_filter,
    dynamic_filter_rewrite,
    resolve,
    rewrite_weight,
)


def _leaky() -> nn.LeakyReLU:
    return nn.LeakyReLU(negative_slope=0.2)


def _deconv(cin: int, cout: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, kernel_size=4, stride=2, padding=1)


class FilterGen(nn.Module):
    """Mask branch of one encoder level: m^l = ReLU(conv_kxk/2(m^{l-1})) and the 1x1 kernel generator ``conv1``."""

    def __init__(self, in_ch: int, mask_ch: int, kernel_channels: int, kernel_size: int, padding: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_ch, mask_ch, kernel_size, STRIDE, padding), nn.ReLU())
        self.conv1 = nn.Sequential(nn.Conv2d(mask_ch, kernel_channels, 1))

    @property
    def kernel_generator(self) -> nn.Conv2d:
        return self.conv1[0]


class DynamicConv(nn.Module):
    """ReLU(dynamic filter): the encoder's mask-aware convolution, with the kernel generator of its FilterGen.

    Holds no parameters. For the ``rewrite`` implementation it caches the derived conv weight between calls
    (keyed by the generator's tensor versions), so inference pays the weight permutation once after loading.
    """

    def __init__(self, kernel_size: int, padding: int):
        super().__init__()
        self.kernel_size, self.padding = kernel_size, padding
        self._cached_key, self._cached_weight = None, None
        self.register_buffer("frozen_weight", None, persistent=False)

    def freeze(self, gen: nn.Conv2d, cin: int) -> None:
        """Store the derived conv weight as a buffer that forward uses as is: a constant for export and deployment
        (later changes to the generator's weights are ignored until ``freeze`` runs again)."""
        with torch.no_grad():
            self.frozen_weight = rewrite_weight(gen.weight, gen.bias, cin, self.kernel_size).contiguous()

    def _rewrite_weight(self, gen: nn.Conv2d, cin: int) -> torch.Tensor:
        if self.frozen_weight is not None:
            return self.frozen_weight
        w, b = gen.weight, gen.bias
        # While training (or being traced for export) the permutation is part of the graph: no cache.
        if (torch.is_grad_enabled() and (w.requires_grad or b.requires_grad)) or torch.compiler.is_compiling():
            return rewrite_weight(w, b, cin, self.kernel_size)
        if w.is_inference() or b.is_inference():
            # Made under torch.inference_mode: such tensors have no version counter, so an in-place change (a
            # load_state_dict inside inference_mode) cannot be seen; derive the weight per call (freeze() pays once).
            return rewrite_weight(w, b, cin, self.kernel_size)
        # A weight derived inside inference_mode is an inference tensor, unusable by autograd outside it: key on that.
        key = (w._version, b._version, w.data_ptr(), b.data_ptr(), w.dtype, w.device, torch.is_inference_mode_enabled())
        if key != self._cached_key:
            self._cached_weight = rewrite_weight(w, b, cin, self.kernel_size).contiguous()
            self._cached_key = key
        return self._cached_weight

    def forward(self, x: torch.Tensor, m: torch.Tensor, gen: nn.Conv2d, impl: str = DEFAULT_IMPL,
                arch: Optional[str] = None) -> torch.Tensor:
        k, p = self.kernel_size, self.padding
        impl = resolve(impl, x.shape[1], k, arch)
        if impl == "rewrite":
            y = dynamic_filter_rewrite(x, m, gen.weight, gen.bias, k, STRIDE, p,
                                       conv_weight=self._rewrite_weight(gen, x.shape[1]))
        else:
            y = dynamic_filter(x, m, gen.weight, gen.bias, k, STRIDE, p, impl=impl)
        return F.relu(y)


class AttConv(nn.Module):
    """Recovery decoder block's fusion: conv3x3(cat[skip, upsampled]) (+ ReLU except at level 1)."""

    def __init__(self, in_ch: int, out_ch: int, activation: bool = True):
        super().__init__()
        layers = [nn.Conv2d(in_ch, out_ch, 3, 1, 1)] + ([nn.ReLU()] if activation else [])
        self.conv = nn.Sequential(*layers)

    def forward(self, upsampled: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, upsampled], 1))


class PN(nn.Module):
    """Point-wise normalization: BN(x) * (1 + scale(guide)) + bias(guide), scale and bias from 3x3 convs."""

    def __init__(self, channels: int, guide_channels: int, hidden: int):
        super().__init__()
        self.batch_norm = nn.BatchNorm2d(channels, affine=False)
        self.mlp_shared = nn.Sequential(nn.Conv2d(guide_channels, hidden, 3, padding=1), nn.ReLU())
        self.mlp_scale = nn.Conv2d(hidden, channels, 3, padding=1)
        self.mlp_bias = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        # The official code bilinearly resizes the guide to x's size first; in MADFNet the sizes always match.
        shared = self.mlp_shared(guide)
        return self.batch_norm(x) * (1 + self.mlp_scale(shared)) + self.mlp_bias(shared)


class DecActiv(nn.Module):
    """Refinement decoder block: deconv -> PN(guide) -> LeakyReLU(0.2)."""

    def __init__(self, in_ch: int, out_ch: int, pn_hidden: int):
        super().__init__()
        self.deconv = _deconv(in_ch, out_ch)
        self.bn = PN(out_ch, out_ch, pn_hidden)
        self.activation = _leaky()

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        return self.activation(self.bn(self.deconv(x), guide))


class MADFNet(nn.Module):
    def __init__(self, config: ModelConfig = OFFICIAL, dynamic_filter: str = DEFAULT_IMPL):
        super().__init__()
        self.config = config
        self.dynamic_filter = dynamic_filter
        # per-level overrides of dynamic_filter (the export's mixed lowering: the plugin at some levels only)
        self.level_filters: Dict[int, str] = {}
        # the GPU architecture 'auto' decides for (madf.model.fused_table); set where the device is chosen
        self.arch: Optional[str] = None
        c, L = config, config.levels
        for l in range(1, L + 1):
            k, p = c.kernel(l), c.padding(l)
            mask_in = IMAGE_CHANNELS if l == 1 else c.mask_channels
            setattr(self, f"filter_gen_{l}", FilterGen(mask_in, c.mask_channels, c.kernel_gen_channels(l), k, p))
            setattr(self, f"enc_conv_{l}", DynamicConv(k, p))
            setattr(self, f"enc_up_{l}", nn.Sequential(nn.Conv2d(c.enc_channels(l), c.skip_channels(l), 1),
                                                       nn.ReLU()))
        # Recovery decoder: deconv_l takes u^l-shaped features to u^(l-1)'s channels (RGB at level 1).
        for l in range(L, 0, -1):
            cin, cout = c.skip_channels(l), c.decoder_channels(l)
            if l > 1:
                setattr(self, f"deconv_{l}", nn.Sequential(_deconv(cin, cout), nn.BatchNorm2d(cout), _leaky()))
                setattr(self, f"att_conv_{l}", AttConv(2 * cout, cout))
            else:
                self.deconv_1 = nn.Sequential(_deconv(cin, cout))
                self.att_conv_1 = AttConv(c.skip_channels(0) + cout, cout, activation=False)
        # Refinement decoders k = 0..K-1; the last level fuses the upsampled features with all earlier outputs.
        for k in range(c.refinement_decoders):
            for l in range(L, 1, -1):
                setattr(self, f"dec_ref{k}_{l}", DecActiv(c.skip_channels(l), c.decoder_channels(l), c.pn_hidden))
            fused = c.decoder_channels(2) + IMAGE_CHANNELS * (k + 1) + c.skip_channels(0)
            setattr(self, f"dec_ref{k}_1", nn.Conv2d(fused, IMAGE_CHANNELS, 1))

    @property
    def dynamic_filter(self) -> str:
        return self._dynamic_filter

    @dynamic_filter.setter
    def dynamic_filter(self, impl: str) -> None:
        self._dynamic_filter = check_name(impl)

    def freeze_dynamic_filters(self) -> "MADFNet":
        """Precompute the rewrite's conv weights as buffers (see DynamicConv.freeze); the exporter calls this."""
        for l in range(1, self.config.levels + 1):
            getattr(self, f"enc_conv_{l}").freeze(getattr(self, f"filter_gen_{l}").kernel_generator,
                                                  self.config.enc_channels(l - 1))
        return self

    def encode(self, image: torch.Tensor, mask: torch.Tensor) -> List[torch.Tensor]:
        """Returns [h0, u^1, ..., u^L]."""
        h0 = torch.cat([image, mask], 1)
        skips, e, m = [h0], h0, mask
        for l in range(1, self.config.levels + 1):
            gen = getattr(self, f"filter_gen_{l}")
            m = gen.conv(m)
            impl = self.level_filters.get(l, self._dynamic_filter)
            e = getattr(self, f"enc_conv_{l}")(e, m, gen.kernel_generator, impl, self.arch)
            skips.append(getattr(self, f"enc_up_{l}")(e))
        return skips

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> List[torch.Tensor]:
        """image: normalized RGB times the known mask; mask: (N, 3, H, W), 1 = known. Returns K+1 images."""
        multiple = self.config.multiple
        if image.shape[-2] % multiple or image.shape[-1] % multiple:
            raise ValueError(f"MADFNet input {image.shape[-2]}x{image.shape[-1]} is not a multiple of {multiple} "
                             f"({self.config.levels} stride-2 levels); pad it (madf.inpaint.imaging.pad_to_multiple)")
        skips = self.encode(image, mask)
        K, L = self.config.refinement_decoders, self.config.levels
        # refined[k] is decoder k's running feature; decoder 0 is guided by the recovery decoder, k by k-1.
        recovery, refined = skips[L], [skips[L]] * K
        for l in range(L, 1, -1):
            recovery = getattr(self, f"att_conv_{l}")(getattr(self, f"deconv_{l}")(recovery), skips[l - 1])
            guide = recovery
            for k in range(K):
                refined[k] = getattr(self, f"dec_ref{k}_{l}")(refined[k], guide)
                guide = refined[k]
        outputs = [self.att_conv_1(self.deconv_1(recovery), skips[0])]
        for k in range(K):
            up = F.interpolate(refined[k], scale_factor=2, mode="bilinear", align_corners=False)
            outputs.append(getattr(self, f"dec_ref{k}_1")(torch.cat([up, *outputs, skips[0]], 1)))
        return outputs


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_model(config: ModelConfig = OFFICIAL, dynamic_filter: str = DEFAULT_IMPL, seed: Optional[int] = None,
                device: Optional[str] = None) -> MADFNet:
    """A MADFNet in eval mode; with ``seed``, a reproducible random init (the demo's and tests' stand-in)."""
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = MADFNet(config, dynamic_filter)
            _calibrate_norm_stats(net)
    else:
        net = MADFNet(config, dynamic_filter)
    return (net.to(device) if device is not None else net).eval()


@torch.no_grad()
def _calibrate_norm_stats(net: MADFNet, batches: int = 2) -> None:
    """Give a random-init network the BatchNorm running statistics of its own activations (as training would),
    so that in eval mode its activations stay normalized. Without this, the default running stats (0, 1) let
    activations of the full-size random network grow to ~1e8 through the PN levels, which is nothing like a
    trained model and makes float comparisons meaningless."""
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None                      # cumulative average over the calibration batches
        if bn.affine:
            bn.weight.uniform_(0.8, 1.2)
            bn.bias.uniform_(-0.1, 0.1)
    size = 2 * net.config.multiple
    net.train()
    for _ in range(batches):
        image = torch.randn(2, IMAGE_CHANNELS, size, size)
        known = (torch.rand(2, 1, size // 8, size // 8) > 0.3).float()
        known = F.interpolate(known, scale_factor=8.0, mode="nearest").expand(-1, IMAGE_CHANNELS, -1, -1)
        net(image * known, known)
    for bn in norms:
        bn.momentum = 0.1
    net.eval()
