"""Images/s of a folder run: plain (one process) against Ray Data with 1 and 2 actors, each computing with one
thread, and the time per image Ray adds. The bundled model on ONNX Runtime, real photos with procedural masks.

    .venv/bin/python benchmarks/ray_scaling.py [--images 48] [--size 256]

"steady" counts from the first result to the last (the actors are up); "total" includes starting the local cluster
and the actors. On N GPUs with one actor each, steady throughput should be N times one actor's as long as reading,
decoding and writing (CPU work in each actor, or the object store's bandwidth for remote files) keep up.
"""
from __future__ import annotations

import argparse
import functools
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from PIL import Image

    from madf.cli._common import format_table
    from madf.cli.backends import open_inpainter
    from madf.cli.inpaint import plan_jobs, run_jobs
    from madf.data.masks import free_form_mask
    from madf.data.photos import sample_photos
    from madf.export.onnx import export_onnx
    from madf.model.checkpoint import load_checkpoint
    from madf.scale.batch import inpaint_collection
    from madf.weights import BUNDLED

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="madf-ray-bench-"))
    model = work / "model.onnx"
    export_onnx(load_checkpoint(BUNDLED), model)
    photos, masks = work / "photos", work / "masks"
    photos.mkdir()
    masks.mkdir()
    sources = sample_photos()
    for i in range(args.images):
        image = Image.open(sources[i % len(sources)]).convert("RGB").resize((args.size, args.size), Image.BICUBIC)
        image.save(photos / f"{i:04d}.png")
        hole = (free_form_mask(args.size, args.size, seed=i) * 255).astype(np.uint8)
        Image.fromarray(hole).save(masks / f"{i:04d}.png")
    factory = functools.partial(open_inpainter, "onnxruntime", model=str(model), threads=1)

    rows, reference = [], None
    out = work / "plain"
    jobs = plan_jobs(photos, masks, out)
    inpainter = factory()
    run_jobs(inpainter, plan_jobs(photos, masks, work / "warm-up"), show_progress=False)   # as Ray's steady state
    start = time.perf_counter()
    assert not run_jobs(inpainter, jobs, show_progress=False)
    plain = time.perf_counter() - start
    reference = {p.name: p.read_bytes() for p in out.iterdir()}
    rows.append(["plain (1 thread)", f"{plain:.1f}", f"{plain:.1f}", f"{args.images / plain:.2f}", "1.00x", "-"])
    per_image_plain = plain / args.images
    one_actor = None
    for actors in (1, 2):
        out = work / f"ray{actors}"
        jobs = plan_jobs(photos, masks, out)
        arrivals = []
        start = time.perf_counter()
        report = inpaint_collection(factory, jobs, actors=actors, threads_per_actor=1, rows_per_task=4,
                                    on_row=lambda row: arrivals.append(time.perf_counter()))
        total = time.perf_counter() - start
        assert report.summary["written"] == args.images
        workers = len({r["worker"] for r in report.rows})
        assert workers == actors, f"{workers} worker processes for {actors} actor(s)"
        assert {p.name: p.read_bytes() for p in out.glob("*.png")} == reference, "results differ from the plain run"
        # the first task's results all arrive together: count from its arrival, over the images after it
        first = arrivals[0]
        after = sum(t > first for t in arrivals)
        steady = (arrivals[-1] - first) / max(after, 1) * args.images
        rate = args.images / steady
        one_actor = one_actor or rate
        overhead = (steady / args.images - per_image_plain) * 1e3 if actors == 1 else None
        rows.append([f"--ray local --actors {actors}", f"{total:.1f}", f"{steady:.1f}", f"{rate:.2f}",
                     f"{rate / one_actor:.2f}x" if actors > 1 else f"{rate * plain / args.images:.2f}x",
                     f"{overhead:+.1f} ms" if overhead is not None else "-"])
    print(f"{args.images} photos {args.size}x{args.size}, bundled model, ONNX Runtime CPU, 1 thread per worker")
    print(format_table(["run", "total s", "steady s", "images/s (steady)", "vs plain / vs 1 actor",
                        "Ray per image"], rows))
    print("results byte-identical to the plain run: yes")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
