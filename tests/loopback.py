"""Tiny ``aiohttp.web`` servers on real loopback sockets, for faults the fakes cannot make.

:func:`serve` starts one that sends every request to ``handle``; :func:`trickle` answers with an
announced body sent one byte per ``every`` seconds until ``stop`` is set or the client goes away.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.test_utils import TestServer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve(handle: Handler, *, tls: ssl.SSLContext | None = None) -> TestServer:
    """A started server on 127.0.0.1 answering every path and method with ``handle``; close it when done."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=tls)
    return server


async def trickle(
    request: web.Request, stop: asyncio.Event, *, every: float, content_type: str = "application/json"
) -> web.StreamResponse:
    """A 200 announcing 10,000 bytes and sending one per ``every`` seconds, until ``stop`` or a disconnect."""
    response = web.StreamResponse(status=200, headers={"Content-Type": content_type})
    response.content_length = 10_000
    await response.prepare(request)
    while not stop.is_set():
        try:
            await response.write(b" ")
        except ConnectionError:
            break
        try:
            await asyncio.wait_for(stop.wait(), every)
        except TimeoutError:
            continue
    return response
