"""What one client may hold of the server: time to send its headers and its body, body size, connections.

uvicorn bounds the time between requests on a kept-alive connection, but not the time a client takes to
send a request's headers (a connection that sends nothing, or a byte a second, is held for ever), nor the
body's size or pace. So: a header deadline per request on the HTTP protocol (absolute: dribbled bytes do
not extend it), a body read with a size cap and a deadline before the app sees the request (413 without
reading the rest when Content-Length already says too much), and a cap on open connections, answered
503 at accept."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import h11
import uvicorn
from prometheus_client import Gauge
from uvicorn.protocols.http.h11_impl import H11Protocol

from .auth import ASGIApp, Message, Receive, Scope, Send
from .routes import error_body, error_response
from .settings import Settings


@dataclasses.dataclass(frozen=True)
class ClientLimits:
    header_timeout_s: float
    body_timeout_s: float
    max_body_bytes: int
    max_header_bytes: int
    max_connections: int

    @classmethod
    def of(cls, settings: Settings) -> ClientLimits:
        return cls(
            header_timeout_s=settings.header_timeout_s,
            body_timeout_s=settings.body_timeout_s,
            max_body_bytes=settings.max_body_bytes,
            max_header_bytes=settings.max_header_bytes,
            max_connections=settings.max_connections,
        )


# Seconds a refused connection is drained before it is closed (nginx's lingering_close, shorter).
LINGER_S = 2.0


def _raw_error(status: int, reason: str, kind: str, message: str) -> bytes:
    """A whole HTTP/1.1 response with the API's error body, for answers written before there is a request."""
    body = json.dumps(error_body(kind, message)).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and a connection cap (set by `bounded_protocol`)."""

    limits: ClientLimits
    open_connections: Gauge

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.open_connections.inc()
        if len(self.connections) > self.limits.max_connections:
            message = f"the server holds {self.limits.max_connections} connections already; retry shortly"
            transport.write(_raw_error(503, "Service Unavailable", "too_many_connections", message))
            # Half-close and discard what the client still sends: closing outright would answer its
            # request with a reset, which can destroy the 503 before the client reads it.
            transport.write_eof()
            self._refused = True
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        self.open_connections.dec()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the request's headers are in
            self._disarm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # A kept-alive connection waits for its next request's headers under the same deadline.
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm_header_deadline()

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self.limits.header_timeout_s, self._headers_too_slow)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.transport.is_closing():
            return
        if not self._refused:
            message = f"the request's headers did not arrive within {self.limits.header_timeout_s:g}s"
            self.transport.write(_raw_error(408, "Request Timeout", "request_timeout", message))
            # As for the 503 above: half-close and discard what a dribbling client still sends, then close
            # after a short linger; closing with its bytes unread answers them with a reset, which can
            # destroy the 408 before the client reads it.
            self.transport.write_eof()
            self._refused = True
            self.loop.call_later(LINGER_S, self.transport.close)
            return
        self.transport.close()


def bounded_protocol(limits: ClientLimits, open_connections: Gauge) -> type[BoundedH11Protocol]:
    """The protocol class for one server: uvicorn instantiates it per connection."""
    return type("ServerH11Protocol", (BoundedH11Protocol,), {"limits": limits, "open_connections": open_connections})


class BoundedBodies:
    """ASGI middleware: the request body, read in full within the deadline and the size cap, then replayed to
    the app. The API's bodies are small JSON or form documents, so holding one in memory is cheap."""

    def __init__(self, app: ASGIApp, limits: ClientLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limits.max_body_bytes:
            await self._refuse_size(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.body_timeout_s
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                text = f"the request body did not arrive within {self.limits.body_timeout_s:g}s"
                await _close_with(error_response(408, "request_timeout", text), scope, receive, send)
                return
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limits.max_body_bytes:
                await self._refuse_size(scope, receive, send)
                return
            more = message.get("more_body", False)
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _refuse_size(self, scope: Scope, receive: Receive, send: Send) -> None:
        text = f"the request body is larger than {self.limits.max_body_bytes} bytes"
        await _close_with(error_response(413, "too_large", text), scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # h11 has already refused a malformed one
    return None


async def _close_with(response: Any, scope: Scope, receive: Receive, send: Send) -> None:
    """Answers and closes the connection: the rest of the body is never read."""
    response.headers["connection"] = "close"
    await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then waits on the client (for its disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def uvicorn_config(app: Any, settings: Settings, host: str, port: int, log_level: str = "info") -> uvicorn.Config:
    """The one uvicorn configuration of the server, for the command line and the tests alike."""
    limits = ClientLimits.of(settings)
    gauge = app.state.server.metrics.open_connections
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=bounded_protocol(limits, gauge),
        h11_max_incomplete_event_size=limits.max_header_bytes,
        timeout_graceful_shutdown=int(settings.drain_timeout_s),
        log_level=log_level,
        lifespan="on",
    )
