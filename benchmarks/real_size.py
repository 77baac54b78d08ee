"""The real-size table of the README and docs/inpainting.md: the default pipeline against OpenCV and against the
pipeline as it was, on held-out photos at their own size (madf-eval --real-size, with extra columns).

    .venv/bin/madf-data --output data/photos-full --max-side 0 --cache data/photos/.cache
    .venv/bin/python benchmarks/real_size.py --images data/photos-full/heldout --output eval-real \\
        [--compare-ckpt OLD.safetensors] [--limit N]

Columns: madf (the default: scale-aware auto, border matching), "madf before" (the previous default: full frame up
to 800 px, full-resolution crops beyond, no border matching), "madf old weights" (the default pipeline with
--compare-ckpt), Telea, Navier-Stokes.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from tqdm import tqdm

from madf.common import paths
from madf.data.images import list_image_tree
from madf.inpaint import imaging
from madf.inpaint.inpainter import Inpainter, train_size
from madf.inpaint.strategy import Strategy
from madf.training.evaluate import opencv_method, write_reports
from madf.training.real_size import evaluate_real, real_markdown, real_table, worst_grid_caption
from madf.weights import BUNDLED


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, default=BUNDLED)
    parser.add_argument("--compare-ckpt", type=Path, default=None)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--output", type=Path, default=Path("eval-real"))
    parser.add_argument("--limit", type=int, default=None, help="the first N photos only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    paths.check_output_folder(args.output, "--output", input_folders=[args.images])
    model = Inpainter.from_checkpoint(args.ckpt)
    methods = {"madf": model.__call__,
               # the previous default: never scaled (reach beyond any hole), no border matching
               "madf before": Inpainter(model.backend, strategy=Strategy(reach=1e9, match_border=False)).__call__}
    if args.compare_ckpt:
        methods["madf old weights"] = Inpainter.from_checkpoint(args.compare_ckpt).__call__
    methods.update({"telea": opencv_method("TELEA"), "navier-stokes": opencv_method("NS")})
    files = list_image_tree(args.images)[: args.limit]
    start = time.time()
    with tqdm(total=len(files), unit="photo", desc="real sizes") as bar:
        def photos():
            for path in files:
                yield path.name, (lambda p=path: imaging.to_rgb_array(imaging.open_image(p)))
                bar.update(1)
        samples, rows = evaluate_real(methods, photos(), train_size(model.backend), seed=args.seed, worst=8)
    summary = real_table(samples)
    sizes = sorted({s.size for s in samples}, key=lambda wh: wh[0] * wh[1])
    header = (f"## Real sizes: {args.ckpt.name} on {len(files)} held-out photos from {args.images} at their own size "
              f"({sizes[0][0]}x{sizes[0][1]} to {sizes[-1][0]}x{sizes[-1][1]}), seed {args.seed}, {len(samples)} "
              f"photo-mask pairs, {time.time() - start:.0f} s on {torch.get_num_threads()} threads")
    text = real_markdown(summary, list(methods), header)
    write_reports(args.output, summary, samples, list(methods), header, markdown_text=text,
                  extra={"ckpt": str(args.ckpt), "compare_ckpt": str(args.compare_ckpt)})
    imaging.write_grid(args.output / "worst.png", rows)
    print(text)
    print(f"wrote {args.output}/eval.md, eval.json, worst.png ({worst_grid_caption(list(methods))})")
    print(json.dumps({k: v["madf"]["psnr"] - max(v["telea"]["psnr"], 0) for k, v in summary.items()}, indent=1))


if __name__ == "__main__":
    main()
