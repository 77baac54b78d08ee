"""madf-serve: an HTTP inpainting service with a painting page, on any backend.

    madf-serve --ckpt places2.pth                        # http://127.0.0.1:8080/ : the page; /docs : the API
    madf-serve --model places2.onnx --port 9000          # ONNX Runtime, no torch
    madf-serve --engine places2.plan --host 0.0.0.0      # TensorRT; listen on every interface (think first)

    curl -F image=@photo.jpg -F mask=@hole.png http://127.0.0.1:8080/inpaint -o filled.png
"""
from __future__ import annotations

import sys

import click

from madf.cli._common import cli_errors, setup_logging
from madf.cli.backends import (
    CUDA_GRAPH,
    choose_backend,
    model_options,
    open_backend,
    torch_options,
)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@model_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (localhost only by default).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(min=1),
              help="Requests that arrive together share a forward pass, up to this many.")
@click.option("--batch-wait-ms", default=10.0, show_default=True, type=click.FloatRange(min=0),
              help="How long the first request of a batch waits for others.")
@click.option("--queue-size", default=16, show_default=True, type=click.IntRange(min=1),
              help="Requests waiting beyond this are answered 503 (retry).")
@click.option("--max-upload-mb", default=20.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Larger request bodies are answered 413.")
@click.option("--max-megapixels", default=40.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Larger images are answered 413.")
@CUDA_GRAPH
@torch_options
def main(ckpt, model_path, engine, plugin_libs, device, host, port, batch_size, batch_wait_ms, queue_size,
         max_upload_mb, max_megapixels, cuda_graph, torch_options) -> None:
    """Serve the model given (--ckpt PyTorch, --model ONNX Runtime, --engine TensorRT): POST /inpaint, GET /health,
    GET /info, the painting page at /, the OpenAPI description at /docs. The model is loaded once."""
    setup_logging()
    backend = choose_backend(None, ckpt, model_path, engine)
    with cli_errors():
        try:
            import uvicorn

            from madf.serve.app import create_app
        except ImportError as exc:
            raise click.ClickException(f"madf-serve needs FastAPI and uvicorn: pip install 'madf-trt[serve]' ({exc})")
        from madf.inpaint.inpainter import Inpainter
        runner = open_backend(backend, ckpt=ckpt, model=model_path, engine=engine, device=device,
                              plugin_libs=plugin_libs, cuda_graph=cuda_graph, torch_options=torch_options)
        app = create_app(Inpainter(runner, batch_size=batch_size), max_upload_mb=max_upload_mb,
                         max_megapixels=max_megapixels, queue_size=queue_size, max_batch=batch_size,
                         wait_ms=batch_wait_ms, device=device or "cpu")
        # bound here, so the address printed is the one served (--port 0 takes a free port and says which)
        sock = _listen(host, port)
        port = sock.getsockname()[1]
        # flushed: a supervisor reading a pipe learns the address now, not when the buffer fills
        click.echo(f"madf-serve: {runner.describe()}\n  page http://{host}:{port}/   API docs http://{host}:{port}/docs")
        sys.stdout.flush()
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


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
