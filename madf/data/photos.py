"""Real photos found on this machine without a network: scikit-image's data folder and Debian's mate-backgrounds.

The package is located with importlib's spec (not imported), so scikit-image's heavy import chain is not paid.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import List

from PIL import Image

# scikit-image's photographs (colour and grayscale); its charts, silhouettes and micrographs are left out.
SKIMAGE_NATURAL = ("astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "grass.png",
                   "gravel.png", "hubble_deep_field.jpg", "moon.png", "motorcycle_left.png", "motorcycle_right.png",
                   "rocket.jpg", "coins.png", "page.png", "text.png", "clock_motion.png", "retina.jpg")
MATE_BACKGROUNDS = Path("/usr/share/backgrounds/mate")


def skimage_data_dir() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("scikit-image is not installed: pip install scikit-image (its data folder holds "
                                "the sample photos)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def sources() -> List[Path]:
    """Every photo available here: scikit-image's, then the nature photos of mate-backgrounds (where installed;
    the package's other folders hold abstract art and desktop graphics)."""
    data = skimage_data_dir()
    photos = [data / n for n in SKIMAGE_NATURAL if (data / n).is_file()]
    nature = MATE_BACKGROUNDS / "nature"
    if nature.is_dir():
        photos += sorted(p for p in nature.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not photos:
        raise FileNotFoundError(f"no sample photos in {data}; reinstall scikit-image")
    return photos


def colour_first(photos: List[Path]) -> List[Path]:
    """The same photos, colour ones first (grayscale ones make poor inpainting demos)."""
    colour = [p for p in photos if Image.open(p).mode not in ("L", "LA", "1", "I;16")]
    return colour + [p for p in photos if p not in colour]


def sample_photos() -> List[Path]:
    """All photos available here, colour ones first."""
    return colour_first(sources())
