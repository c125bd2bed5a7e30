"""Managed keys through the API: ETags, state actions, dual authorization with its 7-day lapse, lists."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api, error_of, target_of
from tests.uko.contract import validate_uko


async def test_etag_missing_stale_and_current(api: Api) -> None:
    key = await api.key(state="active")
    path = f"/managed_keys/{key.id}"
    resp = await api.request("GET", path)
    etag = resp.headers["ETag"]
    assert etag == f'"{key.id}:{key.version}"'

    missing = await api.request("POST", path + "/deactivate")
    assert missing.status == 428
    assert target_of((await error_of(missing))["errors"][0]) == ("header", "If-Match")

    stale = await api.request("POST", path + "/deactivate", headers={"If-Match": f'"{key.id}:{key.version - 1}"'})
    assert stale.status == 412
    other = await api.request("POST", path + "/deactivate", headers={"If-Match": '"someone-else:1"'})
    assert other.status == 412
    star = await api.request("POST", path + "/deactivate", headers={"If-Match": "*"})
    assert star.status == 428

    done = await api.request("POST", path + "/deactivate", headers={"If-Match": etag})
    assert done.status == 200
    body = await done.json()
    assert body["state"] == "deactivated"
    assert done.headers["ETag"] == f'"{key.id}:{body["version"]}"' != etag
    assert api.changed == [key.id]

    # the old ETag is stale now; a list of tags matches when one of them is current
    again = await api.request("POST", path + "/activate", headers={"If-Match": etag})
    assert again.status == 412
    listed = await api.request("POST", path + "/activate", headers={"If-Match": f"{etag}, W/{done.headers['ETag']}"})
    assert listed.status == 200
    assert (await listed.json())["state"] == "active"  # reactivated from deactivated


async def test_stale_and_missing_preconditions_are_audited_and_change_nothing(api: Api) -> None:
    key = await api.key(state="active")
    await api.request("POST", f"/managed_keys/{key.id}/deactivate")
    await api.request("POST", f"/managed_keys/{key.id}/deactivate", headers={"If-Match": f'"{key.id}:99"'})
    async with api.store.transaction() as tx:
        records = [r for r in await tx.list_audit(object_id=key.id) if r.source == "api"]
        assert (await tx.key(key.id)).version == key.version
    assert [(r.outcome, (r.detail or "").split(":")[0]) for r in records] == [
        ("refused", "precondition_required"),
        ("refused", "stale_version"),
    ]
    assert all(r.role == "vault_administrator" for r in records)


@pytest.mark.parametrize(
    ("path", "etag_path"),
    [("/vaults/{vault}", "/vaults/{vault}"), ("/keystores/{keystore}", "/keystores/{keystore}")],
)
async def test_etags_on_vaults_and_keystores(api: Api, path: str, etag_path: str) -> None:
    vault = await api.vault()
    keystore = await api.keystore(vault)
    if path.startswith("/vaults"):
        await api.request(
            "DELETE", f"/keystores/{keystore}", headers={"If-Match": await api.etag(f"/keystores/{keystore}")}
        )
    target = path.format(vault=vault, keystore=keystore)
    etag = await api.etag(etag_path.format(vault=vault, keystore=keystore))
    assert (await api.request("DELETE", target)).status == 428
    assert (
        await api.request("DELETE", target, headers={"If-Match": etag.replace(":1", ":7").replace(":2", ":7")})
    ).status == 412
    assert (await api.request("DELETE", target, headers={"If-Match": etag})).status in (200, 204)


async def test_create_answers_201_location_etag(api: Api) -> None:
    resp = await api.request("POST", "/vaults", json={"name": "fresh", "dual_auth": True})
    assert resp.status == 201
    doc = await resp.json()
    assert resp.headers["Location"] == f"/api/v4/vaults/{doc['id']}"
    assert resp.headers["ETag"] == f'"{doc["id"]}:1"'
    got = await api.client.get(resp.headers["Location"], headers={"Authorization": "Bearer token-of-reader-0123456789"})
    assert (await got.json())["dual_auth"] is True

    _, template = await api.shared()
    made = await api.request("POST", "/managed_keys", user="creator", json={"template": template, "label": "k-new"})
    assert made.status == 201
    key = await made.json()
    assert made.headers["Location"].endswith(f"/managed_keys/{key['id']}")
    assert key["state"] == "pre_activation" and api.changed == [key["id"]]
    validate_uko("ManagedKey", key)
    assert key["vault"]["href"] == f"/api/v4/vaults/{key['vault']['id']}" and key["template"]["id"] == template
    dup = await api.request("POST", "/managed_keys", user="creator", json={"template": template, "label": "k-new"})
    assert dup.status == 409


async def test_activate_refused_by_the_table_is_409(api: Api) -> None:
    key = await api.key(state="active")
    etag = await api.etag(f"/managed_keys/{key.id}")
    resp = await api.request("POST", f"/managed_keys/{key.id}/activate", headers={"If-Match": etag})
    assert resp.status == 409
    err = (await error_of(resp))["errors"][0]
    assert err["code"] == "rule_violation" and "it is active" in err["message"]


async def test_destroy_force_and_remove(api: Api) -> None:
    key = await api.key(state="deactivated")
    path = f"/managed_keys/{key.id}"
    resp = await api.request("POST", path + "/destroy?force=true", headers={"If-Match": await api.etag(path)})
    assert resp.status == 200
    doc = await resp.json()
    assert doc["state"] == "destroyed" and doc["destroy_force"] is True
    assert (await api.request("POST", path + "/destroy?force=maybe", headers={"If-Match": "x"})).status == 400
    listed = await (await api.request("GET", "/managed_keys")).json()
    assert key.id not in [k["id"] for k in listed["managed_keys"]]
    early = await api.request("DELETE", path, headers={"If-Match": await api.etag(path)})
    assert early.status == 409  # no keystore has confirmed the destruction yet
    assert "has not confirmed the destruction" in (await error_of(early))["errors"][0]["message"]
    async with api.store.read() as tx:
        destroyed = await tx.key(key.id)
    await api.confirm_gone(destroyed)
    removed = await api.request("DELETE", path, headers={"If-Match": await api.etag(path)})
    assert removed.status == 204
    assert (await api.request("GET", path)).status == 404


async def test_dual_authorization_through_the_api(api: Api) -> None:
    key = await api.key(state="deactivated", dual_auth=True)
    path = f"/managed_keys/{key.id}"

    async def post(action: str, user: str) -> int:
        etag = await api.etag(path)
        return (await api.request("POST", f"{path}/{action}", user=user, headers={"If-Match": etag})).status

    assert await post("destroy", "admin") == 409  # nobody authorized yet
    assert await post("authorize_deletion", "admin") == 200
    assert await post("authorize_deletion", "deployer") == 409  # already authorized
    resp = await api.request("POST", f"{path}/destroy", headers={"If-Match": await api.etag(path)})
    assert resp.status == 409
    assert target_of((await error_of(resp))["errors"][0]) == ("field", "user")  # the authorizer cannot destroy
    assert await post("withdraw_authorization", "deployer") == 200
    assert await post("withdraw_authorization", "deployer") == 409  # nothing in force

    # authorized by a deployer, destroyed by another administrator within 7 days
    assert await post("authorize_deletion", "deployer") == 200
    api.clock.advance(days=6, hours=23)
    assert await post("destroy", "admin2") == 200
    assert (await (await api.request("GET", path)).json())["state"] == "destroyed"


async def test_dual_authorization_lapses_after_seven_days(api: Api) -> None:
    key = await api.key(state="deactivated", dual_auth=True)
    path = f"/managed_keys/{key.id}"
    etag = await api.etag(path)
    assert (
        await api.request("POST", f"{path}/authorize_deletion", user="deployer", headers={"If-Match": etag})
    ).status == 200
    auth = (await (await api.request("GET", path)).json())["deletion_authorization"]
    assert auth["authorized_by"] == "deployer"
    api.clock.advance(days=7)
    resp = await api.request("POST", f"{path}/destroy", headers={"If-Match": await api.etag(path)})
    assert resp.status == 409
    assert "lapsed" in (await error_of(resp))["errors"][0]["message"]
    withdraw = await api.request(
        "POST", f"{path}/withdraw_authorization", user="deployer", headers={"If-Match": await api.etag(path)}
    )
    assert withdraw.status == 409  # nothing in force to withdraw any more
    assert (
        await api.request(
            "POST", f"{path}/authorize_deletion", user="deployer2", headers={"If-Match": await api.etag(path)}
        )
    ).status == 200
    assert (await api.request("POST", f"{path}/destroy", headers={"If-Match": await api.etag(path)})).status == 200


async def test_pagination_and_filters(api: Api) -> None:
    made = [await api.key(state=s) for s in ["pre_active", "active", "active", "deactivated", "destroyed", "active"]]
    other_vault = await api.vault()
    lone = await api.key(vault=other_vault, state="active")

    async def listing(query: str) -> dict:
        resp = await api.request("GET", "/managed_keys" + query)
        assert resp.status == 200, await resp.text()
        return await resp.json()

    everything = await listing("")
    assert everything["total_count"] == 6  # destroyed keys are listed only when asked
    page1 = await listing("?limit=2&offset=0")
    page2 = await listing("?limit=2&offset=2")
    page4 = await listing("?limit=2&offset=6")
    assert page1["total_count"] == page2["total_count"] == 6 and page4["managed_keys"] == []
    ids = [k["id"] for k in page1["managed_keys"] + page2["managed_keys"]]
    assert ids == [k["id"] for k in everything["managed_keys"][:4]]
    validate_uko("ManagedKeyList", page1)
    assert (await listing("?state=active"))["total_count"] == 4
    assert [k["id"] for k in (await listing("?state=pre_activation"))["managed_keys"]] == [made[0].id]
    assert (await listing(f"?state=active&vault={other_vault}"))["managed_keys"][0]["id"] == lone.id
    assert [k["id"] for k in (await listing("?state=destroyed"))["managed_keys"]] == [made[4].id]
    assert (await listing("?include_destroyed=true"))["total_count"] == 7
    assert (await listing("?out_of_sync=true"))["total_count"] == 0

    async with api.store.transaction() as tx:
        from dataclasses import replace

        from keyorch.domain.models import SyncFlag

        key = await tx.key(made[1].id)
        flagged = tuple(t.with_changes(sync_flag=SyncFlag.OUT_OF_SYNC) for t in key.targets)
        await tx.update_key(replace(key, targets=flagged), key.version)
    drift = await listing("?out_of_sync=true&limit=1")
    assert drift["total_count"] == 1 and drift["managed_keys"][0]["id"] == made[1].id

    for bad in ("?state=broken", "?limit=0", "?limit=1001", "?offset=-1", "?out_of_sync=perhaps", "?limit=x"):
        resp = await api.request("GET", "/managed_keys" + bad)
        assert resp.status == 400, bad
        err = (await error_of(resp))["errors"][0]
        assert err["target"]["type"] == "parameter" and err["target"]["name"] in bad and "got" in err["message"]
    assert (await api.request("GET", "/managed_keys?vault=nope")).status == 404


async def test_status_in_keystores_and_sync(api: Api) -> None:
    key = await api.key(state="active")
    status = await (await api.request("GET", f"/managed_keys/{key.id}/status_in_keystores", user="reader")).json()
    assert status["state"] == "active" and len(status["status_in_keystores"]) == 1
    validate_uko("StatusInKeystores", status)
    # not observed yet: UKO shows the key as not present and out of sync, with the reason the state gives
    (entry,) = status["status_in_keystores"]
    assert (entry["status"], entry["keystore_sync_flag"]) == ("not_present", "out_of_sync")
    assert entry["keystore_sync_flag_detail"] == "active_key_is_not_active_in_keystore"
    assert entry["keystore"]["id"] == key.targets[0].keystore_id and entry["keystore"]["type"] == "aws_kms"
    resp = await api.request("POST", f"/managed_keys/{key.id}/sync_status_in_keystores", user="deployer")
    assert resp.status == 200
    synced = await resp.json()
    assert synced["in_sync"] == 1 and api.synced == [key.id]
    validate_uko("StatusInKeystores", synced)
    stale = await api.request(
        "POST", f"/managed_keys/{key.id}/sync_status_in_keystores", headers={"If-Match": f'"{key.id}:0"'}
    )
    assert stale.status == 412
