"""ModelConfig: the shape of a MADFNet (levels, width, refinement decoders) and its channel tables.

The official network is 7 levels, full width, K = 2 refinement decoders. Every channel count below is the official
one times ``width``, so a small config (say 4 levels at width 0.25) has the same topology and layer names.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, List

# (kernel, padding) of the encoder's stride-2 convolutions: level 1 is 7x7, level 2 is 5x5, the rest 3x3.
_ENC_KERNELS = {1: (7, 3), 2: (5, 2)}
_ENC_DEFAULT_KERNEL = (3, 1)
# Official channels per level; levels past the table repeat its last entry.
_ENC_CHANNELS = [16, 32, 64, 128]      # e^l, the dynamic conv's output
_SKIP_CHANNELS = [64, 128, 256, 512]   # u^l = ReLU(1x1 conv(e^l)), the decoders' skip features
_MASK_CHANNELS = 16                    # m^l, the mask branch (FilterGen's nhidden)
_PN_HIDDEN = 128                       # PN's shared conv (its nhidden)

IMAGE_CHANNELS = 3
STRIDE = 2


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    levels: int = 7
    width: float = 1.0
    refinement_decoders: int = 2
    # The image size it was trained at (not a shape: any size runs). The inpainting strategy fills each hole at a
    # scale this size's training holes had; the official checkpoints were trained at 256x256.
    train_size: int = 256

    def __post_init__(self):
        if not 1 <= self.levels <= 12:
            raise ValueError(f"levels must be in 1..12, got {self.levels}")
        if not self.width > 0:
            raise ValueError(f"width must be positive, got {self.width}")
        if self.refinement_decoders not in (0, 1, 2):
            raise ValueError(f"refinement_decoders (K) must be 0, 1 or 2, got {self.refinement_decoders}")
        if not (isinstance(self.train_size, int) and self.train_size >= 1):
            raise ValueError(f"train_size must be a positive integer, got {self.train_size!r}")

    # Geometry -----------------------------------------------------------------------------------------------
    @property
    def multiple(self) -> int:
        """Input H and W must be multiples of this (one stride-2 conv per level)."""
        return STRIDE ** self.levels

    def kernel(self, level: int) -> int:
        return _ENC_KERNELS.get(level, _ENC_DEFAULT_KERNEL)[0]

    def padding(self, level: int) -> int:
        return _ENC_KERNELS.get(level, _ENC_DEFAULT_KERNEL)[1]

    # Channels -----------------------------------------------------------------------------------------------
    def enc_channels(self, level: int) -> int:
        """Channels of e^level; e^0 is the 6-channel [masked image, mask]."""
        if level == 0:
            return 2 * IMAGE_CHANNELS
        return _scaled(_ENC_CHANNELS[min(level, len(_ENC_CHANNELS)) - 1], self.width)

    def skip_channels(self, level: int) -> int:
        """Channels of u^level; u^0 is h0 itself (6 channels)."""
        if level == 0:
            return 2 * IMAGE_CHANNELS
        return _scaled(_SKIP_CHANNELS[min(level, len(_SKIP_CHANNELS)) - 1], self.width)

    def decoder_channels(self, level: int) -> int:
        """Channels a decoder produces at ``level`` (the output of deconv_level): those of u^(level-1), or RGB."""
        return IMAGE_CHANNELS if level == 1 else self.skip_channels(level - 1)

    @property
    def mask_channels(self) -> int:
        return _scaled(_MASK_CHANNELS, self.width)

    @property
    def pn_hidden(self) -> int:
        return _scaled(_PN_HIDDEN, self.width)

    def kernel_gen_channels(self, level: int) -> int:
        """D = Cin * k * k * Cout, the per-window kernel size the 1x1 kernel generator emits."""
        k = self.kernel(level)
        return self.enc_channels(level - 1) * k * k * self.enc_channels(level)

    def level_shapes(self) -> List[Dict[str, int]]:
        """One row per encoder level: the dynamic filter's shape (the export and plugin issues use these)."""
        return [dict(level=l, cin=self.enc_channels(l - 1), cout=self.enc_channels(l), kernel=self.kernel(l),
                     padding=self.padding(l), stride=STRIDE, mask_channels=self.mask_channels)
                for l in range(1, self.levels + 1)]

    # Serialization ------------------------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields {unknown}; known: {sorted(names)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        return cls.from_dict(json.loads(text))

    def describe(self) -> str:
        return f"MADFNet(levels={self.levels}, width={self.width:g}, K={self.refinement_decoders})"


OFFICIAL = ModelConfig()
# The small config tests and the demo use: same topology, a few thousand times fewer multiplies.
SMALL = ModelConfig(levels=4, width=0.25, refinement_decoders=2)
