"""madf-inpaint: fill the holes of one image or a folder of images with a MADF checkpoint.

    madf-inpaint --ckpt places2.pth --image photo.jpg --mask hole.png --output filled.png
    madf-inpaint --ckpt places2.pth --image photos/ --mask masks/ --output out/      # masks matched by file stem
    madf-inpaint --ckpt places2.pth --image photos/ --mask one.png --output out/     # one mask for every image
    madf-inpaint --model places2.onnx --image photos/ --mask masks/ --output out/    # ONNX Runtime, no torch
    madf-inpaint --model places2.onnx --image s3://b/photos --mask s3://b/masks --output s3://b/out \
        --ray auto --actors 8 --resume                                               # a Ray cluster

Masks: white (>= 128) = hole to fill; --invert-mask for the official / NVIDIA masks (white = known).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import click

from madf.cli._common import (
    CHUNK,
    OVERWRITE,
    PATH_OR_URI,
    FloatRange,
    cli_errors,
    format_table,
    progress,
    reason,
    setup_logging,
)
from madf.cli.backends import (
    BACKENDS,
    CUDA_GRAPH,
    choose_backend,
    model_inputs,
    model_options,
    open_options,
    torch_options,
)
from madf.common import paths
from madf.common.errors import InputError
from madf.inpaint import imaging
from madf.inpaint.jobs import Job, pair_by_stem, run_chunk, split_written
from madf.inpaint.strategy import STRATEGIES, Strategy

log = logging.getLogger("madf")


def plan_jobs(image: Path, mask: Path, output: Path, overwrite: bool = False, fmt: str = "png",
              protect: Sequence[Path] = ()) -> List[Job]:
    """Pair images with masks and outputs; every problem that can be seen before running is raised here, the
    output paths checked by madf.common.paths (never an input or a file of ``protect``, the model's; never an existing
    file without --overwrite; writable)."""
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
        paths.check_output_file(out, "--output", inputs=[image, mask, *protect], overwrite=overwrite)
        return [Job(image, mask, out)]
    paths.check_output_folder(output, "--output", input_folders=[image, mask if mask.is_dir() else None])
    images = imaging.list_images(image)
    if not images:
        raise click.ClickException(f"--image {image}: no images ({', '.join(imaging.IMAGE_EXTENSIONS)}) in it")
    try:
        jobs = pair_by_stem(images, mask if mask.is_file() else imaging.list_images(mask),
                            lambda stem: output / f"{stem}.{fmt}", lambda p: Path(p).name, str(mask), fmt)
    except InputError as exc:
        raise click.ClickException(str(exc)) from None
    paths.check_output_files([j.output for j in jobs], "--output", inputs=[*images, *{j.mask for j in jobs},
                                                                         *protect], overwrite=overwrite)
    return jobs


def run_jobs(inpainter, jobs: List[Job], invert_mask: bool = False, show_progress: bool = True,
             resize_mask: bool = False, quality: int = 95) -> List[str]:
    """Inpaint and write every job; returns one error line per job that failed (the others are written): one bad
    file, or one batch the backend could not run, never stops the rest."""
    errors: List[str] = []
    # closed (its line ended) however the run ends, so an error printed after it is never drawn over
    with progress(total=len(jobs), unit="img", disable=not show_progress or len(jobs) == 1) as bar:
        for start in range(0, len(jobs), CHUNK * inpainter.batch_size):
            for outcome in run_chunk(inpainter, jobs[start:start + CHUNK * inpainter.batch_size],
                                     invert_mask=invert_mask, resize_mask=resize_mask, quality=quality,
                                     reason=reason):
                if outcome.error:
                    errors.append(outcome.error)
                bar.update(1)
    return errors


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@model_options
@click.option("--backend", type=click.Choice(BACKENDS), default=None,
              help="torch (--ckpt), onnxruntime (--model) or tensorrt (--engine); implied by the file given.")
@click.option("--image", required=True, type=PATH_OR_URI,
              help="Image file or folder of images (with --ray also a URI: s3://, gs://, file://).")
@click.option("--mask", required=True, type=PATH_OR_URI,
              help="Mask file (serves every image) or folder (matched by file stem). White = hole.")
@click.option("--output", required=True, type=PATH_OR_URI, help="Output image (.png/.jpg/.webp/.tif), or folder.")
@click.option("--invert-mask", is_flag=True, help="Masks are white = known (official / NVIDIA irregular masks).")
@click.option("--batch-size", default=1, show_default=True, type=click.IntRange(min=1),
              help="Images per forward pass (images of one padded size are batched).")
@CUDA_GRAPH
@click.option("--strategy", type=click.Choice(STRATEGIES), default="auto", show_default=True,
              help="auto: each hole filled at a scale where it is no thicker than the model's training holes, in a "
                   "box with --margin working px of context (small photos with thin holes: whole); crop: boxes at "
                   "full resolution; full: the whole frame; resize: a downscaled frame.")
@click.option("--crop-trigger", default=800, show_default=True, type=click.IntRange(min=1),
              help="auto: run the whole frame up to this longer side when every hole fits the model.")
@click.option("--margin", default=128, show_default=True, type=click.IntRange(min=0),
              help="auto / crop: context kept around each hole region, px (auto: at the working scale).")
@click.option("--max-side", default=1024, show_default=True, type=click.IntRange(min=1),
              help="auto / crop / resize: the largest side the network sees (capped by an engine's profile).")
@click.option("--match-border/--no-match-border", default=True, show_default=True,
              help="Shift each fill's colour to meet the hole's border (no ghost outline; known pixels only).")
@click.option("--format", "fmt", type=click.Choice(["png", "jpg", "webp", "tif"]), default="png", show_default=True,
              help="Folder mode: the results' format (a file --output takes its name's).")
@click.option("--quality", default=95, show_default=True, type=click.IntRange(1, 100), help="JPEG / WebP quality.")
@click.option("--resize-mask", is_flag=True, help="Nearest-resize masks to their image's size (masks drawn on a "
                                                  "preview).")
@click.option("--quiet", is_flag=True, help="No progress bar or info lines.")
@click.option("-v", "--verbose", is_flag=True,
              help="Also the strategy's choice per image: each box around a hole and the scale it is filled at.")
@click.option("--ray", "ray_address", default=None, metavar="local|auto|ADDRESS",
              help="Run on Ray Data: a pool of actors, each loading the model once (local: a cluster on this "
                   "machine; auto: the cluster this machine is in; or its address).")
@click.option("--actors", default=1, show_default=True, type=click.IntRange(min=1), help="--ray: model copies.")
@click.option("--gpus-per-actor", default=None, type=FloatRange(min=0),
              help="--ray: GPUs each actor reserves (default 1 with --device cuda, else 0; 0.5 = two per GPU).")
@click.option("--threads-per-actor", default=1, show_default=True, type=click.IntRange(min=1),
              help="--ray: CPU threads each actor computes with.")
@click.option("--io-tasks", default=None, type=click.IntRange(min=1),
              help="--ray: tasks reading and decoding (and as many encoding and writing) at once beside the actors "
                   "[default: one per actor]; raise it when GPU actors wait for photos.")
@click.option("--shared-fs", is_flag=True,
              help="--ray ADDRESS/auto: local paths are on a file system every node mounts at the same place (else "
                   "only URIs are taken: each node would read and write its own disk).")
@click.option("--resume", is_flag=True, help="Skip images whose result is already there (results are written "
                                            "atomically: a present file is a complete one); redo nothing else.")
@click.option("--report", "report_path", type=PATH_OR_URI, default=None,
              help="--ray: the JSON report of every image (default OUTPUT/madf-report.json for a folder).")
@OVERWRITE
@torch_options
def main(ckpt: Optional[Path], model_path: Optional[Path], engine: Optional[Path], plugin_libs, device: Optional[str],
         backend: Optional[str], image, mask, output, invert_mask: bool, batch_size: int,
         cuda_graph: bool, strategy: str, crop_trigger: int, margin: int, max_side: int, match_border: bool,
         fmt: str, quality: int, resize_mask: bool, quiet: bool, verbose: bool, ray_address: Optional[str], actors: int,
         gpus_per_actor: Optional[float], threads_per_actor: int, io_tasks: Optional[int], shared_fs: bool,
         resume: bool, report_path, overwrite: bool, torch_options: dict) -> None:
    """Fill the holes of IMAGE (file or folder) using MASK, writing 8-bit images to OUTPUT (PNG, JPEG, WebP or
    TIFF, as the name asks; an alpha channel is kept).

    Any image size works: inputs are reflect-padded to the network's multiple (128 for the official model) and
    cropped back; photos past --crop-trigger are inpainted in crops around the holes. Known pixels are copied from
    the input unchanged.
    """
    setup_logging(quiet, verbose)
    backend = choose_backend(backend, ckpt, model_path, engine)
    uris = [name for name, ref in (("--image", image), ("--mask", mask), ("--output", output)) if isinstance(ref, str)]
    if uris and not ray_address:
        raise click.UsageError(f"{', '.join(uris)}: URIs are read through Ray's workers; add --ray local (or auto)")
    with cli_errors():
        chosen = Strategy(strategy, trigger=crop_trigger, margin=margin, max_side=max_side,
                          match_border=match_border)
        if ray_address:
            _run_on_ray(backend, dict(ckpt=ckpt, model=model_path, engine=engine, device=device,
                                      plugin_libs=plugin_libs, cuda_graph=cuda_graph, torch_options=torch_options),
                        image, mask, output, ray_address, actors, gpus_per_actor, threads_per_actor, batch_size,
                        chosen, invert_mask, resize_mask, quality, fmt, resume, overwrite, report_path, quiet,
                        shared_fs, io_tasks)
            return
        jobs = plan_jobs(image, mask, output, overwrite or resume, fmt,
                         model_inputs(ckpt, model_path, engine, plugin_libs))
        if resume:
            jobs, done = split_written(jobs)
            if done:
                log.info("--resume: %d result(s) already written, skipped", len(done))
        if jobs and imaging.is_lossy(jobs[0].output):
            log.warning("JPEG is lossy: the known pixels of %s will not be the input's bytes; write .png, .webp or "
                        ".tif to keep them exact", "the results" if len(jobs) > 1 else jobs[0].output.name)
        from madf.inpaint.inpainter import Inpainter
        runner = open_options(backend, ckpt=ckpt, model=model_path, engine=engine, device=device,
                              plugin_libs=plugin_libs, cuda_graph=cuda_graph,
                              torch_options=torch_options)
        inpainter = Inpainter(runner, batch_size=batch_size, strategy=chosen)
        log.info("%s, %d image(s), strategy %s", runner.describe(), len(jobs), inpainter.strategy.name)
        errors = run_jobs(inpainter, jobs, invert_mask=invert_mask, show_progress=not quiet,
                          resize_mask=resize_mask, quality=quality)
    if errors and len(jobs) == 1:
        raise click.ClickException(errors[0])
    _exit_on_errors(errors, len(jobs), output)
    if len(jobs) == 1 and not quiet:
        click.echo(f"wrote {jobs[0].output}")


def _run_on_ray(backend, files: dict, image, mask, output, address, actors, gpus_per_actor, threads_per_actor,
                batch_size, strategy, invert_mask, resize_mask, quality, fmt, resume, overwrite, report_path, quiet,
                shared_fs: bool = False, io_tasks: Optional[int] = None) -> None:
    """The folder run on Ray Data: the same pairing, strategies, outputs and file rules; a summary and a report."""
    import functools

    from madf.backends.spec import check_backend_file, open_inpainter
    from madf.cli.backends import spec_of
    from madf.scale.batch import inpaint_collection, plan_collection
    from madf.scale.storage import child, is_uri
    protect = model_inputs(files["ckpt"], files["model"], files["engine"], files["plugin_libs"])
    local = not any(isinstance(ref, str) for ref in (image, mask, output))
    if local:   # the plain run's checks: never an input, never an existing result without --overwrite / --resume
        jobs = plan_jobs(Path(image), Path(mask), Path(output), overwrite or resume, fmt, protect)
    else:       # the same rules for URIs, in inpaint_collection below (one look at each output)
        jobs = plan_collection(image, mask, output, fmt)
    if report_path is None and (is_uri(output) or Path(output).is_dir() or not Path(output).suffix):
        report_path = child(output, "madf-report.json")
    spec = spec_of(backend, **files)
    check_backend_file(spec)   # once here, not in every actor (each would fail on it, in Ray's words)
    if gpus_per_actor is None:
        gpus_per_actor = spec.gpus
    factory = functools.partial(open_inpainter, spec, batch_size=batch_size, strategy=strategy)
    with progress(total=len(jobs), unit="img", disable=quiet) as bar:
        report = inpaint_collection(factory, jobs, actors=actors, gpus_per_actor=gpus_per_actor,
                                    threads_per_actor=threads_per_actor, invert_mask=invert_mask,
                                    resize_mask=resize_mask,
                                    quality=quality, fmt=fmt, resume=resume, overwrite=overwrite, protect=protect,
                                    gpu_only=backend == "tensorrt",
                                    ray_address=address, report_path=report_path, shared_fs=shared_fs,
                                    io_tasks=io_tasks,
                                    on_row=lambda row: bar.update(1))
    summary = report.summary
    if not quiet:
        click.echo(format_table(["written", "skipped", "failed", "seconds", "images/s", "actors", "report"],
                                [[summary["written"], summary["skipped"], summary["failed"], summary["seconds"],
                                  summary["images_per_s"] or "-", actors, str(report_path)]]))
    _exit_on_errors([row["error"] for row in report.rows if row["status"] == "failed"], len(jobs), output)


def _exit_on_errors(errors: List[str], total: int, output) -> None:
    """One line per failed image, a count, exit status 1; nothing when every image was written."""
    for line in errors:
        click.echo(f"Error: {line}", err=True)
    if errors:
        click.echo(f"Error: {len(errors)} of {total} image(s) failed; the others were written to {output}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
