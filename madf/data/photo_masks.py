"""Masks for photos at their real sizes, sized against the network's training size: what users draw.

A user paints over a power line (a stroke), a blemish or a sign on a smooth background (a blob), a person or an
animal (an object). What makes a hole hard for a network trained on 256 px crops is not its share of the photo but
its thickness (twice the largest distance from a hole pixel to a known one, ``madf.inpaint.strategy.thickness``)
against that training size, so each mask is drawn to a target thickness in one of ``THICKNESS_BUCKETS`` (fractions
of the training size) and scored in the bucket its measured thickness falls in.

- ``stroke``: a brush polyline (round joints) 2-5 segments long, the brush as wide as the target;
- ``blob``: a rotated ellipse whose short axis is the target (aspect 1-1.8);
- ``object``: a silhouette (scikit-image's horse, or a seeded star-shaped outline with 5-9 lobes), scaled until its
  measured thickness is the target, rotated and mirrored at random.

Everything is a function of (seed, photo name, kind, bucket): the same masks on every machine.
"""
from __future__ import annotations

import hashlib
import math
from typing import List, Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw

from madf.data.masks import bucket_name, bucket_of
from madf.inpaint.strategy import thickness

KINDS = ("stroke", "blob", "object")
# Thickness of the hole / the network's training size. Training holes are up to about 1/4 (madf.inpaint.strategy).
THICKNESS_BUCKETS: Tuple[Tuple[float, float], ...] = ((0.0, 0.125), (0.125, 0.25), (0.25, 0.5), (0.5, 1.0),
                                                      (1.0, 3.0))


thickness_bucket_name = bucket_name


def thickness_bucket_of(relative: float) -> Optional[Tuple[float, float]]:
    return bucket_of(relative, THICKNESS_BUCKETS)


def _rng(seed: int, *parts) -> np.random.Generator:
    digest = hashlib.sha256(repr((seed,) + parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _stroke(height: int, width: int, target: float, rng: np.random.Generator) -> np.ndarray:
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    brush = max(1, int(round(target)))
    pad = brush
    x, y = rng.uniform(pad, width - pad), rng.uniform(pad, height - pad)
    angle = rng.uniform(0, 2 * math.pi)
    for _ in range(int(rng.integers(2, 6))):
        angle += rng.uniform(-1.2, 1.2)
        length = rng.uniform(3, 8) * brush
        nx = float(np.clip(x + length * math.cos(angle), pad, width - 1 - pad))
        ny = float(np.clip(y + length * math.sin(angle), pad, height - 1 - pad))
        draw.line([(x, y), (nx, ny)], fill=255, width=brush)
        for cx, cy in ((x, y), (nx, ny)):   # round joints and ends, as a brush leaves
            draw.ellipse([cx - brush / 2, cy - brush / 2, cx + brush / 2, cy + brush / 2], fill=255)
        x, y = nx, ny
    return np.asarray(canvas) >= 128


def _outline(points: np.ndarray, height: int, width: int) -> np.ndarray:
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in points], fill=255)
    return np.asarray(canvas) >= 128


def _place(shape: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """``shape`` (a small bool array) pasted at a random place inside a (height, width) mask."""
    out = np.zeros((height, width), bool)
    sh, sw = min(shape.shape[0], height), min(shape.shape[1], width)
    top, left = int(rng.integers(0, height - sh + 1)), int(rng.integers(0, width - sw + 1))
    out[top:top + sh, left:left + sw] = shape[:sh, :sw]
    return out


def _blob(height: int, width: int, target: float, rng: np.random.Generator) -> np.ndarray:
    minor = target / 2
    major = minor * rng.uniform(1.0, 1.8)
    turn = rng.uniform(0, math.pi)
    t = np.linspace(0, 2 * math.pi, 180, endpoint=False)
    x, y = major * np.cos(t), minor * np.sin(t)
    pts = np.stack([x * math.cos(turn) - y * math.sin(turn), x * math.sin(turn) + y * math.cos(turn)], 1)
    pts -= pts.min(0)
    size = np.ceil(pts.max(0)).astype(int) + 2
    return _place(_outline(pts + 1, int(size[1]), int(size[0])), height, width, rng)


def _silhouette(rng: np.random.Generator) -> np.ndarray:
    """A bool silhouette at its own size: scikit-image's horse, or a star-shaped outline with lobes."""
    if rng.uniform() < 0.5:
        try:
            from skimage import data
            shape = ~data.horse().astype(bool)   # black horse on white
            shape = shape[:, ::-1] if rng.uniform() < 0.5 else shape
            return np.asarray(Image.fromarray(shape.astype(np.uint8) * 255).rotate(
                rng.uniform(-25, 25), expand=True, resample=Image.NEAREST)) >= 128
        except ImportError:
            pass
    lobes = int(rng.integers(5, 10))
    t = np.linspace(0, 2 * math.pi, 240, endpoint=False)
    radius = 100 * (1 + 0.35 * np.sin(lobes * t + rng.uniform(0, 2 * math.pi))
                    + 0.15 * np.sin(2 * t + rng.uniform(0, 2 * math.pi)))
    pts = np.stack([radius * np.cos(t), radius * np.sin(t) * rng.uniform(0.6, 1.0)], 1)
    pts -= pts.min(0)
    size = np.ceil(pts.max(0)).astype(int) + 2
    return _outline(pts + 1, int(size[1]), int(size[0]))


def _object(height: int, width: int, target: float, rng: np.random.Generator) -> np.ndarray:
    shape = _silhouette(rng)
    own = thickness(shape, (0, 0) + shape.shape)
    factor = target / own
    sh, sw = max(1, int(round(shape.shape[0] * factor))), max(1, int(round(shape.shape[1] * factor)))
    resized = np.asarray(Image.fromarray(shape.astype(np.uint8) * 255).resize((sw, sh), Image.NEAREST)) >= 128
    return _place(resized, height, width, rng)


_DRAW = {"stroke": _stroke, "blob": _blob, "object": _object}


def photo_mask(height: int, width: int, kind: str, bucket: Tuple[float, float], train_size: int, seed: int,
               name: str) -> Optional[np.ndarray]:
    """A ``kind`` mask for a (height, width) photo whose thickness lies in ``bucket`` (a fraction of
    ``train_size``), or None when the photo is too small for it (the hole would cover over a third of its short
    side)."""
    rng = _rng(seed, name, kind, bucket)
    lo, hi = bucket
    for _ in range(8):   # drawn shapes land near, not exactly at, their target: redraw until inside the bucket
        target = train_size * math.exp(rng.uniform(math.log(max(lo, 1 / 64)), math.log(hi)))
        if target > min(height, width) / 3:
            return None
        hole = _DRAW[kind](height, width, target, rng)
        if hole.any() and thickness_bucket_of(thickness(hole, (0, 0, height, width)) / train_size) == bucket:
            return hole
    return None


def photo_masks(height: int, width: int, train_size: int, seed: int, name: str) -> List[Tuple[str, Tuple[float, float],
                                                                                          np.ndarray]]:
    """(kind, bucket, hole) for every kind and thickness bucket the photo has room for."""
    out = []
    for bucket in THICKNESS_BUCKETS:
        for kind in KINDS:
            hole = photo_mask(height, width, kind, bucket, train_size, seed, name)
            if hole is not None:
                out.append((kind, bucket, hole))
    return out
