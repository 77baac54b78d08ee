"""Large photos with small holes: the full frame vs crops around the holes (madf.inpaint.strategy), on this
machine's CPU.

    .venv/bin/python benchmarks/large_photos.py [--width 4000 --height 3000] [--json out.json]

1. Speed and memory: one bundled held-out photo scaled up to WIDTH x HEIGHT with a few thin strokes (about 2% of
   the pixels), inpainted by the bundled model with --strategy full and with crop; wall time of the Inpainter call and
   the growth of the process's peak resident memory during it, each strategy in a fresh process.
2. Quality: every bundled held-out photo scaled up (bicubic) to a longer side of --quality-side px (the bundled
   photos are small; at their own size the crops around 2% of strokes cover the whole frame), procedural strokes,
   PSNR / SSIM of the composited result against the photo, crop vs full.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time

import numpy as np


def _strokes(height: int, width: int, seed: int, target: float = 0.02) -> np.ndarray:
    """Thin free-form strokes, added until about ``target`` of the pixels are holes."""
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(seed)
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    side = min(height, width)
    while (np.asarray(canvas) > 0).mean() < target:
        x, y = rng.integers(0, width), rng.integers(0, height)
        for _ in range(rng.integers(3, 7)):
            nx = int(np.clip(x + rng.integers(-side // 12, side // 12), 0, width - 1))
            ny = int(np.clip(y + rng.integers(-side // 12, side // 12), 0, height - 1))
            draw.line([(x, y), (nx, ny)], fill=255, width=int(rng.integers(side // 150, side // 60)))
            x, y = nx, ny
    return np.asarray(canvas) > 0


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _speed(strategy: str, width: int, height: int, queue) -> None:
    from PIL import Image

    from madf.data.assemble import heldout_photos
    from madf.inpaint import imaging
    from madf.inpaint.inpainter import Inpainter
    from madf.inpaint.strategy import Strategy
    from madf.weights import BUNDLED
    photo = imaging.open_image(heldout_photos(skimage_only=True)[0])
    rgb = np.asarray(Image.fromarray(imaging.to_rgb_array(photo)).resize((width, height), Image.BICUBIC))
    hole = _strokes(height, width, seed=1)
    inpainter = Inpainter.from_checkpoint(BUNDLED, strategy=Strategy(strategy))
    before = _peak_mib()
    start = time.perf_counter()
    out = inpainter(rgb, hole)
    seconds = time.perf_counter() - start
    assert np.array_equal(out[~hole], rgb[~hole])
    queue.put({"strategy": strategy, "seconds": seconds, "peak_mib": _peak_mib() - before,
               "hole": float(hole.mean())})


def _quality(side: int) -> list:
    from madf.data.assemble import heldout_photos
    from madf.inpaint import imaging
    from madf.inpaint.inpainter import Inpainter
    from madf.inpaint.strategy import Strategy
    from madf.training.evaluate import psnr, ssim
    from madf.weights import BUNDLED
    rows = []
    runners = {name: Inpainter.from_checkpoint(BUNDLED, strategy=Strategy(name, margin=128))
               for name in ("full", "crop")}
    for i, path in enumerate(heldout_photos()):
        from PIL import Image
        photo = Image.fromarray(imaging.to_rgb_array(imaging.open_image(path)))
        scale = side / max(photo.size)
        rgb = np.asarray(photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.BICUBIC))
        hole = _strokes(*rgb.shape[:2], seed=10 + i)
        scores = {}
        for name, runner in runners.items():
            out = runner(rgb, hole)
            scores[name] = (psnr(rgb, out), ssim(rgb, out))
        rows.append({"photo": path.name, "size": f"{rgb.shape[1]}x{rgb.shape[0]}", "hole": float(hole.mean()),
                     **{f"{n}_{m}": v[k] for n, v in scores.items() for k, m in enumerate(("psnr", "ssim"))}})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--quality-side", type=int, default=1600)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    speed = []
    for strategy in ("full", "crop"):
        queue = ctx.Queue()
        proc = ctx.Process(target=_speed, args=(strategy, args.width, args.height, queue))
        proc.start()
        speed.append(queue.get())
        proc.join()
    print(f"{args.width}x{args.height} photo, strokes over {speed[0]['hole']:.1%} of it, bundled model, CPU:")
    print("| strategy | seconds | peak memory growth MiB |")
    print("|---|---:|---:|")
    for row in speed:
        print(f"| {row['strategy']} | {row['seconds']:.1f} | {row['peak_mib']:.0f} |")
    quality = _quality(args.quality_side)
    print(f"\nheld-out photos scaled to {args.quality_side} px, strokes about 2%, against the photo:")
    print("| photo | size | hole | full PSNR | crop PSNR | full SSIM | crop SSIM |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in quality:
        print(f"| {r['photo']} | {r['size']} | {r['hole']:.1%} | {r['full_psnr']:.2f} | {r['crop_psnr']:.2f} | "
              f"{r['full_ssim']:.4f} | {r['crop_ssim']:.4f} |")
    mean = {k: float(np.mean([r[k] for r in quality])) for k in ("full_psnr", "crop_psnr", "full_ssim", "crop_ssim")}
    print(f"| mean | | | {mean['full_psnr']:.2f} | {mean['crop_psnr']:.2f} | {mean['full_ssim']:.4f} | "
          f"{mean['crop_ssim']:.4f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"speed": speed, "quality": quality, "mean": mean}, fh, indent=2)


if __name__ == "__main__":
    main()
