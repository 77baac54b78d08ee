"""madf-serve's HTTP API and page, on FastAPI (the framework Python developers expect for an ML service: typed
routes, request parsing and an OpenAPI description for free, served by uvicorn).

    GET  /            the painting page (static/index.html: no build step, nothing fetched from elsewhere)
    POST /inpaint     multipart (image, mask files; invert_mask) or JSON {"image": b64, "mask": b64} -> image/png
    GET  /health      {"status": "ok"}
    GET  /info        model, backend, precision, device, strategy, limits, version
    GET  /docs        the OpenAPI description (and /openapi.json)

Bad images or masks: 400 with the CLI's one-line message; uploads over the limit: 413; a full queue: 503 with
Retry-After. Requests are decoded and answered in memory; nothing is written but the temp files the multipart
parser spools large uploads to (the system temp folder).
"""
import base64
import binascii
import io
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Optional

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from PIL import Image

from madf import __version__
from madf.common.errors import MADFError
from madf.inpaint import imaging
from madf.serve.batcher import Batcher, QueueFull

PAGE = Path(__file__).parent / "static" / "index.html"


class UploadLimit:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413, whether it announces its length (refused
    before it is read) or streams it (refused as soon as it passes the limit). Bodies within the limit are handed to
    the app as they came."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await _too_large(send, self.limit)
        messages, seen = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            if seen > self.limit:
                return await _too_large(send, self.limit)
            if not message.get("more_body", False):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()
        await self.app(scope, replay, send)


async def _too_large(send, limit: int) -> None:
    body = f'{{"detail": "upload larger than {limit // 2**20} MiB; send a smaller image"}}'.encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _png(rgb: np.ndarray, alpha: Optional[np.ndarray]) -> bytes:
    img = Image.fromarray(np.dstack([rgb, alpha]), "RGBA") if alpha is not None else Image.fromarray(rgb)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def _b64(value, field: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise MADFError(f"JSON field {field!r} must be a base64 string (a data: URL works too)")
    if value.startswith("data:"):
        value = value.split(",", 1)[-1]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MADFError(f"JSON field {field!r} is not valid base64") from None


def create_app(inpainter, max_upload_mb: float = 20, max_megapixels: float = 40, queue_size: int = 16,
               max_batch: int = 4, wait_ms: float = 10, device: str = "cpu"):
    """The ASGI app serving ``inpainter`` (a madf.inpaint.Inpainter: any backend, the shared padding, batching and
    large-photo strategy)."""
    state = {}

    @asynccontextmanager
    async def lifespan(app):
        state["batcher"] = Batcher(inpainter, queue_size=queue_size, max_batch=max_batch, wait_ms=wait_ms)
        state["batcher"].start()
        yield
        await state["batcher"].stop()

    app = FastAPI(title="madf-serve", version=__version__, lifespan=lifespan,
                  description="MADF image inpainting: POST an image and a mask (white = hole), get the filled PNG.")
    limit = int(max_upload_mb * 2**20)
    max_pixels = int(max_megapixels * 1e6)

    def bad(message: str, status: int = 400):
        raise HTTPException(status_code=status, detail=message)

    async def read_pair(request: Request):
        kind = request.headers.get("content-type", "")
        if kind.startswith("multipart/form-data"):
            form = await request.form(max_part_size=limit)
            image, mask = form.get("image"), form.get("mask")
            if not hasattr(image, "read") or not hasattr(mask, "read"):
                bad("send two files, 'image' and 'mask' (multipart/form-data)")
            invert = str(form.get("invert_mask", "false")).lower() in ("1", "true", "yes", "on")
            return (await image.read(), image.filename or "image", await mask.read(), mask.filename or "mask",
                    invert)
        if kind.startswith("application/json"):
            try:
                body = await request.json()
            except ValueError:
                bad("the body is not valid JSON")
            if not isinstance(body, dict):
                bad('send a JSON object {"image": base64, "mask": base64}')
            try:
                return (_b64(body.get("image"), "image"), "image", _b64(body.get("mask"), "mask"), "mask",
                        bool(body.get("invert_mask", False)))
            except MADFError as exc:
                bad(str(exc))
        bad("send multipart/form-data (files 'image' and 'mask') or application/json", status=415)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(PAGE, media_type="text/html")

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/info")
    async def info():
        backend = inpainter.backend
        config = getattr(backend, "config", None) or getattr(getattr(backend, "model", None), "config", None)
        return {"version": __version__, "backend": backend.describe(), "device": device,
                "precision": getattr(backend, "metadata", {}).get("madf.precision", "fp32"),
                "model": config.to_dict() if hasattr(config, "to_dict") else config,
                "multiple": inpainter.multiple, "strategy": vars(inpainter.strategy),
                "limits": {"max_upload_mb": max_upload_mb, "max_megapixels": max_megapixels,
                           "queue_size": queue_size, "max_batch": max_batch},
                "batches_run": len(state["batcher"].batches) if "batcher" in state else 0,
                "largest_batch": max(state["batcher"].batches, default=0) if "batcher" in state else 0}

    @app.post("/inpaint", response_class=Response,
              responses={200: {"content": {"image/png": {}}, "description": "the inpainted image, PNG"},
                         400: {"description": "bad image or mask (one line)"}, 413: {"description": "too large"},
                         503: {"description": "queue full; retry"}})
    async def inpaint(request: Request):
        image_bytes, image_name, mask_bytes, mask_name, invert = await read_pair(request)
        try:
            rgb, alpha = imaging.decode_image(image_bytes, image_name)
            if rgb.shape[0] * rgb.shape[1] > max_pixels:
                bad(f"image {image_name} is {rgb.shape[1]}x{rgb.shape[0]}, more than {max_megapixels:g} "
                    f"megapixels; send a smaller one", status=413)
            hole = imaging.decode_mask(mask_bytes, mask_name, invert=invert)
            imaging.check_pair(rgb, hole, image_name)
        except MADFError as exc:
            bad(str(exc).splitlines()[0])
        try:
            result = await state["batcher"].submit(rgb, hole)
        except QueueFull as exc:
            return JSONResponse({"detail": f"busy: {exc}"}, status_code=503, headers={"Retry-After": "1"})
        except MADFError as exc:
            bad(str(exc).splitlines()[0], status=500)
        return Response(_png(result, alpha), media_type="image/png")

    return UploadLimit(app, limit)
