"""Inpainting a collection: jobs (image, mask, output), read, inpainted and written a chunk at a time, every
failure confined to its image. One runner for the plain folder run (madf-inpaint) and the Ray actors (madf.scale),
so both write the same bytes; where the files live is a ``store`` (local paths here, object stores in madf.scale).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

from madf.common.atomic import atomic_path
from madf.common.errors import InputError, MADFError, failure_line, first_line
from madf.common.paths import Ref
from madf.inpaint import imaging

log = logging.getLogger("madf")


@dataclasses.dataclass
class Job:
    image: Ref
    mask: Ref
    output: Ref


@dataclasses.dataclass
class Outcome:
    job: Job
    status: str                 # "written", "failed", or "skipped" (its result was already there)
    error: Optional[str] = None
    seconds: float = 0.0


class LocalFiles:
    """Jobs on this machine's file system: outputs written atomically (temp file, then rename)."""

    @staticmethod
    def name(ref: Ref) -> str:
        return Path(ref).name

    def read_photo(self, ref: Ref):
        return imaging.read_photo(ref)

    def read_mask(self, ref: Ref, invert: bool):
        return imaging.read_mask(ref, invert=invert)

    def write(self, ref: Ref, data: bytes) -> None:
        with atomic_path(ref) as tmp:
            tmp.write_bytes(data)

    def modified(self, ref: Ref) -> Optional[float]:
        """When ``ref`` was last written (seconds since the epoch), None when it does not exist."""
        try:
            return Path(ref).stat().st_mtime
        except FileNotFoundError:
            return None


def split_written(jobs: Sequence[Job], store=None) -> Tuple[List[Job], List[Job]]:
    """(to do, already written) for --resume: one look at each output (results are written atomically, so a
    present file is a complete one)."""
    store = store or LocalFiles()
    todo, done = [], []
    for job in jobs:
        (done if store.modified(job.output) is not None else todo).append(job)
    return todo, done


def pair_by_stem(images: Sequence[Ref], masks: Union[Ref, Sequence[Ref]], output: Callable[[str], Ref],
                 name: Callable[[Ref], str], where: str, fmt: str = "png") -> List[Job]:
    """Each image with its mask (one mask for all, or the mask of its file stem) and its output (``output(stem)``);
    two images of one stem, or an image without a mask, are refused before anything runs."""
    stems: dict = {}
    for ref in images:
        stem = Path(name(ref)).stem
        if stem in stems:
            raise InputError(f"{name(stems[stem])} and {name(ref)} would both write {stem}.{fmt}; rename one")
        stems[stem] = ref
    if isinstance(masks, (str, Path)):
        return [Job(ref, masks, output(stem)) for stem, ref in stems.items()]
    by_stem = {Path(name(m)).stem: m for m in masks}
    unmatched = [name(ref) for stem, ref in stems.items() if stem not in by_stem]
    if unmatched:
        shown = ", ".join(unmatched[:5]) + (f", ... {len(unmatched) - 5} more" if len(unmatched) > 5 else "")
        raise InputError(f"no mask in {where} with the stem of {len(unmatched)} image(s): {shown}; masks are matched "
                         f"by file name without extension")
    return [Job(ref, by_stem[stem], output(stem)) for stem, ref in stems.items()]


def run_chunk(inpainter, jobs: Sequence[Job], store=None, invert_mask: bool = False, resize_mask: bool = False,
              quality: int = 95, reason: Callable[[BaseException], str] = failure_line,
              keep: Optional[Callable[[Job, float], bool]] = None) -> Iterator[Outcome]:
    """Read, inpaint (batched by the Inpainter) and write ``jobs``; one Outcome per job, in order of completion.
    An unreadable file, a size mismatch or a batch the backend cannot run (out of memory: retried one by one) fails
    only its images. ``keep(job, modified)``: whether a result present (last written at ``modified``) is kept, not
    recomputed (a resume; a retried task after a crash, which keeps what changed since the run was planned)."""
    store = store or LocalFiles()
    ready: List[Tuple[Job, object, object, object]] = []
    masks: dict = {}
    started = time.perf_counter()
    for job in jobs:
        if keep is not None:
            when = store.modified(job.output)
            if when is not None and keep(job, when):
                yield Outcome(job, "skipped")
                continue
        try:
            rgb, look = store.read_photo(job.image)
            if job.mask not in masks:
                masks = {job.mask: store.read_mask(job.mask, invert_mask)}   # one mask may serve every image
            hole = masks[job.mask]
            if resize_mask:
                hole = imaging.resize_mask(hole, *rgb.shape[:2])
            imaging.check_pair(rgb, hole, store.name(job.image))
            ready.append((job, rgb, hole, look))
        except (InputError, OSError) as exc:
            yield Outcome(job, "failed", str(exc) if isinstance(exc, InputError) else
                          f"{store.name(job.image)}: {first_line(exc)}")
    if not ready:
        return
    try:
        results = list(inpainter.inpaint_many([(rgb, hole) for _, rgb, hole, _ in ready],
                                              names=[store.name(job.image) for job, *_ in ready]))
        errors = [None] * len(ready)
    except (MADFError, RuntimeError, MemoryError) as exc:   # e.g. out of memory on one large batch
        if len(ready) == 1:
            results, errors = [None], [f"{store.name(ready[0][0].image)}: {reason(exc)}"]
        else:   # one by one, so only the image that cannot run fails
            results, errors = [], []
            for job, rgb, hole, _ in ready:
                try:
                    results.append(next(iter(inpainter.inpaint_many([(rgb, hole)], names=[store.name(job.image)]))))
                    errors.append(None)
                except (MADFError, RuntimeError, MemoryError) as one:
                    results.append(None)
                    errors.append(f"{store.name(job.image)}: {reason(one)}")
    seconds = (time.perf_counter() - started) / len(ready)
    for (job, _, _, look), result, error in zip(ready, results, errors):
        if result is None:
            yield Outcome(job, "failed", error, seconds)
            continue
        output_name = store.name(job.output)   # a URI's name, without its query
        if look.alpha is not None and not imaging.keeps_alpha(output_name):
            log.warning("%s: %s has no alpha channel; the transparency is dropped", store.name(job.image),
                        Path(output_name).suffix)
        try:
            store.write(job.output, imaging.encode_image(output_name, result, quality=quality, look=look))
        except (OSError, MADFError) as exc:
            yield Outcome(job, "failed", str(exc), seconds)
            continue
        yield Outcome(job, "written", None, seconds)
