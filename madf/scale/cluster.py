"""Connecting to Ray: a local cluster started here (``local``), the one this machine belongs to (``auto``), or one
at an address (``ray://host:10001`` or ``host:6379``); a cluster madf started is shut down when the work ends, so
no Ray process outlives the run."""
from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import threading
from typing import Optional

from madf.common import errors
from madf.common.errors import DeviceError, MADFError, first_line

log = logging.getLogger("madf")


def import_ray():
    try:
        import ray
    except ImportError:
        raise DeviceError("--ray needs Ray: pip install 'madf-trt[ray]'") from None
    return ray


def _quiet_ray_data() -> None:
    from ray.data import DataContext
    context = DataContext.get_current()
    context.enable_progress_bars = False   # madf draws its own bar (images/s, ETA)
    context.print_on_execution_start = False
    # an actor's error reaches the driver as itself (a RayTaskError that is also the CheckpointError raised), not
    # as UserCodeException: madf_errors prints its one line
    context.raise_original_map_exception = True
    for name in ("ray.serve", "ray"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)   # it logs each failure's traceback; madf says it


@contextlib.contextmanager
def connect(address: str = "local", num_cpus: Optional[int] = None, object_store_mb: Optional[int] = None):
    """Yield the ray module connected to a cluster; one madf started is shut down on the way out."""
    ray = import_ray()
    if ray.is_initialized():   # the caller's own cluster: used, left running
        _quiet_ray_data()
        yield ray
        return
    kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if address == "local":
        # named, so RAY_ADDRESS (which ray.init prefers to an unnamed address) cannot redirect it
        kwargs["address"] = "local"
        if os.environ.get("RAY_ADDRESS"):
            log.info("--ray local starts a cluster on this machine; RAY_ADDRESS=%s is not used (--ray auto joins "
                     "it)", os.environ["RAY_ADDRESS"])
        # a small object store by default: results go to storage from the actors, only short rows come back
        store = (object_store_mb or int(os.environ.get("MADF_RAY_OBJECT_STORE_MB", "512"))) << 20
        kwargs.update(num_cpus=num_cpus, object_store_memory=store)
    else:
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        via = f" (RAY_ADDRESS={os.environ['RAY_ADDRESS']})" if address == "auto" and os.environ.get("RAY_ADDRESS") \
            else ""
        raise DeviceError(f"--ray {address}{via}: cannot connect ({first_line(exc)}); "
                          f"start a cluster with 'ray start --head', or use --ray local") from None
    _own_sigterm()
    try:
        _quiet_ray_data()
        yield ray
    finally:
        ray.shutdown()


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def _own_sigterm() -> None:
    """ray.init installs a crash handler on SIGTERM that dumps a stack and aborts the process; a SIGTERM to a
    madf tool means stop cleanly (shut the cluster down, sweep temp files, exit 143), as without Ray."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)


def check_resources(ray, count: int, cpus: float, gpus: float, what: str = "actor", address: str = "local",
                    gpu_only: bool = False) -> None:
    """Refuse, before anything is scheduled, a request the cluster cannot hold: Ray would wait forever for CPUs or
    a GPU that never come. A cluster started here cannot grow; one joined may autoscale, so that is a warning.
    ``gpu_only``: the backend runs on nothing else (a TensorRT engine), so no CPU setting is offered."""
    have = ray.cluster_resources()
    plural = "s" if count > 1 else ""
    for kind, each in (("CPU", cpus), ("GPU", gpus)):
        need, there = count * each, float(have.get(kind, 0.0))
        if need <= there + 1e-9:
            continue
        fit = int(there // each + 1e-9)
        fix = f"--{what}s {fit}" if fit else f"a cluster with {kind}s (--ray ADDRESS)"
        if kind == "GPU" and not gpu_only:
            fix += f", or --gpus-per-{what} 0 for a CPU backend"
        line = f"{count} {what}{plural} x {each:g} {kind} need {need:g}; the Ray cluster has {there:g}: use {fix}"
        if address == "local":
            raise DeviceError(line)
        log.warning("%s (waiting for the cluster to grow)", line)


# A madf error raised in a Ray Serve replica's constructor reaches the driver as text (the traceback in the
# deployment's status message); its last "madf.common.errors.X: message" line is the error to raise again.
_REMOTE_ERROR = re.compile(r"madf\.common\.errors\.(\w+): (.+)")


def remote_madf_error(text: str) -> Optional[MADFError]:
    """The madf error named last in ``text`` (a remote traceback), as its own type; None when there is none."""
    found = _REMOTE_ERROR.findall(str(text))
    if not found:
        return None
    name, message = found[-1]
    kind = getattr(errors, name, None)
    kind = kind if isinstance(kind, type) and issubclass(kind, MADFError) else MADFError
    return kind(message.strip())


@contextlib.contextmanager
def madf_errors():
    """Ray's wrappers of a remote failure turned into madf's one-line errors: the madf error raised in an actor or
    replica as itself, a dead worker or running out of memory as one line, never Ray's traceback."""
    ray = import_ray()
    try:
        yield
    except (ray.exceptions.OutOfMemoryError, MemoryError):
        raise MemoryError("out of memory") from None
    except ray.exceptions.RayError as exc:
        cause = getattr(exc, "cause", None)   # a task's own exception (raise_original_map_exception)
        if isinstance(cause, MADFError):
            raise cause.__class__(first_line(cause)) from None
        found = remote_madf_error(str(exc))   # an actor's or replica's constructor: only its traceback's text
        if found is not None:
            raise found from None
        who = "a Ray worker" if isinstance(exc, ray.exceptions.RayTaskError) else "the Ray cluster"
        raise DeviceError(f"{who} failed: {first_line(cause or exc)}") from None
