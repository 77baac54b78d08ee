"""How long the crop strategy takes to find the boxes of a hole, on a serpentine stroke (one region winding across
the whole photo: the worst case for a labelling that propagates labels step by step) and on scattered dots.

    .venv/bin/python benchmarks/crop_boxes.py [--sizes 800 1600 3200]
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def serpentine(size: int, pitch: int = 24, width: int = 8) -> np.ndarray:
    hole = np.zeros((size, size), bool)
    for i, y in enumerate(range(width, size - width, pitch)):
        hole[y:y + width, width:size - width] = True
        x = size - 2 * width if i % 2 == 0 else width
        hole[y:y + pitch + width, x:x + width] = True
    hole[size - width:] = False
    return hole


def dots(size: int, count: int = 2000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hole = np.zeros((size, size), bool)
    for y, x in rng.integers(0, size - 4, (count, 2)):
        hole[y:y + 3, x:x + 3] = True
    return hole


def main() -> None:
    from madf.cli._common import format_table
    from madf.inpaint.strategy import crop_boxes
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[800, 1600, 3200])
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        for name, make in (("serpentine", serpentine), ("2,000 dots", dots)):
            hole = make(size)
            start = time.perf_counter()
            boxes = crop_boxes(hole, 128, margin=128, max_side=1024)
            rows.append([f"{size}x{size}", name, f"{hole.mean():.1%}", len(boxes),
                         f"{(time.perf_counter() - start) * 1000:.1f}"])
    print(format_table(["photo", "hole", "of the area", "boxes", "crop_boxes ms"], rows))


if __name__ == "__main__":
    main()
