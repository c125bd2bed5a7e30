"""IBM Key Protect fake under hostile input: every bad request gets a 4xx in Key Protect's error form.

A few hundred requests: random paths, wrong methods, malformed and truncated JSON, wrong types,
missing fields, oversized bodies, missing or garbled auth and instance headers, bad query
parameters, large headers. Afterwards the fake still serves a good request.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from tests.fakes.test_ibm import ERROR_TYPE, KEY_TYPE, Ibm, key_body, open_ibm, policy_body

SEED = 20240611


@pytest.fixture
async def ibm() -> AsyncIterator[Ibm]:
    async with open_ibm() as client:
        yield client


def garbage_json(rng: random.Random) -> bytes:
    good = json.dumps(key_body("hostile-key")).encode()
    kind = rng.randrange(8)
    if kind == 0:
        return good[: rng.randrange(1, len(good) - 1)]
    if kind == 1:
        return b"{" * rng.randrange(1, 50)
    if kind == 2:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
    fixed = [
        b'{"metadata": nul}',
        b"[1, 2, 3]",
        b'"just a string"',
        b"\xff\xfe{}",
        b'{"metadata": {"collectionType": 7, "collectionTotal": "1"}, "resources": {}}',
    ]
    return fixed[kind - 3]


def wrong_resources(rng: random.Random) -> list[dict[str, Any]]:
    """Create bodies with one field of the wrong type, or a required part missing."""
    values: list[Any] = [None, 1, -1, 1.5, True, "", "x" * 5000, [], {}, ["a"], {"a": 1}]
    bodies: list[dict[str, Any]] = []
    for name in ("name", "extractable", "aliases", "description", "expirationDate", "payload", "tags"):
        for value in rng.sample(values, 6):
            body = key_body("valid-name")
            body["resources"][0][name] = value
            if _accepted(name, value):
                continue
            bodies.append(body)
    bodies.append({"resources": key_body("valid-name")["resources"]})
    bodies.append({"metadata": {"collectionType": KEY_TYPE, "collectionTotal": 1}})
    bodies.append({"metadata": {"collectionType": KEY_TYPE, "collectionTotal": 1}, "resources": []})
    bodies.append({"metadata": {"collectionType": KEY_TYPE, "collectionTotal": 1}, "resources": ["str"]})
    bodies.append({"metadata": {"collectionType": "text/plain", "collectionTotal": 1}, "resources": [{"name": "ab"}]})
    bodies.append(key_body("valid-name", unknown_field=1))
    return bodies


def _accepted(name: str, value: Any) -> bool:
    """Values that are legitimately valid for a field (left out of the hostile set)."""
    if name == "extractable":
        return isinstance(value, bool)
    if name in ("aliases", "tags"):
        return bool(value == [] or (name == "tags" and value == ["a"]))
    if name == "description":
        return isinstance(value, str) and not value
    if name == "expirationDate":
        return value is None
    return False


def random_path(rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits + "-_.~%"
    parts = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 12))) for _ in range(rng.randrange(1, 6))]
    prefix = rng.choice(["", "/api", "/api/v2", "/api/v2/keys/k", "/api/v1", "/identity"])
    return prefix + "/" + "/".join(parts)


def assert_ibm_error(status: int, raw: bytes, what: str) -> None:
    assert 400 <= status < 500, (what, status, raw[:300])
    doc = json.loads(raw)
    assert doc["metadata"] == {"collectionType": ERROR_TYPE, "collectionTotal": 1}, what
    resource = doc["resources"][0]
    assert isinstance(resource["errorMsg"], str) and resource["errorMsg"], what
    for reason in resource.get("reasons", []):
        assert reason["status"] == status and reason["code"] and reason["moreInfo"], what


async def test_hundreds_of_hostile_requests_get_ibm_errors(ibm: Ibm) -> None:
    rng = random.Random(SEED)
    key = await ibm.create("victim")
    key_id = key["id"]
    good = ibm.headers()
    requests: list[tuple[str, str, bytes | None, dict[str, str]]] = []

    for _ in range(120):
        requests.append((rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH"]), random_path(rng), None, good))
    wrong_methods = [
        ("PATCH", "/api/v2/keys"), ("PUT", "/api/v2/keys"), ("DELETE", "/api/v2/keys"),
        ("PUT", f"/api/v2/keys/{key_id}"), ("PATCH", f"/api/v2/keys/{key_id}"),
        ("GET", f"/api/v2/keys/{key_id}/actions/wrap"), ("DELETE", f"/api/v2/keys/{key_id}/actions/disable"),
        ("GET", f"/api/v2/keys/{key_id}/purge"), ("GET", f"/api/v2/keys/{key_id}/restore"),
        ("POST", "/api/v2/instance/policies"), ("DELETE", f"/api/v2/keys/{key_id}/policies"),
        ("GET", "/identity/token"), ("PUT", "/identity/token"), ("POST", f"/api/v2/keys/{key_id}/metadata"),
    ]  # fmt: skip
    requests += [(m, p, None, good) for m, p in wrong_methods]
    requests.append(("POST", f"/api/v2/keys/{key_id}/actions/explode", None, good))
    json_paths = [
        ("POST", "/api/v2/keys"),
        ("POST", "/api/v2/keys_with_policy_overrides"),
        ("POST", f"/api/v2/keys/{key_id}/actions/wrap"),
        ("POST", f"/api/v2/keys/{key_id}/actions/unwrap"),
        ("POST", f"/api/v2/keys/{key_id}/actions/rotate"),
        ("PUT", f"/api/v2/keys/{key_id}/policies?policy=dualAuthDelete"),
        ("PUT", "/api/v2/instance/policies?policy=dualAuthDelete"),
    ]
    json_headers = {**good, "Content-Type": "application/json"}
    for _ in range(80):
        method, path = rng.choice(json_paths)
        requests.append((method, path, garbage_json(rng), json_headers))
    for body in wrong_resources(rng):
        requests.append(("POST", "/api/v2/keys", json.dumps(body).encode(), json_headers))
    action_bodies: list[Any] = [
        {"plaintext": 5}, {"plaintext": "%%%"}, {"plaintext": "QUJD", "aad": "notalist"}, {"aad": [1, 2]},
        {"ciphertext": None}, {"ciphertext": 12}, {"ciphertext": "QUJD"}, {"ciphertext": "e30="}, {},
    ]  # fmt: skip
    for body in action_bodies:
        action = "unwrap" if "ciphertext" in body or body == {} else "wrap"
        requests.append(("POST", f"/api/v2/keys/{key_id}/actions/{action}", json.dumps(body).encode(), json_headers))
    policy_bodies: list[Any] = [
        policy_body({"type": "x", "dualAuthDelete": {"enabled": "yes"}}),
        policy_body({"type": "x", "dualAuthDelete": True}),
        policy_body({"type": "x", "rotation": {"interval_month": 13}}),
        policy_body({"type": "x"}),
        policy_body({"policy_type": "dualAuthDelete", "policy_data": {"enabled": 1}}),
    ]
    for body in policy_bodies:
        path = f"/api/v2/keys/{key_id}/policies" if "type" in body["resources"][0] else "/api/v2/instance/policies"
        requests.append(("PUT", path, json.dumps(body).encode(), json_headers))
    huge = b'{"metadata": {"collectionType": "x", "collectionTotal": 1}, "resources": [{"name": "' + b"a" * 300_000
    for method, path in json_paths:
        requests.append((method, path, huge + b'"}]}', json_headers))
    bad_auth: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer two words"},
        {"Authorization": "bearer-token"},
        {"Authorization": f"Bearer {ibm.token}"},
        {"Authorization": f"Bearer {ibm.token}", "bluemix-instance": "wrong"},
        {"Authorization": "Basic dXNlcjpwYXNz", "bluemix-instance": ibm.fake.instance_id},
        {"Authorization": f"Bearer {ibm.token}", "bluemix-instance": "x" * 7000},
    ]
    for headers in bad_auth:
        for method, path in (
            ("GET", "/api/v2/keys"),
            ("GET", f"/api/v2/keys/{key_id}"),
            ("DELETE", f"/api/v2/keys/{key_id}"),
        ):
            requests.append((method, path, None, headers))
    bad_queries = ["limit=abc", "limit=0", "limit=99999", "offset=-5", "state=9", "state=", "state=1,,2",
                   "extractable=yes", "sort=colour", "search=" + "s" * 200, "filter=state%3D7"]  # fmt: skip
    requests += [("GET", f"/api/v2/keys?{q}", None, good) for q in bad_queries]
    requests += [
        ("DELETE", f"/api/v2/keys/{key_id}?force=perhaps", None, good),
        ("POST", f"/api/v2/keys/{key_id}?action=", None, good),
        ("POST", f"/api/v2/keys/{key_id}?action=explode", None, good),
        ("GET", f"/api/v2/keys/{key_id}/policies?policy=nonsense", None, good),
        ("PUT", "/api/v2/instance/policies?policy=nonsense", b"{}", json_headers),
        ("GET", "/api/v2/keys/" + "z" * 3000, None, good),
        ("GET", "/api/v2/keys/%00%ff", None, good),
        ("POST", f"/api/v2/keys/{key_id}/aliases/a", None, good),
        ("POST", f"/api/v2/keys/{key_id}/aliases/" + "b" * 91, None, good),
        ("DELETE", f"/api/v2/keys/{key_id}/aliases/not-there", None, good),
        ("GET", f"/api/v2/keys/{key_id}/versions?limit=x", None, good),
        ("GET", "/api/v2/keys/registrations?preventKeyDeletion=maybe", None, good),
        ("GET", "/api/v2/keys", None, {**good, "X-Padding": "p" * 7000, "bluemix-instance": "other"}),
    ]

    assert len(requests) >= 300, len(requests)
    timeout = aiohttp.ClientTimeout(total=20)
    for method, path, payload, headers in requests:
        async with ibm.session.request(
            method, ibm.url + path, data=payload, headers=headers, timeout=timeout, skip_auto_headers=["Content-Type"]
        ) as response:
            raw = await response.read()
            assert_ibm_error(response.status, raw, f"{method} {path[:80]} {payload[:60] if payload else None!r}")

    after = await ibm.get(key_id)
    assert after.status == 200 and after.resource["state"] == 1 and after.resource["aliases"] == []
    assert (await ibm.action(key_id, "wrap")).status == 200
    assert len(ibm.fake.state.keys) == 1


async def test_header_beyond_server_limit_is_refused_and_fake_survives(ibm: Ibm) -> None:
    """aiohttp's HTTP parser refuses a header line over 8190 bytes before the app runs (plain 400)."""
    async with ibm.session.get(ibm.url + "/api/v2/keys", headers={**ibm.headers(), "X-Huge": "h" * 20_000}) as response:
        assert response.status == 400
    assert (await ibm.call("GET", "/api/v2/keys")).status == 200
