"""madf-serve's routes, on an APIRouter: what each one takes and answers. They read the service's state from
``request.app.state`` through dependencies (the settings, the Inpainter, the batcher, the decode slots), so a user
can mount the router in their own FastAPI app or add routes beside it."""
from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from madf import __version__
from madf.common.errors import MADFError
from madf.inpaint import imaging
from madf.serve.batcher import Batcher, QueueFull, Slots
from madf.serve.schemas import ERROR, FALSE, INPAINT_BODY, TRUE, Health, Info
from madf.serve.settings import Settings

PAGE = Path(__file__).parent / "static" / "index.html"
EMPTY_MASK = "the mask has no hole pixels (white = hole; set invert_mask for white = known masks)"
log = logging.getLogger("madf")
router = APIRouter()


def settings(request: Request) -> Settings:
    return request.app.state.settings


def batcher(request: Request) -> Batcher:
    return request.app.state.batcher


def slots(request: Request) -> Slots:
    return request.app.state.slots


def bad(message: str, status: int = 400):
    raise HTTPException(status_code=status, detail=message)


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


async def read_pair(request: Request, limit: int):
    """(image bytes, name, mask bytes, name, invert) from either encoding; 400 / 415 naming what to send."""
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
        return await image.read(), image.filename or "image", await mask.read(), mask.filename or "mask", invert
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


def decode(max_pixels: int, image_bytes, image_name, mask_bytes, mask_name, invert):
    """Sizes checked from the headers, before decoding; the answer keeps the photo's alpha, gray, ICC."""
    rgb, look = imaging.decode_photo(image_bytes, image_name, max_pixels=max_pixels)
    hole = imaging.decode_mask(mask_bytes, mask_name, invert=invert, max_pixels=max_pixels)
    imaging.check_pair(rgb, hole, image_name, resize_hint="send a mask of the image's size (resize it with "
                                                          "nearest-neighbour sampling)")
    return rgb, look, hole


@router.get("/", include_in_schema=False)
async def page():
    return FileResponse(PAGE, media_type="text/html")


@router.get("/health", response_model=Health)
async def health(config: Settings = Depends(settings)):
    return {"status": "ok", "replica": config.replica}


@router.get("/info", response_model=Info)
async def info(request: Request, config: Settings = Depends(settings), queue: Batcher = Depends(batcher)):
    inpainter = request.app.state.inpainter
    about = inpainter.backend.info()
    return {"version": __version__, "replica": config.replica, "backend": about["backend"], "device": config.device,
            "precision": about["precision"], "model": about["model"], "multiple": inpainter.multiple,
            "strategy": vars(inpainter.strategy), "limits": config.limits(),
            "batches_run": queue.batches_run, "largest_batch": queue.largest_batch}


@router.post("/inpaint", response_class=Response, openapi_extra={"requestBody": INPAINT_BODY},
             responses={200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                              "description": "the inpainted image, PNG (a mask with no hole: the photo as sent, "
                                             "with an X-Madf-Warning header)"},
                        400: {"description": "bad image or mask (one line)", "content": ERROR},
                        413: {"description": "upload or image too large", "content": ERROR},
                        415: {"description": "neither multipart/form-data nor application/json", "content": ERROR},
                        500: {"description": "inference failed (one line)", "content": ERROR},
                        503: {"description": "queue full or out of memory; retry", "content": ERROR}})
async def inpaint(request: Request, config: Settings = Depends(settings), queue: Batcher = Depends(batcher),
                  admitted: Slots = Depends(slots)):
    pair = await read_pair(request, config.upload_limit)
    if not admitted.take():   # before decoding: decoded requests never outnumber what the batcher can take
        return JSONResponse({"detail": f"busy: {admitted.capacity} requests are in progress; retry shortly"},
                            status_code=503, headers={"Retry-After": "1"})
    try:
        return await _inpaint(request, pair, config, queue)
    finally:
        admitted.give_back()


async def _inpaint(request: Request, pair, config: Settings, queue: Batcher):
    try:   # decoding a photo takes a while: off the event loop, so the other requests go on
        rgb, look, hole = await run_in_threadpool(decode, config.max_pixels, *pair)
    except imaging.ImageTooLarge as exc:
        bad(str(exc), status=413)
    except MADFError as exc:
        bad(str(exc).splitlines()[0])
    if not hole.any():   # nothing to fill: the photo as sent, the reason in a header (not a log line per call)
        png = await run_in_threadpool(imaging.encode_image, "result.png", rgb, look=look)
        return Response(png, media_type="image/png", headers={"X-Madf-Warning": EMPTY_MASK})
    job = asyncio.ensure_future(queue.submit(rgb, hole))
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
