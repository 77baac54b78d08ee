"""madf-serve's two pure-ASGI middlewares (added with FastAPI's add_middleware; not Starlette's BaseHTTPMiddleware,
which would hide a client's disconnect from the route)."""
from __future__ import annotations

from fastapi import HTTPException


def too_large_detail(limit: int) -> str:
    return f"upload larger than {limit // 2**20} MiB; send a smaller image"


class UploadLimit:
    """A request body over ``limit`` bytes is answered 413: one that announces its length is refused before it is
    read; one that streams it is counted as it passes to the app (nothing is buffered here) and refused as soon as
    it passes the limit (an HTTPException out of the body stream, which FastAPI answers as JSON)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await _too_large(send, self.limit)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(status_code=413, detail=too_large_detail(self.limit))
            return message
        await self.app(scope, counted, send)


class ReplicaHeader:
    """Every answer names the replica that made it (X-Madf-Replica)."""

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
    body = f'{{"detail": "{too_large_detail(limit)}"}}'.encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
