"""madf-serve's HTTP API and page, on FastAPI (the framework Python developers expect for an ML service: typed
routes, request parsing and an OpenAPI description for free, served by uvicorn).

    GET  /            the painting page (static/index.html: no build step, nothing fetched from elsewhere)
    POST /inpaint     multipart (image, mask files; invert_mask) or JSON {"image": b64, "mask": b64} -> image/png
    GET  /health      {"status": "ok", "replica": which process answered}
    GET  /info        model, backend, precision, device, strategy, limits, version, replica
Every answer carries the replica in an X-Madf-Replica header (one process, or one of madf.scale's Ray replicas).
    GET  /docs        the OpenAPI description (and /openapi.json)

``create_app`` returns the fastapi.FastAPI app: its routes are madf.serve.routes' APIRouter, its state is
``app.state`` (settings, inpainter, and the batcher and decode slots the lifespan starts), its middlewares are added
with ``add_middleware`` (madf.serve.middleware), so a user can add routes, mount it, or read its state.

Bad images or masks: 400 with the CLI's one-line message; uploads over the limit, and images whose header declares
more pixels than the limit (checked before they are decoded): 413; a full queue or no memory left: 503 with
Retry-After. Decoding, inference and encoding run off the event loop, so one large request never stalls the
others; no more requests hold decoded images than the batcher can take; a request whose client has gone is dropped
before it is computed. Requests are decoded and answered in memory; nothing is written but the temp files the
multipart parser spools large uploads to (the system temp folder). /docs serves Swagger UI 5 from the package
(fastapi-offline), nothing from a CDN.
"""
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Optional

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from madf import __version__
from madf.serve.batcher import Batcher, Slots
from madf.serve.middleware import ReplicaHeader, UploadLimit
from madf.serve.routes import router
from madf.serve.settings import Settings

log = logging.getLogger("madf")


@asynccontextmanager
async def lifespan(app: FastAPI):
    """The batcher and the decode slots live as long as the app serves (created on its event loop)."""
    config: Settings = app.state.settings
    app.state.batcher = Batcher(app.state.inpainter, queue_size=config.queue_size, max_batch=config.max_batch,
                                wait_ms=config.wait_ms)
    app.state.slots = Slots(config.capacity)
    app.state.batcher.start()
    try:
        yield
    finally:
        await app.state.batcher.stop()


def create_app(inpainter, max_upload_mb: float = 20, max_megapixels: float = 40, queue_size: int = 16,
               max_batch: int = 4, wait_ms: float = 10, device: str = "cpu", replica: Optional[str] = None
               ) -> FastAPI:
    """The FastAPI app serving ``inpainter`` (a madf.inpaint.inpainter.Inpainter: any backend, the shared padding,
    batching
    and large-photo strategy). ``replica`` names this copy of the service (default host:pid)."""
    settings = Settings(max_upload_mb=max_upload_mb, max_megapixels=max_megapixels, queue_size=queue_size,
                        max_batch=max_batch, wait_ms=wait_ms, device=device, replica=replica)
    app = FastAPI(title="madf-serve", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="MADF image inpainting: POST an image and a mask (white = hole), get the filled PNG.")
    app.state.settings, app.state.inpainter = settings, inpainter
    app.include_router(router)
    _local_docs(app)
    app.add_exception_handler(ClientDisconnect, _gone)
    app.add_exception_handler(MemoryError, _no_memory)
    app.add_middleware(UploadLimit, limit=settings.upload_limit)
    app.add_middleware(ReplicaHeader, replica=settings.replica)   # added last: outermost, on every answer
    return app


async def _gone(request, exc):   # the client left mid-upload: nothing to answer, nothing to log but a line
    log.info("%s %s: the client disconnected", request.method, request.url.path)
    return Response(status_code=499)


async def _no_memory(request, exc):
    return JSONResponse({"detail": "out of memory for this request; retry, or send a smaller image"},
                        status_code=503, headers={"Retry-After": "5"})


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
