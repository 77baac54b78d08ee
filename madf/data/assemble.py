"""A real-photo dataset with no network beyond Debian's archive: scikit-image's photos and the curated photographs of
Debian packages (madf.data.debian). The split is fixed per photo (a hash of its file name), so adding or removing a
source never moves a photo between train/ and heldout/.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Dict, List

import numpy as np
from PIL import Image

from madf.common.atomic import atomic_path
from madf.data.photos import colour_first, sources
from madf.inpaint import imaging

HELDOUT_EVERY = 5          # about one photo in five is held out
log = logging.getLogger("madf")
MAX_SIDE = 1024            # large wallpapers are downscaled to keep the folder small (0: as shipped)


def is_heldout(name: str) -> bool:
    return int(hashlib.sha1(name.encode()).hexdigest(), 16) % HELDOUT_EVERY == 0


def heldout_photos(skimage_only: bool = False) -> List[Path]:
    """The held-out photos among the sources, colour ones first (the demo shows these: unseen in training)."""
    return colour_first([p for p in sources()
                         if is_heldout(_name(p)) and (not skimage_only or _name(p).startswith("skimage"))])


def _name(src: Path) -> str:
    return f"{'skimage' if 'skimage' in src.parts else 'mate'}-{src.stem}"


SHORT = {"lomiri-wallpapers-16.04": "lomiri", "lomiri-wallpapers-20.04": "lomiri", "mate-backgrounds": "mate",
         "plasma-workspace-wallpapers": "plasma", "lxqt-themes": "lxqt", "palapeli-data": "palapeli",
         "tuxpaint-data": "tuxpaint", "gcompris-qt-data": "gcompris"}


def _debian_name(source) -> str:
    stem = source.path.stem
    if source.package == "plasma-workspace-wallpapers":   # files are named by size; the folder names the picture
        stem = source.path.parents[2].name
    if source.package == "gcompris-qt-data":              # .../activities/<activity>/...: the activity, then the photo
        stem = f"{source.path.parts[source.path.parts.index('activities') + 1]}-{stem}"
    return f"{SHORT[source.package]}-{stem}"


def dhash(img: Image.Image) -> int:
    """A 64-bit difference hash: the same picture at another size or compression hashes (almost) the same."""
    grey = np.asarray(img.convert("L").resize((9, 8), Image.BILINEAR), np.int16)
    bits = (grey[:, 1:] > grey[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def colour_class(img: Image.Image) -> str:
    """The photo's dominant colour family, for the dataset's colour balance report."""
    hsv = np.asarray(img.convert("RGB").resize((64, 64)).convert("HSV"), np.float32)
    hue, sat = hsv[..., 0] * 360 / 255, hsv[..., 1] / 255
    if sat.mean() < 0.15:
        return "neutral"
    weights = sat.flatten()
    hues = hue.flatten()
    families = {"red/orange/yellow": (hues < 65) | (hues >= 330), "green": (hues >= 65) & (hues < 170),
                "blue/cyan": (hues >= 170) & (hues < 260), "purple/pink": (hues >= 260) & (hues < 330)}
    return max(families, key=lambda k: float(weights[families[k]].sum()))


DUPLICATE_BITS = 6   # dHash Hamming distance at or under which two photos are the same picture


def assemble(output, download: bool = False, cache=None, max_side: int = MAX_SIDE) -> Dict[str, List[Path]]:
    """Write train/ and heldout/ PNGs and manifest.json (each photo's source package, license, size, split, colour
    family) under ``output``; returns {split: [paths]}. With ``download``, the Debian packages of madf.data.debian
    that are not installed are fetched into ``cache`` (default OUTPUT/.cache). Photos are shrunk to ``max_side``
    (0: kept at the size they ship at, for evaluation at real sizes)."""
    from madf.data.debian import Source, debian_photos
    output = Path(output)
    cache = Path(cache) if cache else output / ".cache"
    found = [Source(p, "scikit-image" if "skimage" in p.parts else "mate-backgrounds",
                    "BSD-3 (photos: public domain / CC0)" if "skimage" in p.parts else "GPL-2+") for p in sources()]
    found += debian_photos(cache, download)
    named, seen_paths = [], set()
    for source in found:
        if source.path.resolve() in seen_paths:
            continue
        seen_paths.add(source.path.resolve())
        name = _name(source.path) if source.package == "scikit-image" else _debian_name(source)
        img = imaging.open_image(source.path)
        named.append((name, source, img, dhash(img)))
    kept = []
    for name, source, img, h in sorted(named, key=lambda n: -n[2].width * n[2].height):   # largest copy first
        twin = next((k for k in kept if bin(k[3] ^ h).count("1") <= DUPLICATE_BITS), None)
        if twin is not None:
            log.info("%s is %s again (%s); kept the larger", name, twin[0], source.package)
            continue
        kept.append((name, source, img, h))
    split: Dict[str, List[Path]] = {"train": [], "heldout": []}
    manifest = []
    for name, source, img, h in sorted(kept, key=lambda k: k[0]):
        part = "heldout" if is_heldout(name) else "train"
        rgb = imaging.to_rgb_array(img)
        small = Image.fromarray(rgb)
        if max_side:
            small.thumbnail((max_side, max_side), Image.BICUBIC)
        dest = output / part / f"{name}.png"
        imaging.write_png(dest, np.asarray(small))
        split[part].append(dest)
        manifest.append({"name": name, "split": part, "package": source.package, "license": source.license,
                         "source": str(source.path), "original_size": list(img.size), "dhash": f"{h:016x}",
                         "colour": colour_class(small)})
    with atomic_path(output / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    return split
