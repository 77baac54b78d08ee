"""The three stages of a Ray batch run, each a ``map_batches`` over rows of (image, mask, output): CPU tasks read and
decode (read_rows), the actor pool that holds the model only inpaints arrays (InpaintActor), CPU tasks encode and
write atomically (write_rows). They call madf.inpaint.jobs' steps, so the results are the plain run's bytes.

Every row goes through every stage: one that failed (or was skipped) earlier passes through with its status, so the
report has a row per image. A warning logged while a row is handled (an empty mask, a dropped alpha channel) is kept
in its ``warning`` column: a Ray worker's log never reaches the user.
"""
from __future__ import annotations

import contextlib
import logging
import os
import pickle
import socket
import time
from typing import Callable, Dict, Iterator, List, Optional

import numpy as np

from madf.common.errors import MADFError, first_line
from madf.inpaint.jobs import Job, Outcome, Ready, inpaint_ready, read_job, write_result
from madf.scale.storage import Files

log = logging.getLogger("madf")
READY = "ready"   # read and checked, not yet inpainted; a row's other statuses are the report's
NO_RGB = np.zeros((0, 0, 3), np.uint8)   # the pixel columns of a row that is not (or no longer) ready
NO_HOLE = np.zeros((0, 0), bool)


class ActorError(MADFError, RuntimeError):
    """An actor could not do its work at all (its model did not open); one line, carried to the driver."""


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def collected_warnings() -> Iterator[List[str]]:
    """The lines madf warns while the block runs (and still logs: the worker's own log keeps them)."""
    handler = _Collect()
    logger = logging.getLogger("madf")
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)


def column(values: list, dtype=object) -> np.ndarray:
    """A batch column; an object column is filled one item at a time, so arrays of one shape stay items."""
    out = np.empty(len(values), dtype=dtype)
    for i, value in enumerate(values):
        out[i] = value
    return out


def _jobs(batch: Dict[str, np.ndarray]) -> List[Job]:
    return [Job(str(i), str(m), str(o)) for i, m, o in zip(batch["image"], batch["mask"], batch["output"])]


def read_rows(batch: Dict[str, np.ndarray], invert_mask: bool = False, resize_mask: bool = False,
              resume: bool = False) -> Dict[str, np.ndarray]:
    """Stage 1 (CPU tasks): each row's photo and mask read and checked; ``resume``: a present output is skipped
    (a Dataset's rows are not looked at before the run)."""
    files, masks = Files(), {}
    rows: Dict[str, list] = {k: [] for k in ("image", "mask", "output", "status", "error", "warning", "rgb", "hole",
                                             "look")}
    for job in _jobs(batch):
        with collected_warnings() as warned:
            item = Outcome(job, "skipped") if resume and files.modified(job.output) is not None else \
                read_job(files, job, invert_mask, resize_mask, masks)
        ready = isinstance(item, Ready)
        for key, value in (("image", job.image), ("mask", job.mask), ("output", job.output),
                           ("status", READY if ready else item.status), ("error", "" if ready else item.error or ""),
                           ("warning", "; ".join(warned)), ("rgb", item.rgb if ready else NO_RGB),
                           ("hole", item.hole if ready else NO_HOLE),
                           ("look", pickle.dumps(item.look) if ready else b"")):
            rows[key].append(value)
    return {k: column(v) for k, v in rows.items()}


class InpaintActor:
    """Stage 2, one per Ray actor: the model loaded once, then the ready rows of each batch inpainted (batched by the
    Inpainter); the pixels of the others pass through untouched. A model that cannot be opened is not raised here
    (Ray would restart the actor and end in ActorDiedError, its message lost): the first batch raises it, and Ray
    carries it to the driver as the error it is."""

    def __init__(self, make_inpainter: Callable):
        self.failure: Optional[BaseException] = None
        try:
            self.inpainter = make_inpainter()
        except MADFError as exc:
            self.failure = exc
        except (OSError, RuntimeError, MemoryError) as exc:   # e.g. out of memory while loading
            self.failure = ActorError(f"{socket.gethostname()}: cannot open the model ({first_line(exc)})")
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        if self.failure is not None:
            raise self.failure
        status, error = list(map(str, batch["status"])), list(map(str, batch["error"]))
        warning, result = list(map(str, batch["warning"])), [NO_RGB] * len(status)
        todo = [i for i, s in enumerate(status) if s == READY]
        names = [Files.name(str(batch["image"][i])) for i in todo]
        started = time.perf_counter()
        with collected_warnings() as warned:
            done = inpaint_ready(self.inpainter, [(batch["rgb"][i], batch["hole"][i]) for i in todo], names)
        seconds = (time.perf_counter() - started) / max(len(todo), 1)
        for i, name, (image, failure) in zip(todo, names, done):
            if image is None:
                status[i], error[i] = "failed", failure
            else:
                result[i] = image
            # the Inpainter names the image a warning is about; one that names none is about the whole batch
            mine = [w for w in warned if w.startswith(f"{name}:")] or \
                [w for w in warned if not any(w.startswith(f"{n}:") for n in names)]
            warning[i] = "; ".join(filter(None, [warning[i], *mine]))
        return {"image": batch["image"], "output": batch["output"], "status": column(status), "error": column(error),
                "warning": column(warning), "result": column(result), "look": batch["look"],
                "seconds": column([seconds if i in todo else 0.0 for i in range(len(status))], np.float64),
                "worker": column([self.worker if i in todo else "" for i in range(len(status))])}


def write_rows(batch: Dict[str, np.ndarray], quality: int = 95) -> Dict[str, np.ndarray]:
    """Stage 3 (CPU tasks): each inpainted row encoded like its photo and written atomically. A retried task writes
    the same bytes again, so nothing needs to know whether an earlier try got that far."""
    files = Files()
    status, error, warning = list(map(str, batch["status"])), list(map(str, batch["error"])), \
        list(map(str, batch["warning"]))
    for i, (image, output) in enumerate(zip(batch["image"], batch["output"])):
        if status[i] != READY:
            continue
        with collected_warnings() as warned:
            outcome = write_result(files, Job(str(image), "", str(output)), batch["result"][i],
                                   pickle.loads(batch["look"][i]), quality)
        status[i], error[i] = outcome.status, outcome.error or ""
        warning[i] = "; ".join(filter(None, [warning[i], *warned]))
    return {"image": batch["image"], "output": batch["output"], "status": column(status), "error": column(error),
            "warning": column(warning), "seconds": batch["seconds"], "worker": batch["worker"]}
