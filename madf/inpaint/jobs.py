"""Inpainting a collection: jobs (image, mask, output), read, inpainted and written, every failure confined to its
image. The three steps (read_job, inpaint_ready, write_result) are the plain folder run's (run_chunk, madf-inpaint)
and the Ray pipeline's stages (madf.scale.batch), so both write the same bytes; where the files live is a ``store``
(local paths here, object stores in madf.scale).
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


@dataclasses.dataclass
class Ready:
    """A job read and checked, waiting for the network: its photo, hole and what the result keeps of the photo."""
    job: Job
    rgb: object
    hole: object
    look: object


def read_job(store, job: Job, invert_mask: bool = False, resize_mask: bool = False,
             masks: Optional[dict] = None) -> Union[Ready, Outcome]:
    """Read and check one job's photo and mask: Ready, or a failed Outcome. ``masks``: a one-entry cache, as one
    mask may serve every image."""
    masks = {} if masks is None else masks
    try:
        rgb, look = store.read_photo(job.image)
        if job.mask not in masks:
            masks.clear()
            masks[job.mask] = store.read_mask(job.mask, invert_mask)
        hole = masks[job.mask]
        if resize_mask:
            hole = imaging.resize_mask(hole, *rgb.shape[:2])
        imaging.check_pair(rgb, hole, store.name(job.image))
        return Ready(job, rgb, hole, look)
    except (InputError, OSError) as exc:
        return Outcome(job, "failed", str(exc) if isinstance(exc, InputError) else
                       f"{store.name(job.image)}: {first_line(exc)}")


def inpaint_ready(inpainter, pairs: Sequence[Tuple[object, object]], names: Sequence[str],
                  reason: Callable[[BaseException], str] = failure_line) -> List[Tuple[object, Optional[str]]]:
    """(result, None) or (None, error line) for each (photo, hole) of ``pairs``, batched by the Inpainter. A batch the
    backend cannot run (out of memory on one large batch) is retried one by one, so only the image that cannot run
    fails."""
    if not pairs:
        return []
    try:
        return [(result, None) for result in inpainter.inpaint_many(list(pairs), names=list(names))]
    except (MADFError, RuntimeError, MemoryError) as exc:
        if len(pairs) == 1:
            return [(None, f"{names[0]}: {reason(exc)}")]
    done = []
    for pair, name in zip(pairs, names):
        try:
            done.append((next(iter(inpainter.inpaint_many([pair], names=[name]))), None))
        except (MADFError, RuntimeError, MemoryError) as one:
            done.append((None, f"{name}: {reason(one)}"))
    return done


def write_result(store, job: Job, result, look, quality: int = 95, seconds: float = 0.0) -> Outcome:
    """Encode ``result`` like its photo (``look``) and write it atomically; the Outcome."""
    output_name = store.name(job.output)   # a URI's name, without its query
    if look.alpha is not None and not imaging.keeps_alpha(output_name):
        log.warning("%s: %s has no alpha channel; the transparency is dropped", store.name(job.image),
                    Path(output_name).suffix)
    try:
        store.write(job.output, imaging.encode_image(output_name, result, quality=quality, look=look))
    except (OSError, MADFError) as exc:
        return Outcome(job, "failed", str(exc), seconds)
    return Outcome(job, "written", None, seconds)


def run_chunk(inpainter, jobs: Sequence[Job], store=None, invert_mask: bool = False, resize_mask: bool = False,
              quality: int = 95, reason: Callable[[BaseException], str] = failure_line) -> Iterator[Outcome]:
    """Read, inpaint (batched by the Inpainter) and write ``jobs`` in one process (the plain folder run); one
    Outcome per job, in order of completion. An unreadable file, a size mismatch or a batch the backend cannot run
    fails only its images. The Ray pipeline (madf.scale.batch) runs the same three steps as its stages."""
    store = store or LocalFiles()
    ready: List[Ready] = []
    masks: dict = {}
    started = time.perf_counter()
    for job in jobs:
        item = read_job(store, job, invert_mask, resize_mask, masks)
        if isinstance(item, Outcome):
            yield item
        else:
            ready.append(item)
    done = inpaint_ready(inpainter, [(r.rgb, r.hole) for r in ready], [store.name(r.job.image) for r in ready],
                         reason)
    seconds = (time.perf_counter() - started) / max(len(ready), 1)
    for item, (result, error) in zip(ready, done):
        if result is None:
            yield Outcome(item.job, "failed", error, seconds)
        else:
            yield write_result(store, item.job, result, item.look, quality, seconds)
