"""Images/s of a folder run: plain (one process) against Ray Data with 1 and 2 actors, each computing with one
thread, and the time per image Ray adds. The bundled model on ONNX Runtime, real photos with procedural masks.

    .venv/bin/python benchmarks/ray_scaling.py [--images 48] [--size 256] [--before REV]

``--before REV`` runs the same Ray rows first with the package as it was at git revision REV (checked out into a
temp folder and imported from there, in a child process and its own Ray cluster), so one run gives before and
after on one machine.

"steady" counts from the first result to the last (the actors are up); "total" includes starting the local cluster
and the actors. "Ray per image" is steady time per image minus the plain run's, and that as a share of the plain
run's. The plain run does everything on one core; the pipeline reads, decodes, encodes and writes in tasks beside
the actor, so with 1 actor on a 2-core machine it may beat the plain run.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def prepare(work: Path, images: int, size: int) -> None:
    from PIL import Image

    from madf.data.masks import free_form_mask
    from madf.data.photos import sample_photos
    from madf.export.onnx import export_onnx
    from madf.model.checkpoint import load_checkpoint
    from madf.weights import BUNDLED

    export_onnx(load_checkpoint(BUNDLED), work / "model.onnx")
    photos, masks = work / "photos", work / "masks"
    photos.mkdir()
    masks.mkdir()
    sources = sample_photos()
    for i in range(images):
        image = Image.open(sources[i % len(sources)]).convert("RGB").resize((size, size), Image.BICUBIC)
        image.save(photos / f"{i:04d}.png")
        hole = (free_form_mask(size, size, seed=i) * 255).astype(np.uint8)
        Image.fromarray(hole).save(masks / f"{i:04d}.png")


def factory(work: Path):
    import functools

    from madf.backends.spec import BackendSpec, open_inpainter
    return functools.partial(open_inpainter, BackendSpec(str(work / "model.onnx"), backend="onnxruntime", threads=1))


def ray_runs(work: Path, label: str, **options) -> list:
    """One row per actor count: total and steady seconds; every result byte-identical to the plain run's."""
    import madf
    from madf.cli.inpaint import plan_jobs
    from madf.scale.batch import inpaint_collection

    reference = {p.name: p.read_bytes() for p in (work / "plain").iterdir()}
    images = len(reference)
    results = []
    for actors in (1, 2):
        out = work / f"{label}-ray{actors}"
        jobs = plan_jobs(work / "photos", work / "masks", out)
        arrivals = []
        start = time.perf_counter()
        report = inpaint_collection(factory(work), jobs, actors=actors, threads_per_actor=1, rows_per_task=4,
                                    on_row=lambda row: arrivals.append(time.perf_counter()), **options)
        total = time.perf_counter() - start
        assert report.summary["written"] == images, report.summary
        workers = len({r["worker"] for r in report.rows})
        assert workers == actors, f"{workers} worker processes for {actors} actor(s)"
        assert {p.name: p.read_bytes() for p in out.glob("*.png")} == reference, "results differ from the plain run"
        # the first task's results all arrive together: count from its arrival, over the images after it
        first = arrivals[0]
        after = sum(t > first for t in arrivals)
        results.append({"run": f"{label}: --actors {actors}", "actors": actors, "total": total,
                        "steady": (arrivals[-1] - first) / max(after, 1) * images,
                        "staged": "warning" in report.rows[0], "package": str(Path(madf.__file__).parent)})
    return results


def before(work: Path, rev: str) -> list:
    """ray_runs with the package of git revision ``rev``, in a child process importing it from a temp checkout."""
    tree = Path(tempfile.mkdtemp(prefix="madf-before-"))
    try:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "madf"], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
        env = dict(os.environ, PYTHONPATH=str(tree))   # before the editable install, in the driver and in Ray's workers
        child = subprocess.run([sys.executable, __file__, "--child", str(work), "--label", f"before ({rev})"],
                               env=env, cwd=tree, check=True, capture_output=True, text=True)
        rows = json.loads(child.stdout.strip().splitlines()[-1])
        assert all(r["package"].startswith(str(tree)) for r in rows), rows
        return rows
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def main() -> None:
    from madf.cli._common import format_table
    from madf.cli.inpaint import plan_jobs, run_jobs

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--before", metavar="REV", help="also run the Ray rows with the package at this revision")
    parser.add_argument("--io-tasks", type=int, help="reading (and writing) tasks at once (default: one per actor)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--label", default="now", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(ray_runs(args.child, args.label)))
        return
    work = Path(tempfile.mkdtemp(prefix="madf-ray-bench-"))
    prepare(work, args.images, args.size)
    inpainter = factory(work)()
    run_jobs(inpainter, plan_jobs(work / "photos", work / "masks", work / "warm-up"), show_progress=False)
    start = time.perf_counter()
    assert not run_jobs(inpainter, plan_jobs(work / "photos", work / "masks", work / "plain"), show_progress=False)
    plain = time.perf_counter() - start
    per_image = plain / args.images
    options = {"io_tasks": args.io_tasks} if args.io_tasks else {}
    runs = (before(work, args.before) if args.before else []) + ray_runs(work, "now", **options)
    rows = [["plain (1 thread)", "-", f"{plain:.1f}", f"{plain:.1f}", f"{args.images / plain:.2f}", "1.00x", "-"]]
    for run in runs:
        rate = args.images / run["steady"]
        one = next(r for r in runs if r["run"].split(":")[0] == run["run"].split(":")[0] and r["actors"] == 1)
        extra = run["steady"] / args.images - per_image
        rows.append([run["run"], "staged" if run["staged"] else "actor does I/O", f"{run['total']:.1f}",
                     f"{run['steady']:.1f}", f"{rate:.2f}",
                     f"{rate * plain / args.images:.2f}x / {one['steady'] / run['steady']:.2f}x",
                     f"{extra * 1e3:+.1f} ms ({extra / per_image:+.1%})" if run["actors"] == 1 else "-"])
    print(f"{args.images} photos {args.size}x{args.size}, bundled model, ONNX Runtime CPU, 1 thread per actor, "
          f"{os.cpu_count()} CPUs")
    print(format_table(["run", "pipeline", "total s", "steady s", "images/s (steady)", "vs plain / vs 1 actor",
                        "Ray per image"], rows))
    print("results byte-identical to the plain run: yes")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
