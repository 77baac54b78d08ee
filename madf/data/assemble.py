"""A small real-photo dataset from what is installed: scikit-image's photos and, where present, the nature photos
of Debian's mate-backgrounds. The split is fixed per photo (a hash of its file name), so adding or removing a source never moves a
photo between train/ and heldout/.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, List

from PIL import Image

from .. import imaging
from .photos import colour_first, sources

HELDOUT_EVERY = 5          # about one photo in five is held out
MAX_SIDE = 1024            # large wallpapers are downscaled to keep the folder small


def is_heldout(name: str) -> bool:
    return int(hashlib.sha1(name.encode()).hexdigest(), 16) % HELDOUT_EVERY == 0


def heldout_photos(skimage_only: bool = False) -> List[Path]:
    """The held-out photos among the sources, colour ones first (the demo shows these: unseen in training)."""
    return colour_first([p for p in sources()
                         if is_heldout(_name(p)) and (not skimage_only or _name(p).startswith("skimage"))])


def _name(src: Path) -> str:
    return f"{'skimage' if 'skimage' in src.parts else 'mate'}-{src.stem}"


def assemble(output) -> Dict[str, List[Path]]:
    """Write train/ and heldout/ PNGs under ``output``; returns {split: [paths]}."""
    output = Path(output)
    split: Dict[str, List[Path]] = {"train": [], "heldout": []}
    for src in sources():
        name = _name(src)
        part = "heldout" if is_heldout(name) else "train"
        img = Image.open(src).convert("RGB")
        img.thumbnail((MAX_SIDE, MAX_SIDE), Image.BICUBIC)
        dest = output / part / f"{name}.png"
        imaging.write_png(dest, imaging.to_rgb_array(img))
        split[part].append(dest)
    return split
