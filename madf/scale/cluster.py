"""Connecting to Ray: a local cluster started here (``local``), the one this machine belongs to (``auto``), or one
at an address (``ray://host:10001`` or ``host:6379``); a cluster madf started is shut down when the work ends, so
no Ray process outlives the run."""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from typing import Optional

from madf.common.errors import DeviceError, first_line

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
    for name in ("ray.data", "ray.serve", "ray"):
        logging.getLogger(name).setLevel(logging.WARNING)


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
        # a small object store by default: results go to storage from the actors, only short rows come back
        store = (object_store_mb or int(os.environ.get("MADF_RAY_OBJECT_STORE_MB", "512"))) << 20
        kwargs.update(num_cpus=num_cpus, object_store_memory=store)
    else:
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise DeviceError(f"--ray {address}: cannot connect ({first_line(exc)}); "
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
