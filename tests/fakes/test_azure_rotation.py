"""Azure Key Vault fake: ``POST /keys/{name}/rotate`` and ``GET``/``PUT /keys/{name}/rotationpolicy``
over raw HTTP on loopback: the policy's shape and rules, the default policy, automatic rotation driven
by the fake's clock, the policy's ``expiryTime`` on rotated versions, faults and the request log."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from tests.fakes.test_azure_client import VaultClient, open_vault, version_of

DAY = 86400
ROTATE_30 = {"trigger": {"timeAfterCreate": "P30D"}, "action": {"type": "Rotate"}}


async def versions(vault: VaultClient, name: str) -> list[dict[str, Any]]:
    reply = await vault.raw("GET", vault.url + "/_fake/state")
    [key] = [k for k in reply.body["keys"] if k["name"] == name]
    found: list[dict[str, Any]] = key["versions"]
    return found


async def test_a_key_without_a_policy_answers_the_default_notification_only() -> None:
    async with open_vault() as vault:
        await vault.create("k1")
        reply = await vault.call("GET", "/keys/k1/rotationpolicy")
        assert reply.status == 200
        assert reply.body == {
            "lifetimeActions": [{"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "Notify"}}],
            "attributes": {},
        }
        assert (await vault.call("GET", "/keys/nope/rotationpolicy")).codes == ("KeyNotFound", None)
        assert vault.fake.log.counts["GetKeyRotationPolicy"] == 2


async def test_put_answers_the_policy_with_its_id_and_times() -> None:
    async with open_vault() as vault:
        await vault.create("k1")
        body = {"lifetimeActions": [ROTATE_30], "attributes": {"expiryTime": "P90D"}}
        reply = await vault.call("PUT", "/keys/k1/rotationpolicy", body)
        assert reply.status == 200, reply.body
        assert reply.body["id"] == f"{vault.url}/keys/k1/rotationpolicy"
        assert reply.body["lifetimeActions"] == [ROTATE_30]
        attributes = reply.body["attributes"]
        assert attributes["expiryTime"] == "P90D" and attributes["created"] == attributes["updated"]
        assert (await vault.call("GET", "/keys/k1/rotationpolicy")).body == reply.body
        lowered = {"lifetimeActions": [{"trigger": {"timeAfterCreate": "P8D"}, "action": {"type": "rotate"}}]}
        assert (await vault.call("PUT", "/keys/k1/rotationpolicy", lowered)).body["lifetimeActions"][0]["action"] == {
            "type": "Rotate"
        }


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        ({"lifetimeActions": [{"trigger": {"timeAfterCreate": "P6D"}, "action": {"type": "Rotate"}}]}, "7 days"),
        ({"lifetimeActions": [], "attributes": {"expiryTime": "P27D"}}, "28 days"),
        ({"lifetimeActions": [ROTATE_30], "attributes": {"expiryTime": "P36D"}}, "before the expiryTime"),
        ({"lifetimeActions": [{"trigger": {"timeAfterCreate": "P30D"}, "action": {"type": "Notify"}}]}, "Notify"),
        ({"lifetimeActions": [{"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "Rotate"}}]}, "expiryTime"),
        ({"lifetimeActions": [ROTATE_30, ROTATE_30]}, "at most one"),
        ({"lifetimeActions": [{"trigger": {}, "action": {"type": "Rotate"}}]}, "exactly one"),
        ({"lifetimeActions": [{"trigger": {"timeAfterCreate": "90 days"}, "action": {"type": "Rotate"}}]}, "ISO 8601"),
        ({"lifetimeActions": [{"trigger": {"timeAfterCreate": "P30D"}, "action": {"type": "Delete"}}]}, "Rotate or"),
        ({"lifetimeActions": "P30D"}, "array"),
    ],
)
async def test_put_refuses_what_key_vault_refuses(body: dict[str, Any], rule: str) -> None:
    async with open_vault() as vault:
        await vault.create("k1")
        reply = await vault.call("PUT", "/keys/k1/rotationpolicy", body)
        assert reply.status == 400 and reply.codes == ("BadParameter", None)
        assert rule in reply.body["error"]["message"]
        assert (await vault.call("GET", "/keys/k1/rotationpolicy")).body["lifetimeActions"][0]["action"] == {
            "type": "Notify"
        }


async def test_the_clock_drives_automatic_rotation_at_each_due_time() -> None:
    async with open_vault() as vault:
        created = version_of(await vault.create("k1"))
        assert (await vault.call("PUT", "/keys/k1/rotationpolicy", {"lifetimeActions": [ROTATE_30]})).status == 200
        await vault.advance(29 * DAY)
        assert len(await versions(vault, "k1")) == 1
        await vault.advance(72 * DAY)  # day 101: due at days 30, 60 and 90
        found = await versions(vault, "k1")
        assert len(found) == 4 and found[0]["version"] == created
        assert [v["created"] - found[0]["created"] for v in found] == [0, 30 * DAY, 60 * DAY, 90 * DAY]
        assert [v["primary"] for v in found] == [False, False, False, True]
        latest = (await vault.call("GET", "/keys/k1")).body
        assert version_of(latest) == found[-1]["version"]
        assert vault.fake.log.counts["RotateKey"] == 0


async def test_rotated_versions_expire_as_the_policy_says() -> None:
    async with open_vault() as vault:
        await vault.create("k1")
        body = {"lifetimeActions": [ROTATE_30], "attributes": {"expiryTime": "P1Y"}}
        assert (await vault.call("PUT", "/keys/k1/rotationpolicy", body)).status == 200
        rotated = await vault.call("POST", "/keys/k1/rotate")
        assert rotated.status == 200
        attributes = rotated.body["attributes"]
        assert attributes["exp"] - attributes["created"] in (365 * DAY, 366 * DAY)
        assert "exp" not in (await versions(vault, "k1"))[0]


async def test_rotating_before_expiry_follows_the_latest_versions_exp() -> None:
    async with open_vault() as vault:
        await vault.create("k1")
        before = {"trigger": {"timeBeforeExpiry": "P10D"}, "action": {"type": "Rotate"}}
        body = {"lifetimeActions": [before], "attributes": {"expiryTime": "P40D"}}
        assert (await vault.call("PUT", "/keys/k1/rotationpolicy", body)).status == 200
        assert (await vault.call("POST", "/keys/k1/rotate")).status == 200  # expires in 40 days
        await vault.advance(29 * DAY)
        assert len(await versions(vault, "k1")) == 2
        await vault.advance(2 * DAY)  # 10 days before that version's exp
        assert len(await versions(vault, "k1")) == 3


async def test_faults_apply_to_the_rotation_routes() -> None:
    async with open_vault() as vault:
        await vault.create("k1")
        rules = [
            {"operation": "RotateKey", "sequence": ["error_503"]},
            {"operation": "UpdateKeyRotationPolicy", "sequence": ["truncate"]},
        ]
        assert (await vault.raw("PUT", vault.url + "/_fake/faults", json={"rules": rules})).status == 200
        assert (await vault.call("POST", "/keys/k1/rotate")).status == 503
        assert len(await versions(vault, "k1")) == 1
        with pytest.raises(aiohttp.ClientPayloadError):  # the answer is cut short; the policy is set all the same
            await vault.call("PUT", "/keys/k1/rotationpolicy", {"lifetimeActions": [ROTATE_30]})
        assert (await vault.call("GET", "/keys/k1/rotationpolicy")).body["lifetimeActions"] == [ROTATE_30]
        log = (await vault.raw("GET", vault.url + "/_fake/requests")).body
        assert log["by_operation"]["RotateKey"] == 1 and log["by_operation"]["UpdateKeyRotationPolicy"] == 1
        assert log["faults"] == {"error_503": 1, "truncate": 1}


async def test_a_soft_deleted_key_keeps_its_policy_and_rotates_again_once_recovered() -> None:
    async with open_vault() as vault:
        await vault.create("k1")
        assert (await vault.call("PUT", "/keys/k1/rotationpolicy", {"lifetimeActions": [ROTATE_30]})).status == 200
        assert (await vault.call("DELETE", "/keys/k1")).status == 200
        await vault.advance(45 * DAY)  # due while deleted: a deleted key is not rotated
        reply = await vault.raw("GET", vault.url + "/_fake/state")
        assert len(reply.body["deleted_keys"][0]["versions"]) == 1
        assert (await vault.call("POST", "/deletedkeys/k1/recover")).status == 200
        assert (await vault.call("GET", "/keys/k1/rotationpolicy")).body["lifetimeActions"] == [ROTATE_30]
        assert len(await versions(vault, "k1")) == 2  # overdue at recovery: rotated on the next read
