"""The last check before a request's bytes go on the wire: the lease of the key it acts for.

The reconciler stops calling a keystore once its lease on a key ran out (``reconcile.engine``), and
cuts a call short at the lease's local deadline. Between that check and the moment aiohttp writes
the request there is still event-loop work: a body is written by a task of its own, scheduled for
a later turn of the loop. A process paused in between (SIGSTOP, a VM freeze, a long GC) would, on
waking, write that request before any timer could cancel it, under a lease another actor now
holds. So the engine names the moment with :func:`send_by`, and the transport checks it in the
same synchronous step that hands the bytes to the socket:

* for every request, in aiohttp's ``on_request_headers_sent`` trace hook, which runs just before
  the headers are serialised (a request without a body is written in that same step);
* for a request with a body, in :class:`FencedBody`, whose write flushes the buffered headers
  together with the body.

Past the moment either raises :class:`~keyorch.providers.errors.Fenced` (not sent) and nothing of
the request leaves the process. Outside :func:`send_by` (one-shot tools, tests) nothing is fenced.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import BytesPayload

from keyorch.providers.errors import Fenced

#: ``time.monotonic()`` after which the current task writes no request (the lease's local deadline).
_SEND_BY: ContextVar[float | None] = ContextVar("keyorch_send_by", default=None)


@contextmanager
def send_by(deadline: float) -> Iterator[None]:
    """Within this block the current task (and the tasks it starts) sends nothing after ``deadline``
    (a ``time.monotonic()`` value)."""
    token = _SEND_BY.set(deadline)
    try:
        yield
    finally:
        _SEND_BY.reset(token)


def fenced() -> bool:
    return _SEND_BY.get() is not None


def check() -> None:
    """Raise :class:`Fenced` once the current task's moment has passed."""
    deadline = _SEND_BY.get()
    if deadline is not None and time.monotonic() >= deadline:
        raise Fenced()


def fenced_cause(exc: BaseException) -> Fenced | None:
    """The :class:`Fenced` an aiohttp error wraps (a body writer's failure reaches the caller so)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, Fenced):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class FencedBody(BytesPayload):
    """A request body that is not written, nor the headers buffered with it, past the moment."""

    async def write(self, writer: AbstractStreamWriter) -> None:
        check()
        await super().write(writer)

    async def write_with_length(self, writer: AbstractStreamWriter, content_length: int | None) -> None:
        check()
        await super().write_with_length(writer, content_length)


async def _before_headers(_session: aiohttp.ClientSession, _ctx: SimpleNamespace, _params: Any) -> None:
    check()


def trace_config() -> aiohttp.TraceConfig:
    """The hook that checks the moment for every request of a session."""
    config = aiohttp.TraceConfig()
    config.on_request_headers_sent.append(_before_headers)
    return config
