"""The Google Cloud KMS fake over real loopback HTTP: resources, state rules, enums, crypto, errors."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keyorch.fakes.base import RunningFake, start_fake
from keyorch.fakes.faults import ProviderFaults
from keyorch.fakes.gcp import GoogleKmsFake
from keyorch.fakes.gcp_model import crc32c

PARENT = "projects/proj-1/locations/us-east1"
RING = f"{PARENT}/keyRings/ring-a"
INT_ALT = {"$alt": "json;enum-encoding=int"}
THIRTY_DAYS = timedelta(days=30)


class Kms:
    """A thin client: every call returns (status, JSON body, headers)."""

    def __init__(self, running: RunningFake, session: aiohttp.ClientSession) -> None:
        self.running = running
        fake = running.fake
        assert isinstance(fake, GoogleKmsFake)
        self.fake = fake
        self.session = session
        self.auth = {"Authorization": "Bearer test-token"}

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, Any]:
        url = self.running.url + ("" if path.startswith("/") else "/v1/") + path
        async with self.session.request(
            method, url, json=body, params=params, headers={**self.auth, **(headers or {})}
        ) as response:
            return response.status, await response.json(content_type=None), response.headers

    async def ok(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> Any:
        status, doc, _ = await self.call(method, path, body, params)
        assert status == 200, doc
        return doc

    async def ring(self, ring_id: str = "ring-a") -> Any:
        return await self.ok("POST", f"{PARENT}/keyRings", {}, {"keyRingId": ring_id})

    async def key(self, key_id: str, body: Any = None, **params: str) -> Any:
        body = {"purpose": "ENCRYPT_DECRYPT"} if body is None else body
        return await self.ok("POST", f"{RING}/cryptoKeys", body, {"cryptoKeyId": key_id, **params})

    async def advance(self, seconds: float) -> None:
        await self.ok("POST", "/_fake/clock", {"advance_seconds": seconds})


def google_error(status: int, doc: Any, expected_status: int, canonical: str) -> dict[str, Any]:
    """Check Google's error form and return its inner object."""
    assert status == expected_status, doc
    assert set(doc) == {"error"}
    error = doc["error"]
    assert error["code"] == expected_status
    assert error["status"] == canonical
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], list)
    return dict(error)


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
async def kms() -> AsyncIterator[Kms]:
    running = await start_fake(GoogleKmsFake())
    async with aiohttp.ClientSession() as session:
        yield Kms(running, session)
    await running.stop()


async def test_key_ring_create_get_list_and_duplicate(kms: Kms) -> None:
    created = await kms.ring()
    assert created["name"] == RING
    assert abs(parse_time(created["createTime"]) - kms.fake.clock.now()) < timedelta(seconds=5)
    google_error(
        *(await kms.call("POST", f"{PARENT}/keyRings", {}, {"keyRingId": "ring-a"}))[:2], 409, "ALREADY_EXISTS"
    )
    assert await kms.ok("GET", RING) == created
    await kms.ring("ring-b")
    await kms.ok("POST", "projects/other/locations/us-east1/keyRings", {}, {"keyRingId": "ring-c"})
    listed = await kms.ok("GET", f"{PARENT}/keyRings")
    assert [r["name"] for r in listed["keyRings"]] == [RING, f"{PARENT}/keyRings/ring-b"]
    assert listed["totalSize"] == 2 and "nextPageToken" not in listed
    assert await kms.ok("GET", "projects/empty/locations/global/keyRings") == {}
    error = google_error(*(await kms.call("GET", f"{PARENT}/keyRings/nope"))[:2], 404, "NOT_FOUND")
    assert error["message"] == f"KeyRing {PARENT}/keyRings/nope not found."
    for bad in ("", "has space", "x" * 64, "dots.not.allowed"):
        status, doc, _ = await kms.call("POST", f"{PARENT}/keyRings", {}, {"keyRingId": bad})
        google_error(status, doc, 400, "INVALID_ARGUMENT")


async def test_crypto_key_create_defaults_primary_and_duplicate(kms: Kms) -> None:
    await kms.ring()
    key = await kms.key("k1", {"purpose": "ENCRYPT_DECRYPT", "labels": {"team": "sec"}})
    assert key["name"] == f"{RING}/cryptoKeys/k1"
    assert key["purpose"] == "ENCRYPT_DECRYPT"
    assert key["destroyScheduledDuration"] == "2592000s"
    assert key["versionTemplate"] == {"protectionLevel": "SOFTWARE", "algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION"}
    assert key["labels"] == {"team": "sec"}
    assert key["primary"]["name"] == f"{RING}/cryptoKeys/k1/cryptoKeyVersions/1"
    assert key["primary"]["state"] == "ENABLED"
    assert await kms.ok("GET", f"{RING}/cryptoKeys/k1") == key
    error = google_error(
        *(await kms.call("POST", f"{RING}/cryptoKeys", key, {"cryptoKeyId": "k1"}))[:2], 409, "ALREADY_EXISTS"
    )
    assert error["message"] == f"CryptoKey {RING}/cryptoKeys/k1 already exists."

    hsm = await kms.key(
        "k2",
        {
            "purpose": "ENCRYPT_DECRYPT",
            "versionTemplate": {"protectionLevel": "HSM"},
            "destroyScheduledDuration": "86400s",
        },
    )
    assert hsm["destroyScheduledDuration"] == "86400s"
    assert hsm["primary"]["protectionLevel"] == "HSM"

    bare = await kms.key("k3", None, skipInitialVersionCreation="true")
    assert "primary" not in bare
    assert await kms.ok("GET", f"{RING}/cryptoKeys/k3/cryptoKeyVersions") == {}
    status, doc, _ = await kms.call("POST", f"{RING}/cryptoKeys/k3:encrypt", {"plaintext": b64(b"x")})
    google_error(status, doc, 400, "FAILED_PRECONDITION")
    version = await kms.ok("POST", f"{RING}/cryptoKeys/k3/cryptoKeyVersions", {})
    assert version["state"] == "ENABLED" and "primary" not in await kms.ok("GET", f"{RING}/cryptoKeys/k3")
    promoted = await kms.ok("POST", f"{RING}/cryptoKeys/k3:updatePrimaryVersion", {"cryptoKeyVersionId": "1"})
    assert promoted["primary"]["name"] == version["name"]

    refused: list[tuple[dict[str, Any], dict[str, str]]] = [
        ({"purpose": "ENCRYPT_DECRYPT"}, {}),  # missing cryptoKeyId
        ({}, {"cryptoKeyId": "k4"}),  # missing purpose
        ({"purpose": "ASYMMETRIC_SIGN"}, {"cryptoKeyId": "k4"}),
        ({"purpose": "ENCRYPT_DECRYPT", "destroyScheduledDuration": "3600s"}, {"cryptoKeyId": "k4"}),
        ({"purpose": "ENCRYPT_DECRYPT", "destroyScheduledDuration": "10369000s"}, {"cryptoKeyId": "k4"}),
        (
            {"purpose": "ENCRYPT_DECRYPT", "versionTemplate": {"algorithm": "EC_SIGN_P256_SHA256"}},
            {"cryptoKeyId": "k4"},
        ),
        ({"purpose": "ENCRYPT_DECRYPT", "unknownField": 1}, {"cryptoKeyId": "k4"}),
        ({"purpose": "ENCRYPT_DECRYPT", "labels": {"Upper": "x"}}, {"cryptoKeyId": "k4"}),
        ({"purpose": "ENCRYPT_DECRYPT"}, {"cryptoKeyId": "bad/id"}),
    ]
    for body, params in refused:
        status, doc, _ = await kms.call("POST", f"{RING}/cryptoKeys", body, params)
        google_error(status, doc, 400, "INVALID_ARGUMENT")
    status, doc, _ = await kms.call(
        "POST", f"{PARENT}/keyRings/missing/cryptoKeys", {"purpose": "ENCRYPT_DECRYPT"}, {"cryptoKeyId": "k"}
    )
    google_error(status, doc, 404, "NOT_FOUND")
    assert [k["name"].rsplit("/", 1)[1] for k in kms.fake.state_snapshot()["keyRings"][0]["cryptoKeys"]] == [
        "k1",
        "k2",
        "k3",
    ]


async def walk(
    kms: Kms, path: str, field: str, page_size: int, extra: dict[str, str] | None = None
) -> tuple[list[str], list[Any]]:
    names: list[str] = []
    pages: list[Any] = []
    token = ""
    while True:
        params = {"pageSize": str(page_size), **(extra or {})}
        if token:
            params["pageToken"] = token
        page = await kms.ok("GET", path, None, params)
        pages.append(page)
        names += [item["name"] for item in page.get(field, [])]
        token = page.get("nextPageToken", "")
        if not token:
            return names, pages


async def test_pagination_and_filter(kms: Kms) -> None:
    await kms.ring()
    for index in range(7):
        await kms.key(f"key-{index}")
    names, pages = await walk(kms, f"{RING}/cryptoKeys", "cryptoKeys", 3)
    assert names == [f"{RING}/cryptoKeys/key-{i}" for i in range(7)]
    assert [len(p["cryptoKeys"]) for p in pages] == [3, 3, 1]
    assert all(p["totalSize"] == 7 for p in pages)
    descending, _ = await walk(kms, f"{RING}/cryptoKeys", "cryptoKeys", 4, {"orderBy": "name desc"})
    assert descending == names[::-1]

    versions_path = f"{RING}/cryptoKeys/key-0/cryptoKeyVersions"
    for _ in range(4):
        await kms.ok("POST", versions_path, {})
    await kms.ok("PATCH", versions_path + "/2", {"state": "DISABLED"}, {"updateMask": "state"})
    await kms.ok("POST", versions_path + "/3:destroy", {})
    names, pages = await walk(kms, versions_path, "cryptoKeyVersions", 2)
    assert names == [f"{versions_path}/{n}" for n in range(1, 6)]
    enabled, pages = await walk(kms, versions_path, "cryptoKeyVersions", 2, {"filter": "state=ENABLED"})
    assert enabled == [f"{versions_path}/{n}" for n in (1, 4, 5)]
    assert all("totalSize" not in p for p in pages)  # Google leaves totalSize out when filtering
    not_enabled, _ = await walk(kms, versions_path, "cryptoKeyVersions", 10, {"filter": "state!=ENABLED"})
    assert not_enabled == [f"{versions_path}/2", f"{versions_path}/3"]

    first = await kms.ok("GET", versions_path, None, {"pageSize": "2"})
    for params in (
        {"pageToken": "garbage"},
        {"pageToken": first["nextPageToken"], "filter": "state=ENABLED"},  # token from another query
        {"pageSize": "-1"},
        {"pageSize": "many"},
        {"filter": "state=="},
        {"orderBy": "createTime"},
        {"unknownParam": "1"},
    ):
        status, doc, _ = await kms.call("GET", versions_path, None, params)
        google_error(status, doc, 400, "INVALID_ARGUMENT")


async def test_destroy_completes_when_the_fake_clock_passes_destroy_time(kms: Kms) -> None:
    await kms.ring()
    await kms.key("k30")
    await kms.key("k1d", {"purpose": "ENCRYPT_DECRYPT", "destroyScheduledDuration": "86400s"})
    v30 = f"{RING}/cryptoKeys/k30/cryptoKeyVersions/1"
    v1d = f"{RING}/cryptoKeys/k1d/cryptoKeyVersions/1"
    before = kms.fake.clock.now()
    scheduled = await kms.ok("POST", v30 + ":destroy", {})
    await kms.ok("POST", v1d + ":destroy", {})
    assert scheduled["state"] == "DESTROY_SCHEDULED"
    assert abs(parse_time(scheduled["destroyTime"]) - (before + THIRTY_DAYS)) < timedelta(seconds=5)
    assert (await kms.ok("GET", f"{RING}/cryptoKeys/k30"))["primary"]["state"] == "DESTROY_SCHEDULED"

    await kms.advance(86400 + 5)
    assert (await kms.ok("GET", v1d))["state"] == "DESTROYED"
    still = await kms.ok("GET", v30)
    assert still["state"] == "DESTROY_SCHEDULED" and still["destroyTime"] == scheduled["destroyTime"]

    await kms.advance(THIRTY_DAYS.total_seconds() - 86400)
    destroyed = await kms.ok("GET", v30)
    assert destroyed["state"] == "DESTROYED"
    assert "destroyTime" not in destroyed
    assert destroyed["destroyEventTime"] == scheduled["destroyTime"]
    listed = await kms.ok("GET", f"{RING}/cryptoKeys")
    assert {k["primary"]["state"] for k in listed["cryptoKeys"]} == {"DESTROYED"}
    snapshot_states = [
        v["state"] for k in kms.fake.state_snapshot()["keyRings"][0]["cryptoKeys"] for v in k["cryptoKeyVersions"]
    ]
    assert snapshot_states == ["DESTROYED", "DESTROYED"]


# docs/providers.md §3.3: PATCH toggles ENABLED<->DISABLED only; :destroy from ENABLED or DISABLED;
# :restore from DESTROY_SCHEDULED to DISABLED; crypto and :updatePrimaryVersion need ENABLED; anything else is 400
# FAILED_PRECONDITION naming the state. A cell is (HTTP status, canonical status or resulting state).
FP = (400, "FAILED_PRECONDITION")
STATE_TABLE: dict[str, dict[str, tuple[int, str]]] = {
    "ENABLED": {
        "enable": (200, "ENABLED"),
        "disable": (200, "DISABLED"),
        "destroy": (200, "DESTROY_SCHEDULED"),
        "restore": FP,
        "encrypt": (200, "ENABLED"),
        "decrypt": (200, "ENABLED"),
        "make_primary": (200, "ENABLED"),
        "get": (200, "ENABLED"),
    },
    "DISABLED": {
        "enable": (200, "ENABLED"),
        "disable": (200, "DISABLED"),
        "destroy": (200, "DESTROY_SCHEDULED"),
        "restore": FP,
        "encrypt": FP,
        "decrypt": FP,
        "make_primary": FP,
        "get": (200, "DISABLED"),
    },
    "DESTROY_SCHEDULED": {
        "enable": FP,
        "disable": FP,
        "destroy": FP,
        "restore": (200, "DISABLED"),
        "encrypt": FP,
        "decrypt": FP,
        "make_primary": FP,
        "get": (200, "DESTROY_SCHEDULED"),
    },
    "DESTROYED": {
        "enable": FP,
        "disable": FP,
        "destroy": FP,
        "restore": FP,
        "encrypt": FP,
        "decrypt": FP,
        "make_primary": FP,
        "get": (200, "DESTROYED"),
    },
}
CELLS = [(state, op) for state, row in STATE_TABLE.items() for op in row]


async def bring_to(kms: Kms, key_id: str, state: str) -> tuple[str, str]:
    """A fresh key whose version 1 is in ``state``; also a ciphertext made while it was ENABLED."""
    await kms.key(key_id)
    version = f"{RING}/cryptoKeys/{key_id}/cryptoKeyVersions/1"
    ciphertext = (await kms.ok("POST", f"{RING}/cryptoKeys/{key_id}:encrypt", {"plaintext": b64(b"secret")}))[
        "ciphertext"
    ]
    if state == "DISABLED":
        await kms.ok("PATCH", version, {"state": "DISABLED"}, {"updateMask": "state"})
    if state in ("DESTROY_SCHEDULED", "DESTROYED"):
        await kms.ok("POST", version + ":destroy", {})
    if state == "DESTROYED":
        await kms.advance(THIRTY_DAYS.total_seconds() + 1)
    assert (await kms.ok("GET", version))["state"] == state
    return version, ciphertext


@pytest.mark.parametrize(("state", "op"), CELLS, ids=[f"{s}-{o}" for s, o in CELLS])
async def test_version_state_table(kms: Kms, state: str, op: str) -> None:
    await kms.ring()
    version, ciphertext = await bring_to(kms, "table", state)
    key = f"{RING}/cryptoKeys/table"
    requests: dict[str, tuple[str, str, Any, dict[str, str] | None]] = {
        "enable": ("PATCH", version, {"state": "ENABLED"}, {"updateMask": "state"}),
        "disable": ("PATCH", version, {"state": "DISABLED"}, {"updateMask": "state"}),
        "destroy": ("POST", version + ":destroy", {}, None),
        "restore": ("POST", version + ":restore", {}, None),
        "encrypt": ("POST", key + ":encrypt", {"plaintext": b64(b"more")}, None),
        "decrypt": ("POST", key + ":decrypt", {"ciphertext": ciphertext}, None),
        "make_primary": ("POST", key + ":updatePrimaryVersion", {"cryptoKeyVersionId": "1"}, None),
        "get": ("GET", version, None, None),
    }
    method, path, body, params = requests[op]
    status, doc, _ = await kms.call(method, path, body, params)
    expected_status, expected = STATE_TABLE[state][op]
    after = (await kms.ok("GET", version))["state"]
    if expected_status == 200:
        assert status == 200, doc
        assert after == expected
        if op == "decrypt":
            assert base64.b64decode(doc["plaintext"]) == b"secret"
        elif op == "make_primary":
            assert doc["primary"]["name"] == version and doc["primary"]["state"] == expected
        elif op != "encrypt":
            assert doc["state"] == expected
    else:
        error = google_error(status, doc, expected_status, expected)
        assert error["message"] == (
            f"The request cannot be fulfilled. Resource {version} has value {state} in field crypto_key_version.state."
        )
        assert after == state  # a refused transition changes nothing
    if after == "DESTROY_SCHEDULED":
        assert "destroyTime" in await kms.ok("GET", version)
    if after == "DISABLED" and state == "DESTROY_SCHEDULED":
        assert "destroyTime" not in await kms.ok("GET", version)


async def test_patch_needs_update_mask_state_and_a_settable_state(kms: Kms) -> None:
    await kms.ring()
    await kms.key("k")
    version = f"{RING}/cryptoKeys/k/cryptoKeyVersions/1"
    for params, body in (
        (None, {"state": "DISABLED"}),
        ({"updateMask": "labels"}, {"state": "DISABLED"}),
        ({"updateMask": "state,labels"}, {"state": "DISABLED"}),
        ({"updateMask": "state"}, {}),
        ({"updateMask": "state"}, {"state": "DESTROYED"}),
        ({"updateMask": "state"}, {"state": "NOT_A_STATE"}),
        ({"updateMask": "state"}, {"state": 42}),
        ({"updateMask": "state"}, {"state": "DISABLED", "bogus": True}),
    ):
        status, doc, _ = await kms.call("PATCH", version, body, params)
        google_error(status, doc, 400, "INVALID_ARGUMENT")
        assert (await kms.ok("GET", version))["state"] == "ENABLED"
    assert (await kms.ok("PATCH", version, {"state": "DISABLED"}, {"update_mask": "state"}))["state"] == "DISABLED"
    labels = await kms.ok("PATCH", f"{RING}/cryptoKeys/k", {"labels": {"env": "prod"}}, {"updateMask": "labels"})
    assert labels["labels"] == {"env": "prod"}
    status, doc, _ = await kms.call(
        "PATCH",
        f"{RING}/cryptoKeys/k",
        {"destroyScheduledDuration": "86400s"},
        {"updateMask": "destroyScheduledDuration"},
    )
    google_error(status, doc, 400, "INVALID_ARGUMENT")


async def test_enum_encoding_int_both_ways(kms: Kms) -> None:
    await kms.ring()
    created = await kms.ok(
        "POST",
        f"{RING}/cryptoKeys",
        {"purpose": 1, "versionTemplate": {"protectionLevel": 2, "algorithm": 1}},
        {"cryptoKeyId": "ints", **INT_ALT},
    )
    assert created["purpose"] == 1
    assert created["versionTemplate"] == {"protectionLevel": 2, "algorithm": 1}
    assert created["primary"]["state"] == 1 and created["primary"]["protectionLevel"] == 2
    version = created["primary"]["name"]
    disabled = await kms.ok("PATCH", version, {"state": 2}, {"updateMask": "state", **INT_ALT})
    assert disabled["state"] == 2
    plain = await kms.ok("GET", version)
    assert plain["state"] == "DISABLED" and plain["protectionLevel"] == "HSM"
    assert (await kms.ok("GET", version, None, {"alt": "json"}))["state"] == "DISABLED"
    assert (await kms.ok("POST", version + ":destroy", {}, INT_ALT))["state"] == 4
    # the raw form Google's REST transport produces, unencoded in the URL
    status, doc, _ = await kms.call("GET", f"/v1/{RING}/cryptoKeys?$alt=json;enum-encoding=int")
    assert status == 200 and doc["cryptoKeys"][0]["primary"]["state"] == 4
    listed = await kms.ok("GET", f"{RING}/cryptoKeys/ints/cryptoKeyVersions", None, INT_ALT)
    assert listed["cryptoKeyVersions"][0]["algorithm"] == 1
    encrypted = await kms.call("POST", f"{RING}/cryptoKeys/ints:encrypt", {"plaintext": b64(b"x")}, INT_ALT)
    google_error(*encrypted[:2], 400, "FAILED_PRECONDITION")
    # string names are still accepted in int mode (proto3 JSON parsers take both)
    strings = await kms.ok(
        "POST", f"{RING}/cryptoKeys", {"purpose": "ENCRYPT_DECRYPT"}, {"cryptoKeyId": "s", **INT_ALT}
    )
    assert strings["purpose"] == 1
    for params, body in (
        ({"alt": "xml"}, {"purpose": "ENCRYPT_DECRYPT"}),
        (INT_ALT, {"purpose": 99}),
        (INT_ALT, {"purpose": True}),
        (INT_ALT, {"purpose": 1.5}),
    ):
        status, doc, _ = await kms.call("POST", f"{RING}/cryptoKeys", body, {"cryptoKeyId": "bad", **params})
        google_error(status, doc, 400, "INVALID_ARGUMENT")


async def test_encrypt_decrypt_is_real_aes_gcm_across_rotation(kms: Kms) -> None:
    await kms.ring()
    await kms.key("k")
    await kms.key("other")
    key = f"{RING}/cryptoKeys/k"
    aad = b"context"
    first = await kms.ok(
        "POST", key + ":encrypt", {"plaintext": b64(b"attack at dawn"), "additionalAuthenticatedData": b64(aad)}
    )
    assert first["name"] == key + "/cryptoKeyVersions/1"
    raw = base64.b64decode(first["ciphertext"])
    assert int(first["ciphertextCrc32c"]) == crc32c(raw)
    material = kms.fake.service.rings[RING].keys["k"].versions[0].material
    assert material is not None
    assert AESGCM(material).decrypt(raw[4:16], raw[16:], aad) == b"attack at dawn"

    back = await kms.ok(
        "POST", key + ":decrypt", {"ciphertext": first["ciphertext"], "additionalAuthenticatedData": b64(aad)}
    )
    assert base64.b64decode(back["plaintext"]) == b"attack at dawn" and back["usedPrimary"] is True
    for path, body in (
        (key + ":decrypt", {"ciphertext": first["ciphertext"], "additionalAuthenticatedData": b64(b"wrong")}),
        (key + ":decrypt", {"ciphertext": first["ciphertext"]}),
        (
            f"{RING}/cryptoKeys/other:decrypt",
            {"ciphertext": first["ciphertext"], "additionalAuthenticatedData": b64(aad)},
        ),
        (key + ":decrypt", {"ciphertext": b64(b"short")}),
        (key + ":encrypt", {"plaintext": b64(b"x"), "plaintextCrc32c": "12345"}),
        (key + ":encrypt", {}),
        (key + ":encrypt", {"plaintext": b64(b"x" * (64 * 1024 + 1))}),
    ):
        status, doc, _ = await kms.call("POST", path, body)
        google_error(status, doc, 400, "INVALID_ARGUMENT")

    await kms.ok("POST", key + "/cryptoKeyVersions", {})
    rotated = await kms.ok("POST", key + ":updatePrimaryVersion", {"cryptoKeyVersionId": "2"})
    assert rotated["primary"]["name"] == key + "/cryptoKeyVersions/2"
    second = await kms.ok("POST", key + ":encrypt", {"plaintext": b64(b"new"), "plaintextCrc32c": str(crc32c(b"new"))})
    assert second["name"] == key + "/cryptoKeyVersions/2" and second["verifiedPlaintextCrc32c"] is True
    old = await kms.ok(
        "POST", key + ":decrypt", {"ciphertext": first["ciphertext"], "additionalAuthenticatedData": b64(aad)}
    )
    assert base64.b64decode(old["plaintext"]) == b"attack at dawn" and "usedPrimary" not in old
    pinned = await kms.ok("POST", key + "/cryptoKeyVersions/1:encrypt", {"plaintext": b64(b"v1")})
    assert pinned["name"] == key + "/cryptoKeyVersions/1"
    await kms.ok("PATCH", key + "/cryptoKeyVersions/1", {"state": "DISABLED"}, {"updateMask": "state"})
    status, doc, _ = await kms.call("POST", key + ":updatePrimaryVersion", {"cryptoKeyVersionId": "1"})
    google_error(status, doc, 400, "FAILED_PRECONDITION")
    status, doc, _ = await kms.call("POST", key + ":updatePrimaryVersion", {"cryptoKeyVersionId": "9"})
    google_error(status, doc, 404, "NOT_FOUND")


def test_crc32c_matches_the_castagnoli_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0


async def test_auth_errors_in_google_form(kms: Kms) -> None:
    await kms.ring()
    path = f"/v1/{RING}"
    async with kms.session.get(kms.running.url + path) as response:
        error = google_error(response.status, await response.json(), 401, "UNAUTHENTICATED")
        assert response.headers["WWW-Authenticate"].startswith("Bearer realm=")
    assert error["details"][0]["reason"] == "CREDENTIALS_MISSING"
    assert error["details"][0]["metadata"]["method"].endswith("KeyManagementService.GetKeyRing")
    for header in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer two words"):
        status, doc, headers = await kms.call("GET", path, headers={"Authorization": header})
        error = google_error(status, doc, 401, "UNAUTHENTICATED")
        assert 'error="invalid_token"' in headers["WWW-Authenticate"]
    token, _ = kms.fake.tokens.issue("ya29")
    assert (await kms.call("GET", path, headers={"Authorization": f"Bearer {token}"}))[0] == 200
    await kms.ok("DELETE", "/_fake/tokens")
    status, doc, _ = await kms.call("GET", path, headers={"Authorization": f"Bearer {token}"})
    assert google_error(status, doc, 401, "UNAUTHENTICATED")["details"][0]["reason"] == "ACCESS_TOKEN_EXPIRED"


async def test_faults_answer_in_google_form_with_retry_after(kms: Kms) -> None:
    await kms.ring()
    rules = {
        "rules": [
            {"operation": "GetKeyRing", "sequence": [{"kind": "throttle", "retry_after_seconds": 7}, "error_503", "ok"]}
        ]
    }
    kms.fake.faults.configure(ProviderFaults.model_validate(rules))
    status, doc, headers = await kms.call("GET", RING)
    error = google_error(status, doc, 429, "RESOURCE_EXHAUSTED")
    assert headers["Retry-After"] == "7"
    assert error["details"][0]["reason"] == "RATE_LIMIT_EXCEEDED"
    google_error(*(await kms.call("GET", RING))[:2], 503, "UNAVAILABLE")
    assert (await kms.call("GET", RING))[0] == 200
    log = await kms.ok("GET", "/_fake/requests", None, {"entries": "false"})
    assert log["by_operation"] == {"CreateKeyRing": 1, "GetKeyRing": 3}
    assert log["faults"] == {"throttle": 1, "error_503": 1}


async def test_operation_names_and_reset(kms: Kms) -> None:
    await kms.ring()
    await kms.key("k")
    version = f"{RING}/cryptoKeys/k/cryptoKeyVersions/1"
    await kms.ok("PATCH", version, {"state": "DISABLED"}, {"updateMask": "state"})
    await kms.ok("POST", version + ":destroy", {})
    await kms.ok("POST", version + ":restore", {})
    await kms.ok("GET", f"{RING}/cryptoKeys/k/cryptoKeyVersions")
    await kms.call("GET", "/v1/nothing/here")
    log = await kms.ok("GET", "/_fake/requests", None, {"entries": "false"})
    assert log["by_operation"] == {
        "CreateKeyRing": 1,
        "CreateCryptoKey": 1,
        "UpdateCryptoKeyVersion": 1,
        "DestroyCryptoKeyVersion": 1,
        "RestoreCryptoKeyVersion": 1,
        "ListCryptoKeyVersions": 1,
        "unknown": 1,
    }
    snapshot = await kms.ok("GET", "/_fake/state")
    assert snapshot["keyRings"][0]["cryptoKeys"][0]["cryptoKeyVersions"][0]["state"] == "DISABLED"
    await kms.ok("POST", "/_fake/reset")
    assert (await kms.ok("GET", "/_fake/state"))["keyRings"] == []
    google_error(*(await kms.call("GET", RING))[:2], 404, "NOT_FOUND")
