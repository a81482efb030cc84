"""The request size limit (``--max-upload-mb``), enforced before a body is held in memory.

Why a middleware on the raw ASGI messages: a ``Content-Length`` over the limit is answered 413
at once, without reading a byte of the body; a body without one (chunked) is counted while it
streams in, and the request fails with 413 as soon as it passes the limit, so neither JSON
parsing nor multipart spooling ever sees more than the limit.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ecgbio.service.problems import ServiceError


class BodyTooLargeError(ServiceError):
    """Raised from inside ``receive`` when a streamed body passes the limit (answered 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large(limit))


def too_large(limit: int) -> str:
    return (
        f"request body is larger than the server's limit of {limit / (1024 * 1024):g} MB "
        "(--max-upload-mb)"
    )


class BodyLimit:
    """ASGI middleware: 413 for an HTTP request whose body is larger than ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared == -1 or (declared is not None and declared > self.max_bytes):
            message = "bad Content-Length header" if declared == -1 else too_large(self.max_bytes)
            await ServiceError(400 if declared == -1 else 413, message).response()(
                scope, receive, send
            )
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
            return message

        await self.app(scope, counted, send)


def _content_length(scope: Scope) -> int | None:
    """The declared length; None when absent, -1 when it is not a number."""
    values: list[Any] = [v for k, v in scope.get("headers", ()) if k == b"content-length"]
    if not values:
        return None
    text = values[0].decode("latin-1").strip()
    return int(text) if text.isdigit() and len(values) == 1 else -1
