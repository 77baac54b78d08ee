"""Batch inpainting of a collection on Ray Data, as a streaming pipeline of three stages (madf.scale.stages): CPU
tasks read and decode, a pool of actors (one model each, GPUs where asked) inpaints arrays, CPU tasks encode and
write; the model's actor never waits on storage or image coding.

    from madf.scale.batch import inpaint_collection
    report = inpaint_collection(functools.partial(Inpainter.from_checkpoint, "places2.pth"),
                                [("photos/a.jpg", "masks/a.png"), ...], output="s3://bucket/out", actors=4)

Faults: an actor or task that dies is restarted by Ray and its work retried; writes are atomic (a present file is a
complete one) and a retried write writes the same bytes again, so no clocks of different machines are compared.
``resume=True`` skips outputs already there from an earlier run. One image's failure (unreadable, size mismatch,
out of memory) is a row of the report, never the end of the run; a warning about one image is in its row; a model
that cannot be opened in an actor ends the run with madf's own one-line error (madf.scale.cluster.madf_errors).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Union

from madf.common.errors import InputError
from madf.common.threads import thread_env
from madf.inpaint.jobs import Job, pair_by_stem
from madf.scale.stages import InpaintActor, read_rows, write_rows
from madf.scale.storage import Files, child, local_path, name_of

log = logging.getLogger("madf")
COLUMNS = ("image", "mask", "output")
TEMP_GLOB = ".madf-*.tmp"   # common.atomic's temp files: what a killed writer can leave in a local folder


@dataclasses.dataclass
class BatchReport:
    rows: List[Dict]
    seconds: float
    actors: int

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.rows)

    @property
    def summary(self) -> Dict:
        done = self.count("written")
        return {"images": len(self.rows), "written": done, "skipped": self.count("skipped"),
                "failed": self.count("failed"), "seconds": round(self.seconds, 3), "actors": self.actors,
                "images_per_s": round(done / self.seconds, 3) if self.seconds > 0 else None}

    def to_json(self) -> str:
        return json.dumps({"summary": self.summary, "rows": self.rows}, indent=2) + "\n"


def plan_collection(image: Union[str, Path], mask: Union[str, Path], output: Union[str, Path], fmt: str = "png",
                    files: Optional[Files] = None) -> List[Job]:
    """Folders or URIs of images and masks (matched by stem; or one mask for all) -> jobs writing into ``output``,
    the plain run's pairing rules."""
    from madf.common.paths import check_output_target
    files = files or Files()
    check_output_target(output, "--output", [image, mask if files.is_folder(mask) else None])
    if not files.is_folder(image):
        raise InputError(f"--image {image}: not a folder (or bucket prefix) of images")
    images = files.list_images(image)
    if not images:
        raise InputError(f"--image {image}: no images in it")
    masks = files.list_images(mask) if files.is_folder(mask) else str(mask)
    return pair_by_stem(images, masks, lambda stem: child(output, f"{stem}.{fmt}"), name_of, str(mask), fmt)


def jobs_from_pairs(pairs: Iterable[Sequence], output: Union[str, Path, None], fmt: str = "png") -> List[Job]:
    """(image, mask) or (image, mask, output) tuples as jobs; outputs of pairs go into ``output`` by stem."""
    jobs = []
    for pair in pairs:
        if len(pair) == 3:
            jobs.append(Job(str(pair[0]), str(pair[1]), str(pair[2])))
        elif output is None:
            raise InputError("give output= (a folder or URI) or (image, mask, output) triples")
        else:
            jobs.append(Job(str(pair[0]), str(pair[1]), child(output, f"{Path(name_of(pair[0])).stem}.{fmt}")))
    return jobs


# measured (benchmarks/ray_scaling.py, 2 CPUs, 192 photos at 256 px, 2 actors): 1 batch per block and 2 reading
# tasks per actor 14.2 images/s, 4 batches and 1 task per actor 19.1 (the actor-does-everything run: 18.6)
BATCHES_PER_BLOCK = 4


def _dataset(ray, jobs: Union[List[Job], object], rows_per_task: int, io_tasks: int, actors: int):
    """(the rows as a Dataset, how many reading and writing tasks may run at once)."""
    if not isinstance(jobs, list):
        return jobs, io_tasks   # a Ray Dataset with the image, mask, output columns
    # a block (one task of each stage; Ray Data costs ~10 ms of CPU per block and stage) holds a few of the
    # actors' batches, but there are blocks enough for every actor to start at once
    blocks = -(-len(jobs) // (rows_per_task * BATCHES_PER_BLOCK))
    blocks = max(1, min(len(jobs), max(blocks, 2 * actors)))
    # no more tasks than blocks: Ray warns of a limit it cannot reach
    return ray.data.from_items([dataclasses.asdict(j) for j in jobs], override_num_blocks=blocks), \
        min(io_tasks, blocks)


def _pipeline(ray, make_inpainter: Callable, pairs, actors: int, gpus: float, cpus: float, threads: Optional[int],
              rows_per_task: int, io_tasks: int, read_options: Dict, quality: int):
    """The run as a Ray Dataset of report rows: read -> inpaint -> write. The reading and writing tasks ask for no
    CPU: the actors may hold every CPU of the cluster (one per core on a CPU cluster), and a task that waited for a
    CPU would wait forever; ``io_tasks`` bounds how many run at once instead."""
    env = {"env_vars": thread_env(threads)} if threads else None   # the one thread setting (madf.common.threads)
    rows, io_tasks = _dataset(ray, pairs, rows_per_task, io_tasks, actors)
    io = dict(batch_size=rows_per_task, num_cpus=0, concurrency=io_tasks)
    return (rows
            .map_batches(read_rows, fn_kwargs=read_options, **io)
            # Ray Data's actor pools restart a dead actor and retry its task (the fault tests check it)
            .map_batches(InpaintActor, fn_constructor_args=(make_inpainter,), batch_size=rows_per_task,
                         compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cpus, num_gpus=gpus or None,
                         runtime_env=env)
            .map_batches(write_rows, fn_kwargs={"quality": quality}, **io))


def sweep_temp_files(folder: Union[str, Path, None]) -> int:
    """Remove the temp files of interrupted atomic writes in a local output folder; how many there were."""
    folder = local_path(folder) if folder is not None else None
    if folder is None or not folder.is_dir():
        return 0
    found = list(folder.glob(TEMP_GLOB))
    for path in found:
        path.unlink(missing_ok=True)
    return len(found)


def check_shared(pairs, output, report_path, ray_address: str) -> None:
    """No local path on a cluster of other nodes: each would read and write its own disk, and the results scatter."""
    refs = [output, report_path]
    if isinstance(pairs, list):
        refs += [ref for j in pairs for ref in (j.image, j.mask, j.output)]
    local = next((ref for ref in refs if ref is not None and local_path(ref) is not None), None)
    if local is not None:
        raise InputError(f"{local} is a local path, but on the Ray cluster {ray_address} each node reads and writes "
                         f"its own disk: give s3:// or gs:// URIs, add --shared-fs if every node mounts this path, "
                         f"or run on --ray local")


def inpaint_collection(make_inpainter: Callable, pairs, output: Union[str, Path, None] = None, *,
                       actors: int = 1, gpus_per_actor: float = 0.0, cpus_per_actor: float = 1.0,
                       threads_per_actor: Optional[int] = 1, rows_per_task: int = 4, invert_mask: bool = False,
                       resize_mask: bool = False, quality: int = 95, fmt: str = "png", resume: bool = False,
                       overwrite: bool = False, protect: Sequence[Union[str, Path]] = (), gpu_only: bool = False,
                       on_row: Optional[Callable[[Dict], None]] = None, ray_address: str = "local",
                       report_path: Union[str, Path, None] = None, shared_fs: bool = False,
                       io_tasks: Optional[int] = None) -> BatchReport:
    """Inpaint ``pairs`` (a list of (image, mask[, output]) refs, a list of Jobs, or a Ray Dataset with columns
    image, mask, output) with ``actors`` copies of ``make_inpainter()`` (a picklable callable returning an
    Inpainter); returns the report (also written as JSON to ``report_path``). Each actor computes with
    ``threads_per_actor`` threads; up to ``io_tasks`` tasks (default one per actor) read and decode, and as many encode
    and write, beside the actors. ``on_row(row)`` sees each row as it arrives (a progress bar, a test that kills
    an actor); a row's ``warning`` is also logged.

    The plain run's file rules hold for every output and the report (madf.common.paths.check_outputs): none may be
    an input (an image, a mask, or a file of ``protect``: the model's), none may exist unless ``overwrite`` (or
    ``resume``, which keeps them). A Dataset's rows are not looked at before the run.

    On a cluster other than ``local`` every node reads and writes its own disk, so local paths (and file:// URIs)
    are refused unless ``shared_fs`` says every node mounts them at the same place."""
    from madf.common import paths
    from madf.scale.cluster import check_resources, connect, madf_errors
    if actors < 1:
        raise InputError(f"actors must be >= 1, got {actors}")
    if isinstance(pairs, list) and pairs and not isinstance(pairs[0], Job):
        pairs = jobs_from_pairs(pairs, output, fmt)
    if ray_address != "local" and not shared_fs:
        check_shared(pairs, output, report_path, ray_address)
    rows: List[Dict] = []
    files = Files()
    before: Dict[str, Optional[float]] = {}   # each output's date before the run (None: absent)
    sources = list(map(str, protect))
    if isinstance(pairs, list):   # one look at each output, before anything runs
        before = {str(j.output): files.modified(j.output) for j in pairs}
        sources += [*{str(j.image) for j in pairs}, *{str(j.mask) for j in pairs}]
        paths.check_outputs([j.output for j in pairs], "--output", sources, overwrite or resume,
                            exists=lambda ref: before[str(ref)] is not None)
    if report_path is not None:   # never an input, nor one of the results
        paths.check_outputs([report_path], "--report", sources + list(before), overwrite or resume,
                            exists=lambda ref: files.modified(ref) is not None)
    if resume and isinstance(pairs, list):   # results of an earlier run stay; nothing of theirs is redone
        kept = [j for j in pairs if before[str(j.output)] is not None]
        pairs = [j for j in pairs if before[str(j.output)] is None]
        rows += [{"image": str(j.image), "output": str(j.output), "status": "skipped", "error": "", "seconds": 0.0,
                  "worker": ""} for j in kept]
        for row in rows:
            if on_row:
                on_row(row)
    started = time.perf_counter()
    folders = {local_path(j.output).parent for j in pairs if local_path(j.output) is not None} \
        if isinstance(pairs, list) else set()
    try:
        if not isinstance(pairs, list) or pairs:
            with connect(ray_address) as ray, madf_errors():
                check_resources(ray, actors, cpus_per_actor, gpus_per_actor, "actor", ray_address, gpu_only)
                for row in _pipeline(ray, make_inpainter, pairs, actors, gpus_per_actor, cpus_per_actor,
                                     threads_per_actor, rows_per_task, io_tasks or actors,
                                     dict(invert_mask=invert_mask, resize_mask=resize_mask,
                                          resume=resume and not isinstance(pairs, list)), quality).iter_rows():
                    row = {k: (float(v) if k == "seconds" else str(v)) for k, v in row.items()}
                    if row["warning"]:
                        log.warning("%s", row["warning"])
                    rows.append(row)
                    if on_row:
                        on_row(row)
    finally:
        for folder in folders:   # an interrupted or killed writer's temp files
            sweep_temp_files(folder)
    report = BatchReport(rows, time.perf_counter() - started, actors)
    if report_path is not None:
        files.write(str(report_path), report.to_json().encode())
    return report
