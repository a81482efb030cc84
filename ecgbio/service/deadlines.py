"""Bounds on slow and idle connections: a deadline for receiving each request, a connection cap.

Why in uvicorn's protocol rather than in the application: uvicorn bounds only the idle time
between two requests of a kept-alive connection (``timeout_keep_alive``); a connection that sends
nothing, a request line without its closing blank line, or a body that stops short of its
``Content-Length`` is held open for as long as the client likes, one file descriptor each, until
the process runs out of them and every request fails ("slowloris"). An ASGI application is
called only once the headers are in, so it cannot see the first two; the HTTP protocol object
(one per connection) sees every byte, so the deadline lives there.

The rule, after Apache's ``mod_reqtimeout`` (``header=20 body=20,MinRate=500``): a request must
arrive whole within ``request_timeout`` seconds of its first byte (of the connection, for a
connection's first request), plus one second for every :data:`MIN_BODY_RATE` bytes of body
received, so a large upload on a slow but steady link is never cut while a drip is. Time during
which the server itself is not reading (an earlier request of the connection still being
answered, reading paused while the application catches up) is not counted against the client.
A request past its deadline is answered ``408`` (one JSON line) and the connection closed; a
connection that never sent a byte is closed without an answer.

A worker process holds at most ``max_connections`` connections; one more is answered ``503`` and
closed at once, so slow clients can exhaust neither the process's file descriptors (which the
gallery, the model and the staged uploads need too) nor its memory. Whatever a single process
cannot bound (many clients each sending just fast enough) is for a reverse proxy in front of a
publicly exposed service (docs/service.md).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: body bytes that buy one more second of a request's deadline (mod_reqtimeout's MinRate)
MIN_BODY_RATE = 500.0
#: file descriptors kept back from connections: the gallery, the model, uploads, logs
RESERVED_FDS = 64


def default_max_connections() -> int:
    """Connections one worker process holds at once: its open-files limit less what the rest of
    the process needs, at most 4096 (each connection costs memory too), at least 16."""
    try:
        import resource
    except ImportError:  # not on POSIX: the C runtime's usual limit
        return 512 - RESERVED_FDS
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return 4096
    return max(16, min(4096, soft - RESERVED_FDS))


def _raw_answer(status: int, reason: str, message: str, extra: bytes = b"") -> bytes:
    """A complete HTTP/1.1 answer with the service's one-line JSON error, closing the connection."""
    body = json.dumps({"error": message}).encode()
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n%s\r\n%s" % (status, reason.encode(), len(body), extra, body)
    )


class RequestDeadlines(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for receiving each request and a cap on the
    connections of the process (see the module doc). Give it to uvicorn as
    ``http=functools.partial(RequestDeadlines, request_timeout=..., max_connections=...)``."""

    def __init__(
        self, *args: Any, request_timeout: float, max_connections: int, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout = float(request_timeout)
        self.max_connections = int(max_connections)
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._receiving = False  # a request's first byte came, its last has not
        self._receiving_cycle: Any = None  # that request's cycle, once its headers are in

    # ------------------------------------------------------------------------- connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.write(
                _raw_answer(
                    503,
                    "Service Unavailable",
                    f"the server holds its most connections ({self.max_connections}); try again",
                    b"retry-after: 5\r\n",
                )
            )
            transport.close()
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # ------------------------------------------------------------------------ the request

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._receiving, self._receiving_cycle = True, None
        if self._timer is None:  # a later request of a kept-alive connection
            self._arm()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._receiving_cycle = self.cycle

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        if not self.cycle.response_complete:  # a body already answered (413, 401) earns nothing
            self._deadline += len(body) / MIN_BODY_RATE

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._receiving = False
        self._disarm()

    def on_response_complete(self) -> None:
        """The next request's deadline runs from this answer: uvicorn's own keep-alive timer is
        cancelled by any byte that arrives, and blank lines between requests (``\r\n``) begin
        no request, so a client dripping them would otherwise hold the connection forever."""
        super().on_response_complete()
        if self.transport is not None and not self.transport.is_closing() and not self._receiving:
            self._arm()

    # --------------------------------------------------------------------------- deadline

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.time() + self.request_timeout
        self._timer = self.loop.call_later(self.request_timeout, self._check)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        """The deadline may have passed: time the request out, or look again when it will."""
        self._timer = None
        if self.transport is None or self.transport.is_closing():
            return
        now = self.loop.time()
        earlier = self.cycle is not None and self.cycle is not self._receiving_cycle
        if self.flow.read_paused or (earlier and not self.cycle.response_complete):
            self._deadline = max(self._deadline, now + self.request_timeout)  # our wait
        if now < self._deadline:
            self._timer = self.loop.call_later(self._deadline - now, self._check)
            return
        self._time_out()

    def _time_out(self) -> None:
        """Answer 408 unless an answer to this request has begun, and close the connection."""
        cycle = self._receiving_cycle
        if self._receiving and (cycle is None or not cycle.response_started):
            part = "headers" if cycle is None else "body"
            self.transport.write(
                _raw_answer(
                    408,
                    "Request Timeout",
                    f"request timeout: the request's {part} did not arrive in time (within "
                    f"{self.request_timeout:g} s, plus 1 s per {MIN_BODY_RATE:g} bytes of body); "
                    "send the whole request at once",
                )
            )
        if cycle is not None:
            # the application may be waiting for the rest of the body: it now reads a
            # disconnect, and whatever it answers is dropped (the 408 went instead)
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()
