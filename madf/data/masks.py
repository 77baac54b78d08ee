"""Seeded procedural free-form masks (strokes with vertices, widths and angles, plus boxes), True = hole."""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw


def free_form_mask(height: int, width: int, seed: int, strokes: int = 4, boxes: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    scale = min(height, width)
    for _ in range(strokes):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        stroke_width = int(rng.uniform(0.03, 0.08) * scale) + 1
        angle = rng.uniform(0, 2 * math.pi)
        for _ in range(int(rng.integers(3, 7))):
            angle += rng.uniform(-1.0, 1.0)
            length = rng.uniform(0.05, 0.2) * scale
            nx = float(np.clip(x + length * math.cos(angle), 0, width - 1))
            ny = float(np.clip(y + length * math.sin(angle), 0, height - 1))
            draw.line([(x, y), (nx, ny)], fill=255, width=stroke_width)
            r = stroke_width / 2
            draw.ellipse([nx - r, ny - r, nx + r, ny + r], fill=255)
            x, y = nx, ny
    for _ in range(boxes):
        bw, bh = rng.uniform(0.1, 0.25) * width, rng.uniform(0.1, 0.25) * height
        bx, by = rng.uniform(0, width - bw), rng.uniform(0, height - bh)
        draw.rectangle([bx, by, bx + bw, by + bh], fill=255)
    return np.asarray(canvas) >= 128
