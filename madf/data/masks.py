"""Masks for training and evaluation, True = hole.

- ``free_form_mask``: seeded procedural masks in the style of DeepFill v2 / LaMa / MAT: strokes (several vertices,
  random widths and angles, round joints) plus boxes. With ``bucket=(lo, hi)`` strokes are added until the hole
  ratio passes a target drawn in (lo, hi], and the mask is regenerated if it overshoots ``hi``.
- ``eval_masks``: the deterministic evaluation set, the same bytes for a seed on every machine.
- ``MaskFolder``: a folder of mask images (NVIDIA irregular masks and the like) with the paper's augmentation
  (flip, rotation, dilation, crop); masks stay binary throughout (nearest resampling, thresholds, max filters),
  and the folder's polarity is checked.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from madf.common.errors import InputError
from madf.inpaint import imaging

# The paper's (and PConv's) hole-ratio buckets.
BUCKETS: Tuple[Tuple[float, float], ...] = ((0.01, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.5), (0.5, 0.6))
_MAX_RESTARTS = 200


def bucket_name(bucket: Tuple[float, float]) -> str:
    return f"({bucket[0]:g},{bucket[1]:g}]"


def bucket_of(ratio: float, buckets=BUCKETS) -> Optional[Tuple[float, float]]:
    """The (lo, hi] bucket ``ratio`` falls in, or None."""
    for lo, hi in buckets:
        if lo < ratio <= hi:
            return (lo, hi)
    return None


def _stroke(draw: ImageDraw.ImageDraw, rng: np.random.Generator, height: int, width: int) -> None:
    scale = min(height, width)
    x, y = rng.uniform(0, width), rng.uniform(0, height)
    stroke_width = int(rng.uniform(0.02, 0.09) * scale) + 1
    angle = rng.uniform(0, 2 * math.pi)
    for _ in range(int(rng.integers(2, 8))):
        angle += rng.uniform(-1.2, 1.2)
        length = rng.uniform(0.05, 0.25) * scale
        nx = float(np.clip(x + length * math.cos(angle), 0, width - 1))
        ny = float(np.clip(y + length * math.sin(angle), 0, height - 1))
        draw.line([(x, y), (nx, ny)], fill=255, width=stroke_width)
        r = stroke_width / 2
        draw.ellipse([nx - r, ny - r, nx + r, ny + r], fill=255)
        x, y = nx, ny


def _box(draw: ImageDraw.ImageDraw, rng: np.random.Generator, height: int, width: int) -> None:
    bw, bh = rng.uniform(0.05, 0.3) * width, rng.uniform(0.05, 0.3) * height
    bx, by = rng.uniform(0, width - bw), rng.uniform(0, height - bh)
    draw.rectangle([bx, by, bx + bw, by + bh], fill=255)


def free_form_mask(height: int, width: int, seed, bucket: Optional[Tuple[float, float]] = None,
                   strokes: int = 4, boxes: int = 1) -> np.ndarray:
    """A seeded free-form mask. Without ``bucket``: ``strokes`` strokes and ``boxes`` boxes. With it: grown stroke
    by stroke (one in five a box) past a target ratio drawn in (lo, hi], regenerated on overshoot."""
    rng = np.random.default_rng(seed)
    if bucket is None:
        canvas = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        for _ in range(strokes):
            _stroke(draw, rng, height, width)
        for _ in range(boxes):
            _box(draw, rng, height, width)
        return np.asarray(canvas) >= 128
    lo, hi = bucket
    for _ in range(_MAX_RESTARTS):
        canvas = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        ratio, target = 0.0, rng.uniform(lo, hi)   # aim inside the bucket, not at its lower edge
        while ratio <= target:
            (_box if rng.random() < 0.2 else _stroke)(draw, rng, height, width)
            ratio = float((np.asarray(canvas) >= 128).mean())
        if ratio <= hi:
            return np.asarray(canvas) >= 128
    raise RuntimeError(f"no {height}x{width} mask landed in bucket {bucket_name(bucket)} after "
                       f"{_MAX_RESTARTS} tries")


def eval_masks(height: int, width: int, per_bucket: int, seed: int = 0):
    """[(bucket, mask)]: ``per_bucket`` deterministic masks for each of the six buckets."""
    return [(bucket, free_form_mask(height, width, seed=(seed, b, i), bucket=bucket))
            for b, bucket in enumerate(BUCKETS) for i in range(per_bucket)]


def mask_digest(mask: np.ndarray) -> str:
    return hashlib.sha256(np.packbits(mask.astype(bool)).tobytes() + str(mask.shape).encode()).hexdigest()[:16]


def random_training_mask(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A procedural training mask: a bucket drawn uniformly, then a mask inside it."""
    bucket = BUCKETS[int(rng.integers(len(BUCKETS)))]
    return free_form_mask(height, width, seed=rng.integers(2**63), bucket=bucket)


class MaskFolder:
    """Mask images from a folder tree, augmented as the paper does, always binary. ``invert``: white = known."""

    def __init__(self, root, invert: bool = False, check_polarity: bool = True):
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"mask folder {root}: no such folder")
        self.paths = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in imaging.IMAGE_EXTENSIONS)
        if not self.paths:
            raise InputError(f"mask folder {root}: no mask images in it")
        self.invert = invert
        if check_polarity:
            self._check_polarity()

    def _check_polarity(self, sample: int = 16) -> None:
        """Holes are the minority in every usable mask set (the NVIDIA set tops out at 60%); a folder whose
        masks are mostly 'hole' is read with the wrong polarity."""
        step = max(1, len(self.paths) // sample)
        ratios = [float(self.load(p).mean()) for p in self.paths[::step][:sample]]
        median = float(np.median(ratios))
        if median > 0.6:
            flag = "without --invert-masks" if self.invert else "with --invert-masks (white = known)"
            raise InputError(f"mask folder {self.root}: the median hole ratio is {median:.0%}, so the masks look "
                             f"inverted; read them {flag}")

    def load(self, path: Path) -> np.ndarray:
        return imaging.read_mask(path, invert=self.invert)

    def __len__(self) -> int:
        return len(self.paths)

    def sample(self, height: int, width: int, rng: np.random.Generator, index: Optional[int] = None) -> np.ndarray:
        """One augmented mask: random flips, rotation (+-45 degrees), dilation (0-2 px) and crop, then nearest
        resize to (height, width) when the crop is smaller."""
        path = self.paths[int(rng.integers(len(self.paths))) if index is None else index]
        img = Image.fromarray((self.load(path) * 255).astype(np.uint8))
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_TOP_BOTTOM)
        img = img.rotate(float(rng.uniform(-45, 45)), resample=Image.NEAREST, expand=False, fillcolor=0)
        for _ in range(int(rng.integers(0, 3))):
            img = img.filter(ImageFilter.MaxFilter(3))          # grow the hole by one pixel
        if img.width >= width and img.height >= height:
            left = int(rng.integers(img.width - width + 1))
            top = int(rng.integers(img.height - height + 1))
            img = img.crop((left, top, left + width, top + height))
        else:
            img = img.resize((width, height), Image.NEAREST)
        return np.asarray(img) >= 128

