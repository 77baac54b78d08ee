"""madf-serve on Ray Serve: the same FastAPI app (its API, limits, errors and per-process request batching) as the
ingress of a deployment of N replicas, each building its own model and app where it runs; Ray Serve's proxy spreads
requests over them, restarts a replica that dies, and can autoscale between bounds.

    madf-serve --model places2.onnx --replicas 2                          # a local Ray cluster, two replicas
    madf-serve --engine places2.plan --ray auto --replicas 4 --gpus-per-replica 1   # one replica per GPU
"""
from __future__ import annotations

import logging
import os
import socket
from typing import Callable, Dict, Optional, Tuple

log = logging.getLogger("madf")
NAME = "madf"   # the default name of the application and its deployment (madf-serve --deployment-name)


def _replica_name() -> Optional[str]:
    """This replica's id in Ray Serve and where it runs; None outside a replica (create_app's host:pid)."""
    try:
        from ray import serve
        context = serve.get_replica_context()
        unique = getattr(getattr(context, "replica_id", None), "unique_id", None)
        name = getattr(context, "deployment", None) or NAME
    except Exception:  # noqa: BLE001 - no replica context: a plain process
        return None
    return f"{name}#{unique}@{socket.gethostname()}:{os.getpid()}" if unique else None


# A replica whose model does not open fails the same way each time: give up after this many starts, and say why
# (Ray Serve's default retries for minutes, then reports "Deploying application madf failed").
CONSTRUCTOR_RETRIES = 2


def build_app(make_inpainter: Callable, app_options: Dict):
    """Evaluated on each replica: its own Inpainter (model loaded once there) and app (its own batcher)."""
    from madf.serve.app import create_app
    return create_app(make_inpainter(), replica=_replica_name(), **app_options)


def application(make_inpainter: Callable, app_options: Dict, replicas: int = 1, gpus_per_replica: float = 0.0,
                cpus_per_replica: float = 1.0, autoscale: Optional[Tuple[int, int]] = None, name: str = NAME):
    """The Ray Serve application: one deployment whose ingress is madf-serve's app."""
    from ray import serve

    def builder():   # a plain function: Serve calls it on each replica (a partial would be taken for the app)
        return build_app(make_inpainter, app_options)

    @serve.ingress(builder)
    class Replica:
        pass

    # each replica takes what one process takes; past that its own app answers 503, as one process does
    from madf.serve.settings import Settings
    limits = Settings(**app_options)
    settings = dict(name=name, max_ongoing_requests=limits.capacity, max_constructor_retry_count=CONSTRUCTOR_RETRIES,
                    ray_actor_options={"num_cpus": cpus_per_replica, "num_gpus": gpus_per_replica})
    if autoscale:
        low, high = autoscale
        settings["autoscaling_config"] = {"min_replicas": low, "max_replicas": high, "initial_replicas": low,
                                          "target_ongoing_requests": limits.max_batch}
    else:
        settings["num_replicas"] = replicas
    return serve.deployment(Replica, **settings).bind()


def start(make_inpainter: Callable, app_options: Dict, host: str = "127.0.0.1", port: int = 8080, name: str = NAME,
          **deployment):
    """Deploy on the connected Ray cluster and return once every replica is up; the proxy listens on host:port.
    A replica that cannot build its app (its model does not open there) ends the deployment with madf's own
    error, carried out of the replica's traceback (madf.scale.cluster.remote_madf_error)."""
    from ray import serve

    from madf.common.errors import DeviceError, first_line
    from madf.scale.cluster import remote_madf_error
    serve.start(http_options={"host": host, "port": port})
    try:
        serve.run(application(make_inpainter, app_options, name=name, **deployment), name=name, route_prefix="/",
                  blocking=False)
    except RuntimeError as exc:
        # the application's status says only "Failed to update the deployments"; the deployment's holds the
        # replica's traceback
        try:
            app = serve.status().applications.get(name)
            details = " ".join(d.message or "" for d in app.deployments.values()) if app else ""
        except Exception:  # noqa: BLE001 - the status is a hint; the error below stands without it
            details = ""
        found = remote_madf_error(details) or remote_madf_error(str(exc))
        if found is not None:
            raise found from None
        raise DeviceError(f"Ray Serve could not start the replicas: {first_line(exc)}") from None
