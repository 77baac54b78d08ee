"""madf-inpaint: fill the holes of one image or a folder of images with a MADF checkpoint.

    madf-inpaint --ckpt places2.pth --image photo.jpg --mask hole.png --output filled.png
    madf-inpaint --ckpt places2.pth --image photos/ --mask masks/ --output out/      # masks matched by file stem
    madf-inpaint --ckpt places2.pth --image photos/ --mask one.png --output out/     # one mask for every image
    madf-inpaint --model places2.onnx --image photos/ --mask masks/ --output out/    # ONNX Runtime, no torch

Masks: white (>= 128) = hole to fill; --invert-mask for the official / NVIDIA masks (white = known).
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import click

from madf.cli._common import (
    CHUNK,
    OVERWRITE,
    PATH,
    cli_errors,
    progress,
    reason,
    setup_logging,
)
from madf.cli.backends import (
    BACKENDS,
    CUDA_GRAPH,
    choose_backend,
    model_options,
    open_backend,
    torch_options,
)
from madf.common import paths
from madf.common.errors import InputError, MADFError
from madf.inpaint import imaging
from madf.inpaint.strategy import STRATEGIES, Strategy

log = logging.getLogger("madf")


@dataclass
class Job:
    image: Path
    mask: Path
    output: Path


def plan_jobs(image: Path, mask: Path, output: Path, overwrite: bool = False, fmt: str = "png") -> List[Job]:
    """Pair images with masks and outputs; every problem that can be seen before running is raised here, the
    output paths checked by madf.paths (never an input, never an existing file without --overwrite, writable)."""
    if not image.exists():
        raise click.ClickException(f"--image {image}: no such file or folder")
    if not mask.exists():
        raise click.ClickException(f"--mask {mask}: no such file or folder")
    paths.check_name(output, "--output")
    if image.is_file():
        if mask.is_dir():
            raise click.ClickException(f"--image is a file but --mask {mask} is a folder; give the mask file")
        out = output / f"{image.stem}.{fmt}" if output.is_dir() or not output.suffix else output
        if out.suffix.lower() not in imaging.OUTPUT_FORMATS:
            raise click.ClickException(f"--output {output}: write results as {', '.join(imaging.OUTPUT_FORMATS)}; "
                                       f"name it {out.with_suffix('.png')}")
        paths.check_output_file(out, "--output", inputs=[image, mask], overwrite=overwrite)
        return [Job(image, mask, out)]
    paths.check_output_folder(output, "--output", input_folders=[image, mask if mask.is_dir() else None])
    images = imaging.list_images(image)
    if not images:
        raise click.ClickException(f"--image {image}: no images ({', '.join(imaging.IMAGE_EXTENSIONS)}) in it")
    stems = {}
    for path in images:
        if path.stem in stems:
            raise click.ClickException(f"{stems[path.stem].name} and {path.name} would both write "
                                       f"{path.stem}.{fmt}; rename one")
        stems[path.stem] = path
    if mask.is_file():
        jobs = [Job(p, mask, output / f"{p.stem}.{fmt}") for p in images]
    else:
        masks = {p.stem: p for p in imaging.list_images(mask)}
        unmatched = [p.name for p in images if p.stem not in masks]
        if unmatched:
            shown = ", ".join(unmatched[:5]) + (f", ... {len(unmatched) - 5} more" if len(unmatched) > 5 else "")
            raise click.ClickException(f"no mask in {mask} with the stem of {len(unmatched)} image(s): {shown}; "
                                       f"masks are matched by file name without extension")
        jobs = [Job(p, masks[p.stem], output / f"{p.stem}.{fmt}") for p in images]
    paths.check_output_files([j.output for j in jobs], "--output", inputs=[*images, *{j.mask for j in jobs}],
                             overwrite=overwrite)
    return jobs


def run_jobs(inpainter, jobs: List[Job], invert_mask: bool = False, show_progress: bool = True,
             resize_mask: bool = False, quality: int = 95) -> List[str]:
    """Inpaint and write every job; returns one error line per job that failed (the others are written): one bad
    file, or one batch the backend could not run, never stops the rest."""
    errors: List[str] = []
    # closed (its line ended) however the run ends, so an error printed after it is never drawn over
    with progress(total=len(jobs), unit="img", disable=not show_progress or len(jobs) == 1) as bar:
        _run_chunks(inpainter, jobs, bar, errors, invert_mask, resize_mask, quality)
    return errors


def _run_chunks(inpainter, jobs, bar, errors, invert_mask, resize_mask, quality) -> None:
    mask_cache: dict = {}
    for start in range(0, len(jobs), CHUNK * inpainter.batch_size):
        ready: List[Tuple[Job, object, object]] = []
        alphas = {}   # image path -> its Look (alpha, gray, ICC profile)
        for job in jobs[start:start + CHUNK * inpainter.batch_size]:
            try:
                rgb, alphas[job.image] = imaging.read_photo(job.image)
                if job.mask not in mask_cache:
                    mask_cache = {job.mask: imaging.read_mask(job.mask, invert=invert_mask)}
                hole = mask_cache[job.mask]
                if resize_mask:
                    hole = imaging.resize_mask(hole, *rgb.shape[:2])
                imaging.check_pair(rgb, hole, job.image.name)
                ready.append((job, rgb, hole))
            except InputError as exc:
                errors.append(str(exc))
                bar.update(1)
        try:
            results = list(inpainter.inpaint_many([(rgb, hole) for _, rgb, hole in ready],
                                                  names=[job.image.name for job, _, _ in ready]))
        except (MADFError, RuntimeError, MemoryError) as exc:   # e.g. out of memory on one large batch
            if len(ready) > 1:   # retry one by one, so only the image that cannot run fails
                results = [_one(inpainter, job, rgb, hole, errors) for job, rgb, hole in ready]
            else:
                errors.extend(f"{job.image.name}: {reason(exc)}" for job, _, _ in ready)
                results = [None] * len(ready)
        for (job, _, _), result in zip(ready, results):
            if result is not None:
                look = alphas.get(job.image)
                if look.alpha is not None and not imaging.keeps_alpha(job.output):
                    log.warning("%s: %s has no alpha channel; the transparency is dropped", job.image.name,
                                job.output.suffix)
                try:
                    imaging.write_image(job.output, result, quality=quality, look=look)
                except OSError as exc:
                    errors.append(str(exc))
            bar.update(1)


def _one(inpainter, job: Job, rgb, hole, errors: List[str]):
    try:
        return next(iter(inpainter.inpaint_many([(rgb, hole)], names=[job.image.name])))
    except (MADFError, RuntimeError, MemoryError) as exc:
        errors.append(f"{job.image.name}: {reason(exc)}")
        return None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@model_options
@click.option("--backend", type=click.Choice(BACKENDS), default=None,
              help="torch (--ckpt), onnxruntime (--model) or tensorrt (--engine); implied by the file given.")
@click.option("--image", required=True, type=PATH, help="Image file or folder of images.")
@click.option("--mask", required=True, type=PATH,
              help="Mask file (serves every image) or folder (matched by file stem). White = hole.")
@click.option("--output", required=True, type=PATH, help="Output image (.png/.jpg/.webp/.tif), or folder.")
@click.option("--invert-mask", is_flag=True, help="Masks are white = known (official / NVIDIA irregular masks).")
@click.option("--batch-size", default=1, show_default=True, type=click.IntRange(min=1),
              help="Images per forward pass (images of one padded size are batched).")
@CUDA_GRAPH
@click.option("--strategy", type=click.Choice(STRATEGIES), default="auto", show_default=True,
              help="full: the whole frame; crop: boxes around the holes; resize: a downscaled frame; auto: crop "
                   "past --crop-trigger px, else full.")
@click.option("--crop-trigger", default=800, show_default=True, type=click.IntRange(min=1),
              help="auto: crop when the longer side is above this.")
@click.option("--margin", default=128, show_default=True, type=click.IntRange(min=0),
              help="crop: context kept around each hole region, px.")
@click.option("--max-side", default=1024, show_default=True, type=click.IntRange(min=1),
              help="crop / resize: the largest side the network sees (capped by an engine's profile).")
@click.option("--format", "fmt", type=click.Choice(["png", "jpg", "webp", "tif"]), default="png", show_default=True,
              help="Folder mode: the results' format (a file --output takes its name's).")
@click.option("--quality", default=95, show_default=True, type=click.IntRange(1, 100), help="JPEG / WebP quality.")
@click.option("--resize-mask", is_flag=True, help="Nearest-resize masks to their image's size (masks drawn on a "
                                                  "preview).")
@click.option("--quiet", is_flag=True, help="No progress bar or info lines.")
@OVERWRITE
@torch_options
def main(ckpt: Optional[Path], model_path: Optional[Path], engine: Optional[Path], plugin_libs, device: Optional[str],
         backend: Optional[str], image: Path, mask: Path, output: Path, invert_mask: bool, batch_size: int,
         cuda_graph: bool, strategy: str, crop_trigger: int, margin: int, max_side: int,
         fmt: str, quality: int, resize_mask: bool, quiet: bool, overwrite: bool, torch_options: dict) -> None:
    """Fill the holes of IMAGE (file or folder) using MASK, writing 8-bit images to OUTPUT (PNG, JPEG, WebP or
    TIFF, as the name asks; an alpha channel is kept).

    Any image size works: inputs are reflect-padded to the network's multiple (128 for the official model) and
    cropped back; photos past --crop-trigger are inpainted in crops around the holes. Known pixels are copied from
    the input unchanged.
    """
    setup_logging(quiet)
    backend = choose_backend(backend, ckpt, model_path, engine)
    with cli_errors():
        chosen = Strategy(strategy, trigger=crop_trigger, margin=margin, max_side=max_side)
        jobs = plan_jobs(image, mask, output, overwrite, fmt)
        if jobs and imaging.is_lossy(jobs[0].output):
            log.warning("JPEG is lossy: the known pixels of %s will not be the input's bytes; write .png, .webp or "
                        ".tif to keep them exact", "the results" if len(jobs) > 1 else jobs[0].output.name)
        from madf.inpaint.inpainter import Inpainter
        runner = open_backend(backend, ckpt=ckpt, model=model_path, engine=engine, device=device,
                              plugin_libs=plugin_libs, cuda_graph=cuda_graph,
                              torch_options=torch_options)
        inpainter = Inpainter(runner, batch_size=batch_size, strategy=chosen)
        log.info("%s, %d image(s), strategy %s", runner.describe(), len(jobs), inpainter.strategy.name)
        errors = run_jobs(inpainter, jobs, invert_mask=invert_mask, show_progress=not quiet,
                          resize_mask=resize_mask, quality=quality)
    if errors and len(jobs) == 1:
        raise click.ClickException(errors[0])
    for line in errors:
        click.echo(f"Error: {line}", err=True)
    if errors:
        click.echo(f"Error: {len(errors)} of {len(jobs)} image(s) failed; the others were written to {output}",
                   err=True)
        sys.exit(1)
    if len(jobs) == 1 and not quiet:
        click.echo(f"wrote {jobs[0].output}")


if __name__ == "__main__":
    main()
