"""Key rotation in the IBM Key Protect fake: versions in ``/_fake/state``, paging of
``GET /api/v2/keys/{id}/versions``, and the rotation policy rotating keys on the fake clock."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from tests.fakes.test_ibm import Ibm, open_ibm, policy_body

from keyorch.fakes.faults import ProviderFaults

DAY = 86_400
POLICY_TYPE = "application/vnd.ibm.kms.policy+json"


@pytest.fixture
async def ibm() -> AsyncIterator[Ibm]:
    async with open_ibm() as client:
        yield client


def state_of(ibm: Ibm, key_id: str) -> dict[str, Any]:
    return next(k for k in ibm.fake.state_snapshot()["keys"] if k["id"] == key_id)


async def put_rotation(ibm: Ibm, key_id: str, rotation: dict[str, Any]) -> int:
    body = policy_body({"type": POLICY_TYPE, "rotation": rotation})
    return (await ibm.call("PUT", f"/api/v2/keys/{key_id}/policies?policy=rotation", json_body=body)).status


async def test_state_shows_versions_oldest_first_and_the_primary(ibm: Ibm) -> None:
    key = await ibm.create("kek")
    assert [(v["id"], v["primary"]) for v in state_of(ibm, key["id"])["versions"]] == [(key["id"], True)]
    assert (await ibm.action(key["id"], "rotate")).status == 204
    versions = state_of(ibm, key["id"])["versions"]
    assert [v["primary"] for v in versions] == [False, True] and versions[0]["id"] == key["id"]
    current = (await ibm.call("GET", f"/api/v2/keys/{key['id']}/metadata")).resource["keyVersion"]["id"]
    assert versions[1]["id"] == current


async def test_versions_page_with_limit_and_offset(ibm: Ibm) -> None:
    key = await ibm.create("kek")
    for _ in range(3):
        assert (await ibm.action(key["id"], "rotate")).status == 204
        await ibm.advance(3601)
    pages = []
    for offset in (0, 2, 4):
        answer = await ibm.call("GET", f"/api/v2/keys/{key['id']}/versions?limit=2&offset={offset}")
        pages.append([v["id"] for v in answer.doc["resources"]])
    assert [len(p) for p in pages] == [2, 2, 0]
    assert [v["id"] for v in reversed(state_of(ibm, key["id"])["versions"])] == pages[0] + pages[1]


async def test_rotation_policy_rotates_on_the_fake_clock(ibm: Ibm) -> None:
    key = await ibm.create("kek")
    assert await put_rotation(ibm, key["id"], {"enabled": True, "interval_month": 13}) == 400
    assert await put_rotation(ibm, key["id"], {"enabled": True, "interval_month": 3}) == 200
    state = state_of(ibm, key["id"])
    assert state["rotation_policy"] == {"enabled": True, "interval_month": 3} and state["next_rotation"]
    await ibm.advance(89 * DAY)
    assert len(state_of(ibm, key["id"])["versions"]) == 1
    await ibm.advance(365 * DAY - 89 * DAY)
    versions = state_of(ibm, key["id"])["versions"]
    assert len(versions) == 5  # 90, 180, 270 and 360 days: four rotations in a year
    dates = [datetime.fromisoformat(v["creationDate"]) for v in versions]
    assert {round((b - a).total_seconds() / DAY) for a, b in itertools.pairwise(dates)} == {90}
    listed = await ibm.call("GET", f"/api/v2/keys/{key['id']}/versions")
    assert len(listed.doc["resources"]) == 5
    policy = await ibm.call("GET", f"/api/v2/keys/{key['id']}/policies?policy=rotation")
    assert policy.resource["rotation"] == {"enabled": True, "interval_month": 3}

    assert await put_rotation(ibm, key["id"], {"enabled": False}) == 200
    await ibm.advance(365 * DAY)
    state = state_of(ibm, key["id"])
    assert len(state["versions"]) == 5 and state["next_rotation"] is None


async def test_policy_does_not_rotate_a_suspended_key(ibm: Ibm) -> None:
    key = await ibm.create("kek")
    assert await put_rotation(ibm, key["id"], {"enabled": True, "interval_month": 1}) == 200
    assert (await ibm.action(key["id"], "disable")).status == 204
    await ibm.advance(31 * DAY)
    assert len(state_of(ibm, key["id"])["versions"]) == 1
    assert "lastRotateDate" not in (await ibm.get(key["id"])).resource  # a skipped rotation is no rotation
    await ibm.advance(31)
    assert (await ibm.action(key["id"], "enable")).status == 204
    assert (await ibm.action(key["id"], "rotate")).status == 204  # nothing rotated within the hour
    await ibm.advance(30 * DAY)
    assert len(state_of(ibm, key["id"])["versions"]) == 3  # the policy rotates an active key again


async def test_error_500_after_fault_applies_the_rotation(ibm: Ibm) -> None:
    key = await ibm.create("kek")
    ibm.fake.faults.configure(
        ProviderFaults.model_validate({"rules": [{"operation": "RotateKey", "sequence": ["error_500_after"]}]})
    )
    assert (await ibm.action(key["id"], "rotate")).status == 500
    assert len(state_of(ibm, key["id"])["versions"]) == 2
