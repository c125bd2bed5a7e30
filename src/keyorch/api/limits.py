"""What one client can hold of the API server: how long it may take to send a request, and how many
requests are handled at once.

* **Request headers** (:class:`GuardedRequestHandler`): from the moment a connection opens, or the first byte
  of a further request on a kept-alive connection, the request line and headers must be complete within
  ``api.header_timeout_seconds``; otherwise the connection is answered 408 and closed. aiohttp has no such
  bound, so a client dripping one header line every few seconds held a connection for an hour.
* **Request bodies** (:func:`read_body`): the whole body must arrive within ``api.body_timeout_seconds``;
  otherwise 408 and the connection is closed. A client that closes its connection halfway is its own doing:
  logged at info (``api.client_disconnected``), without a traceback.
* **Requests at once** (:func:`concurrency_middleware`): past ``api.max_concurrent_requests`` the API answers
  503 with ``Retry-After``, at once and cheaply, instead of building one more large page in memory. The
  health and metrics routes are never refused, so probes and scrapes still see a busy daemon.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from keyorch.api.errors import Handler, Problem, error_body, error_response
from keyorch.domain.errors import KeyorchError
from keyorch.settings import ApiSettings

log = structlog.get_logger(__name__)

#: Paths answered whatever the load: liveness, readiness and metrics.
UNLIMITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
#: Retry-After of a 503 for too many requests at once, in seconds.
RETRY_AFTER_SECONDS = 1
#: After a 408, how long what the client still sends is read and dropped before the connection is closed.
LINGER_SECONDS = 2.0


class RequestTimeout(KeyorchError):
    exit_code = 4
    http_status = 408
    code = "request_timeout"


class ClientDisconnected(Exception):
    """The client closed its connection before its request body was complete."""


@dataclass
class RequestLimits:
    """The api settings that bound requests, and the count of requests being handled now."""

    header_timeout_seconds: float
    body_timeout_seconds: float
    max_concurrent_requests: int
    in_flight: int = field(default=0)

    @classmethod
    def of(cls, api: ApiSettings) -> RequestLimits:
        return cls(api.header_timeout_seconds, api.body_timeout_seconds, api.max_concurrent_requests)


LIMITS = web.AppKey("keyorch_request_limits", RequestLimits)


@web.middleware
async def concurrency_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in UNLIMITED_PATHS:
        return await handler(request)
    limits = request.app[LIMITS]
    if limits.in_flight >= limits.max_concurrent_requests:
        message = (
            f"keyorch is handling {limits.max_concurrent_requests} requests at once (the setting "
            f"api.max_concurrent_requests); retry after {RETRY_AFTER_SECONDS} s"
        )
        return error_response(
            503, [Problem("too_many_requests", message)], headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
        )
    limits.in_flight += 1
    try:
        return await handler(request)
    finally:
        limits.in_flight -= 1


def close_soon(protocol: RequestHandler) -> None:
    """End a connection whose answer was written: half-close it at once (the client reads the answer, then
    the end), drop what it still sends, and close it ``LINGER_SECONDS`` later. Closing at once while the
    client still sends would reset the connection, and a reset can destroy the answer before it is read."""
    transport = protocol.transport
    if transport is not None and transport.can_write_eof():
        transport.write_eof()
    asyncio.get_running_loop().call_later(LINGER_SECONDS, protocol.force_close)


async def _answer_and_close(request: web.Request, status: int, code: str, message: str) -> web.StreamResponse:
    """Send an error answer, then end the connection (the rest of the body is not waited for)."""
    response = error_response(status, [Problem(code, message)], headers={"Connection": "close"})
    try:
        await response.prepare(request)
        await response.write_eof()
    except ConnectionError:
        request.protocol.force_close()
        return response
    close_soon(request.protocol)
    return response


async def read_body(request: web.Request) -> bytes | web.StreamResponse:
    """The request body, read within ``api.body_timeout_seconds``; otherwise the answer already sent
    (408 and the connection closed, or nothing for a client that went away)."""
    seconds = request.app[LIMITS].body_timeout_seconds
    try:
        async with asyncio.timeout(seconds):
            return await request.read()  # aiohttp answers 413 beyond client_max_size
    except TimeoutError:
        log.info("api.body_timeout", method=request.method, path=request.path, seconds=seconds)
        message = f"the request body did not arrive within {seconds:g} s (the setting api.body_timeout_seconds)"
        return await _answer_and_close(request, 408, RequestTimeout.code, message)
    except ConnectionError:  # the client closed the connection mid-body (aiohttp: "Connection lost")
        log.info("api.client_disconnected", method=request.method, path=request.path)
        request.protocol.force_close()
        return web.Response(status=400)  # never delivered: there is no one to deliver it to


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection handler, with a deadline for a request's line and headers."""

    def __init__(self, manager: web.Server, *, header_timeout_seconds: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout_seconds = header_timeout_seconds
        self._header_deadline: asyncio.TimerHandle | None = None

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self._loop.call_later(self._header_timeout_seconds, self._headers_late)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        idle = self._waiter is not None and not self._messages  # between requests: these bytes start one
        super().data_received(data)
        if self._messages:
            self._disarm_header_deadline()  # a request's headers are complete; the body has its own bound
        elif idle:
            self._arm_header_deadline()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        """A request aiohttp could not parse (a line too long, a malformed header) is answered in the
        API's own error shape, logged in one line without a traceback, and never echoed: its line
        may hold anything. Other errors keep aiohttp's handling (the app answers its own 5xx)."""
        if not isinstance(exc, BadHttpMessage) or status >= 500:
            return super().handle_error(request, status, exc, message)
        if isinstance(exc, LineTooLong):
            limit = exc.args[1] if len(exc.args) > 1 else "the"
            said = f"the request line or a header is longer than {limit} bytes, the most this API reads"
        else:
            said = f"the request is not valid HTTP/1.1 ({type(exc).__name__})"
        log.info("api.bad_http_request", peer=str(self.peername), status=status, reason=type(exc).__name__)
        body = error_body(status, [Problem("bad_request", said)])
        response = web.json_response(body, status=status, headers={"Connection": "close"})
        response.force_close()
        return response

    def _headers_late(self) -> None:
        self._header_deadline = None
        if self._messages or self._request_in_progress or self.transport is None:
            return
        seconds = self._header_timeout_seconds
        log.info("api.header_timeout", peer=str(self.peername), seconds=seconds)
        message = f"the request's headers did not arrive within {seconds:g} s (the setting api.header_timeout_seconds)"
        body = json.dumps(error_body(408, [Problem(RequestTimeout.code, message)])).encode()
        head = (
            "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        self.transport.write(head + body)
        self.close()  # takes no further request (and drops further bytes)
        close_soon(self)


class GuardedServer(web.Server):
    def __init__(self, *args: Any, header_timeout_seconds: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout_seconds = header_timeout_seconds

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(
            self, loop=self._loop, header_timeout_seconds=self._header_timeout_seconds, **self._kwargs
        )


class GuardedAppRunner(web.AppRunner):
    """An AppRunner whose connections have a header deadline and an idle keep-alive bound (the api settings)."""

    def __init__(self, app: web.Application, api: ApiSettings, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=api.idle_timeout_seconds, **kwargs)
        self._header_timeout_seconds = api.header_timeout_seconds

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()  # runs the app's startup and freezes it
        return GuardedServer(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            header_timeout_seconds=self._header_timeout_seconds,
            **self._kwargs,
        )
