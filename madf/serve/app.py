"""madf-serve's HTTP API and page, on FastAPI (the framework Python developers expect for an ML service: typed
routes, request parsing and an OpenAPI description for free, served by uvicorn).

    GET  /            the painting page (static/index.html: no build step, nothing fetched from elsewhere)
    POST /inpaint     multipart (image, mask files; invert_mask) or JSON {"image": b64, "mask": b64} -> image/png
    GET  /health      {"status": "ok", "replica": which process answered}
    GET  /info        model, backend, precision, device, strategy, limits, version, replica
Every answer carries the replica in an X-Madf-Replica header (one process, or one of madf.scale's Ray replicas).
    GET  /docs        the OpenAPI description (and /openapi.json)

Bad images or masks: 400 with the CLI's one-line message; uploads over the limit, and images whose header declares
more pixels than the limit (checked before they are decoded): 413; a full queue or no memory left: 503 with
Retry-After. Decoding, inference and encoding run off the event loop, so one large request never stalls the
others; a request whose client has gone is dropped before it is computed. Requests are decoded and answered in
memory; nothing is written but the temp files the multipart parser spools large uploads to (the system temp
folder). /docs serves Swagger UI 5 from the package (fastapi-offline), nothing from a CDN.
"""
import asyncio
import base64
import binascii
import logging
import os
import socket
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Optional

from fastapi import FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from madf import __version__
from madf.common.errors import MADFError
from madf.inpaint import imaging
from madf.serve.batcher import Batcher, QueueFull
from madf.serve.schemas import ERROR, FALSE, INPAINT_BODY, TRUE, Health, Info

PAGE = Path(__file__).parent / "static" / "index.html"
EMPTY_MASK = "the mask has no hole pixels (white = hole; set invert_mask for white = known masks)"
log = logging.getLogger("madf")
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


class ReplicaHeader:
    """ASGI middleware: every answer names the replica that made it (X-Madf-Replica). Pure ASGI, not Starlette's
    BaseHTTPMiddleware, which would hide a client's disconnect from the route."""

    def __init__(self, app, replica: str):
        self.app, self.header = app, (b"x-madf-replica", replica.encode())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def named(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)
        await self.app(scope, receive, named)


async def _too_large(send, limit: int) -> None:
    body = f'{{"detail": "upload larger than {limit // 2**20} MiB; send a smaller image"}}'.encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _flag(value, field: str, text: bool) -> bool:
    """A yes/no field: a JSON boolean, or (a multipart form's ``text``) one of TRUE / FALSE; anything else is a
    400, never truthy (bool("false") is True)."""
    if isinstance(value, bool) and not text:
        return value
    if text and isinstance(value, str) and value.strip().lower() in TRUE + FALSE:
        return value.strip().lower() in TRUE
    kind = "one of " + ", ".join(TRUE + FALSE[:-1]) if text else "a JSON boolean, true or false"
    raise MADFError(f"{field} must be {kind}, not {str(value)[:40]!r}")


def _b64(value, field: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise MADFError(f"JSON field {field!r} must be a base64 string (a data: URL works too)")
    if value.startswith("data:"):
        value = value.split(",", 1)[-1]
    try:   # MIME (RFC 2045) base64 breaks lines every 76 characters: whitespace is layout, anything else is not
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise MADFError(f"JSON field {field!r} is not valid base64") from None


def create_app(inpainter, max_upload_mb: float = 20, max_megapixels: float = 40, queue_size: int = 16,
               max_batch: int = 4, wait_ms: float = 10, device: str = "cpu", replica: Optional[str] = None):
    """The ASGI app serving ``inpainter`` (a madf.inpaint.Inpainter: any backend, the shared padding, batching and
    large-photo strategy). ``replica`` names this copy of the service (default host:pid)."""
    state = {}
    replica = replica or f"{socket.gethostname()}:{os.getpid()}"

    @asynccontextmanager
    async def lifespan(app):
        state["batcher"] = Batcher(inpainter, queue_size=queue_size, max_batch=max_batch, wait_ms=wait_ms)
        state["batcher"].start()
        yield
        await state["batcher"].stop()

    app = FastAPI(title="madf-serve", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="MADF image inpainting: POST an image and a mask (white = hole), get the filled PNG.")
    _local_docs(app)

    @app.exception_handler(ClientDisconnect)
    async def gone(request, exc):   # the client left mid-upload: nothing to answer, nothing to log but a line
        log.info("%s %s: the client disconnected", request.method, request.url.path)
        return Response(status_code=499)

    @app.exception_handler(MemoryError)
    async def no_memory(request, exc):
        return JSONResponse({"detail": "out of memory for this request; retry, or send a smaller image"},
                            status_code=503, headers={"Retry-After": "5"})

    limit = int(max_upload_mb * 2**20)
    max_pixels = int(max_megapixels * 1e6)

    def bad(message: str, status: int = 400):
        raise HTTPException(status_code=status, detail=message)

    async def read_pair(request: Request):
        # media types are case-insensitive (RFC 9110): Application/JSON is JSON
        kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind == "multipart/form-data":
            form = await request.form(max_part_size=limit)
            image, mask = form.get("image"), form.get("mask")
            if not hasattr(image, "read") or not hasattr(mask, "read"):
                bad("send two files, 'image' and 'mask' (multipart/form-data)")
            try:
                invert = _flag(form.get("invert_mask", "false"), "invert_mask", text=True)
            except MADFError as exc:
                bad(str(exc))
            return (await image.read(), image.filename or "image", await mask.read(), mask.filename or "mask",
                    invert)
        if kind == "application/json":
            try:
                body = await request.json()
            except (ValueError, RecursionError):   # RecursionError: JSON nested thousands deep
                bad("the body is not valid JSON (or nested too deep)")
            if not isinstance(body, dict):
                bad('send a JSON object {"image": base64, "mask": base64}')
            try:
                return (_b64(body.get("image"), "image"), "image", _b64(body.get("mask"), "mask"), "mask",
                        _flag(body.get("invert_mask", False), "invert_mask", text=False))
            except MADFError as exc:
                bad(str(exc))
        bad("send multipart/form-data (files 'image' and 'mask') or application/json", status=415)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(PAGE, media_type="text/html")

    @app.get("/health", response_model=Health)
    async def health():
        return {"status": "ok", "replica": replica}

    @app.get("/info", response_model=Info)
    async def info():
        about = inpainter.backend.info()
        return {"version": __version__, "replica": replica, "backend": about["backend"], "device": device,
                "precision": about["precision"], "model": about["model"],
                "multiple": inpainter.multiple, "strategy": vars(inpainter.strategy),
                "limits": {"max_upload_mb": max_upload_mb, "max_megapixels": max_megapixels,
                           "queue_size": queue_size, "max_batch": max_batch},
                "batches_run": len(state["batcher"].batches) if "batcher" in state else 0,
                "largest_batch": max(state["batcher"].batches, default=0) if "batcher" in state else 0}

    def decode(image_bytes, image_name, mask_bytes, mask_name, invert):
        # sizes checked from the headers, before decoding; the answer keeps the photo's alpha, gray, ICC
        rgb, look = imaging.decode_photo(image_bytes, image_name, max_pixels=max_pixels)
        hole = imaging.decode_mask(mask_bytes, mask_name, invert=invert, max_pixels=max_pixels)
        imaging.check_pair(rgb, hole, image_name, resize_hint="send a mask of the image's size (resize it with "
                                                              "nearest-neighbour sampling)")
        return rgb, look, hole

    @app.post("/inpaint", response_class=Response, openapi_extra={"requestBody": INPAINT_BODY},
              responses={200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                               "description": "the inpainted image, PNG (a mask with no hole: the photo as "
                                              "sent, with an X-Madf-Warning header)"},
                         400: {"description": "bad image or mask (one line)", "content": ERROR},
                         413: {"description": "upload or image too large", "content": ERROR},
                         415: {"description": "neither multipart/form-data nor application/json", "content": ERROR},
                         500: {"description": "inference failed (one line)", "content": ERROR},
                         503: {"description": "queue full or out of memory; retry", "content": ERROR}})
    async def inpaint(request: Request):
        pair = await read_pair(request)
        try:   # decoding a photo takes a while: off the event loop, so the other requests go on
            rgb, look, hole = await run_in_threadpool(decode, *pair)
        except imaging.ImageTooLarge as exc:
            bad(str(exc), status=413)
        except MADFError as exc:
            bad(str(exc).splitlines()[0])
        if not hole.any():   # nothing to fill: the photo as sent, the reason in a header (not a log line per call)
            png = await run_in_threadpool(imaging.encode_image, "result.png", rgb, look=look)
            return Response(png, media_type="image/png", headers={"X-Madf-Warning": EMPTY_MASK})
        job = asyncio.ensure_future(state["batcher"].submit(rgb, hole))
        while not job.done():   # a client that leaves before its turn is dropped, not computed
            await asyncio.wait({job}, timeout=0.25)
            if not job.done() and await request.is_disconnected():
                job.cancel()
                log.info("POST /inpaint: the client left before its result; dropped")
                return Response(status_code=499)
        try:
            result = job.result()
            png = await run_in_threadpool(imaging.encode_image, "result.png", result, look=look)
            return Response(png, media_type="image/png")
        except QueueFull as exc:
            return JSONResponse({"detail": f"busy: {exc}"}, status_code=503, headers={"Retry-After": "1"})
        except MADFError as exc:
            bad(str(exc).splitlines()[0], status=500)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - one line in the log and in the answer, never a traceback
            log.error("POST /inpaint: %s: %s", exc.__class__.__name__, str(exc).strip().splitlines()[0:1])
            return JSONResponse({"detail": f"inference failed ({exc.__class__.__name__}); see the server log"},
                                status_code=500)

    return ReplicaHeader(UploadLimit(app, limit), replica)


def _local_docs(app: FastAPI) -> None:
    """/docs from Swagger UI 5's files in the fastapi-offline package: it works offline (the default page loads
    them from a CDN and stays blank without one) and reads FastAPI's OpenAPI 3.1 (Swagger UI 4, as
    swagger-ui-bundle ships it, answered "Unable to render this definition")."""
    try:
        import fastapi_offline
    except ImportError:   # the API works without it; /docs says what to install
        @app.get("/docs", include_in_schema=False)
        async def no_docs():
            return JSONResponse({"detail": "pip install fastapi-offline for /docs; /openapi.json is here"}, 404)
        return
    from fastapi.staticfiles import StaticFiles
    app.mount("/docs-assets", StaticFiles(directory=Path(fastapi_offline.__file__).parent / "static"),
              name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="madf-serve API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon.png")
