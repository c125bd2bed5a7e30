"""The role matrix: every endpoint x each of UKO's four roles and no token → the documented status.

Each cell gets fresh objects in the state its operation needs, so the only thing that varies
along a row is the caller.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from keyorch.api.app import ROUTES
from keyorch.service import keys, keystores, templates
from tests.api.conftest import API, Api, auth, error_of

ROLES = ("none", "reader", "creator", "deployer", "admin")
USER_OF = {"none": None, "reader": "reader", "creator": "creator", "deployer": "deployer", "admin": "admin"}


@dataclass
class Prepared:
    path: str
    etag_path: str | None = None  # GET this (as admin) for the If-Match
    body: dict[str, Any] | None = None


Setup = Callable[[Api], Awaitable[Prepared]]


def static(path: str) -> Setup:
    async def setup(_api: Api) -> Prepared:
        return Prepared(path)

    return setup


async def _vault(api: Api) -> Prepared:
    vault = await api.vault()
    return Prepared(f"/vaults/{vault}", etag_path=f"/vaults/{vault}")


async def _vault_update(api: Api) -> Prepared:
    vault = await api.vault()
    return Prepared(f"/vaults/{vault}", etag_path=f"/vaults/{vault}", body={"description": "changed"})


async def _new_vault(api: Api) -> Prepared:
    return Prepared("/vaults", body={"name": api.unique("nv")})


async def _keystore(api: Api) -> Prepared:
    ks = await api.keystore((await api.shared())[0])
    return Prepared(f"/keystores/{ks}", etag_path=f"/keystores/{ks}")


def keystore_sub(suffix: str) -> Setup:
    async def setup(api: Api) -> Prepared:
        return Prepared(f"/keystores/{await api.keystore((await api.shared())[0])}{suffix}")

    return setup


async def _keystore_update(api: Api) -> Prepared:
    ks = await api.keystore((await api.shared())[0])
    return Prepared(f"/keystores/{ks}", etag_path=f"/keystores/{ks}", body={"drift_policy": "remediate"})


async def _keystore_status(api: Api) -> Prepared:
    ks = await api.keystore((await api.shared())[0])
    return Prepared(f"/keystores/{ks}/status")


async def _connect(api: Api) -> Prepared:
    body = {
        "vault": (await api.shared())[0],
        "name": api.unique("ks"),
        "type": "aws_kms",
        "region": "us-east-1",
        "credentials": {"access_key_id": "AKIAEXAMPLE", "secret_access_key": "s3cret"},
    }
    return Prepared("/keystores", body=body)


async def _template(api: Api) -> Prepared:
    _, tmpl = await api.shared()
    return Prepared(f"/templates/{tmpl}")


async def _new_template(api: Api) -> Prepared:
    vault, _ = await api.shared()
    ks = await api.keystore(vault)
    return Prepared("/templates", body={"vault": vault, "name": api.unique("t"), "keystores": [ks]})


def _fresh_template(suffix: str = "", body: dict[str, Any] | None = None) -> Setup:
    """A template of its own (so deleting or archiving it leaves the shared one alone)."""

    async def setup(api: Api) -> Prepared:
        vault, _ = await api.shared()
        made = await templates.create_template(
            api.ctx(), vault=vault, name=api.unique("tf"), keystores=[await api.keystore(vault)]
        )
        return Prepared(f"/templates/{made.id}{suffix}", etag_path=f"/templates/{made.id}", body=body)

    return setup


async def _new_key(api: Api) -> Prepared:
    _, tmpl = await api.shared()
    return Prepared("/managed_keys", body={"template": tmpl, "label": api.unique("k")})


async def _new_active_key(api: Api) -> Prepared:
    """A key asked to start active: it is deployed at once, so creating it needs the deployer's permission too."""
    _, tmpl = await api.shared()
    return Prepared("/managed_keys", body={"template": tmpl, "label": api.unique("k"), "state": "active"})


async def _new_key_from_active_template(api: Api) -> Prepared:
    """A key whose template starts keys active (no state in the request)."""
    vault, _ = await api.shared()
    ctx = api.ctx()
    ks = await api.keystore(vault)
    tmpl = await templates.create_template(ctx, vault=vault, name=api.unique("ta"), keystores=[ks], state="active")
    return Prepared("/managed_keys", body={"template": tmpl.id, "label": api.unique("k")})


def key_in(state: str, suffix: str = "", dual_auth: bool = False, authorized: bool = False) -> Setup:
    async def setup(api: Api) -> Prepared:
        key = await api.key(state=state, dual_auth=dual_auth)
        if authorized:
            await keys.authorize_deletion(api.ctx("someone", source="api"), key.id)
        return Prepared(f"/managed_keys/{key.id}{suffix}", etag_path=f"/managed_keys/{key.id}")

    return setup


async def _key_update(api: Api) -> Prepared:
    key = await api.key()
    return Prepared(f"/managed_keys/{key.id}", etag_path=f"/managed_keys/{key.id}", body={"description": "changed"})


async def _plan_every_key(_api: Api) -> Prepared:
    return Prepared("/plan", body={"keys": []})


async def _plan_one_key(api: Api) -> Prepared:
    return Prepared("/plan", body={"keys": [(await api.key()).id]})


async def _disconnected(api: Api) -> tuple[str, str, str]:
    """(vault, template, a keystore disconnected): operations that would ask it for its keys are refused (409)
    once the caller's role allows them, without a provider being reached."""
    vault, tmpl = await api.shared()
    ks = await api.keystore(vault)
    await keystores.disconnect_keystore(api.ctx(), ks)
    return vault, tmpl, ks


async def _adopt_from_disconnected(api: Api) -> Prepared:
    vault, tmpl, ks = await _disconnected(api)
    body = {
        "keystores": [{"id": ks}],
        "vault": {"id": vault},
        "template": {"id": tmpl},
        "filter": {"all_unmanaged": True},
    }
    return Prepared("/managed_keys/adopt?dry_run=true", body=body)


R, W = 200, 201
#: operation id (":" and a variant where one operation needs different roles by its input)
#: → (method, setup, statuses for none, reader, creator, deployer, admin)
MATRIX: dict[str, tuple[str, Setup, tuple[int, int, int, int, int]]] = {
    "get_openapi": ("GET", static("/openapi.json"), (R, R, R, R, R)),
    "list_vaults": ("GET", static("/vaults"), (401, R, R, R, R)),
    "create_vault": ("POST", _new_vault, (401, 403, 403, 403, W)),
    "get_vault": ("GET", _vault, (401, R, R, R, R)),
    "update_vault": ("PATCH", _vault_update, (401, 403, 403, 403, 200)),
    "delete_vault": ("DELETE", _vault, (401, 403, 403, 403, 204)),
    "list_keystores": ("GET", static("/keystores"), (401, R, R, R, R)),
    "connect_keystore": ("POST", _connect, (401, 403, 403, 403, W)),
    "get_keystore": ("GET", _keystore, (401, R, R, R, R)),
    "get_keystore_status": ("GET", _keystore_status, (401, R, R, R, R)),
    "disconnect_keystore": ("DELETE", _keystore, (401, 403, 403, 403, 204)),
    "list_managed_keys_from_keystore": ("GET", keystore_sub("/managed_keys"), (401, R, R, R, R)),
    "list_associated_resources_for_keystore": ("GET", keystore_sub("/associated_resources"), (401, R, R, R, R)),
    # every role may scan (no 403); these keystores have no provider behind them (no AWS credentials in the
    # environment), so the live scan then fails at the provider, 502 in UKO's error model (test_unmanaged_keys_api.py
    # scans a real fake)
    "list_unmanaged_keys_in_keystore": ("GET", keystore_sub("/unmanaged_keys"), (401, 502, 502, 502, 502)),
    "update_keystore": ("PATCH", _keystore_update, (401, 403, 403, 403, R)),
    "list_templates": ("GET", static("/templates"), (401, R, R, R, R)),
    "create_template": ("POST", _new_template, (401, 403, W, 403, W)),
    "get_template": ("GET", _template, (401, R, R, R, R)),
    "update_key_template": ("PATCH", _fresh_template(body={"description": "changed"}), (401, 403, R, 403, R)),
    "delete_key_template": ("DELETE", _fresh_template(), (401, 403, 403, 403, 204)),
    "archive_key_template": ("POST", _fresh_template("/archive"), (401, 403, R, 403, R)),
    "unarchive_key_template": ("POST", _fresh_template("/unarchive"), (401, 403, R, 403, R)),
    "update_managed_key_from_template": (
        "POST",
        key_in("active", "/update_from_template"),
        (401, 403, 403, R, R),
    ),
    "list_managed_keys": ("GET", static("/managed_keys"), (401, R, R, R, R)),
    "create_managed_key": ("POST", _new_key, (401, 403, W, 403, W)),
    # adopted keys may be active: adopting needs the creator's and the deployer's permissions (the admin has both)
    "adopt_managed_keys": ("POST", _adopt_from_disconnected, (401, 403, 403, 403, 409)),
    "create_managed_key:active": ("POST", _new_active_key, (401, 403, 403, 403, W)),
    "create_managed_key:active_template": ("POST", _new_key_from_active_template, (401, 403, 403, 403, W)),
    "get_managed_key": ("GET", key_in("pre_active"), (401, R, R, R, R)),
    "update_managed_key": ("PATCH", _key_update, (401, 403, R, 403, R)),
    "get_status_in_keystores": ("GET", key_in("active", "/status_in_keystores"), (401, R, R, R, R)),
    "list_associated_resources_for_managed_key": ("GET", key_in("active", "/associated_resources"), (401, R, R, R, R)),
    "remove_managed_key": ("DELETE", key_in("removable"), (401, 403, 403, 403, 204)),
    "activate_managed_key": ("POST", key_in("pre_active", "/activate"), (401, 403, 403, R, R)),
    "deactivate_managed_key": ("POST", key_in("active", "/deactivate"), (401, 403, 403, R, R)),
    "compromise_managed_key": ("POST", key_in("active", "/compromise"), (401, 403, 403, R, R)),
    "destroy_managed_key": ("POST", key_in("deactivated", "/destroy"), (401, 403, 403, 403, R)),
    "authorize_deletion": ("POST", key_in("deactivated", "/authorize_deletion", True), (401, 403, 403, R, R)),
    "withdraw_authorization": (
        "POST",
        key_in("deactivated", "/withdraw_authorization", True, True),
        (401, 403, 403, R, R),
    ),
    "rotate_managed_key": ("POST", key_in("active", "/rotate"), (401, 403, 403, R, R)),
    "list_managed_key_versions": ("GET", key_in("active", "/versions"), (401, R, R, R, R)),
    "sync_managed_key": ("POST", key_in("active", "/sync_status_in_keystores"), (401, 403, 403, R, R)),
    "reconcile_once": ("POST", static("/reconcile"), (401, 403, 403, R, R)),
    "plan": ("POST", _plan_every_key, (401, R, R, R, R)),
    "plan:one_key": ("POST", _plan_one_key, (401, R, R, R, R)),
    "list_audit_records": ("GET", static("/audit_records"), (401, R, R, R, R)),
    "verify_audit_chain": ("GET", static("/audit_chain"), (401, R, R, R, R)),
}


def test_matrix_covers_every_route() -> None:
    assert {op.split(":")[0] for op in MATRIX} == {r.operation_id for r in ROUTES} | {"get_openapi"}


async def test_role_matrix(api: Api) -> None:
    seen: dict[tuple[str, str], int] = {}
    wrong: dict[tuple[str, str], tuple[int, int]] = {}
    for op, (method, setup, expected) in MATRIX.items():
        for role, documented in zip(ROLES, expected, strict=True):
            prepared = await setup(api)
            etag = await api.etag(prepared.etag_path) if prepared.etag_path else None
            headers = auth(USER_OF[role], etag)
            resp = await api.client.request(method, API + prepared.path, headers=headers, json=prepared.body)
            seen[(op, role)] = resp.status
            if resp.status != documented:
                wrong[(op, role)] = (resp.status, documented)
            if resp.status >= 400:
                doc = await error_of(resp)
                if resp.status == 401:
                    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
                if resp.status == 403:
                    assert doc["errors"][0]["code"] == "forbidden"
    assert not wrong, f"cells answering (got, documented) otherwise than documented: {wrong}"
    assert len(seen) == len(MATRIX) * len(ROLES)


@pytest.mark.parametrize(
    "header", ["Bearer wrong-token", "Basic YWRtaW46YWRtaW4=", "Bearer", "token-of-admin-0123456789"]
)
async def test_bad_tokens_are_401(api: Api, header: str) -> None:
    resp = await api.client.get(API + "/vaults", headers={"Authorization": header})
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await error_of(resp))["errors"][0]["code"] == "unauthorized"


async def test_roles_are_per_vault(api: Api) -> None:
    """carol deploys in payments only: she sees only payments and acts only there."""
    payments = await api.vault("payments")
    other = await api.vault("other")
    mine = await api.key(payments, "pre_active")
    theirs = await api.key(other, "pre_active")

    listed = await (await api.request("GET", "/managed_keys", user="carol")).json()
    assert [k["id"] for k in listed["managed_keys"]] == [mine.id]
    assert listed["total_count"] == 1
    vaults_seen = await (await api.request("GET", "/vaults", user="carol")).json()
    assert [v["name"] for v in vaults_seen["vaults"]] == ["payments"]
    for path in ("/keystores", "/templates"):
        doc = await (await api.request("GET", path, user="carol")).json()
        assert {
            item["vault"]["id"] if isinstance(item["vault"], dict) else item["vault"] for item in doc[path[1:]]
        } == {payments}

    # outside her vaults nothing exists for her (404, tests/api/test_visibility.py has every route)
    assert (await api.request("GET", f"/managed_keys/{theirs.id}", user="carol")).status == 404
    assert (await api.request("GET", "/managed_keys?vault=other", user="carol")).status == 404
    etag = await api.etag(f"/managed_keys/{theirs.id}")
    resp = await api.request("POST", f"/managed_keys/{theirs.id}/activate", user="carol", headers={"If-Match": etag})
    assert resp.status == 404
    assert "other" not in (await error_of(resp))["errors"][0]["message"]
    etag = await api.etag(f"/managed_keys/{mine.id}")
    resp = await api.request("POST", f"/managed_keys/{mine.id}/activate", user="carol", headers={"If-Match": etag})
    assert resp.status == 200
    assert (await resp.json())["state"] == "active"

    # a vault entry wins over "*": scoped_admin administers payments but only reads elsewhere
    assert (await api.request("POST", "/vaults", user="scoped_admin", json={"name": "payments2"})).status == 403
    etag = await api.etag(f"/managed_keys/{theirs.id}")
    resp = await api.request(
        "POST", f"/managed_keys/{theirs.id}/activate", user="scoped_admin", headers={"If-Match": etag}
    )
    assert resp.status == 403


async def test_refusals_by_role_are_audited(api: Api) -> None:
    key = await api.key(state="pre_active")
    etag = await api.etag(f"/managed_keys/{key.id}")
    resp = await api.request("POST", f"/managed_keys/{key.id}/activate", user="reader", headers={"If-Match": etag})
    assert resp.status == 403
    async with api.store.transaction() as tx:
        records = await tx.list_audit(object_id=key.id)
    refused = [r for r in records if r.outcome == "refused"]
    assert [(r.user, r.source, r.action) for r in refused] == [("reader", "api", "key.activate")]
    assert refused[0].detail is not None and refused[0].detail.startswith("forbidden:")


async def test_a_creator_cannot_create_a_key_that_starts_active(api: Api) -> None:
    """Separation of duties: a Key Custodian - Creator's key starting active would be deployed with no deployer."""
    _, tmpl = await api.shared()
    body = {"template": tmpl, "label": api.unique("k"), "state": "active"}
    resp = await api.request("POST", "/managed_keys", user="creator", json=body)
    assert resp.status == 403
    message = (await error_of(resp))["errors"][0]["message"]
    assert "creating a key that starts active needs the permissions to create and deploy" in message
    assert "vault_administrator" in message
    async with api.store.read() as tx:
        assert not await tx.label_taken((await api.shared())[0], body["label"])
        records = await tx.list_audit(object_id=body["label"])
    assert [(r.user, r.action, r.outcome) for r in records] == [("creator", "key.create", "refused")]
    pre_active = await api.request("POST", "/managed_keys", user="creator", json={**body, "state": "pre_active"})
    assert pre_active.status == 201 and (await pre_active.json())["state"] == "pre_activation"
