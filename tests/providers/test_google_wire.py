"""Google Cloud KMS adapter pieces the fake cannot exercise: the state derivation table, the error
mapping, malformed answers (tiny aiohttp handlers on real sockets), and the credentials chain
(GOOGLE_APPLICATION_CREDENTIALS, the metadata server)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from tests.providers.test_google_adapter import RING, Sleeps, client_for, free_port, new_fake

from keyorch.domain.states import KeyState
from keyorch.providers.base import HealthStatus, KeyRef
from keyorch.providers.errors import (
    AuthError,
    Conflict,
    InvalidRequest,
    KeystoreConfigurationError,
    MalformedResponse,
    NotFound,
    Throttled,
    Timeout,
    Unavailable,
)
from keyorch.providers.google_auth import MetadataServer, ServiceAccountSigner, credential_source
from keyorch.providers.google_wire import KeyInfo, VersionInfo, derive, map_google_error, parse_key, parse_time

KEY = f"{RING}/cryptoKeys/keyorch-k"
T1 = datetime(2030, 1, 1, tzinfo=UTC)
T2 = datetime(2030, 2, 1, tzinfo=UTC)


def v(n: int, state: str, when: datetime | None = None) -> VersionInfo:
    return VersionInfo(f"{KEY}/cryptoKeyVersions/{n}", state, when)


# -- the state table -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("primary", "versions", "expected"),
    [
        (1, [], (KeyState.PRE_ACTIVE, False, None)),
        (1, [v(1, "ENABLED")], (KeyState.ACTIVE, False, None)),
        (1, [v(1, "ENABLED"), v(2, "DISABLED")], (KeyState.ACTIVE, False, None)),
        (2, [v(1, "ENABLED"), v(2, "DISABLED")], (KeyState.DEACTIVATED, False, None)),  # primary decides
        (None, [v(1, "DISABLED"), v(2, "ENABLED")], (KeyState.ACTIVE, False, None)),  # no primary: any
        (1, [v(1, "DISABLED")], (KeyState.DEACTIVATED, False, None)),
        (1, [v(1, "DESTROY_SCHEDULED", T1), v(2, "DESTROY_SCHEDULED", T2)], (KeyState.DEACTIVATED, True, T2)),
        (1, [v(1, "DESTROY_SCHEDULED", T1), v(2, "DESTROYED")], (KeyState.DEACTIVATED, True, T1)),
        (1, [v(1, "DESTROY_SCHEDULED", T1), v(2, "DISABLED")], (KeyState.DEACTIVATED, False, None)),  # partial
        (1, [v(1, "DESTROYED"), v(2, "PENDING_EXTERNAL_DESTRUCTION")], (KeyState.DESTROYED, False, None)),
        (1, [v(1, "EXTERNAL_DESTRUCTION_FAILED")], (KeyState.DESTROYED, False, None)),
        (1, [v(1, "DESTROYED"), v(2, "IMPORT_FAILED")], (KeyState.DESTROYED, False, None)),  # no material
        (1, [v(1, "GENERATION_FAILED")], (KeyState.PRE_ACTIVE, False, None)),
        (1, [v(1, "PENDING_GENERATION")], (KeyState.PRE_ACTIVE, False, None)),
        (2, [v(1, "DESTROYED"), v(2, "PENDING_IMPORT")], (KeyState.PRE_ACTIVE, False, None)),
        (1, [v(1, "ENABLED"), v(2, "DESTROY_SCHEDULED", T1)], (KeyState.ACTIVE, False, None)),
    ],
)
def test_state_table(primary: int | None, versions: list[VersionInfo], expected: tuple[Any, ...]) -> None:
    primary_version = next((x for x in versions if x.name.endswith(f"/{primary}")), None) if primary else None
    key = KeyInfo(KEY, "ENCRYPT_DECRYPT", primary_version or (v(primary, "ENABLED") if primary else None))
    derived = derive(key, versions)
    assert (derived.state, derived.destruction_pending, derived.pending_until) == expected


def test_primary_alone() -> None:
    key = KeyInfo(KEY, "ENCRYPT_DECRYPT", v(1, "DESTROYED"))
    assert derive(key, None).state is KeyState.DESTROYED
    assert derive(KeyInfo(KEY, "ASYMMETRIC_DECRYPT", None), None).raw_state.startswith("no primary")


def test_parsing_reads_int_and_string_enums_and_refuses_wrong_types() -> None:
    ints = parse_key(
        {
            "name": KEY,
            "purpose": 1,
            "primary": {
                "name": f"{KEY}/cryptoKeyVersions/1",
                "state": 4,
                "destroyTime": "2030-01-01T00:00:00.123456789Z",
            },
        }
    )
    assert (ints.purpose, ints.primary) == (
        "ENCRYPT_DECRYPT",
        VersionInfo(f"{KEY}/cryptoKeyVersions/1", "DESTROY_SCHEDULED", datetime(2030, 1, 1, 0, 0, 0, 123456, UTC)),
    )
    names = parse_key(
        {"name": KEY, "purpose": "MAC", "primary": {"name": f"{KEY}/cryptoKeyVersions/1", "state": "ENABLED"}}
    )
    assert (names.purpose, names.primary.state if names.primary else None) == ("MAC", "ENABLED")
    assert parse_key({"name": KEY, "purpose": 99}).purpose == "PURPOSE_99"  # a newer enum value is kept
    assert parse_time("2030-01-01T01:00:00+01:00", "t") == datetime(2030, 1, 1, tzinfo=UTC)
    bad: Any
    for bad in (
        [],
        {"purpose": 1},
        {"name": 5},
        {"name": "projects/p/elsewhere"},
        {"name": KEY, "purpose": True},
        {"name": KEY, "primary": {"name": f"{KEY}/cryptoKeyVersions/1", "state": {"x": 1}}},
        {"name": KEY, "primary": {"name": f"{RING}/cryptoKeys/other/cryptoKeyVersions/1", "state": 1}},
        {"name": KEY, "primary": {"name": f"{KEY}/cryptoKeyVersions/1", "state": 4, "destroyTime": "tomorrow"}},
        {"name": KEY, "primary": {"name": f"{KEY}/cryptoKeyVersions/1", "state": 4, "destroyTime": 5}},
        {"error": {"code": 500}},
    ):
        with pytest.raises(ValueError):
            parse_key(bad)


# -- the error mapping ---------------------------------------------------------------------------


def google_body(status: str, message: str = "m", details: list[Any] | None = None) -> bytes:
    return json.dumps({"error": {"code": 0, "message": message, "status": status, "details": details or []}}).encode()


@pytest.mark.parametrize(
    ("status", "canonical", "cls", "transient"),
    [
        (400, "INVALID_ARGUMENT", InvalidRequest, False),
        (400, "FAILED_PRECONDITION", Conflict, False),
        (401, "UNAUTHENTICATED", AuthError, False),
        (403, "PERMISSION_DENIED", AuthError, False),
        (404, "NOT_FOUND", NotFound, False),
        (409, "ALREADY_EXISTS", Conflict, False),
        (409, "ABORTED", Unavailable, True),
        (429, "RESOURCE_EXHAUSTED", Throttled, True),
        (500, "INTERNAL", Unavailable, True),
        (501, "UNIMPLEMENTED", InvalidRequest, False),
        (503, "UNAVAILABLE", Unavailable, True),
        (504, "DEADLINE_EXCEEDED", Timeout, True),
        (418, "SOMETHING_NEW", InvalidRequest, False),
    ],
)
def test_error_mapping(status: int, canonical: str, cls: type[Exception], transient: bool) -> None:
    error = map_google_error(status, {}, google_body(canonical))
    assert type(error) is cls and error.transient is transient and error.provider_code == canonical


def test_error_mapping_details() -> None:
    assert map_google_error(401, {}, google_body("UNAUTHENTICATED")).refresh is True  # type: ignore[attr-defined]
    assert map_google_error(403, {}, google_body("PERMISSION_DENIED")).refresh is False  # type: ignore[attr-defined]
    retry = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s"}]
    assert map_google_error(429, {}, google_body("RESOURCE_EXHAUSTED", details=retry)).retry_after == 12
    oauth = map_google_error(400, {}, b'{"error": "invalid_grant", "error_description": "Invalid JWT Signature."}')
    assert isinstance(oauth, AuthError) and not oauth.refresh and "Invalid JWT Signature" in oauth.message
    html = map_google_error(502, {}, b"<html><title>Bad Gateway</title></html>")
    assert isinstance(html, Unavailable) and "Bad Gateway" in html.message
    assert isinstance(map_google_error(400, {}, b'{"error": [1]}'), InvalidRequest)


# -- malformed answers from a real socket --------------------------------------------------------


@dataclass
class Scripted:
    """A Cloud KMS look-alike: a token endpoint, and one scripted answer for every /v1 call."""

    token_answer: Any = field(default_factory=lambda: {"access_token": "ya29.tok", "expires_in": 3599})
    body: bytes = b"{}"
    status: int = 200
    #: the answer to a versions listing (``…/cryptoKeyVersions``) where it differs from ``body``
    versions_body: bytes | None = None
    calls: int = 0
    headers: list[dict[str, str]] = field(default_factory=list)

    def app(self) -> web.Application:
        async def token(_: web.Request) -> web.Response:
            return web.json_response(self.token_answer)

        async def api(request: web.Request) -> web.Response:
            self.calls += 1
            self.headers.append(dict(request.headers))
            listing = request.method == "GET" and request.path.endswith("/cryptoKeyVersions")
            body = self.versions_body if listing and self.versions_body is not None else self.body
            return web.Response(body=body, status=self.status, content_type="application/json")

        async def metadata(request: web.Request) -> web.Response:
            if request.headers.get("Metadata-Flavor") != "Google":
                return web.Response(status=403)
            return web.json_response({"access_token": "ya29.meta", "expires_in": 3000, "token_type": "Bearer"})

        app = web.Application()
        app.router.add_post("/token", token)
        app.router.add_get("/computeMetadata/v1/instance/service-accounts/default/token", metadata)
        app.router.add_route("*", "/v1/{tail:.*}", api)
        return app


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[Scripted, str]]:
    script = Scripted()
    server = TestServer(script.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield script, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


KEY_DOC = {"name": KEY, "purpose": 1, "primary": {"name": f"{KEY}/cryptoKeyVersions/1", "state": 1}}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"name": 5}', "name is missing"),
        (json.dumps({**KEY_DOC, "primary": {**KEY_DOC["primary"], "state": True}}).encode(), "not an enum"),  # type: ignore[dict-item]
        (b'{"error": {"code": 500, "status": "INTERNAL", "message": "boom"}}', "error body"),
        (b"[1, 2]", "not a JSON object"),
        (b"<html><title>Sign in</title></html>", "not JSON"),
        (b"null", "not a JSON object"),
    ],
)
async def test_malformed_key_answers(scripted: tuple[Scripted, str], body: bytes, words: str) -> None:
    script, url = scripted
    script.body = body
    async with client_for(url, new_fake().credentials(url), Sleeps()) as client:
        with pytest.raises(MalformedResponse, match=words) as caught:
            await client.get_key(KeyRef("keyorch-k"))
    assert script.calls == 1 and "ya29.tok" not in repr(caught.value)


async def test_json_cut_short_is_retried_then_reported(scripted: tuple[Scripted, str]) -> None:
    script, url = scripted
    script.body = json.dumps(KEY_DOC).encode()[:40]
    sleeps = Sleeps()
    async with client_for(url, new_fake().credentials(url), sleeps) as client:
        with pytest.raises(MalformedResponse, match="cut short"):
            await client.get_key(KeyRef("keyorch-k"))
    assert script.calls == 5 and len(sleeps.waits) == 4


async def test_malformed_list_pages(scripted: tuple[Scripted, str]) -> None:
    script, url = scripted
    async with client_for(url, new_fake().credentials(url), Sleeps()) as client:
        for body, words in (
            (b'{"cryptoKeys": {"a": 1}}', "not a list"),
            (b'{"cryptoKeys": [], "nextPageToken": 7}', "page token"),
            (b'{"cryptoKeys": [{"name": "x"}]}', "cryptoKey name"),
        ):
            script.body = body
            with pytest.raises(MalformedResponse, match=words):
                _ = [o async for o in client.list_keys()]
        script.body = b'{"nextPageToken": "same"}'
        with pytest.raises(MalformedResponse, match="repeats its page token"):
            _ = [o async for o in client.list_keys()]
        script.body = b"{}"  # an empty list may be an empty object
        assert [o async for o in client.list_keys()] == []


async def test_unusable_token_answers(scripted: tuple[Scripted, str]) -> None:
    script, url = scripted
    script.body = json.dumps(KEY_DOC).encode()
    for answer, words in (
        ({"expires_in": 3599}, "access_token"),
        ({"access_token": "a b", "expires_in": 3599}, "access_token"),
        ({"access_token": "t", "expires_in": "soon"}, "expires_in"),
        ({"access_token": "t", "token_type": "MAC"}, "token_type"),
        ([], "not a JSON object"),
    ):
        script.token_answer = answer
        async with client_for(url, new_fake().credentials(url), Sleeps()) as client:
            health = await client.validate()
        assert health.status is HealthStatus.CONFIGURATION_ERROR and words in health.message, answer
    assert script.calls == 0


async def test_requests_carry_the_token_and_int_enums(scripted: tuple[Scripted, str]) -> None:
    script, url = scripted
    script.body = json.dumps(KEY_DOC).encode()
    script.versions_body = json.dumps({"cryptoKeyVersions": [KEY_DOC["primary"]]}).encode()
    async with client_for(url, new_fake().credentials(url), Sleeps()) as client:
        observation = await client.get_key(KeyRef("keyorch-k"))
    assert observation is not None and observation.state is KeyState.ACTIVE
    assert observation.versions is not None and [v.version_id for v in observation.versions] == ["1"]
    assert script.headers[0]["Authorization"] == "Bearer ya29.tok"


# -- the credentials chain -----------------------------------------------------------------------


async def test_credentials_from_the_environment_file(
    scripted: tuple[Scripted, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script, url = scripted
    script.body = json.dumps(KEY_DOC).encode()
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(new_fake().credentials(url)))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    source = credential_source(None)
    assert isinstance(source, ServiceAccountSigner) and "PRIVATE" not in repr(source)
    async with client_for(url, None, Sleeps()) as client:
        assert (await client.validate()).status is HealthStatus.OK
    path.write_text("not json")
    assert isinstance(credential_source(None), KeystoreConfigurationError)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    async with client_for(url, None, Sleeps()) as client:
        health = await client.validate()
    assert health.status is HealthStatus.CONFIGURATION_ERROR and "GOOGLE_APPLICATION_CREDENTIALS" in health.message


async def test_credentials_from_the_metadata_server(
    scripted: tuple[Scripted, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    script, url = scripted
    script.body = json.dumps(KEY_DOC).encode()
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("GCE_METADATA_HOST", url.removeprefix("http://"))
    source = credential_source(None)
    assert isinstance(source, MetadataServer) and "scopes=https" in source.url
    async with client_for(url, None, Sleeps()) as client:
        assert (await client.get_key(KeyRef("keyorch-k"))) is not None
        assert client.auth.fetches == 1
    assert script.headers[0]["Authorization"] == "Bearer ya29.meta"


async def test_no_metadata_server_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("GCE_METADATA_HOST", f"127.0.0.1:{free_port()}")
    async with client_for(f"http://127.0.0.1:{free_port()}", None, Sleeps()) as client:
        health = await client.validate()
    assert health.status is HealthStatus.CONFIGURATION_ERROR and "metadata server" in health.message


async def test_tokens_are_fetched_again_before_they_expire(
    scripted: tuple[Scripted, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    script, url = scripted
    script.body = json.dumps(KEY_DOC).encode()
    script.token_answer = {"access_token": "ya29.short", "expires_in": 400}
    now = [1000.0]
    monkeypatch.setattr("keyorch.providers.google_auth.time.monotonic", lambda: now[0])
    async with client_for(url, new_fake().credentials(url), Sleeps()) as client:
        await client.get_key(KeyRef("keyorch-k"))
        now[0] += 299  # a quarter of 400 s is the margin: still fresh
        await client.get_key(KeyRef("keyorch-k"))
        assert client.auth.fetches == 1
        now[0] += 2  # within the margin: fetched again before it expires
        await client.get_key(KeyRef("keyorch-k"))
        assert client.auth.fetches == 2
        assert "ya29" not in repr(client.auth)
