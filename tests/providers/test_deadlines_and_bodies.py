"""The transport's bounds in time and size, against aiohttp handlers on real loopback sockets.

* ``Retry-After`` (seconds or an HTTP date, bounded) is the least wait before the same call is sent
  again, whoever sends it again: the transport's own retry, or a later request of the same call (the
  reconciler's next try of a create whose 503 left it in doubt). Asserted on the server's own
  receive times: the resend must arrive no sooner than the moment the server named. That is an
  ordering of two events the server timed itself, not a speed measure.
* Every call has a total deadline (``call_timeout_seconds``), every attempt included: an answer
  trickled one byte at a time (each byte well within the socket's read timeout) ends as
  :class:`DeadlineExceeded`; keyorch's own request pacing does not count against it.
* A body nested deeper than ``MAX_JSON_DEPTH`` is a :class:`MalformedResponse`, never a
  ``RecursionError``, in a 2xx answer and in an error answer alike.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest
from aiohttp import web
from tests.loopback import serve, trickle

from keyorch.providers import bodies
from keyorch.providers.errors import (
    MAX_RETRY_AFTER_SECONDS,
    DeadlineExceeded,
    MalformedResponse,
    Throttled,
    Unavailable,
    parse_json_lenient,
    parse_retry_after,
)
from keyorch.providers.http import HttpTransport, TransportSettings
from keyorch.providers.limits import ProviderLimits
from keyorch.providers.retry import RetryPolicy

Step = Callable[[web.Request], Awaitable[web.StreamResponse]]
DEEP = b"[" * 100_000 + b"]" * 100_000


@dataclass
class Server:
    """Answers request n with step n (the last one repeats) and records when each request arrived."""

    steps: list[Step] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)  # time.time() at the server
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.arrived.append(time.time())
        await request.read()
        return await self.steps[min(len(self.arrived), len(self.steps)) - 1](request)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    script = Server()
    test_server = await serve(script.handle)
    script.url = str(test_server.make_url("/keys"))
    yield script
    script.stop.set()
    await test_server.close()


def answer(status: int, body: bytes = b"{}", headers: dict[str, str] | None = None) -> Step:
    async def step(_: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=body, headers=headers, content_type="application/json")

    return step


def trickled(script: Server, every: float) -> Step:
    async def step(request: web.Request) -> web.StreamResponse:
        return await trickle(request, script.stop, every=every)

    return step


@pytest.fixture
async def transports() -> AsyncIterator[Callable[..., HttpTransport]]:
    made: list[HttpTransport] = []

    def make(*, limits: ProviderLimits | None = None, **settings: Any) -> HttpTransport:
        transport = HttpTransport(
            "ks-test",
            limits=limits or ProviderLimits(rate_per_second=None, burst=1, max_concurrency=4),
            retry=RetryPolicy(max_attempts=3, base_delay_seconds=0.01, max_delay_seconds=0.05),  # real time
            settings=TransportSettings(allow_insecure_http=True, **settings),
        )
        made.append(transport)
        return transport

    yield make
    for transport in made:
        await transport.aclose()


Make = Callable[..., HttpTransport]


# --- Retry-After is a floor for every resend ------------------------------------------------------------


async def test_a_throttled_create_is_resent_no_sooner_than_the_http_date_it_was_given(
    server: Server, transports: Make
) -> None:
    when = datetime.fromtimestamp(int(time.time()) + 2, UTC)  # whole seconds: an HTTP date has no fraction
    server.steps = [answer(429, headers={"Retry-After": format_datetime(when, usegmt=True)}), answer(201)]
    t = transports()
    result = await t.request("POST", server.url, operation="CreateKey", idempotent=False, json={})
    assert result.status == 201 and len(server.arrived) == 2
    assert server.arrived[1] >= when.timestamp(), (server.arrived, when)


async def test_a_create_left_in_doubt_is_sent_again_by_anyone_no_sooner_than_its_retry_after(
    server: Server, transports: Make
) -> None:
    # A 503 after a create leaves it in doubt: the transport does not resend it, the reconciler will
    # (after checking). Its next request of the same call still waits out the Retry-After.
    server.steps = [answer(503, headers={"Retry-After": "1"}), answer(201)]
    t = transports()
    with pytest.raises(Unavailable) as first:
        await t.request("POST", server.url, operation="CreateKey", idempotent=False, json={})
    assert first.value.retry_after == 1.0 and len(server.arrived) == 1
    await t.request("POST", server.url, operation="CreateKey", idempotent=False, json={})
    assert len(server.arrived) == 2
    assert server.arrived[1] - server.arrived[0] >= 1.0, server.arrived
    # another call (a read of the same key) is not held back
    await t.request("GET", server.url, operation="GetKey", idempotent=True)


async def test_a_retry_after_past_the_deadline_fails_at_once_without_sending(server: Server, transports: Make) -> None:
    server.steps = [answer(503, headers={"Retry-After": "30"}), answer(201)]
    t = transports(call_timeout_seconds=1.0)
    with pytest.raises(Unavailable):
        await t.request("POST", server.url, operation="CreateKey", idempotent=False, json={})
    with pytest.raises(Throttled) as again:
        await t.request("POST", server.url, operation="CreateKey", idempotent=False, json={})
    assert not again.value.sent and again.value.retry_after is not None and again.value.retry_after > 25
    assert len(server.arrived) == 1  # the keystore never saw it before the time it named


def test_retry_after_is_bounded_and_read_in_both_forms() -> None:
    assert parse_retry_after({"Retry-After": "99999999"}) == MAX_RETRY_AFTER_SECONDS
    assert parse_retry_after({"Retry-After": "inf"}) == MAX_RETRY_AFTER_SECONDS
    assert parse_retry_after({"Retry-After": "nan"}) is None
    assert parse_retry_after({"Retry-After": "-5"}) == 0.0
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    soon = parse_retry_after({"Retry-After": format_datetime(datetime.fromtimestamp(time.time() + 60, UTC))})
    assert soon is not None and 55 < soon <= 60
    far = format_datetime(datetime(2999, 1, 1, tzinfo=UTC), usegmt=True)
    assert parse_retry_after({"Retry-After": far}) == MAX_RETRY_AFTER_SECONDS
    assert parse_retry_after({"Retry-After": "soon"}) is None


# --- one deadline for the whole call ----------------------------------------------------------------------


async def test_an_answer_trickled_byte_by_byte_ends_at_the_call_deadline(server: Server, transports: Make) -> None:
    server.steps = [trickled(server, every=0.1)]
    t = transports(call_timeout_seconds=1.0, read_timeout_seconds=5.0)  # each byte comes well within 5 s
    with pytest.raises(DeadlineExceeded) as caught:
        await asyncio.wait_for(t.request("GET", server.url, operation="ListKeys", idempotent=True), 30)
    assert caught.value.sent and caught.value.transient
    assert "call_timeout_seconds" in str(caught.value) and "ks-test" in str(caught.value)
    assert len(server.arrived) == 1  # the deadline covers every attempt: none after it


async def test_waiting_for_keyorchs_own_pacing_does_not_count_against_the_deadline(
    server: Server, transports: Make
) -> None:
    server.steps = [answer(200)]
    t = transports(limits=ProviderLimits(rate_per_second=0.5, burst=1, max_concurrency=4), call_timeout_seconds=1.0)
    await t.request("GET", server.url, operation="GetKey", idempotent=True)
    await t.request("GET", server.url, operation="GetKey", idempotent=True)  # waits 2 s for its token
    assert len(server.arrived) == 2


def test_call_timeout_setting_is_checked() -> None:
    assert TransportSettings.from_settings({"call_timeout_seconds": 5}).call_timeout_seconds == 5
    for bad in (0.5, 7200, "10", True):
        with pytest.raises(Exception, match="call_timeout_seconds"):
            TransportSettings.from_settings({"call_timeout_seconds": bad})


# --- nesting is bounded ---------------------------------------------------------------------------------


async def test_a_deeply_nested_answer_is_a_malformed_response(server: Server, transports: Make) -> None:
    server.steps = [answer(200, DEEP)]
    t = transports()
    with pytest.raises(MalformedResponse, match="nests deeper than 64 levels") as caught:
        await t.request("GET", server.url, operation="ListKeys", idempotent=True)
    assert not caught.value.transient and len(server.arrived) == 1


async def test_a_deeply_nested_error_answer_is_mapped_by_its_status(server: Server, transports: Make) -> None:
    server.steps = [answer(500, DEEP)]
    with pytest.raises(Unavailable):
        await transports().request("GET", server.url, operation="ListKeys", idempotent=True)
    assert parse_json_lenient(DEEP) is None


def test_nesting_depth_bound() -> None:
    limit = bodies.MAX_JSON_DEPTH
    assert bodies.loads(b"[" * limit + b"]" * limit) is not None
    with pytest.raises(bodies.TooDeep):
        bodies.loads(b"[" * (limit + 1) + b"]" * (limit + 1))
    with pytest.raises(bodies.TooDeep):
        bodies.loads('{"a":' * (limit + 1) + "1" + "}" * (limit + 1))
    with pytest.raises(bodies.TooDeep):  # unbalanced and deep: the parser's own recursion is caught too
        bodies.loads(b"[" * 100_000)
    # brackets inside strings are text, not nesting; wide documents are fine
    assert bodies.loads(b'{"k": "' + b"[" * 1000 + b'"}') == {"k": "[" * 1000}
    assert bodies.loads(b'{"k": "\\"[[[[", "v": [' + b"[1]," * 5000 + b"[2]]}")["v"][-1] == [2]
    with pytest.raises(ValueError):
        bodies.loads(b"[}")
