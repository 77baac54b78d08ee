"""Real photos found on this machine without a network: scikit-image's data folder and Debian's mate-backgrounds.

The package is located with importlib's spec (not imported), so scikit-image's heavy import chain is not paid.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import List

# Colour photographs in scikit-image's data folder (the rest are grayscale, synthetic or microscopy).
SKIMAGE_PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png", "retina.jpg",
                  "hubble_deep_field.jpg")
MATE_BACKGROUNDS = Path("/usr/share/backgrounds/mate")


def skimage_data_dir() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("scikit-image is not installed: pip install scikit-image (its data folder holds "
                                "the sample photos)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def sample_photos() -> List[Path]:
    """The colour photos available here, scikit-image's first, then mate-backgrounds' (where installed)."""
    data = skimage_data_dir()
    photos = [data / name for name in SKIMAGE_PHOTOS if (data / name).is_file()]
    if MATE_BACKGROUNDS.is_dir():
        photos += sorted(p for p in MATE_BACKGROUNDS.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not photos:
        raise FileNotFoundError(f"no sample photos in {data}; reinstall scikit-image")
    return photos
