"""Google Cloud KMS adapter: versions, rotation (cryptoKeyVersions.create + updatePrimaryVersion), the
automatic rotation schedule (rotationPeriod + nextRotationTime) and disabling one version, against the
Cloud KMS fake over loopback (docs/providers.md §3.2). Each test checks the fake's ``/_fake/state`` and
its request log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from tests.providers.test_google_adapter import AES, DAY, Sleeps, client_for, count, faults, new_fake

from keyorch.fakes.base import start_fake
from keyorch.fakes.gcp import GoogleKmsFake
from keyorch.providers.base import KeyRef
from keyorch.providers.errors import Conflict, InvalidRequest, MalformedResponse, NotFound, Unavailable
from keyorch.providers.google import GoogleKmsClient
from keyorch.providers.google_wire import KeyInfo, VersionInfo, WireError, format_time, parse_version, versions_view

Env = tuple[GoogleKmsClient, GoogleKmsFake]


@pytest.fixture
def keystore_settings() -> dict[str, Any]:
    return {}


@pytest.fixture
async def adapter_env(keystore_settings: dict[str, Any]) -> AsyncIterator[Env]:
    fake = new_fake()
    running = await start_fake(fake)
    try:
        async with client_for(running.url, fake.credentials(running.url), Sleeps(), **keystore_settings) as client:
            yield client, fake
    finally:
        await running.stop()


async def state_of(client: GoogleKmsClient, key_id: str) -> dict[str, Any]:
    """One key of the fake's ``/_fake/state``, fetched over HTTP."""
    url = client._base.removesuffix("/v1/") + "/_fake/state"
    async with aiohttp.ClientSession() as session, session.get(url) as answer:
        doc = await answer.json()
    [key] = [k for ring in doc["keyRings"] for k in ring["cryptoKeys"] if k["name"].endswith(f"/{key_id}")]
    found: dict[str, Any] = key
    return found


def summary(key: dict[str, Any]) -> list[tuple[str, str, bool]]:
    return [(v["name"].rpartition("/")[2], v["state"], v["primary"]) for v in key["cryptoKeyVersions"]]


async def new_key(client: GoogleKmsClient, managed: str = "k1") -> KeyRef:
    return (await client.ensure_key(managed, AES)).ref


async def test_rotate_creates_a_version_and_makes_it_primary(adapter_env: Env) -> None:
    client, fake = adapter_env
    ref = await new_key(client)
    [first] = await client.list_versions(ref)
    assert (first.version_id, first.primary, first.enabled) == ("1", True, True) and first.created_at is not None
    fake.clock.advance(60)
    second = await client.rotate(ref, from_version="1")
    assert (second.version_id, second.primary, second.enabled) == ("2", True, True)
    assert summary(await state_of(client, "keyorch-k1")) == [("1", "ENABLED", False), ("2", "ENABLED", True)]
    listed = await client.list_versions(ref)
    assert [(v.version_id, v.primary) for v in listed] == [("1", False), ("2", True)]
    assert listed[0].created_at is not None and listed[1].created_at is not None
    assert (listed[1].created_at - listed[0].created_at).total_seconds() >= 60
    assert (count(fake, "CreateCryptoKeyVersion"), count(fake, "UpdateCryptoKeyPrimaryVersion")) == (1, 1)


@pytest.mark.parametrize("keystore_settings", [{"page_size": 3}])
async def test_versions_are_listed_oldest_first_across_small_pages(adapter_env: Env) -> None:
    client, fake = adapter_env
    ref = await new_key(client)
    for n in range(1, 11):  # versions 1..11: "10" and "11" sort before "2" as text
        await client.rotate(ref, from_version=str(n))
    fake.log.clear()
    listed = await client.list_versions(ref)
    assert [v.version_id for v in listed] == [str(n) for n in range(1, 12)]
    assert [v.primary for v in listed] == [False] * 10 + [True]
    assert count(fake, "ListCryptoKeyVersions") == 4  # 3 + 3 + 3 + 2


async def test_a_rotation_from_an_old_primary_sends_nothing(adapter_env: Env) -> None:
    client, fake = adapter_env
    ref = await new_key(client)
    second = await client.rotate(ref, from_version="1")
    assert await client.rotate(ref, from_version="1") == second
    assert (count(fake, "CreateCryptoKeyVersion"), count(fake, "UpdateCryptoKeyPrimaryVersion")) == (1, 1)
    assert len((await state_of(client, "keyorch-k1"))["cryptoKeyVersions"]) == 2


async def test_a_create_whose_answer_is_lost_makes_exactly_one_version(adapter_env: Env) -> None:
    client, fake = adapter_env
    ref = await new_key(client)
    faults(fake, "CreateCryptoKeyVersion", "truncate")  # the version is made, the answer cut short
    rotated = await client.rotate(ref, from_version="1")
    assert rotated.version_id == "2" and rotated.primary
    assert summary(await state_of(client, "keyorch-k1")) == [("1", "ENABLED", False), ("2", "ENABLED", True)]
    assert count(fake, "CreateCryptoKeyVersion") == 1


async def test_a_create_applied_but_answered_500_makes_exactly_one_version(adapter_env: Env) -> None:
    client, fake = adapter_env
    ref = await new_key(client)
    faults(fake, "CreateCryptoKeyVersion", "error_500_after")
    assert (await client.rotate(ref, from_version="1")).version_id == "2"
    assert summary(await state_of(client, "keyorch-k1")) == [("1", "ENABLED", False), ("2", "ENABLED", True)]
    assert count(fake, "CreateCryptoKeyVersion") == 1


async def test_a_create_refused_with_a_5xx_is_read_then_sent_again(adapter_env: Env) -> None:
    client, fake = adapter_env
    ref = await new_key(client)
    faults(fake, "CreateCryptoKeyVersion", "error_503")
    rotated = await client.rotate(ref, from_version="1")
    assert rotated.version_id == "2"
    assert count(fake, "CreateCryptoKeyVersion") == 2 and len(summary(await state_of(client, "keyorch-k1"))) == 2


async def test_a_half_done_rotation_is_completed_without_a_second_create(adapter_env: Env) -> None:
    client, fake = adapter_env
    ref = await new_key(client)
    faults(fake, "UpdateCryptoKeyPrimaryVersion", *["error_500"] * 5)  # version 2 made, never made primary
    with pytest.raises(Unavailable):
        await client.rotate(ref, from_version="1")
    assert summary(await state_of(client, "keyorch-k1")) == [("1", "ENABLED", True), ("2", "ENABLED", False)]
    fake.faults.configure(fake.faults.config.model_copy(update={"rules": []}))
    finished = await client.rotate(ref, from_version="1")
    assert (finished.version_id, finished.primary) == ("2", True)
    assert summary(await state_of(client, "keyorch-k1")) == [("1", "ENABLED", False), ("2", "ENABLED", True)]
    assert count(fake, "CreateCryptoKeyVersion") == 1


async def test_rotation_schedule_is_set_seen_by_the_fake_and_rotates_with_its_clock(adapter_env: Env) -> None:
    client, fake = adapter_env
    fake.tokens.ttl_seconds = 600 * DAY  # the fake checks token times on its own clock, moved far below
    ref = await new_key(client)
    await client.set_rotation_policy(ref, None)  # no schedule to clear: nothing is written
    assert count(fake, "UpdateCryptoKey") == 0
    await client.set_rotation_policy(ref, 90)
    await client.set_rotation_policy(ref, 90)  # already so: read, not written again
    assert count(fake, "UpdateCryptoKey") == 1
    key = await state_of(client, "keyorch-k1")
    assert key["rotationPeriod"] == f"{90 * DAY}s"
    created = datetime.fromisoformat(key["cryptoKeyVersions"][0]["createTime"].replace("Z", "+00:00"))
    next_rotation = datetime.fromisoformat(key["nextRotationTime"].replace("Z", "+00:00"))
    assert (next_rotation - created).total_seconds() == pytest.approx(90 * DAY, abs=1)
    fake.clock.advance(89 * DAY)
    assert len(await client.list_versions(ref)) == 1
    fake.clock.advance(2 * DAY)
    listed = await client.list_versions(ref)
    assert [(v.version_id, v.primary) for v in listed] == [("1", False), ("2", True)]
    await client.set_rotation_policy(ref, None)
    key = await state_of(client, "keyorch-k1")
    assert "rotationPeriod" not in key and "nextRotationTime" not in key
    fake.clock.advance(400 * DAY)
    assert len(await client.list_versions(ref)) == 2
    assert count(fake, "UpdateCryptoKey") == 2 and count(fake, "CreateCryptoKeyVersion") == 0


@pytest.mark.parametrize("days", [0, -3, 36501])
async def test_a_period_cloud_kms_cannot_take_is_refused_before_any_request(adapter_env: Env, days: int) -> None:
    client, fake = adapter_env
    ref = await new_key(client)
    with pytest.raises(InvalidRequest, match="24 hours"):
        await client.set_rotation_policy(ref, days)
    assert count(fake, "UpdateCryptoKey") == 0


async def test_disable_version_makes_its_ciphertexts_undecryptable(adapter_env: Env) -> None:
    client, fake = adapter_env
    ref = await new_key(client)
    name = ref.key_id_in_keystore or ""
    sealed = await crypto(client, f"{name}:encrypt", {"plaintext": "c2VjcmV0"})
    assert sealed["name"].endswith("/cryptoKeyVersions/1")
    await client.rotate(ref, from_version="1")
    assert (await crypto(client, f"{name}:decrypt", {"ciphertext": sealed["ciphertext"]}))["plaintext"] == "c2VjcmV0"
    newer = await crypto(client, f"{name}:encrypt", {"plaintext": "bmV3"})
    assert newer["name"].endswith("/cryptoKeyVersions/2")  # new encryption uses the primary
    await client.disable_version(ref, "1")
    await client.disable_version(ref, "1")  # a repeat is a no-op
    assert summary(await state_of(client, "keyorch-k1")) == [("1", "DISABLED", False), ("2", "ENABLED", True)]
    assert [v.enabled for v in await client.list_versions(ref)] == [False, True]
    with pytest.raises(Conflict) as refused:
        await crypto(client, f"{name}:decrypt", {"ciphertext": sealed["ciphertext"]})
    assert refused.value.provider_code == "FAILED_PRECONDITION"
    with pytest.raises(Conflict, match="primary"):
        await client.disable_version(ref, "2")
    assert count(fake, "UpdateCryptoKeyVersion") == 2


async def crypto(client: GoogleKmsClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    result = await client.http.request("POST", client._url(path), operation="crypto", idempotent=True, json=body)
    return result.json_object()


async def test_disabling_a_version_destruction_took_is_success(adapter_env: Env) -> None:
    client, fake = adapter_env
    ref = await new_key(client)
    await client.rotate(ref, from_version="1")
    key = fake.service._key(ref.key_id_in_keystore or "")
    key.versions[0].state = "DESTROY_SCHEDULED"  # someone scheduled its destruction
    await client.disable_version(ref, "1")
    assert summary(await state_of(client, "keyorch-k1"))[0] == ("1", "DESTROY_SCHEDULED", False)
    with pytest.raises(NotFound):
        await client.disable_version(ref, "9")


async def test_versions_of_a_missing_key_are_not_found(adapter_env: Env) -> None:
    client, _ = adapter_env
    await new_key(client)
    with pytest.raises(NotFound):
        await client.list_versions(KeyRef(None, "nope"))


async def test_a_listing_that_repeats_a_version_is_malformed(adapter_env: Env) -> None:
    client, fake = adapter_env
    ref = await new_key(client)
    key = fake.service._key(ref.key_id_in_keystore or "")
    key.versions.append(key.versions[0])
    with pytest.raises(MalformedResponse, match="repeats version 1"):
        await client.list_versions(ref)


# -- the wire rules the fake cannot show (it serves only ENCRYPT_DECRYPT keys) ----------------------

KEY = "projects/p/locations/l/keyRings/r/cryptoKeys/k"


def version(n: int, state: str) -> VersionInfo:
    return VersionInfo(f"{KEY}/cryptoKeyVersions/{n}", state, None, datetime(2030, 1, n, tzinfo=UTC))


def test_a_key_without_primaries_stands_its_newest_fresh_version_for_one() -> None:
    key = KeyInfo(KEY, "ASYMMETRIC_DECRYPT", None)
    listed = [version(2, "PENDING_GENERATION"), version(1, "ENABLED"), version(3, "DISABLED")]
    assert [(v.version_id, v.primary, v.enabled) for v in versions_view(key, listed)] == [
        ("1", False, True),
        ("2", True, False),
        ("3", False, False),
    ]
    only_old = [version(1, "DISABLED"), version(2, "DESTROYED")]
    assert [v.primary for v in versions_view(key, only_old)] == [False, True]
    assert versions_view(key, []) == []


def test_a_primary_made_after_the_listing_is_added_from_the_key() -> None:
    key = KeyInfo(KEY, "ENCRYPT_DECRYPT", version(2, "ENABLED"))
    assert [(v.version_id, v.primary) for v in versions_view(key, [version(1, "ENABLED")])] == [
        ("1", False),
        ("2", True),
    ]


def test_listings_of_another_keys_versions_or_bad_ids_are_refused() -> None:
    key = KeyInfo(KEY, "ENCRYPT_DECRYPT", version(1, "ENABLED"))
    with pytest.raises(WireError, match="another key"):
        versions_view(key, [VersionInfo(f"{KEY}2/cryptoKeyVersions/1", "ENABLED")])
    with pytest.raises(WireError, match="not a version name"):
        parse_version({"name": f"{KEY}/cryptoKeyVersions/one", "state": 1})
    assert format_time(datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2030-01-02T03:04:05Z"


async def test_a_dropped_create_is_sent_again_only_after_a_read(adapter_env: Env) -> None:
    client, fake = adapter_env
    ref = await new_key(client)
    faults(fake, "CreateCryptoKeyVersion", "drop")  # no answer, and nothing made
    fake.log.clear()
    rotated = await client.rotate(ref, from_version="1")
    operations = [e.operation for e in fake.log.entries]
    dropped = operations.index("CreateCryptoKeyVersion")
    resent = operations.index("CreateCryptoKeyVersion", dropped + 1)
    assert "ListCryptoKeyVersions" in operations[dropped + 1 : resent]
    assert operations.count("CreateCryptoKeyVersion") == 2 and rotated.version_id == "2"
    assert summary(await state_of(client, "keyorch-k1")) == [("1", "ENABLED", False), ("2", "ENABLED", True)]
