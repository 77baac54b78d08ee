"""madf-demo: the whole path on an embedded default, with nothing to download.

checkpoint -> madf-inpaint on real photos (scikit-image's data folder) with procedural masks -> a PNG grid, the
parity of the two dynamic-filter implementations, then the deployment path: madf-export (ONNX) -> madf-inpaint on
ONNX Runtime -> madf-parity -> madf-build (a TensorRT-RTX engine and its sidecar, built on this CPU; running it
needs a GPU) -> madf-bench (PyTorch and ONNX Runtime on this CPU). The default model is the small one bundled in
madf/weights (trained on CPU on the bundled photos; the official checkpoints are on Google Drive); --random-init
uses a seeded random network instead, --ckpt real weights.
"""
from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np

from madf.cli._common import OVERWRITE, PATH, cli_errors, format_table, setup_logging
from madf.cli.inpaint import plan_jobs, run_jobs
from madf.common import paths
from madf.common.errors import MADFError
from madf.inpaint import imaging

DEMO_PHOTOS = 6   # every held-out scikit-image photo: an animal, a vehicle, brick, grass, gravel, a page of text


def _parity(net, image_paths, mask_paths):
    """Whole-model float outputs (the contract's, before 8-bit rounding) of the unfold reference vs the rewrite."""
    from madf.inpaint.inpainter import TorchBackend
    rows = []
    for image_path, mask_path in zip(image_paths, mask_paths):
        image, hole = imaging.read_image(image_path), imaging.read_mask(mask_path)
        image_t, mask_t = imaging.to_contract(image, hole, net.config.multiple)
        outputs, times = {}, {}
        for impl in ("unfold", "rewrite"):
            net.dynamic_filter = impl
            backend = TorchBackend(net)
            backend(image_t, mask_t)  # warm-up: the rewrite derives its conv weights once
            start = time.perf_counter()
            outputs[impl] = backend(image_t, mask_t).astype(np.float64)
            times[impl] = time.perf_counter() - start
        stats = imaging.compare(outputs["unfold"], outputs["rewrite"])
        rows.append([image_path.name, f"{image.shape[1]}x{image.shape[0]}", f"{hole.mean():.1%}",
                     f"{stats['max_abs']:.2e}", f"{stats['mean_abs']:.2e}", f"{stats['psnr']:.1f}",
                     f"{times['unfold']:.2f}", f"{times['rewrite']:.2f}"])
    net.dynamic_filter = "rewrite"
    return rows


def _grid(rows, path: Path, cell: int = 256) -> None:
    """One row per photo: input with the hole in white, the mask, the result."""
    imaging.write_grid(path, [[imaging.show_hole(image, hole), imaging.show_hole(np.zeros_like(image), hole), result]
                              for image, hole, result in rows], cell)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--output", default="demo_out", show_default=True, type=PATH,
              help="Folder for inputs, masks, results, the grid and the demo checkpoint.")
@click.option("--ckpt", type=PATH, default=None,
              help="Use these weights (default: the bundled small model trained on the bundled photos).")
@click.option("--random-init", is_flag=True, help="Use a seeded random-init small model instead.")
@click.option("--seed", default=0, show_default=True, help="Seed of the random init and the masks.")
@click.option("--device", default="cpu", show_default=True)
@OVERWRITE
def main(output: Path, ckpt, random_init: bool, seed: int, device: str, overwrite: bool) -> None:
    """Run checkpoint -> madf-inpaint -> grid on held-out photos, the dynamic filters' parity, then export,
    ONNX Runtime, parity, an engine build and a benchmark."""
    setup_logging()
    from madf.data.assemble import heldout_photos
    from madf.data.masks import free_form_mask
    from madf.inpaint.inpainter import Inpainter
    from madf.model.checkpoint import load_checkpoint, save_checkpoint
    from madf.model.config import SMALL
    from madf.model.network import build_model
    from madf.weights import BUNDLED, describe_bundled

    with cli_errors():
        # the demo's own folder: a rerun replaces what an earlier demo wrote there, nothing else
        paths.claim_folder(output, "madf-demo", overwrite=overwrite)
        if ckpt is None and not random_init and BUNDLED.is_file():
            ckpt = BUNDLED
            click.echo(f"model: {describe_bundled()}")
        elif ckpt is None:
            ckpt = output / "random-small.safetensors"
            save_checkpoint(build_model(SMALL, seed=seed), ckpt)
            click.echo(f"NOTE: using a seeded random-init {SMALL.describe()} saved as {ckpt}.\n      Results show "
                       f"the pipeline, not inpainting quality; pass --ckpt for trained weights.")
        inputs, masks = output / "inputs", output / "masks"
        # scikit-image's held-out photos: the same (and small) on every machine, unseen by the bundled model
        for i, photo in enumerate(heldout_photos(skimage_only=True)[:DEMO_PHOTOS]):
            image = imaging.read_image(photo)
            imaging.write_png(inputs / f"{photo.stem}.png", image)
            hole = free_form_mask(image.shape[0], image.shape[1], seed=seed + i)
            imaging.write_png(masks / f"{photo.stem}.png", (hole * 255).astype(np.uint8))

        click.echo(f"\n[1/7] madf-inpaint --ckpt {ckpt} --image {inputs} --mask {masks} --output {output / 'results'}")
        jobs = plan_jobs(inputs, masks, output / "results", overwrite=True)
        inpainter = Inpainter.from_checkpoint(ckpt, device=device)
        start = time.perf_counter()
        errors = run_jobs(inpainter, jobs)
        if errors:
            raise click.ClickException("; ".join(errors))
        click.echo(f"      {len(jobs)} images in {time.perf_counter() - start:.2f} s "
                   f"({inpainter.backend.model.config.describe()}, {device})")

        rows, exact = [], True
        for job in jobs:
            image, hole = imaging.read_image(job.image), imaging.read_mask(job.mask)
            result = imaging.read_image(job.output)
            exact &= bool(np.array_equal(result[~hole], image[~hole]))
            rows.append((image, hole, result))
        _grid(rows, output / "grid.png")
        click.echo(f"[2/7] grid (input with hole, mask, result): {output / 'grid.png'}; known pixels bit-exact: "
                   f"{'yes' if exact else 'NO'}")

        click.echo("[3/7] dynamic filter, whole model, unfold (official) vs rewrite, float outputs in [0,1]:")
        net = load_checkpoint(ckpt, device=device)
        table = _parity(net, [j.image for j in jobs], [j.mask for j in jobs])
        click.echo(format_table(["photo", "size", "hole", "max abs", "mean abs", "PSNR dB", "unfold s",
                                 "rewrite s"], table))
        if not exact:
            raise click.ClickException("known pixels changed; this is a bug")
        _deployment(ckpt, output, jobs)


def _deployment(ckpt: Path, output: Path, jobs) -> None:
    """Export, ONNX Runtime inference, parity, engine build: each step as its CLI runs it."""
    try:
        from madf.export.onnx import export_onnx
    except ImportError as exc:
        click.echo(f"[4/7] skipped: the deployment steps need the [onnx] extra ({exc})")
        return
    from madf.cli.parity import parity_report
    from madf.inpaint.inpainter import Inpainter
    from madf.model.checkpoint import load_checkpoint
    from madf.runtime.onnxruntime import OnnxRuntimeBackend

    onnx_path = output / "model.onnx"
    click.echo(f"[4/7] madf-export --ckpt {ckpt} --output {onnx_path}")
    export_onnx(load_checkpoint(ckpt), onnx_path)
    onnx_jobs = [type(j)(j.image, j.mask, output / "results-onnx" / j.output.name) for j in jobs]
    click.echo(f"[5/7] madf-inpaint --model {onnx_path} (ONNX Runtime backend, needs no torch) "
               f"--output {output / 'results-onnx'}")
    errors = run_jobs(Inpainter(OnnxRuntimeBackend(onnx_path)), onnx_jobs)
    if errors:
        raise click.ClickException("; ".join(errors))
    worst = max(int(np.abs(imaging.read_image(a.output).astype(int) - imaging.read_image(b.output)).max())
                for a, b in zip(jobs, onnx_jobs))
    click.echo(f"      8-bit results vs PyTorch's: max difference {worst} level(s) of 255")
    click.echo(f"      madf-parity --ckpt {ckpt} --model {onnx_path}")
    if not parity_report({"torch": ckpt, "onnxruntime": onnx_path}):
        raise click.ClickException("ONNX Runtime does not match PyTorch within tolerance")
    plan = output / "model.plan"
    click.echo(f"[6/7] madf-build --onnx {onnx_path} --output {plan} --opt 1x256x256 --max 1x1024x1024 "
               f"(running the engine needs a GPU)")
    try:
        from madf.cli.build import build_and_describe
        build_and_describe(onnx_path, plan, False, "auto", opt_shape=(1, 256, 256), max_shape=(1, 1024, 1024))
    except MADFError as exc:
        click.echo(f"[6/7] skipped engine build: {exc}")
    click.echo(f"[7/7] madf-bench --ckpt {ckpt} --model {onnx_path} --size 256 --runs 10 (this CPU; an engine "
               f"needs a GPU)")
    from madf.cli.bench import main as bench_main
    bench_main.main(["--ckpt", str(ckpt), "--model", str(onnx_path), "--size", "256", "--runs", "10",
                     "--warmup-s", "0.5", "--json", str(output / "bench.json"), "--overwrite"],
                    standalone_mode=False)


if __name__ == "__main__":
    main()
