"""Google Cloud KMS fake: rotation by hand (``cryptoKeyVersions.create`` then ``updatePrimaryVersion``) and
by schedule (``rotationPeriod`` + ``nextRotationTime``, driven by the fake's clock), over raw HTTP on
loopback, with the state in ``/_fake/state`` and faults on the rotation routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest
from tests.fakes.test_gcp import RING, Kms, google_error, parse_time

from keyorch.fakes.base import start_fake
from keyorch.fakes.gcp import GoogleKmsFake
from keyorch.fakes.gcp_model import rfc3339

DAY = 86400
KEY = f"{RING}/cryptoKeys/k1"


@pytest.fixture
async def kms() -> AsyncIterator[Kms]:
    running = await start_fake(GoogleKmsFake())
    async with aiohttp.ClientSession() as session:
        client = Kms(running, session)
        await client.ring()
        await client.key("k1")
        yield client
    await running.stop()


async def versions(kms: Kms) -> list[tuple[int, str, bool]]:
    state = await kms.ok("GET", "/_fake/state")
    [key] = state["keyRings"][0]["cryptoKeys"]
    return [(int(v["name"].rpartition("/")[2]), v["state"], v["primary"]) for v in key["cryptoKeyVersions"]]


async def test_a_created_version_is_not_primary_until_update_primary_version(kms: Kms) -> None:
    made = await kms.ok("POST", f"{KEY}/cryptoKeyVersions", {})
    assert made["name"] == f"{KEY}/cryptoKeyVersions/2" and made["state"] == "ENABLED"
    assert await versions(kms) == [(1, "ENABLED", True), (2, "ENABLED", False)]
    key = await kms.ok("POST", f"{KEY}:updatePrimaryVersion", {"cryptoKeyVersionId": "2"})
    assert key["primary"]["name"] == made["name"]
    assert await versions(kms) == [(1, "ENABLED", False), (2, "ENABLED", True)]
    again = await kms.ok("POST", f"{KEY}:updatePrimaryVersion", {"cryptoKeyVersionId": "2"})  # a repeat is a no-op
    assert again["primary"]["name"] == made["name"]
    await kms.ok("PATCH", f"{KEY}/cryptoKeyVersions/1", {"state": "DISABLED"}, {"updateMask": "state"})
    status, doc, _ = await kms.call("POST", f"{KEY}:updatePrimaryVersion", {"cryptoKeyVersionId": "1"})
    google_error(status, doc, 400, "FAILED_PRECONDITION")


async def test_the_clock_rotates_at_each_next_rotation_time(kms: Kms) -> None:
    start = kms.fake.clock.now()
    body = {"rotationPeriod": f"{30 * DAY}s", "nextRotationTime": rfc3339(start + timedelta(days=1))}
    key = await kms.ok("PATCH", KEY, body, {"updateMask": "rotationPeriod,nextRotationTime"})
    assert key["rotationPeriod"] == f"{30 * DAY}s"
    await kms.advance(DAY - 60)
    assert await versions(kms) == [(1, "ENABLED", True)]
    await kms.advance(64 * DAY)  # day 65: rotations due at days 1, 31 and 61
    assert await versions(kms) == [
        (1, "ENABLED", False),
        (2, "ENABLED", False),
        (3, "ENABLED", False),
        (4, "ENABLED", True),
    ]
    key = await kms.ok("GET", KEY)
    made = [parse_time(v["createTime"]) for v in (await kms.ok("GET", f"{KEY}/cryptoKeyVersions"))["cryptoKeyVersions"]]
    assert [round((t - start).total_seconds() / DAY) for t in made[1:]] == [1, 31, 61]
    assert round((parse_time(key["nextRotationTime"]) - start).total_seconds() / DAY) == 91
    assert key["primary"]["name"].endswith("/cryptoKeyVersions/4")
    assert kms.fake.log.counts["CreateCryptoKeyVersion"] == 0


async def test_a_manual_rotation_leaves_the_schedule_alone(kms: Kms) -> None:
    when = rfc3339(kms.fake.clock.now() + timedelta(days=10))
    await kms.ok(
        "PATCH",
        KEY,
        {"rotationPeriod": f"{DAY}s", "nextRotationTime": when},
        {"updateMask": "rotationPeriod,nextRotationTime"},
    )
    await kms.ok("POST", f"{KEY}/cryptoKeyVersions", {})
    await kms.ok("POST", f"{KEY}:updatePrimaryVersion", {"cryptoKeyVersionId": "2"})
    assert (await kms.ok("GET", KEY))["nextRotationTime"] == when


async def test_the_schedule_is_cleared_through_the_update_mask(kms: Kms) -> None:
    when = rfc3339(kms.fake.clock.now() + timedelta(days=10))
    mask = {"updateMask": "rotationPeriod,nextRotationTime"}
    await kms.ok("PATCH", KEY, {"rotationPeriod": f"{7 * DAY}s", "nextRotationTime": when}, mask)
    cleared = await kms.ok("PATCH", KEY, {}, mask)
    assert "rotationPeriod" not in cleared and "nextRotationTime" not in cleared
    await kms.advance(30 * DAY)
    assert len(await versions(kms)) == 1


@pytest.mark.parametrize(
    ("body", "mask", "words"),
    [
        ({"rotationPeriod": f"{7 * DAY}s"}, "rotationPeriod", "next_rotation_time must be set"),
        (
            {"rotationPeriod": "3600s", "nextRotationTime": "2030-01-01T00:00:00Z"},
            "rotationPeriod,nextRotationTime",
            "24 hours",
        ),
        (
            {"rotationPeriod": f"{876_001 * 3600}s", "nextRotationTime": "2030-01-01T00:00:00Z"},
            "rotationPeriod,nextRotationTime",
            "876000",
        ),
    ],
)
async def test_a_schedule_cloud_kms_refuses(kms: Kms, body: dict[str, str], mask: str, words: str) -> None:
    status, doc, _ = await kms.call("PATCH", KEY, body, {"updateMask": mask})
    assert words in google_error(status, doc, 400, "INVALID_ARGUMENT")["message"]
    assert "rotationPeriod" not in await kms.ok("GET", KEY)


async def test_faults_apply_to_the_rotation_routes(kms: Kms) -> None:
    rules = [
        {"operation": "CreateCryptoKeyVersion", "sequence": ["truncate"]},
        {"operation": "UpdateCryptoKeyPrimaryVersion", "sequence": ["error_503"]},
    ]
    await kms.ok("PUT", "/_fake/faults", {"rules": rules})
    with pytest.raises(aiohttp.ClientPayloadError):  # the version is made, its answer cut short
        await kms.call("POST", f"{KEY}/cryptoKeyVersions", {})
    status, doc, _ = await kms.call("POST", f"{KEY}:updatePrimaryVersion", {"cryptoKeyVersionId": "2"})
    google_error(status, doc, 503, "UNAVAILABLE")
    assert await versions(kms) == [(1, "ENABLED", True), (2, "ENABLED", False)]
    log = await kms.ok("GET", "/_fake/requests")
    assert log["faults"] == {"truncate": 1, "error_503": 1}
    assert (
        log["by_operation"]["CreateCryptoKeyVersion"] == 1 and log["by_operation"]["UpdateCryptoKeyPrimaryVersion"] == 1
    )
