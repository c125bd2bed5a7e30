"""IBM Key Protect fake: every operation in every key state, delete conditions, dual auth, time rules.

The tables are written from docs/providers.md §4.3 and Key Protect's error catalogue:
actions that need Active(1) (wrap, disable, set/unset for deletion), those also allowed on an
expired Deactivated(3) key (unwrap, rewrap, rotate), enable only from Suspended(2) and not within
30 s of the last action, restore only of a deleted (5) key within 30 days and not within 30 s,
purge only of a deleted key and only 4 h after deletion, DELETE of a deleted key 410.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from tests.fakes.test_ibm import Answer, Ibm, open_ibm, policy_body

HOUR, DAY = 3600, 86400
KAIS = "KEY_ACTION_INVALID_STATE_ERR"
GONE = "410:KEY_DELETED_ERR"

#: how each state column is reached from a fresh root key (the key was wrapped once while Active)
STATES = ("0", "1", "2", "3", "5", "5+4h", "5+30d")

#: operation -> one cell per state column: "STATUS[:CODE][>STATE_AFTER]" ("gone" = 404 afterwards)
TABLE: dict[str, tuple[str, ...]] = {
    "get": ("200>0", "200>1", "200>2", "200>3", "200>5", "200>5", "200>5"),
    "enable": (f"409:{KAIS}", f"409:{KAIS}", "204>1", f"409:{KAIS}", f"409:{KAIS}", f"409:{KAIS}", f"409:{KAIS}"),
    "disable": (f"409:{KAIS}", "204>2", f"409:{KAIS}", f"409:{KAIS}", f"409:{KAIS}", f"409:{KAIS}", f"409:{KAIS}"),
    "setKeyForDeletion": (
        f"409:{KAIS}", "409:NOT_DUAL_AUTH_ERR", f"409:{KAIS}", f"409:{KAIS}", f"409:{KAIS}", f"409:{KAIS}",
        f"409:{KAIS}",
    ),
    "unsetKeyForDeletion": (
        f"409:{KAIS}", "409:NOT_DUAL_AUTH_ERR", f"409:{KAIS}", f"409:{KAIS}", f"409:{KAIS}", f"409:{KAIS}",
        f"409:{KAIS}",
    ),
    "rotate": (f"409:{KAIS}", "204>1", f"409:{KAIS}", "204>3", f"409:{KAIS}", f"409:{KAIS}", f"409:{KAIS}"),
    "wrap": (f"409:{KAIS}", "200>1", f"409:{KAIS}", f"409:{KAIS}", f"409:{KAIS}", f"409:{KAIS}", f"409:{KAIS}"),
    "unwrap": (f"409:{KAIS}", "200>1", f"409:{KAIS}", "200>3", f"409:{KAIS}", f"409:{KAIS}", f"409:{KAIS}"),
    "rewrap": (f"409:{KAIS}", "200>1", f"409:{KAIS}", "200>3", f"409:{KAIS}", f"409:{KAIS}", f"409:{KAIS}"),
    "sync": ("204>0", "204>1", "204>2", "204>3", "204>5", "204>5", "204>5"),
    "restore": (f"409:{KAIS}", f"409:{KAIS}", f"409:{KAIS}", f"409:{KAIS}", "201>1", "201>1",
                "400:KEY_RESTORE_EXPIRED"),
    "delete": ("204>5", "204>5", "204>5", "204>5", GONE, GONE, GONE),
    "delete_force": ("204>5", "204>5", "204>5", "204>5", GONE, GONE, GONE),
    "purge": (f"409:{KAIS}", f"409:{KAIS}", f"409:{KAIS}", f"409:{KAIS}", "409:REQ_TOO_EARLY_ERR", "204>gone",
              "204>gone"),
}  # fmt: skip
ACTIONS = ("enable", "disable", "setKeyForDeletion", "unsetKeyForDeletion", "rotate", "wrap", "unwrap", "rewrap")


def parse_cell(cell: str) -> tuple[int, str | None, str | None]:
    head, _, after = cell.partition(">")
    status, _, code = head.partition(":")
    return int(status), code or None, after or None


async def key_in_state(ibm: Ibm, column: str, **fields: Any) -> tuple[str, str]:
    """A root key in the given state column, and a ciphertext wrapped while it was Active."""
    if column == "3":
        fields["expirationDate"] = (ibm.fake.clock.now() + timedelta(seconds=120)).strftime("%Y-%m-%dT%H:%M:%SZ")
    key = await ibm.create(f"key-{column}", **fields)
    wrapped = await ibm.action(key["id"], "wrap", {"plaintext": "AAAAAAAAAAAAAAAAAAAAAA=="})
    assert wrapped.status == 200
    if column == "0":
        async with ibm.session.put(ibm.url + f"/_fake/ibm/keys/{key['id']}/state", json={"state": 0}) as r:
            assert r.status == 200
    elif column == "2":
        assert (await ibm.action(key["id"], "disable")).status == 204
        await ibm.advance(31)
    elif column == "3":
        await ibm.advance(121)
    elif column.startswith("5"):
        assert (await ibm.call("DELETE", f"/api/v2/keys/{key['id']}")).status == 204
        await ibm.advance({"5": 31, "5+4h": 4 * HOUR + 1, "5+30d": 30 * DAY + 1}[column])
    return key["id"], wrapped.doc["ciphertext"]


async def run_operation(ibm: Ibm, operation: str, key_id: str, ciphertext: str, form: str) -> Answer:
    if operation == "get":
        return await ibm.get(key_id)
    if operation in ("delete", "delete_force"):
        query = "?force=true" if operation == "delete_force" else ""
        return await ibm.call("DELETE", f"/api/v2/keys/{key_id}{query}")
    if operation == "purge":
        return await ibm.call("DELETE", f"/api/v2/keys/{key_id}/purge")
    body = {"ciphertext": ciphertext} if operation in ("unwrap", "rewrap") else None
    if operation == "restore":
        path = f"/api/v2/keys/{key_id}/restore" if form == "path" else f"/api/v2/keys/{key_id}?action=restore"
    elif form == "path":
        path = f"/api/v2/keys/{key_id}/actions/{operation}"
    else:
        path = f"/api/v2/keys/{key_id}?action={operation}"
    return await ibm.call("POST", path, json_body=body)


#: every cell, and the action cells once more through the deprecated ``POST /keys/{id}?action=`` form
CELLS = [
    (op, column, cell, form)
    for op, row in TABLE.items()
    for column, cell in zip(STATES, row, strict=True)
    for form in (("path", "query") if op in (*ACTIONS, "restore") else ("path",))
]


@pytest.mark.parametrize(("operation", "column", "cell", "form"), CELLS)
async def test_state_table(operation: str, column: str, cell: str, form: str) -> None:
    status, code, after = parse_cell(cell)
    async with open_ibm() as ibm:
        key_id, ciphertext = await key_in_state(ibm, column)
        answer = await run_operation(ibm, operation, key_id, ciphertext, form)
        assert (answer.status, answer.code) == (status, code), answer.doc
        if status >= 400:
            assert answer.resource["errorMsg"].endswith(f"({code})")
            assert answer.doc["resources"][0]["reasons"][0]["status"] == status
        if operation in ("wrap", "unwrap", "rewrap") and status == 200:
            assert answer.doc["keyVersion"]["id"]
        if operation in ("restore", "get") and status < 300:
            assert answer.resource["id"] == key_id
        state_after = await ibm.get(key_id)
        if after == "gone":
            assert (state_after.status, state_after.code) == (404, "KEY_NOT_FOUND_ERR")
        elif after is not None:
            assert state_after.resource["state"] == int(after)


async def test_standard_keys_refuse_root_only_actions() -> None:
    async with open_ibm() as ibm:
        key = await ibm.create("std", extractable=True)
        for action in ("disable", "enable", "rotate", "wrap", "unwrap", "rewrap"):
            answer = await ibm.action(key["id"], action, {"ciphertext": "AAAA"})
            assert (answer.status, answer.code) == (400, "KEY_ROOT_REQ_ERR"), action
        not_dual = await ibm.action(key["id"], "setKeyForDeletion")
        assert (not_dual.status, not_dual.code) == (409, "NOT_DUAL_AUTH_ERR")
        assert (await ibm.call("DELETE", f"/api/v2/keys/{key['id']}")).status == 204
        await ibm.advance(31)
        assert (await ibm.call("POST", f"/api/v2/keys/{key['id']}/restore")).status == 201


async def test_enable_and_restore_wait_30_seconds() -> None:
    async with open_ibm() as ibm:
        key = await ibm.create("wait")
        assert (await ibm.action(key["id"], "disable")).status == 204
        await ibm.advance(29)
        early = await ibm.action(key["id"], "enable")
        assert (early.status, early.code) == (409, "REQ_TOO_EARLY_ERR")
        await ibm.advance(2)
        assert (await ibm.action(key["id"], "enable")).status == 204
        assert (await ibm.call("DELETE", f"/api/v2/keys/{key['id']}")).status == 204
        too_soon = await ibm.call("POST", f"/api/v2/keys/{key['id']}/restore")
        assert (too_soon.status, too_soon.code) == (409, "REQ_TOO_EARLY_ERR")
        await ibm.advance(30)
        restored = await ibm.call("POST", f"/api/v2/keys/{key['id']}/restore")
        assert restored.status == 201 and restored.resource["state"] == 1 and restored.resource["deleted"] is False


# -- DELETE conditions: registrations, retention, dual authorization ------------------------------

Setup = Callable[[Ibm, str], Awaitable[None]]


async def nothing(ibm: Ibm, key_id: str) -> None:
    return None


async def registered(ibm: Ibm, key_id: str) -> None:
    await ibm.register(key_id, "crn:v1:bluemix:public:cloud-object-storage:global:a/1:b:bucket:x")


async def retained(ibm: Ibm, key_id: str) -> None:
    await ibm.register(key_id, "crn:v1:bluemix:public:cloud-object-storage:global:a/1:b:bucket:y", prevent=True)


async def dual(ibm: Ibm, key_id: str) -> None:
    body = policy_body({"type": "application/vnd.ibm.kms.policy+json", "dualAuthDelete": {"enabled": True}})
    answer = await ibm.call("PUT", f"/api/v2/keys/{key_id}/policies?policy=dualAuthDelete", json_body=body)
    assert answer.status == 200


async def dual_set_by_other(ibm: Ibm, key_id: str) -> None:
    await dual(ibm, key_id)
    alice = await ibm.new_user("IBMid-alice")
    assert (await ibm.action(key_id, "setKeyForDeletion", token=alice)).status == 204


async def dual_set_by_self(ibm: Ibm, key_id: str) -> None:
    await dual(ibm, key_id)
    assert (await ibm.action(key_id, "setKeyForDeletion")).status == 204


async def dual_set_then_lapsed(ibm: Ibm, key_id: str) -> None:
    await dual_set_by_other(ibm, key_id)
    await ibm.advance(7 * DAY + 1)


async def dual_set_then_unset(ibm: Ibm, key_id: str) -> None:
    await dual_set_by_other(ibm, key_id)
    assert (await ibm.action(key_id, "unsetKeyForDeletion")).status == 204


async def dual_other_and_registered(ibm: Ibm, key_id: str) -> None:
    await dual_set_by_other(ibm, key_id)
    await registered(ibm, key_id)


async def dual_other_and_retained(ibm: Ibm, key_id: str) -> None:
    await dual_set_by_other(ibm, key_id)
    await retained(ibm, key_id)


async def instance_dual(ibm: Ibm, key_id: str) -> None:
    """Instance policy applies to keys created afterwards only: this key stays deletable."""
    body = policy_body({"policy_type": "dualAuthDelete", "policy_data": {"enabled": True}})
    assert (await ibm.call("PUT", "/api/v2/instance/policies?policy=dualAuthDelete", json_body=body)).status == 204


#: setup -> (without force, with force): "STATUS[:CODE]"
DELETE_TABLE: dict[str, tuple[Setup, str, str]] = {
    "plain": (nothing, "204", "204"),
    "registrations": (registered, "409:PROTECTED_RESOURCE_ERR", "204"),
    "retention": (retained, "409:PREV_KEY_DEL_ERR", "409:PREV_KEY_DEL_ERR"),
    "dual_no_authorization": (dual, "409:AUTHORIZATIONS_NOT_MET", "409:AUTHORIZATIONS_NOT_MET"),
    "dual_set_by_same_user": (dual_set_by_self, "409:AUTHORIZATIONS_NOT_MET", "409:AUTHORIZATIONS_NOT_MET"),
    "dual_set_by_other_user": (dual_set_by_other, "204", "204"),
    "dual_lapsed_after_7_days": (dual_set_then_lapsed, "409:AUTHORIZATIONS_NOT_MET", "409:AUTHORIZATIONS_NOT_MET"),
    "dual_withdrawn": (dual_set_then_unset, "409:AUTHORIZATIONS_NOT_MET", "409:AUTHORIZATIONS_NOT_MET"),
    "dual_other_and_registrations": (dual_other_and_registered, "409:PROTECTED_RESOURCE_ERR", "204"),
    "dual_other_and_retention": (dual_other_and_retained, "409:PREV_KEY_DEL_ERR", "409:PREV_KEY_DEL_ERR"),
    "instance_policy_after_key": (instance_dual, "204", "204"),
}


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("case", list(DELETE_TABLE))
async def test_delete_conditions(case: str, force: bool) -> None:
    setup, without, with_force = DELETE_TABLE[case]
    status, code, _ = parse_cell(with_force if force else without)
    async with open_ibm() as ibm:
        key = await ibm.create("del")
        await setup(ibm, key["id"])
        query = "?force=true" if force else ""
        answer = await ibm.call("DELETE", f"/api/v2/keys/{key['id']}{query}", headers={"prefer": "return=minimal"})
        assert (answer.status, answer.code) == (status, code), answer.doc
        after = await ibm.get(key["id"])
        assert after.resource["state"] == (5 if status == 204 else 1)
        regs = await ibm.call("GET", f"/api/v2/keys/{key['id']}/registrations")
        if status == 204 and force:
            assert regs.doc["resources"] == []


async def test_dual_authorization_window_and_two_users() -> None:
    async with open_ibm() as ibm:
        instance = policy_body({"policy_type": "dualAuthDelete", "policy_data": {"enabled": True}})
        assert (await ibm.call("PUT", "/api/v2/instance/policies?policy=dualAuthDelete", json_body=instance)).status
        key = await ibm.create("guarded")
        assert key["dualAuthDelete"] == {"enabled": True, "keySetForDeletion": False}
        bob_apikey = await ibm.new_apikey("IBMid-bob")
        assert (await ibm.action(key["id"], "setKeyForDeletion")).status == 204
        shown = (await ibm.get(key["id"])).resource["dualAuthDelete"]
        expected_expiry = (ibm.fake.clock.now() + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M")
        assert shown["keySetForDeletion"] is True and shown["authExpiration"].startswith(expected_expiry)
        await ibm.advance(7 * DAY - 60)
        assert (await ibm.get(key["id"])).resource["dualAuthDelete"]["keySetForDeletion"] is True
        await ibm.advance(120)
        bob = await ibm.token_for(bob_apikey)
        lapsed = await ibm.get(key["id"])
        assert lapsed.resource["dualAuthDelete"] == {"enabled": True, "keySetForDeletion": False}
        refused = await ibm.call("DELETE", f"/api/v2/keys/{key['id']}", token=bob)
        assert (refused.status, refused.code) == (409, "AUTHORIZATIONS_NOT_MET")
        assert refused.resource["errorMsg"].startswith("Conflict: 1 prior authorization(s) are required")
        assert (await ibm.action(key["id"], "setKeyForDeletion")).status == 204
        own = await ibm.call("DELETE", f"/api/v2/keys/{key['id']}")
        assert own.code == "AUTHORIZATIONS_NOT_MET"
        deleted = await ibm.call(
            "DELETE", f"/api/v2/keys/{key['id']}", token=bob, headers={"prefer": "return=representation"}
        )
        assert deleted.status == 200 and deleted.resource["state"] == 5
        assert deleted.resource["deletedBy"] == "IBMid-bob" and deleted.resource["deleted"] is True


async def test_deleted_key_windows_restore_purge_and_auto_purge() -> None:
    async with open_ibm() as ibm:
        key = await ibm.create("gone", aliases=["gone-alias"])
        await ibm.register(key["id"], "crn:v1:bluemix:public:cloud-object-storage:global:a/1:b:bucket:z")
        deleted = await ibm.call(
            "DELETE", f"/api/v2/keys/{key['id']}?force=true", headers={"prefer": "return=representation"}
        )
        doc = deleted.resource
        assert deleted.status == 200 and doc["restoreAllowed"] is True and doc["purgeAllowed"] is False
        await ibm.advance(4 * HOUR - 60)
        early = await ibm.call("DELETE", f"/api/v2/keys/{key['id']}/purge")
        assert (early.status, early.code) == (409, "REQ_TOO_EARLY_ERR")
        assert "Purge operation is allowed 4h0m0s after key is deleted" in early.resource["errorMsg"]
        await ibm.advance(120)
        assert (await ibm.get(key["id"])).resource["purgeAllowed"] is True
        await ibm.advance(30 * DAY)
        late = await ibm.get(key["id"])
        assert late.resource["restoreAllowed"] is False
        expired = await ibm.call("POST", f"/api/v2/keys/{key['id']}/restore")
        assert (expired.status, expired.code) == (400, "KEY_RESTORE_EXPIRED")
        purged = await ibm.call(
            "DELETE", f"/api/v2/keys/{key['id']}/purge", headers={"prefer": "return=representation"}
        )
        assert purged.status == 200 and purged.resource["id"] == key["id"]
        for method, path in (("GET", ""), ("DELETE", "/purge"), ("DELETE", ""), ("POST", "/restore")):
            answer = await ibm.call(method, f"/api/v2/keys/{key['id']}{path}")
            assert (answer.status, answer.code) == (404, "KEY_NOT_FOUND_ERR"), (method, path)
        assert (await ibm.create("reuse", aliases=["gone-alias"]))["aliases"] == ["gone-alias"]

        other = await ibm.create("auto")
        assert (await ibm.call("DELETE", f"/api/v2/keys/{other['id']}")).status == 204
        await ibm.advance(90 * DAY - 60)
        assert (await ibm.get(other["id"])).status == 200
        await ibm.advance(120)
        assert (await ibm.get(other["id"])).status == 404
        assert (await ibm.call("GET", "/api/v2/keys?state=5")).doc["resources"] == []


async def test_expired_key_is_deactivated_and_cannot_be_restored() -> None:
    async with open_ibm() as ibm:
        expires = (ibm.fake.clock.now() + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
        key = await ibm.create("expiring", expirationDate=expires)
        await ibm.advance(301)
        assert (await ibm.get(key["id"])).resource["state"] == 3
        assert (await ibm.call("DELETE", f"/api/v2/keys/{key['id']}")).status == 204
        await ibm.advance(31)
        answer = await ibm.call("POST", f"/api/v2/keys/{key['id']}/restore")
        assert (answer.status, answer.code) == (400, "KEY_EXPIRED_ERR")
