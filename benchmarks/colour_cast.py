"""Colour cast of a model's fills: the mean colour of the filled region against the ground truth's, on held-out photos.

    .venv/bin/python benchmarks/colour_cast.py --ckpt madf/weights/madf-small-photos.safetensors \\
        --images data/photos/heldout [--size 256] [--per-bucket 2]

For every photo (centre square at --size) and every seeded procedural mask (madf-eval's), the mean R, G, B over the
hole of the result minus that of the photo, in 8-bit levels. A tinted model shows a consistent sign (the earlier
bundled model's fills were green); the table gives the mean signed difference per channel (the cast) and the mean
absolute difference (how far off the fills' colour is, cast or not), for the model and OpenCV's Telea.
"""
from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--per-bucket", type=int, default=2)
    parser.add_argument("--bound", type=float, default=2.0,
                        help="No colour cast: every channel's mean signed difference within +-bound levels (default "
                             "2.0; OpenCV's Telea, which copies colours from the hole's rim, stays within it).")
    args = parser.parse_args()

    from madf.data.images import list_image_tree
    from madf.data.masks import eval_masks
    from madf.inpaint import imaging
    from madf.inpaint.inpainter import Inpainter
    from madf.training.evaluate import opencv_method

    inpainter = Inpainter.from_checkpoint(args.ckpt)
    methods = {"madf": inpainter.__call__, "telea": opencv_method("TELEA")}
    photos = [imaging.center_square(imaging.open_image(p), args.size) for p in list_image_tree(args.images)]
    masks = eval_masks(args.size, args.size, args.per_bucket, seed=0)
    diffs = {name: [] for name in methods}
    for photo in photos:
        for _, hole in masks:
            for name, method in methods.items():
                out = np.asarray(method(photo, hole), np.float64)
                diffs[name].append(out[hole].mean(axis=0) - photo[hole].astype(np.float64).mean(axis=0))
    print(f"{len(photos)} photos x {len(masks)} masks at {args.size}x{args.size}; hole mean colour, result - truth, "
          f"8-bit levels")
    print("| method | cast R | cast G | cast B | mean abs R | mean abs G | mean abs B | "
          f"no cast (within +-{args.bound:g}) |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, rows in diffs.items():
        d = np.array(rows)
        cast, spread = d.mean(axis=0), np.abs(d).mean(axis=0)
        print(f"| {name} | " + " | ".join(f"{v:+.1f}" for v in cast) + " | "
              + " | ".join(f"{v:.1f}" for v in spread) + f" | {'yes' if np.abs(cast).max() <= args.bound else 'no'} |")


if __name__ == "__main__":
    main()
