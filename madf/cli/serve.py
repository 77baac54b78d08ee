"""madf-serve: an HTTP inpainting service with a painting page, on any backend.

    madf-serve --ckpt places2.pth                        # http://127.0.0.1:8080/ : the page; /docs : the API
    madf-serve --model places2.onnx --port 9000          # ONNX Runtime, no torch
    madf-serve --engine places2.plan --host 0.0.0.0      # TensorRT; listen on every interface (think first)
    madf-serve --model places2.onnx --replicas 4         # Ray Serve: 4 replicas on a local Ray cluster
    madf-serve --engine places2.plan --ray auto --replicas 8 --gpus-per-replica 1 --host 0.0.0.0   # a cluster

    curl -F image=@photo.jpg -F mask=@hole.png http://127.0.0.1:8080/inpaint -o filled.png
"""
from __future__ import annotations

import sys

import click

from madf.cli._common import FloatRange, cli_errors, setup_logging
from madf.cli.backends import (
    CUDA_GRAPH,
    choose_backend,
    model_options,
    open_options,
    torch_options,
)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@model_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (localhost only by default).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(min=1),
              help="Requests that arrive together share a forward pass, up to this many.")
@click.option("--batch-wait-ms", default=10.0, show_default=True, type=FloatRange(0, 10000),
              help="How long the first request of a batch waits for others (at most 10 s).")
@click.option("--queue-size", default=16, show_default=True, type=click.IntRange(min=1),
              help="Requests waiting beyond this are answered 503 (retry).")
@click.option("--max-upload-mb", default=20.0, show_default=True, type=FloatRange(min=0, min_open=True),
              help="Larger request bodies are answered 413.")
@click.option("--max-megapixels", default=40.0, show_default=True, type=FloatRange(min=0, min_open=True),
              help="Larger images are answered 413.")
@click.option("--replicas", type=click.IntRange(min=1), default=None,
              help="Serve N replicas through Ray Serve (each loads the model and batches its own requests).")
@click.option("--ray", "ray_address", default=None, metavar="local|auto|ADDRESS",
              help="The Ray cluster for --replicas (default local: one started on this machine).")
@click.option("--gpus-per-replica", default=None, type=FloatRange(min=0),
              help="--replicas: GPUs each replica reserves (default 1 with --device cuda or --engine, else 0).")
@click.option("--cpus-per-replica", default=1.0, show_default=True, type=FloatRange(min=0),
              help="--replicas: CPUs each replica reserves.")
@click.option("--autoscale", default=None, metavar="MIN:MAX",
              help="--replicas: let Ray Serve scale between MIN and MAX replicas by the requests in flight.")
@click.option("--deployment-name", default="madf", show_default=True,
              help="--replicas: the Ray Serve application and deployment name (several services on one cluster).")
@CUDA_GRAPH
@torch_options
def main(ckpt, model_path, engine, plugin_libs, device, host, port, batch_size, batch_wait_ms, queue_size,
         max_upload_mb, max_megapixels, replicas, ray_address, gpus_per_replica, cpus_per_replica, autoscale,
         deployment_name, cuda_graph, torch_options) -> None:
    """Serve the model given (--ckpt PyTorch, --model ONNX Runtime, --engine TensorRT): POST /inpaint, GET /health,
    GET /info, the painting page at /, the OpenAPI description at /docs. The model is loaded once."""
    setup_logging()
    backend = choose_backend(None, ckpt, model_path, engine)
    with cli_errors():
        try:
            import uvicorn

            from madf.serve.app import create_app
        except ImportError as exc:
            raise click.ClickException(f"madf-serve needs FastAPI and uvicorn: pip install 'madf-trt[serve]' "
                                       f"({exc})") from exc
        app_options = dict(max_upload_mb=max_upload_mb, max_megapixels=max_megapixels, queue_size=queue_size,
                           max_batch=batch_size, wait_ms=batch_wait_ms, device=device or "cpu")
        if replicas or ray_address or autoscale:
            files = dict(ckpt=ckpt, model=model_path, engine=engine, device=device, plugin_libs=plugin_libs,
                         cuda_graph=cuda_graph, torch_options=torch_options)
            _serve_on_ray(backend, files, app_options, host, port, replicas or 1, ray_address or "local",
                          gpus_per_replica, cpus_per_replica, _bounds(autoscale), deployment_name)
            return
        from madf.inpaint.inpainter import Inpainter
        runner = open_options(backend, ckpt=ckpt, model=model_path, engine=engine, device=device,
                              plugin_libs=plugin_libs, cuda_graph=cuda_graph, torch_options=torch_options)
        app = create_app(Inpainter(runner, batch_size=batch_size), **app_options)
        # bound here, so the address printed is the one served (--port 0 takes a free port and says which)
        sock = _listen(host, port)
        port = sock.getsockname()[1]
        # flushed: a supervisor reading a pipe learns the address now, not when the buffer fills
        click.echo(f"madf-serve: {runner.describe()}\n  page http://{host}:{port}/   API docs http://{host}:{port}/docs")
        sys.stdout.flush()
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


def _bounds(text):
    if text is None:
        return None
    try:
        low, high = (int(v) for v in text.split(":"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not MIN:MAX (for example 1:8)", param_hint="--autoscale") from None
    if not 0 <= low <= high or high < 1:
        raise click.BadParameter(f"{text}: need 0 <= MIN <= MAX and MAX >= 1", param_hint="--autoscale")
    return low, high


def _serve_on_ray(backend, files, app_options, host, port, replicas, address, gpus, cpus, autoscale,
                  name: str = "madf") -> None:
    """The same app as N Ray Serve replicas; runs until Ctrl-C or SIGTERM, then takes the deployment down."""
    import functools
    import time

    from madf.backends.spec import check_backend_file, open_inpainter
    from madf.cli.backends import spec_of
    from madf.scale.cluster import check_resources, connect, madf_errors
    from madf.scale.serving import start
    spec = spec_of(backend, **files)
    if gpus is None:
        gpus = spec.gpus
    # what can be known before Ray starts: the model opens, the port is free (Ray Serve's proxy binds it itself,
    # and a busy one surfaced as "ray::ProxyActor.ready()"); --port 0 takes a free one here and says which
    check_backend_file(spec)
    sock = _listen(host, port)
    port = sock.getsockname()[1]
    sock.close()
    factory = functools.partial(open_inpainter, spec, batch_size=app_options["max_batch"])
    with connect(address) as ray, madf_errors():
        from ray import serve
        check_resources(ray, autoscale[0] if autoscale else replicas, cpus, gpus, "replica", address,
                        gpu_only=backend == "tensorrt")
        try:
            start(factory, app_options, host=host, port=port, replicas=replicas, gpus_per_replica=gpus,
                  cpus_per_replica=cpus, autoscale=autoscale, name=name)
            count = f"{autoscale[0]}-{autoscale[1]} replicas (autoscaled)" if autoscale else f"{replicas} replica(s)"
            click.echo(f"madf-serve: {count} on Ray Serve ({ray.cluster_resources().get('CPU', 0):g} CPUs, "
                       f"{ray.cluster_resources().get('GPU', 0):g} GPUs in the cluster)\n"
                       f"  page http://{host}:{port}/   API docs http://{host}:{port}/docs")
            sys.stdout.flush()
            try:
                while True:
                    time.sleep(1.0)
            except (KeyboardInterrupt, SystemExit):   # Ctrl-C or SIGTERM: a normal stop, like uvicorn's
                click.echo("madf-serve: stopping the replicas")
        finally:
            serve.shutdown()


def _listen(host: str, port: int):
    import socket

    from madf.common.errors import InputError
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port or --host") from None
    sock.listen(128)
    return sock


if __name__ == "__main__":
    main()
