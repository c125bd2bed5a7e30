"""The shared transport against real aiohttp handlers on loopback sockets (no mocks).

Waits between attempts go through an injected sleep that records them and advances a clock, so the
tests assert exact retry waits without sleeping; only timeouts use (tiny) real time.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from tests.loopback import serve

from keyorch.domain.errors import ConfigurationError, InvalidInput
from keyorch.domain.models import (
    CredentialsMode,
    DriftPolicy,
    Keystore,
    KeystoreStatus,
    KeystoreType,
)
from keyorch.fakes.tls import generate_tls
from keyorch.providers import base
from keyorch.providers.base import Health, HealthStatus, KeyRef, Observation
from keyorch.providers.endpoints import origin_of
from keyorch.providers.errors import (
    AuthError,
    Conflict,
    InvalidRequest,
    KeystoreConfigurationError,
    MalformedResponse,
    NotFound,
    ProviderError,
    Throttled,
    Timeout,
    TlsError,
    Unavailable,
    body_snippet,
    error_for_status,
    parse_retry_after,
    redact,
)
from keyorch.providers.http import HttpTransport, TransportSettings, check_transport_settings
from keyorch.providers.limits import ProviderLimits
from keyorch.providers.retry import RetryEvent, RetryPolicy

SECRET = "sekrit-token-123"

Step = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Script:
    """A loopback server that answers request n with step n (the last step repeats)."""

    steps: list[Step] = field(default_factory=list)
    seen: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""
    in_flight: int = 0
    peak: int = 0

    def answer(self, *steps: Step) -> None:
        self.steps = list(steps)

    @property
    def count(self) -> int:
        return len(self.seen)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append((request.method, request.path, dict(request.headers), body))
        step = self.steps[min(len(self.seen), len(self.steps)) - 1]
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await step(request)
        finally:
            self.in_flight -= 1


def respond(
    status: int = 200, body: Any = None, *, text: str | None = None, headers: Mapping[str, str] | None = None
) -> Step:
    async def step(request: web.Request) -> web.StreamResponse:
        if text is not None:
            return web.Response(status=status, text=text, headers=headers, content_type="text/html")
        return web.json_response(body if body is not None else {}, status=status, headers=headers)

    return step


def hang(script: Script) -> Step:
    async def step(request: web.Request) -> web.StreamResponse:
        await script.release.wait()
        return web.json_response({})

    return step


async def drop(request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.close()
    raise web.HTTPInternalServerError  # never reaches the client: the connection is gone


async def short_body(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.content_length = 100
    await response.prepare(request)
    await response.write(b'{"KeyMetadata": {"KeyId"')
    assert request.transport is not None
    request.transport.close()
    return response


@pytest.fixture
async def server() -> AsyncIterator[Script]:
    script = Script()
    test_server = await serve(script.handle)
    script.url = str(test_server.make_url("/keys"))
    yield script
    script.release.set()
    await test_server.close()


class FakeSleep:
    """Records requested waits; the policy's clock is real time plus the time 'slept'."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.offset = 0.0

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.offset += seconds

    def clock(self) -> float:
        return time.monotonic() + self.offset


def make_policy(sleep: FakeSleep, **kwargs: Any) -> RetryPolicy:
    policy = RetryPolicy(
        max_attempts=3,
        base_delay_seconds=0.01,
        max_delay_seconds=1.0,
        total_timeout_seconds=30.0,
        sleep=sleep,
        clock=sleep.clock,
        random=lambda: 1.0,
    )
    return replace(policy, **kwargs)


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
async def transports() -> AsyncIterator[Callable[..., HttpTransport]]:
    made: list[HttpTransport] = []

    def make(
        sleep: FakeSleep,
        *,
        settings: TransportSettings | None = None,
        limits: ProviderLimits | None = None,
        **kwargs: Any,
    ) -> HttpTransport:
        policy_args = {k: kwargs.pop(k) for k in list(kwargs) if k in RetryPolicy.__dataclass_fields__}
        transport = HttpTransport(
            "ks-test",
            limits=limits or ProviderLimits(rate_per_second=None, burst=1, max_concurrency=8),
            retry=make_policy(sleep, **policy_args),
            settings=settings or TransportSettings(allow_insecure_http=True, read_timeout_seconds=5.0),
            **kwargs,
        )
        made.append(transport)
        return transport

    yield make
    for transport in made:
        await transport.aclose()


Make = Callable[..., HttpTransport]


# --- success and status mapping ------------------------------------------------------------------------


async def test_ok_json_answer(server: Script, sleep: FakeSleep, transports: Make) -> None:
    server.answer(respond(200, {"Keys": [{"KeyId": "k1"}]}))
    t = transports(sleep)
    result = await t.request("POST", server.url, operation="ListKeys", json={"Limit": 10}, idempotent=True)
    assert result.status == 200
    assert result.json_object() == {"Keys": [{"KeyId": "k1"}]}
    assert (result.keystore, result.operation) == ("ks-test", "ListKeys")
    method, path, headers, body = server.seen[0]
    assert (method, path, json.loads(body)) == ("POST", "/keys", {"Limit": 10})
    assert headers["Content-Type"] == "application/json"


async def test_empty_body_is_none(server: Script, sleep: FakeSleep, transports: Make) -> None:
    async def empty(request: web.Request) -> web.StreamResponse:
        return web.Response(status=200, body=b"")

    server.answer(empty)
    result = await transports(sleep).request("POST", server.url, operation="EnableKey", idempotent=True)
    assert result.json_body is None
    with pytest.raises(MalformedResponse):
        result.json_object()


async def test_5xx_is_retried_then_succeeds(server: Script, sleep: FakeSleep, transports: Make) -> None:
    server.answer(respond(500, {"error": "boom"}), respond(503, text="<html>busy</html>"), respond(200, {"ok": 1}))
    t = transports(sleep)
    result = await t.request("GET", server.url, operation="get", idempotent=True)
    assert result.json_body == {"ok": 1}
    assert server.count == 3
    assert sleep.waits == [0.01, 0.02]
    assert (t.stats.retries, t.stats.throttles) == (2, 0)


async def test_5xx_exhausts_the_attempts(server: Script, sleep: FakeSleep, transports: Make) -> None:
    server.answer(respond(503, {"message": "down"}))
    with pytest.raises(Unavailable) as info:
        await transports(sleep, max_attempts=4).request("GET", server.url, operation="get", idempotent=True)
    assert server.count == 4
    error = info.value
    assert (error.status, error.keystore, error.operation) == (503, "ks-test", "get")
    assert (error.exit_code, error.http_status, error.transient) == (4, 503, True)
    assert "keystore 'ks-test': get:" in str(error)


async def test_501_is_not_retried(server: Script, sleep: FakeSleep, transports: Make) -> None:
    server.answer(respond(501))
    with pytest.raises(InvalidRequest):
        await transports(sleep).request("GET", server.url, operation="get", idempotent=True)
    assert server.count == 1


async def test_429_retry_after_is_a_floor(server: Script, sleep: FakeSleep, transports: Make) -> None:
    server.answer(respond(429, {"error": "slow"}, headers={"Retry-After": "1"}), respond(200, {"ok": True}))
    events: list[RetryEvent] = []
    t = transports(sleep, on_retry=events.append)
    await t.request("GET", server.url, operation="get", idempotent=True)
    assert server.count == 2
    assert sleep.waits == [1.0]  # base delay 0.01, but the server asked for 1 s
    assert (t.stats.retries, t.stats.throttles) == (1, 1)
    assert events[0].throttled and events[0].wait_seconds == 1.0


async def test_azure_retry_after_ms(server: Script, sleep: FakeSleep, transports: Make) -> None:
    server.answer(respond(429, headers={"x-ms-retry-after-ms": "2500"}), respond(200))
    await transports(sleep).request("GET", server.url, operation="get", idempotent=True)
    assert sleep.waits == [2.5]


async def test_throttle_exhausted_keeps_retry_after(server: Script, sleep: FakeSleep, transports: Make) -> None:
    server.answer(respond(429, headers={"Retry-After": "3"}))
    with pytest.raises(Throttled) as info:
        await transports(sleep).request("GET", server.url, operation="get", idempotent=True)
    assert info.value.retry_after == 3.0
    assert server.count == 3
    assert sleep.waits == [3.0, 3.0]


@pytest.mark.parametrize(
    ("status", "error_class"),
    [(400, InvalidRequest), (403, AuthError), (404, NotFound), (409, Conflict), (422, InvalidRequest)],
)
async def test_permanent_statuses_are_not_retried(
    server: Script, sleep: FakeSleep, transports: Make, status: int, error_class: type[ProviderError]
) -> None:
    server.answer(respond(status, {"error": {"code": "X", "message": "no"}}))
    with pytest.raises(error_class) as info:
        await transports(sleep).request("GET", server.url, operation="get", idempotent=True)
    assert server.count == 1
    assert sleep.waits == []
    assert (info.value.exit_code, info.value.http_status) == (4, 502)


async def test_adapter_mapper_is_the_one_mapping_point(server: Script, sleep: FakeSleep, transports: Make) -> None:
    seen: list[tuple[int, str, bytes]] = []

    def aws_like(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        seen.append((status, headers.get("X-Amzn-ErrorType", ""), body))
        doc = json.loads(body)
        code = doc["__type"].rpartition("#")[2]
        if code == "ThrottlingException":
            return Throttled(doc["message"], provider_code=code)
        if code == "KMSInvalidStateException":
            return Conflict(doc["message"], provider_code=code)
        return error_for_status(status, headers, body, provider_code=code)

    throttle = {"__type": "com.amazonaws.kms#ThrottlingException", "message": "You have exceeded the rate"}
    invalid = {"__type": "KMSInvalidStateException", "message": "key is pending deletion"}
    server.answer(
        respond(400, throttle, headers={"X-Amzn-ErrorType": "ThrottlingException"}),
        respond(400, invalid, headers={"X-Amzn-ErrorType": "KMSInvalidStateException"}),
    )
    with pytest.raises(Conflict) as info:
        await transports(sleep, map_error=aws_like).request("POST", server.url, operation="DisableKey", idempotent=True)
    assert [s[:2] for s in seen] == [(400, "ThrottlingException"), (400, "KMSInvalidStateException")]
    assert server.count == 2
    error = info.value
    assert (error.status, error.provider_code, error.operation) == (400, "KMSInvalidStateException", "DisableKey")
    assert "[HTTP 400 KMSInvalidStateException]" in str(error)


async def test_a_broken_mapper_becomes_a_malformed_response(server: Script, sleep: FakeSleep, transports: Make) -> None:
    def broken(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        return json.loads(body)["error"]  # type: ignore[no-any-return]  # a KeyError on this body

    server.answer(respond(400, {"nothing": "here"}))
    with pytest.raises(MalformedResponse):
        await transports(sleep, map_error=broken).request("GET", server.url, operation="get", idempotent=True)


# --- malformed answers ----------------------------------------------------------------------------------


async def test_html_page_with_200_is_malformed_and_permanent(
    server: Script, sleep: FakeSleep, transports: Make
) -> None:
    page = "<!DOCTYPE html><html><head><title>Sign in - Corporate Proxy</title></head><body>" + "x" * 5000
    server.answer(respond(200, text=page))
    with pytest.raises(MalformedResponse) as info:
        await transports(sleep).request("GET", server.url, operation="get", idempotent=True)
    assert server.count == 1
    assert not info.value.transient
    assert "an HTML page 'Sign in - Corporate Proxy'" in str(info.value)
    assert "xxxx" not in str(info.value)


async def test_truncated_json_is_transient(server: Script, sleep: FakeSleep, transports: Make) -> None:
    async def cut(request: web.Request) -> web.StreamResponse:
        return web.Response(
            status=200, body=b'{"Keys": [{"KeyId": "k1"}, {"KeyId": "k', content_type="application/json"
        )

    server.answer(cut, respond(200, {"Keys": []}))
    result = await transports(sleep).request("POST", server.url, operation="ListKeys", idempotent=True)
    assert result.json_body == {"Keys": []}
    assert server.count == 2


async def test_truncated_json_is_not_replayed_for_a_create(server: Script, sleep: FakeSleep, transports: Make) -> None:
    async def cut(request: web.Request) -> web.StreamResponse:
        return web.Response(status=200, body=b'{"KeyMetadata": {"KeyId": ', content_type="application/json")

    server.answer(cut)
    with pytest.raises(MalformedResponse) as info:
        await transports(sleep).request("POST", server.url, operation="CreateKey", idempotent=False)
    assert info.value.transient and "cut short" in str(info.value)
    assert server.count == 1


async def test_body_larger_than_the_cap(server: Script, sleep: FakeSleep, transports: Make) -> None:
    server.answer(respond(200, {"blob": "x" * 5000}))
    settings = TransportSettings(allow_insecure_http=True, max_body_bytes=1000)
    with pytest.raises(MalformedResponse, match="larger than the 1000 bytes"):
        await transports(sleep, settings=settings).request("GET", server.url, operation="get", idempotent=True)

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(10):
            await response.write(b"y" * 500)
        await response.write_eof()
        return response

    server.answer(chunked)
    with pytest.raises(MalformedResponse, match="larger than"):
        await transports(sleep, settings=settings).request("GET", server.url, operation="get", idempotent=True)


# --- connections and timeouts ----------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [drop, short_body], ids=["dropped-connection", "body-shorter-than-length"])
async def test_lost_answer_is_retried_when_idempotent(
    server: Script, sleep: FakeSleep, transports: Make, fault: Step
) -> None:
    server.answer(fault, respond(200, {"ok": 1}))
    result = await transports(sleep).request("POST", server.url, operation="DescribeKey", idempotent=True)
    assert result.json_body == {"ok": 1}
    assert server.count == 2


@pytest.mark.parametrize("fault", [drop, short_body], ids=["dropped-connection", "body-shorter-than-length"])
async def test_lost_answer_is_not_replayed_for_a_create(
    server: Script, sleep: FakeSleep, transports: Make, fault: Step
) -> None:
    server.answer(fault, respond(200, {"ok": 1}))
    with pytest.raises(Unavailable) as info:
        await transports(sleep).request("POST", server.url, operation="CreateKey", json={}, idempotent=False)
    assert info.value.sent and info.value.transient
    assert server.count == 1


async def test_read_timeout_retries_an_idempotent_call(server: Script, sleep: FakeSleep, transports: Make) -> None:
    server.answer(hang(server), respond(200, {"ok": 1}))
    settings = TransportSettings(allow_insecure_http=True, read_timeout_seconds=0.2)
    result = await transports(sleep, settings=settings).request("GET", server.url, operation="get", idempotent=True)
    assert result.json_body == {"ok": 1}
    assert server.count == 2


async def test_create_is_not_replayed_after_a_response_timeout(
    server: Script, sleep: FakeSleep, transports: Make
) -> None:
    server.answer(hang(server), respond(200, {"ok": 1}))
    settings = TransportSettings(allow_insecure_http=True, read_timeout_seconds=0.2)
    t = transports(sleep, settings=settings)
    with pytest.raises(Timeout) as info:
        await t.request("POST", server.url, operation="CreateKey", json={"Description": "k"}, idempotent=False)
    assert info.value.sent and info.value.transient
    assert "no answer within 0.2 s" in str(info.value)
    assert server.count == 1
    assert t.stats.retries == 0


async def test_total_time_is_bounded(server: Script, sleep: FakeSleep, transports: Make) -> None:
    server.answer(hang(server))
    settings = TransportSettings(allow_insecure_http=True, read_timeout_seconds=0.2)
    t = transports(sleep, settings=settings, max_attempts=50, total_timeout_seconds=0.5)
    with pytest.raises(Timeout):
        await t.request("GET", server.url, operation="get", idempotent=True)
    assert 2 <= server.count <= 3  # 50 attempts allowed: the 0.5 s budget stopped it after the second or third


async def test_connection_refused_may_retry_even_a_create(sleep: FakeSleep, transports: Make) -> None:
    probe = TestServer(web.Application(), host="127.0.0.1")
    await probe.start_server()
    url = str(probe.make_url("/"))
    await probe.close()  # the port is now closed
    events: list[RetryEvent] = []
    t = transports(sleep, on_retry=events.append)
    with pytest.raises(Unavailable) as info:
        await t.request("POST", url, operation="CreateKey", json={}, idempotent=False)
    assert not info.value.sent
    assert "cannot connect" in str(info.value)
    assert len(events) == 2  # three attempts: nothing reached a server


async def test_concurrency_limit_caps_requests_in_flight(server: Script, sleep: FakeSleep, transports: Make) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.01)
        return web.json_response({})

    server.answer(slow)
    t = transports(sleep, limits=ProviderLimits(rate_per_second=None, burst=1, max_concurrency=3))
    await asyncio.gather(*(t.request("GET", server.url, operation="get", idempotent=True) for _ in range(12)))
    assert server.count == 12
    assert server.peak <= 3


async def test_rate_limit_waits_before_sending(server: Script, sleep: FakeSleep, transports: Make) -> None:
    server.answer(respond(200))
    t = transports(sleep, limits=ProviderLimits(rate_per_second=10.0, burst=2, max_concurrency=4))
    for _ in range(4):
        await t.request("GET", server.url, operation="get", idempotent=True)
    # two from the burst, then reservations 0.1 s apart (less the real time that passed)
    assert len(sleep.waits) == 2
    assert 0.0 < sleep.waits[0] <= 0.1
    assert 0.1 < sleep.waits[1] <= 0.2


# --- auth -----------------------------------------------------------------------------------------------


class TokenAuth:
    def __init__(self, tokens: list[str], url: str) -> None:
        self.origin = origin_of(url)
        self.tokens = tokens
        self.invalidations = 0
        self.applied: list[tuple[str, str, bytes | None]] = []

    async def apply(self, headers: dict[str, str], method: str, url: str, body: bytes | None) -> dict[str, str]:
        self.applied.append((method, url, body))
        headers["Authorization"] = f"Bearer {self.tokens[0]}"
        return headers

    async def invalidate(self) -> None:
        self.invalidations += 1
        if len(self.tokens) > 1:
            self.tokens.pop(0)


def accept_only(token: str) -> Step:
    async def step(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {token}":
            echoed = request.headers.get("Authorization", "")
            return web.json_response(
                {"error": {"code": "Unauthorized", "message": f"token {echoed} expired", "access_token": echoed}},
                status=401,
                headers={"WWW-Authenticate": 'Bearer authorization="https://login.example/tenant"'},
            )
        return web.json_response({"ok": True})

    return step


async def test_401_refreshes_once_and_replays(server: Script, sleep: FakeSleep, transports: Make) -> None:
    server.answer(accept_only("fresh-token-2"))
    auth = TokenAuth([SECRET, "fresh-token-2"], server.url)
    t = transports(sleep, auth=auth)
    result = await t.request("POST", server.url, operation="CreateKey", json={"a": 1}, idempotent=False)
    assert result.json_body == {"ok": True}
    assert auth.invalidations == 1 and t.auth_refreshes == 1
    assert server.count == 2
    assert [h["Authorization"] for _, _, h, _ in server.seen] == [f"Bearer {SECRET}", "Bearer fresh-token-2"]
    assert auth.applied[0][2] == b'{"a":1}'  # the hook sees the body it may sign
    assert t.stats.retries == 0  # a refresh is not a retry


async def test_401_twice_is_an_auth_error(server: Script, sleep: FakeSleep, transports: Make) -> None:
    server.answer(accept_only("never"))
    auth = TokenAuth([SECRET, SECRET], server.url)
    with pytest.raises(AuthError) as info:
        await transports(sleep, auth=auth).request("GET", server.url, operation="get", idempotent=True)
    assert auth.invalidations == 1
    assert server.count == 2
    error = info.value
    assert error.status == 401 and not error.transient
    for text in (str(error), repr(error), error.message, error.body_snippet, str(error.args)):
        assert SECRET not in text
    assert "***" in str(error)


async def test_403_is_not_refreshed(server: Script, sleep: FakeSleep, transports: Make) -> None:
    server.answer(respond(403, {"error": {"code": "Forbidden", "message": "no access"}}))
    auth = TokenAuth([SECRET], server.url)
    with pytest.raises(AuthError):
        await transports(sleep, auth=auth).request("GET", server.url, operation="get", idempotent=True)
    assert auth.invalidations == 0 and server.count == 1


async def test_unauthenticated_requests_skip_the_hook(server: Script, sleep: FakeSleep, transports: Make) -> None:
    server.answer(respond(200, {"access_token": "t", "expires_in": 3600}))
    auth = TokenAuth([SECRET], server.url)
    t = transports(sleep, auth=auth)
    await t.request("POST", server.url, operation="token", data=b"grant_type=x", idempotent=True, authenticate=False)
    assert auth.applied == []
    assert "Authorization" not in server.seen[0][2]


async def test_secrets_never_reach_error_messages(server: Script, sleep: FakeSleep, transports: Make) -> None:
    leaky = {
        "message": f"internal error for caller sekrit-token-123 using Bearer {SECRET}",
        "client_secret": "abc-very-secret",
        "detail": "y" * 2000,
    }
    server.answer(respond(500, leaky))
    with pytest.raises(Unavailable) as info:
        await transports(sleep, auth=TokenAuth([SECRET], server.url), max_attempts=1).request(
            "GET", server.url, operation="get", idempotent=True
        )
    error = info.value
    for text in (str(error), repr(error)):
        assert SECRET not in text
        assert "abc-very-secret" not in text
    assert len(error.body_snippet) <= 300
    assert len(str(error)) < 800


# --- TLS and plain HTTP ---------------------------------------------------------------------------------


@pytest.fixture
async def tls_server() -> AsyncIterator[tuple[Script, str]]:
    material = generate_tls()
    script = Script()
    script.answer(respond(200, {"secure": True}))
    test_server = await serve(script.handle, tls=material.server_context())
    script.url = str(test_server.make_url("/keys"))
    assert script.url.startswith("https://")
    yield script, material.ca_pem.decode()
    await test_server.close()


async def test_tls_with_the_keystore_ca(tls_server: tuple[Script, str], sleep: FakeSleep, transports: Make) -> None:
    script, ca_pem = tls_server
    t = transports(sleep, settings=TransportSettings(ca_pem=ca_pem))
    result = await t.request("GET", script.url, operation="get", idempotent=True)
    assert result.json_body == {"secure": True}


async def test_tls_without_the_ca_fails_verification(
    tls_server: tuple[Script, str], sleep: FakeSleep, transports: Make
) -> None:
    script, _ = tls_server
    events: list[RetryEvent] = []
    t = transports(sleep, settings=TransportSettings(), on_retry=events.append)
    with pytest.raises(TlsError) as info:
        await t.request("GET", script.url, operation="get", idempotent=True)
    assert script.count == 0 and events == []  # a configuration error: not retried
    assert not info.value.transient and not info.value.sent
    assert "certificate" in str(info.value).lower()
    assert Health.from_error(info.value).status is HealthStatus.CONFIGURATION_ERROR


async def test_tls_with_another_ca_fails(tls_server: tuple[Script, str], sleep: FakeSleep, transports: Make) -> None:
    script, _ = tls_server
    other_ca = generate_tls().ca_pem.decode()
    with pytest.raises(TlsError):
        await transports(sleep, settings=TransportSettings(ca_pem=other_ca)).request(
            "GET", script.url, operation="get", idempotent=True
        )


def test_unloadable_ca_is_a_configuration_error() -> None:
    bad = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
    with pytest.raises(KeystoreConfigurationError, match="ca_pem"):
        TransportSettings(ca_pem=bad).ssl_context()


async def test_plain_http_is_refused_unless_allowed(server: Script, sleep: FakeSleep, transports: Make) -> None:
    server.answer(respond(200))
    t = transports(sleep, settings=TransportSettings(allow_insecure_http=False))
    with pytest.raises(KeystoreConfigurationError, match="allow_insecure_http"):
        await t.request("GET", server.url, operation="get", idempotent=True)
    assert server.count == 0
    allowed = transports(sleep, settings=TransportSettings(allow_insecure_http=True))
    with pytest.raises(KeystoreConfigurationError, match="loopback"):
        await allowed.request("GET", "http://kms.example.com/", operation="get", idempotent=True)
    with pytest.raises(KeystoreConfigurationError, match="'ftp'"):
        await allowed.request("GET", "ftp://127.0.0.1/", operation="get", idempotent=True)
    await allowed.request("GET", server.url, operation="get", idempotent=True)
    assert server.count == 1


async def test_closed_transport_refuses_requests(server: Script, sleep: FakeSleep, transports: Make) -> None:
    t = transports(sleep)
    await t.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await t.request("GET", server.url, operation="get", idempotent=True)


# --- settings and construction from a keystore -------------------------------------------------------------


def keystore(kind: KeystoreType, settings: dict[str, Any]) -> Keystore:
    now = datetime.now(UTC)
    return Keystore(
        id="ks-1",
        vault_id="v-1",
        name="prod-aws",
        type=kind,
        settings=settings,
        credentials_mode=CredentialsMode.STORED,
        drift_policy=DriftPolicy.FLAG,
        status=KeystoreStatus.CONNECTED,
        created_at=now,
        updated_at=now,
    )


async def test_transport_for_a_keystore(server: Script) -> None:
    server.answer(respond(200, {"ok": 1}))
    ks = keystore(
        KeystoreType.AWS_KMS,
        {"region": "us-east-1", "allow_insecure_http": True, "read_timeout_seconds": 2, "max_concurrency": 5},
    )
    check_transport_settings(ks)
    t = HttpTransport.for_keystore(ks)
    try:
        assert t.keystore == "prod-aws"
        assert t.settings.read_timeout_seconds == 2
        assert t.limiter.limits.max_concurrency == 5
        assert t.retry.max_attempts == 3
        await t.request("POST", server.url, operation="DescribeKey", idempotent=True)
    finally:
        await t.aclose()


@pytest.mark.parametrize(
    ("settings", "target"),
    [
        ({"read_timeout_seconds": 0}, "read_timeout_seconds"),
        ({"connect_timeout_seconds": "5"}, "connect_timeout_seconds"),
        ({"ca_pem": "not a pem"}, "ca_pem"),
        ({"allow_insecure_http": "yes"}, "allow_insecure_http"),
        ({"burst": -3}, "burst"),
    ],
)
def test_bad_transport_settings_name_the_setting(settings: dict[str, Any], target: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_transport_settings(keystore(KeystoreType.IBM_KEY_PROTECT, settings))
    assert info.value.target == target


# --- error helpers --------------------------------------------------------------------------------------


def test_redact_masks_credentials() -> None:
    text = (
        'Authorization: Bearer abc.def.ghi {"access_token": "tok-1", "client_secret":"cs-2"} apikey=k-3&x=1 '
        "AKIAIOSFODNN7EXAMPLE eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl "
        "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----"
    )
    masked = redact(text)
    for secret in ("abc.def.ghi", "tok-1", "cs-2", "k-3", "AKIAIOSFODNN7EXAMPLE", "c2lnbmF0dXJl", "MIIE"):
        assert secret not in masked, secret
    assert redact(f"hello {SECRET} world", [SECRET]) == "hello *** world"


def test_body_snippet() -> None:
    assert body_snippet(b"") == ""
    assert body_snippet(b'{"a":\n   1}') == '{"a": 1}'
    long = body_snippet("z" * 1000)
    assert len(long) == 300 and long.endswith("…")
    assert body_snippet("<html><title>502 Bad Gateway</title></html>") == "an HTML page '502 Bad Gateway'"
    assert body_snippet(b"\xff\xfe broken").endswith("broken")


def test_error_for_status_and_retry_after() -> None:
    assert isinstance(error_for_status(401, {}, b""), AuthError)
    assert error_for_status(401, {}, b"").refresh  # type: ignore[attr-defined]
    assert not error_for_status(403, {}, b"").refresh  # type: ignore[attr-defined]
    assert isinstance(error_for_status(408, {}, b""), Timeout)
    throttled = error_for_status(429, {"Retry-After": "4"}, b"")
    assert isinstance(throttled, Throttled) and throttled.retry_after == 4.0
    assert isinstance(error_for_status(502, {}, b"<html>"), Unavailable)
    assert isinstance(error_for_status(302, {}, b""), MalformedResponse)
    assert parse_retry_after({}) is None
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # a date in the past
    assert parse_retry_after({"Retry-After": "-5"}) == 0.0


def test_error_attributes_for_the_cli_and_api() -> None:
    transient: list[type[ProviderError]] = [Unavailable, Throttled, Timeout]
    permanent: list[type[ProviderError]] = [
        AuthError,
        NotFound,
        Conflict,
        InvalidRequest,
        MalformedResponse,
        KeystoreConfigurationError,
        TlsError,
    ]
    for cls in transient:
        assert (cls.exit_code, cls.http_status, cls("x").transient) == (4, 503, True)
    for cls in permanent:
        assert (cls.exit_code, cls.http_status, cls("x").transient) == (4, 502, False)
    assert MalformedResponse("cut", transient=True).transient
    error = NotFound("no such key", status=404, provider_code="KeyNotFound")
    error.bind(keystore="azure-1", operation="GetKey")
    assert str(error) == "keystore 'azure-1': GetKey: no such key [HTTP 404 KeyNotFound]"
    assert error.target == "azure-1"


# --- base: health and the registry ----------------------------------------------------------------------


def test_health_from_errors_and_observation_ref() -> None:
    assert Health.from_error(Timeout("slow")).status is HealthStatus.NOT_RESPONDING
    assert Health.from_error(AuthError("denied", status=403)).status is HealthStatus.CONFIGURATION_ERROR
    assert Health(HealthStatus.OK).ok
    from keyorch.domain.states import KeyState

    obs = Observation("k-1", "mk-1", KeyState.DEACTIVATED, destruction_pending=True, raw_state="PendingDeletion")
    assert obs.ref == KeyRef("k-1", "mk-1")


def test_registry() -> None:
    class Factory:
        def validate_settings(self, keystore: Keystore) -> None:
            return None

        def create(self, keystore: Keystore, credentials: Mapping[str, Any] | None) -> base.KeystoreClient:
            raise NotImplementedError

    kind = KeystoreType.IBM_KEY_PROTECT
    previous = base._FACTORIES.get(kind)
    base.unregister(kind)
    try:
        with pytest.raises(ConfigurationError, match="no provider adapter"):
            base.factory_for(kind)
        factory = Factory()
        base.register(kind, factory)
        base.register(kind, factory)  # the same factory again is fine
        assert base.factory_for(kind) is factory
        assert kind in base.registered_kinds()
        with pytest.raises(ValueError, match="already registered"):
            base.register(kind, Factory())
        other = Factory()
        base.register(kind, other, replace=True)
        assert base.factory_for(kind) is other
    finally:
        base.unregister(kind)
        if previous is not None:
            base.register(kind, previous)
