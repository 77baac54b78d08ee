"""The README's first picture: the sample photo and mask that ship in madf/samples, and the before / after image.

    .venv/bin/python benchmarks/front_page.py --mask          # draw madf/samples/flower-mask.png (once)
    .venv/bin/madf-inpaint --ckpt madf/weights/madf-small-photos.safetensors \\
        --image madf/samples/flower.jpg --mask madf/samples/flower-mask.png --output flower-filled.png
    .venv/bin/python benchmarks/front_page.py --picture flower-filled.png   # -> docs/images/flower.png

The photo is mate-backgrounds' FreshFlower.jpg (GPL-2+, Debian's mate-backgrounds package), held out from the
bundled model's training, scaled to 1200 px. The mask is what a user paints: a zig-zag stroke and an ellipse on the
blurred background, a stroke across a petal (about 3% of the photo). tests/test_front_page.py runs the command and
checks the picture in docs/images is what it makes.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
from madf.samples import FLOWER as PHOTO  # noqa: E402
from madf.samples import FLOWER_MASK as MASK

PICTURE = ROOT / "docs" / "images" / "flower.png"


def draw_mask(width: int, height: int) -> np.ndarray:
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    zigzag = [(760, 70), (840, 150), (900, 80), (980, 170), (1050, 95), (1120, 180)]
    draw.line(zigzag, fill=255, width=16, joint="curve")
    for x, y in (zigzag[0], zigzag[-1]):
        draw.ellipse([x - 8, y - 8, x + 8, y + 8], fill=255)
    draw.ellipse([840, 330, 1010, 440], fill=255)                       # on the smooth background
    draw.line([(470, 380), (560, 430), (640, 470)], fill=255, width=12, joint="curve")   # across a petal
    return np.asarray(canvas)


def picture(before: np.ndarray, hole: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Before (the hole painted white) | after, side by side at half size."""
    from madf.inpaint import imaging
    shown = imaging.show_hole(before, hole)
    h, w = before.shape[:2]
    half = [np.asarray(Image.fromarray(a).resize((w // 2, h // 2), Image.LANCZOS)) for a in (shown, after)]
    gap = np.full((h // 2, 8, 3), 255, np.uint8)
    return np.concatenate([half[0], gap, half[1]], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mask", action="store_true", help="draw madf/samples/flower-mask.png")
    parser.add_argument("--picture", type=Path, help="madf-inpaint's result -> docs/images/flower.png")
    args = parser.parse_args()
    from madf.inpaint import imaging
    photo = np.asarray(Image.open(PHOTO).convert("RGB"))
    if args.mask:
        imaging.write_png(MASK, draw_mask(photo.shape[1], photo.shape[0]))
    if args.picture:
        hole = np.asarray(Image.open(MASK)) >= 128
        imaging.write_png(PICTURE, picture(photo, hole, np.asarray(Image.open(args.picture).convert("RGB"))))
        print(f"wrote {PICTURE}")


if __name__ == "__main__":
    main()
