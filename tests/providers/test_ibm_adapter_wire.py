"""IBM Key Protect adapter: IAM auth and token refresh, retries with exact counts, malformed answers,
``validate()``, and no secret in any message.

Uses the fixtures of ``test_ibm_adapter``; shapes the fake cannot make come from a few-line
``aiohttp.web`` app on a real loopback socket.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from tests.providers import test_ibm_adapter as base
from tests.providers.test_ibm_adapter import SPEC, MakeClient, Sleeps, faults, keystore_record

from keyorch.domain.states import KeyState
from keyorch.fakes.base import RunningFake
from keyorch.fakes.ibm import KeyProtectFake
from keyorch.providers.base import HealthStatus, KeyRef
from keyorch.providers.errors import (
    AuthError,
    InvalidRequest,
    MalformedResponse,
    NotFound,
    ProviderError,
    Throttled,
    Unavailable,
)
from keyorch.providers.ibm import KeyProtectClient, create_client
from keyorch.providers.ibm_wire import map_error

# The fixtures of the contract module, shared here.
adapter_env = base.adapter_env
make_client = base.make_client
running = base.running
sleeps = base.sleeps

Env = tuple[KeyProtectClient, KeyProtectFake]


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- auth ---------------------------------------------------------------------------------------
async def test_token_is_cached_and_a_401_refreshes_once(adapter_env: Env) -> None:
    client, fake = adapter_env
    key = await client.ensure_key("m-1", SPEC)
    await client.get_key(key.ref)
    assert fake.log.counts["Token"] == 1
    fake.tokens.revoke_all()
    observed = await client.get_key(key.ref)  # 401 → new token → same request again
    assert observed is not None and observed.state is KeyState.ACTIVE
    assert fake.log.counts["Token"] == 2
    assert client.transport.auth_refreshes == 1
    assert [e.status for e in fake.log.entries if e.operation == "GetKeyMetadata"][-2:] == [401, 200]


async def test_a_burst_of_401s_fetches_one_token(adapter_env: Env) -> None:
    client, fake = adapter_env
    key = await client.ensure_key("m-1", SPEC)
    results = await asyncio.gather(*(client.get_key(key.ref) for _ in range(20)))
    assert all(r is not None for r in results) and fake.log.counts["Token"] == 1
    fake.tokens.revoke_all()
    results = await asyncio.gather(*(client.get_key(key.ref) for _ in range(20)))
    assert all(r is not None for r in results)
    assert fake.log.counts["Token"] == 2


async def test_token_is_renewed_before_it_expires(make_client: MakeClient, running: RunningFake) -> None:
    fake = running.fake
    assert isinstance(fake, KeyProtectFake)
    clock = Clock()
    client = make_client(clock=clock)
    key = await client.ensure_key("m-1", SPEC)
    clock.now += 3600 * 0.79
    await client.get_key(key.ref)
    assert fake.log.counts["Token"] == 1
    clock.now += 3600 * 0.02  # past 80% of expires_in (3600 s)
    await client.get_key(key.ref)
    assert fake.log.counts["Token"] == 2 and client.transport.auth_refreshes == 0


async def test_a_refused_token_is_not_replayed_forever(make_client: MakeClient, running: RunningFake) -> None:
    """A wrong instance id: 401 every time. One refresh, then AuthError; no secret in the message."""
    fake = running.fake
    assert isinstance(fake, KeyProtectFake)
    creds = fake.credentials(running.url)
    client = make_client(settings={"instance_id": "00000000-0000-0000-0000-000000000000"})
    with pytest.raises(AuthError, match="Unauthorized") as caught:
        await client.get_key(KeyRef("k", "m"))
    assert fake.log.counts["Token"] == 2 and fake.log.counts["GetKeyMetadata"] == 2
    token_values = list(fake.iam.token_users)
    for text in (caught.value.message, repr(caught.value), repr(client), repr(client.auth)):
        assert creds["apikey"] not in text
        assert not any(token in text for token in token_values)


async def test_wrong_api_key_is_a_configuration_error(make_client: MakeClient, running: RunningFake) -> None:
    fake = running.fake
    assert isinstance(fake, KeyProtectFake)
    creds = {**fake.credentials(running.url), "apikey": "wrong-key-0123456789"}
    client = make_client(creds)
    health = await client.validate()
    assert health.status is HealthStatus.CONFIGURATION_ERROR
    assert "BXNIM0415E" in health.message and "wrong-key-0123456789" not in health.message
    assert fake.log.counts["Token"] == 1 and fake.log.counts["ListKeys"] == 0  # permanent: not retried


async def test_api_key_from_the_environment(make_client: MakeClient, running: RunningFake) -> None:
    fake = running.fake
    assert isinstance(fake, KeyProtectFake)
    environ = {"IC_API_KEY": fake.apikey, "IBMCLOUD_IAM_API_ENDPOINT": running.url}
    record = keystore_record(running.url, instance_id=fake.instance_id)
    async with create_client(record, None, environ=environ) as client:
        assert (await client.validate()).ok
    async with create_client(record, None, environ={}) as client:
        health = await client.validate()
    assert health.status is HealthStatus.CONFIGURATION_ERROR
    assert "IBMCLOUD_API_KEY" in health.message and "trusted profiles" in health.message


async def test_iam_outage_is_retried_by_the_keystore_call(adapter_env: Env) -> None:
    client, fake = adapter_env
    faults(fake, {"operation": "Token", "sequence": ["error_503", "ok"]})
    assert await client.get_key(KeyRef(None, "m-1")) is None
    assert fake.log.counts["Token"] == 2 and fake.log.counts["GetKeyMetadata"] == 1


# -- retries ------------------------------------------------------------------------------------
async def test_503_then_success_is_retried(adapter_env: Env, sleeps: Sleeps) -> None:
    client, fake = adapter_env
    faults(fake, {"operation": "ListKeys", "sequence": ["error_503", "error_500", "ok"]})
    assert [o async for o in client.list_keys()] == []
    assert fake.log.counts["ListKeys"] == 3 and len(sleeps.waits) == 2


async def test_throttle_honours_retry_after(adapter_env: Env, sleeps: Sleeps) -> None:
    client, fake = adapter_env
    faults(fake, {"operation": "GetKeyMetadata", "sequence": [{"kind": "throttle", "retry_after_seconds": 7}]})
    assert await client.get_key(KeyRef("abc", None)) is None
    assert fake.log.counts["GetKeyMetadata"] == 2 and sleeps.waits == [7.0]
    assert client.transport.stats.throttles == 1


async def test_retries_are_bounded(adapter_env: Env, sleeps: Sleeps) -> None:
    client, fake = adapter_env
    faults(fake, {"operation": "GetKeyMetadata", "sequence": ["error_503"] * 10})
    with pytest.raises(Unavailable, match="HTTP 503"):
        await client.get_key(KeyRef("abc", None))
    assert fake.log.counts["GetKeyMetadata"] == 4 and len(sleeps.waits) == 3


async def test_permanent_errors_are_not_retried(adapter_env: Env, sleeps: Sleeps) -> None:
    client, fake = adapter_env
    with pytest.raises(NotFound, match="KEY_NOT_FOUND_ERR"):
        await client.enable(KeyRef("6a3b2c1d-0000-4000-8000-000000000000", None))
    assert fake.log.counts["EnableKey"] == 1 and sleeps.waits == []


# -- malformed answers --------------------------------------------------------------------------
async def test_html_200_is_malformed_and_not_retried(adapter_env: Env) -> None:
    client, fake = adapter_env
    faults(fake, {"operation": "GetKeyMetadata", "sequence": ["non_json"]})
    with pytest.raises(MalformedResponse, match="not JSON"):
        await client.get_key(KeyRef("abc", None))
    assert fake.log.counts["GetKeyMetadata"] == 1


async def test_html_502_is_unavailable_and_retried(adapter_env: Env) -> None:
    client, fake = adapter_env
    faults(fake, {"operation": "GetKeyMetadata", "sequence": [{"kind": "non_json", "status": 502}]})
    assert await client.get_key(KeyRef("abc", None)) is None
    assert fake.log.counts["GetKeyMetadata"] == 2


async def test_truncated_answer_is_retried(adapter_env: Env) -> None:
    client, fake = adapter_env
    key = await client.ensure_key("m-1", SPEC)
    faults(fake, {"operation": "GetKeyMetadata", "sequence": ["truncate"]})
    assert await client.get_key(key.ref) == key
    assert fake.log.counts["GetKeyMetadata"] == 3  # ensure_key's read, the cut one, the retry


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def tiny_server() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Serve IAM's token route plus one handler for everything under /api/v2 on a real socket."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        async def token(_: web.Request) -> web.Response:
            return web.json_response({"access_token": "tok.tok.tok", "token_type": "Bearer", "expires_in": 3600})

        app = web.Application()
        app.router.add_post("/identity/token", token)
        app.router.add_route("*", "/api/v2/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    try:
        yield start
    finally:
        for runner in runners:
            await runner.cleanup()


def envelope(*resources: Any) -> dict[str, Any]:
    return {"metadata": {"collectionType": "application/vnd.ibm.kms.key+json", "collectionTotal": 1},
            "resources": list(resources)}  # fmt: skip


GOOD = {"id": "k-1", "state": 1, "aliases": ["keyorch-m-1"]}
MALFORMED_BODIES: list[tuple[str, Any]] = [
    ("array", [GOOD]),
    ("no resources", {"metadata": {}}),
    ("resources not a list", {"metadata": {}, "resources": GOOD}),
    ("two keys", envelope(GOOD, {**GOOD, "id": "k-2"})),
    ("empty", envelope()),
    ("resource not an object", envelope("k-1")),
    ("missing id", envelope({"state": 1})),
    ("id not a string", envelope({"id": 7, "state": 1})),
    ("state as a string", envelope({"id": "k-1", "state": "1"})),
    ("state as a bool", envelope({"id": "k-1", "state": True})),
    ("unknown state", envelope({"id": "k-1", "state": 4})),
    ("bad date", envelope({"id": "k-1", "state": 5, "restoreAllowed": True, "restoreExpirationDate": "soon"})),
    ("restoreAllowed not a bool", envelope({"id": "k-1", "state": 5, "restoreAllowed": "yes"})),
    (
        "200 with an error body",
        {
            "metadata": {"collectionType": "application/vnd.ibm.kms.error+json", "collectionTotal": 1},
            "resources": [
                {"errorMsg": "Conflict", "reasons": [{"code": "KEY_ACTION_INVALID_STATE_ERR", "message": "no"}]}
            ],
        },
    ),
]


@pytest.mark.parametrize(("label", "body"), MALFORMED_BODIES, ids=[label for label, _ in MALFORMED_BODIES])
async def test_malformed_key_answers_raise_malformed_response(
    make_client: MakeClient, tiny_server: Callable[[Handler], Awaitable[str]], label: str, body: Any
) -> None:
    async def handler(_: web.Request) -> web.Response:
        return web.json_response(body)

    url = await tiny_server(handler)
    creds = {"apikey": "k" * 20, "iam_url": url + "/identity/token", "instance_id": "inst-1"}
    client = make_client(creds, endpoint=url)
    with pytest.raises(MalformedResponse) as caught:
        await client.get_key(KeyRef("k-1", None))
    assert not caught.value.transient
    if label == "200 with an error body":
        assert caught.value.provider_code == "KEY_ACTION_INVALID_STATE_ERR"
    if label in ("two keys", "empty"):  # a fine page for a listing
        assert len([o async for o in client.list_keys()]) == len(body["resources"])
        return
    with pytest.raises(MalformedResponse):
        [o async for o in client.list_keys()]


async def test_malformed_token_answers(make_client: MakeClient) -> None:
    answers = [
        {"token_type": "Bearer", "expires_in": 3600},
        {"access_token": "a b", "expires_in": 3600},
        {"access_token": "secret-token-value", "token_type": "MAC", "expires_in": 3600},
        {"access_token": "secret-token-value"},
        {"access_token": "secret-token-value", "expires_in": "3600"},
        ["secret-token-value"],
    ]
    for answer in answers:

        async def token(_: web.Request, answer: Any = answer) -> web.Response:
            return web.json_response(answer)

        app = web.Application()
        app.router.add_post("/identity/token", token)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            url = f"http://127.0.0.1:{runner.addresses[0][1]}"
            creds = {"apikey": "k" * 20, "iam_url": url + "/identity/token", "instance_id": "inst-1"}
            client = make_client(creds, endpoint=url)
            with pytest.raises(MalformedResponse, match="IAM token answer") as caught:
                await client.get_key(KeyRef("k-1", None))
            assert "secret-token-value" not in caught.value.message
        finally:
            await runner.cleanup()


async def test_a_deleted_key_without_the_flag_is_judged_by_its_date(
    make_client: MakeClient, tiny_server: Callable[[Handler], Awaitable[str]]
) -> None:
    docs = {
        "recent": {"id": "k-1", "state": 5, "deletionDate": "2999-01-01T00:00:00Z"},
        "old": {"id": "k-2", "state": 5, "deletionDate": "2001-01-01T00:00:00.123456789Z"},
    }

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(envelope(docs[request.match_info["tail"].split("/")[1]]))

    url = await tiny_server(handler)
    creds = {"apikey": "k" * 20, "iam_url": url + "/identity/token", "instance_id": "inst-1"}
    client = make_client(creds, endpoint=url)
    recent = await client.get_key(KeyRef("recent", None))
    old = await client.get_key(KeyRef("old", None))
    assert recent is not None and recent.destruction_pending and recent.state is KeyState.DEACTIVATED
    assert old is not None and old.state is KeyState.DESTROYED


def test_error_mapping_table() -> None:
    def body(code: str | None, message: str = "text", status: int = 409) -> bytes:
        resource: dict[str, Any] = {"errorMsg": f"summary ({code})"}
        if code:
            resource["reasons"] = [{"code": code, "message": message, "status": status}]
        return json.dumps({"metadata": {"collectionType": "application/vnd.ibm.kms.error+json"},
                           "resources": [resource]}).encode()  # fmt: skip

    cases: list[tuple[int, bytes, type[ProviderError], bool]] = [
        (401, body(None), AuthError, False),
        (403, body("FEATURE_RESTRICTED_ERR"), AuthError, False),
        (404, body("KEY_NOT_FOUND_ERR"), NotFound, False),
        (409, body("REQ_TOO_EARLY_ERR"), Throttled, True),
        (410, body("KEY_DELETED_ERR"), ProviderError, False),
        (400, body("KEY_EXPIRED_ERR"), ProviderError, False),
        (400, body("BAD_BODY_ERR"), InvalidRequest, False),
        (429, b"", Throttled, True),
        (500, body("INCOMPLETE_METADATA_ERR"), Unavailable, True),
        (502, b"<html><title>Bad Gateway</title></html>", Unavailable, True),
    ]
    for status, raw, kind, transient in cases:
        error = map_error(status, {"Correlation-Id": "c-1"}, raw)
        assert isinstance(error, kind), (status, raw, error)
        assert error.transient is transient, (status, error)
    unauthorized = map_error(401, {}, body(None))
    assert isinstance(unauthorized, AuthError) and unauthorized.refresh
    too_early = map_error(409, {"Retry-After": "12"}, body("REQ_TOO_EARLY_ERR"))
    assert too_early.retry_after == 12.0
    assert map_error(409, {}, body("REQ_TOO_EARLY_ERR")).retry_after == 30.0
    deleted = map_error(410, {"Correlation-Id": "c-1"}, body("KEY_DELETED_ERR", "Key has already been deleted"))
    assert deleted.code == "keystore_conflict" and deleted.provider_code == "KEY_DELETED_ERR"
    assert "KEY_DELETED_ERR: Key has already been deleted" in deleted.message and "c-1" in deleted.message


# -- validate -----------------------------------------------------------------------------------
async def test_validate_ok(adapter_env: Env) -> None:
    client, fake = adapter_env
    health = await client.validate()
    assert health.ok and fake.log.counts["ListKeys"] == 1


async def test_validate_closed_port_is_not_responding(make_client: MakeClient) -> None:
    closed = closed_port_url()
    client = make_client(endpoint=closed)
    assert (await client.validate()).status is HealthStatus.NOT_RESPONDING
    creds = {"apikey": "k" * 20, "iam_url": closed + "/identity/token", "instance_id": "inst-1"}
    client = make_client(creds, endpoint=closed)
    health = await client.validate()
    assert health.status is HealthStatus.NOT_RESPONDING and "cannot connect" in health.message
