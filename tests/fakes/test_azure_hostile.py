"""Azure Key Vault fake under hostile input: a few hundred bad requests (random and hand-picked
paths, wrong methods, malformed/truncated JSON, wrong types, missing fields, oversized bodies,
missing/garbled auth, garbage api-versions and query values, bad token requests, big headers).
Every answer must be a 4xx in Key Vault's error form (or Entra's, for the token endpoint), no
request may change the vault, and the fake must still serve good requests afterwards."""

from __future__ import annotations

import json
import random
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from tests.fakes.test_azure_client import API, Reply, VaultClient, open_vault, version_of
from yarl import URL

from keyorch.fakes.azure_crypto import b64url

SEED = 20260323
Form = Literal["vault", "entra", "either", "status_only"]
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
BAD_NAME_PARTS = ("_", "%0A", ".", "%20", "%2F", "%00", "%FF", "%C3%A9", "'", "%22", "~", "..", "%25", "+", "*")
WRONG_TYPES: list[Any] = [1, -1, 1.5, True, [], {}, "", "x" * 2000, [1, "a"], {"a": None}]


@dataclass
class Case:
    method: str
    path: str  # already percent-encoded
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    form: Form = "vault"
    auth: bool = True
    query: str | None = f"api-version={API}"
    content_type: str = "application/json"


def json_bytes(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def random_bad_segment(rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits + "-"
    core = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
    cut = rng.randint(0, len(core))
    return core[:cut] + rng.choice(BAD_NAME_PARTS) + core[cut:]


def random_paths(rng: random.Random, count: int) -> Iterator[Case]:
    prefixes = ("/keys/", "/deletedkeys/", "/", "/keys/victim/", "/keys/victim/x/y/", "/deletedkeys/victim/x/")
    for _ in range(count):
        segments = [random_bad_segment(rng) for _ in range(rng.randint(1, 4))]
        if rng.random() < 0.1:
            segments.append("a" * rng.randint(200, 3000))
        yield Case(rng.choice(METHODS), rng.choice(prefixes) + "/".join(segments))


def wrong_methods(version: str) -> Iterator[Case]:
    allowed = {
        "/keys": {"GET"},
        "/keys/victim": {"GET", "PATCH", "DELETE"},
        "/keys/victim/create": {"POST"},
        "/keys/victim/rotate": {"POST"},
        "/keys/victim/rotationpolicy": {"GET", "PUT"},
        "/keys/victim/versions": {"GET"},
        f"/keys/victim/{version}": {"GET", "PATCH"},
        f"/keys/victim/{version}/encrypt": {"POST"},
        "/keys/victim//wrapkey": {"POST"},
        "/deletedkeys": {"GET"},
        "/deletedkeys/victim": {"GET", "DELETE"},
        "/deletedkeys/victim/recover": {"POST"},
        "/tenant/oauth2/v2.0/token": {"POST"},
    }
    for path, ok in allowed.items():
        for method in METHODS:
            if method not in ok:
                yield Case(method, path)
        yield Case("HEAD" if "GET" not in ok else "PUT", path, form="status_only")


def malformed_bodies(rng: random.Random, body_paths: list[str]) -> Iterator[Case]:
    fixed = [b"", b"{", b"}", b"[]", b'"x"', b"1", b"null", b"\xff\xfe\x00", b"{'kty': 'EC'}", b'{"kty": "EC",}']
    fixed += [b"[" * 50_000, b'{"a":' * 30_000, b"\x00" * 100]
    valid = json_bytes({"kty": "EC", "attributes": {"enabled": True}, "alg": "RSA-OAEP", "value": "AAEC"})
    for path in body_paths:
        for raw in fixed:
            yield Case("PATCH" if path.startswith("PATCH ") else "POST", path.split(" ")[-1], raw)
        for _ in range(5):
            cut = rng.randint(1, len(valid) - 1)
            yield Case("PATCH" if path.startswith("PATCH ") else "POST", path.split(" ")[-1], valid[:cut])


def wrong_type_bodies(version: str) -> Iterator[Case]:
    create: list[dict[str, Any]] = [{}, {"kty": "oct"}, {"kty": "EC", "tags": {str(i): "v" for i in range(16)}}]
    create += [{"kty": bad} for bad in WRONG_TYPES] + [{"kty": "RSA", "key_size": bad} for bad in WRONG_TYPES]
    create += [{"kty": "RSA", "key_size": 1024}, {"kty": "RSA", "public_exponent": 4}, {"kty": "EC", "crv": "P-999"}]
    create += [{"kty": "EC", "crv": bad} for bad in WRONG_TYPES if bad != {} and bad != []]
    attributes: list[Any] = [[], "x", 5] + [{"enabled": bad} for bad in WRONG_TYPES if not isinstance(bad, bool)]
    attributes += [{"nbf": -1}, {"exp": 1.5}, {"exp": "2030-01-01"}, {"nbf": 10**20}, {"exp": True}]
    others: list[dict[str, Any]] = [{"key_ops": "sign"}, {"key_ops": ["fly"]}, {"key_ops": [1]}, {"tags": {"a": 1}}]
    others += [{"tags": ["a"]}, {"tags": {"k" * 600: "v"}}, {"tags": {"k": "v" * 300}}]
    for doc in create:
        yield Case("POST", "/keys/fresh/create", json_bytes(doc))
    for extra in [{"attributes": a} for a in attributes] + others:
        yield Case("POST", "/keys/fresh/create", json_bytes({"kty": "EC"} | extra))
        yield Case("PATCH", f"/keys/victim/{version}", json_bytes(extra))
    crypto: list[dict[str, Any]] = [{}, {"alg": "RSA-OAEP"}, {"value": "AAEC"}, {"alg": "NOPE", "value": "AAEC"}]
    crypto += [{"alg": bad, "value": "AAEC"} for bad in WRONG_TYPES if bad != "x" * 2000]
    bad_values: list[Any] = [1, None, [], "***", "A"]
    crypto += [{"alg": "RSA-OAEP", "value": bad} for bad in bad_values]
    crypto += [{"alg": "RSA-OAEP", "value": b64url(bytes(600))}, {"alg": "A256KW", "value": "AAEC"}]
    for doc in crypto:
        for operation in ("encrypt", "wrapkey"):
            yield Case("POST", f"/keys/victim/{version}/{operation}", json_bytes(doc))
    for operation in ("decrypt", "unwrapkey"):
        yield Case("POST", f"/keys/victim//{operation}", json_bytes({"alg": "RSA-OAEP", "value": b64url(bytes(256))}))
    rotate = {"action": {"type": "Rotate"}}
    policies: list[Any] = [[], "P30D", {"lifetimeActions": {}}, {"lifetimeActions": [1]}, {"attributes": []}]
    policies += [{"lifetimeActions": [{"trigger": {"timeAfterCreate": bad}} | rotate]} for bad in WRONG_TYPES]
    policies += [{"lifetimeActions": [{"trigger": bad} | rotate]} for bad in WRONG_TYPES]
    policies += [
        {"lifetimeActions": [{"trigger": {"timeAfterCreate": "P30D"}, "action": {"type": bad}}]} for bad in WRONG_TYPES
    ]
    policies += [
        {"lifetimeActions": [], "attributes": {"expiryTime": bad}} for bad in [*WRONG_TYPES[:3], "P", "PT", "P1DT"]
    ]
    for doc in policies:
        yield Case("PUT", "/keys/victim/rotationpolicy", json_bytes(doc))


def oversized(body_paths: list[str]) -> Iterator[Case]:
    big = json_bytes({"kty": "EC", "tags": {"pad": "x" * 300_000}})
    for path in body_paths:
        yield Case("PATCH" if path.startswith("PATCH ") else "POST", path.split(" ")[-1], big)
    yield Case("POST", "/tenant/oauth2/v2.0/token", b"a=" + b"x" * 300_000, form="either")


def bad_auth(version: str) -> Iterator[Case]:
    headers = ["", "Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearer a b", "bearer", "Negotiate abc", "Token x"]
    headers += ["Bearer\tabc", "BearerX abc", "Bearer a  b"]
    routes = [("GET", "/keys"), ("POST", "/keys/fresh/create"), ("DELETE", f"/keys/victim/{version}x")]
    for header in headers:
        for method, path in routes:
            yield Case(method, path, json_bytes({"kty": "EC"}), headers={"Authorization": header}, auth=False)
    yield Case("GET", "/keys", auth=False)
    yield Case("GET", "/keys", auth=False, headers={"Host": 'vault"evil'})


def bad_queries() -> Iterator[Case]:
    versions = [
        "",
        "%20",
        "7.5%20",
        "%207.5",
        "7.5;",
        "%00",
        "%C3%A9",
        "7",
        "v7.5",
        "x" * 3000,
        "7.5%00",
        "2025-07-01T00",
    ]
    for version in versions:
        yield Case("GET", "/keys", query=f"api-version={version}")
        yield Case("POST", "/keys/fresh/create", json_bytes({"kty": "EC"}), query=f"api-version={version}")
    yield Case("GET", "/keys/victim", query=None)
    yield Case("GET", "/keys/victim", query=f"api-version=bogus&api-version={API}")
    for value in ("0", "26", "-5", "1e3", "99999999999999999999999", "%00", "", "ten"):
        yield Case("GET", "/keys", query=f"api-version={API}&maxresults={value}")
        yield Case("GET", "/deletedkeys", query=f"api-version={API}&maxresults={value}")
    tokens = ["%00", "!!!", b64url(b"\xff\xfe"), b64url(b"{}"), b64url(b'{"after": null}'), "x" * 3000]
    for token in tokens:
        yield Case("GET", "/keys/victim/versions", query=f"api-version={API}&$skiptoken={token}")


def bad_token_requests(rng: random.Random, tenant: str) -> Iterator[Case]:
    keys = ("grant_type", "client_id", "client_secret", "scope", "client_assertion", "resource", "x")
    for _ in range(25):
        form = {rng.choice(keys): random_bad_segment(rng) for _ in range(rng.randint(0, 5))}
        yield Case("POST", f"/{tenant}/oauth2/v2.0/token", "&".join(f"{k}={v}" for k, v in form.items()).encode())
    for path_tenant in ("nope", "%00", "a" * 2000, tenant.upper() + "x", "%FF"):
        yield Case("POST", f"/{path_tenant}/oauth2/v2.0/token", b"grant_type=client_credentials")
    yield Case("POST", f"/{tenant}/oauth2/v2.0/token", b"\xff\xfe=\xff&%zz=%%")
    yield Case("POST", f"/{tenant}/oauth2/v2.0/token", json_bytes({"grant_type": "client_credentials"}))


def big_headers() -> Iterator[Case]:
    many = {f"x-junk-{i}": "v" * 100 for i in range(60)}
    yield Case("GET", "/keys", headers=many, query=None)
    yield Case("GET", "/keys", headers={"x-one-big": "b" * 7000}, query=None)
    yield Case("GET", "/keys", headers={"x-ms-client-request-id": "<{'\"}>" * 60}, query="api-version=nope")


def build_cases(version: str, tenant: str) -> list[Case]:
    rng = random.Random(SEED)
    body_paths = [
        "POST /keys/fresh/create",
        "PATCH /keys/victim",
        f"PATCH /keys/victim/{version}",
        f"POST /keys/victim/{version}/encrypt",
        "POST /keys/victim//unwrapkey",
    ]
    cases: list[Case] = []
    cases += random_paths(rng, 80)
    cases += wrong_methods(version)
    cases += malformed_bodies(rng, body_paths)
    cases += wrong_type_bodies(version)
    cases += oversized(body_paths)
    cases += bad_auth(version)
    cases += bad_queries()
    token_cases = list(bad_token_requests(rng, tenant))
    for case in token_cases:
        case.form, case.content_type, case.query = "entra", "application/x-www-form-urlencoded", None
    cases += token_cases
    cases += big_headers()
    return cases


async def send(vault: VaultClient, case: Case) -> Reply:
    headers = {"Content-Type": case.content_type}
    if case.auth:
        headers["Authorization"] = f"Bearer {vault.token}"
    headers |= case.headers
    target = URL(vault.url + case.path + (f"?{case.query}" if case.query is not None else ""), encoded=True)
    return await vault.raw(case.method, target, data=case.body, headers=headers)


def assert_error_form(case: Case, reply: Reply) -> None:
    assert 400 <= reply.status < 500, (case.method, case.path[:120], case.query, reply.status, reply.body)
    if case.form == "status_only":
        return
    body = reply.body
    vault_form = (
        isinstance(body, dict)
        and set(body) == {"error"}
        and isinstance(body["error"], dict)
        and isinstance(body["error"].get("code"), str)
        and isinstance(body["error"].get("message"), str)
    )
    entra_form = isinstance(body, dict) and isinstance(body.get("error"), str) and "error_description" in body
    expected = {"vault": vault_form, "entra": entra_form, "either": vault_form or entra_form}[case.form]
    assert expected, (case.method, case.path[:120], reply.status, reply.body)
    if reply.status == 401:
        assert reply.headers["WWW-Authenticate"].startswith("Bearer authorization=")


async def test_hostile_requests_get_provider_errors_and_change_nothing() -> None:
    async with open_vault() as vault:
        victim = await vault.create("victim", "RSA")
        creds = await vault.credentials()
        before = vault.fake.state_snapshot()
        cases = build_cases(version_of(victim), creds["tenant_id"])
        assert len(cases) >= 400
        statuses = set()
        for case in cases:
            reply = await send(vault, case)
            assert_error_form(case, reply)
            statuses.add(reply.status)
        assert {400, 401, 404, 405, 413} <= statuses
        assert vault.fake.state_snapshot() == before
        assert vault.fake.tokens.issued_count == 1
        assert all(entry.status is None or entry.status < 500 for entry in vault.fake.log.entries)
        assert (await vault.call("GET", "/keys/victim")).status == 200
        after = await vault.create("after", "RSA")
        wrapped = await vault.call("POST", "/keys/after//wrapkey", {"alg": "RSA-OAEP-256", "value": "AAECAw"})
        unwrapped = await vault.call("POST", "/keys/after//unwrapkey", wrapped.body | {"alg": "RSA-OAEP-256"})
        assert unwrapped.body["value"] == "AAECAw" and after["key"]["kid"].startswith(vault.url)


async def test_headers_beyond_the_http_parser_limits_are_refused_and_the_fake_survives() -> None:
    # aiohttp's HTTP parser answers these itself (8190-byte fields), before any handler runs, so
    # the body is aiohttp's and not Key Vault's; the point is a 4xx and a fake that keeps serving.
    async with open_vault() as vault:
        for headers in ({"x-huge": "h" * 20_000}, {"Authorization": "Bearer " + "t" * 20_000}):
            reply = await vault.raw("GET", f"{vault.url}/keys?api-version={API}", headers=headers)
            assert 400 <= reply.status < 500
        assert (await vault.call("GET", "/keys")).status == 200
