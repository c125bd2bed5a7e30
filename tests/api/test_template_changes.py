"""Changing a template after it made keys (UKO's UpdateKeyTemplate, DeleteKeyTemplate, Archive/Unarchive) and
realigning a key with it (UpdateManagedKeyFromTemplate, with and without dry_run): If-Match on every write,
keys flagged unaligned by a change of what the template gives them, the dry run changing nothing, usable keys
never taken out of a keystore by a template edit; on SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from keyorch.domain.models import SyncFlag, TargetStatus
from keyorch.service import keys, keystores
from tests.uko.contract import violations

from .conftest import Api, error_of, target_of
from .test_templates_uko import check_uko


@pytest.fixture
def api_db_url(db_url: str) -> str:
    """Every test here runs on SQLite and on PostgreSQL."""
    return db_url


async def _keystore(api: Api, vault: str, groups: tuple[str, ...] = (), kind: str = "aws_kms") -> str:
    settings: dict[str, Any] = {"region": "us-east-1"} if kind == "aws_kms" else {}
    req = keystores.ConnectRequest(
        vault=vault,
        name=api.unique("ks"),
        type=kind,
        groups=groups,
        credentials_from_environment=True,
        **settings,
    )
    return (await keystores.connect_keystore(api.ctx(), req)).id


async def _template(api: Api, vault: str, **body: Any) -> dict[str, Any]:
    doc = {"vault": {"id": vault}, "name": api.unique("t"), "key": {"size": "256", "algorithm": "aes"}, **body}
    resp = await api.request("POST", "/templates", json=doc)
    assert resp.status == 201, await resp.text()
    made: dict[str, Any] = await resp.json()
    return made


async def _key_doc(api: Api, key_id: str) -> tuple[dict[str, Any], str]:
    resp = await api.request("GET", f"/managed_keys/{key_id}")
    assert resp.status == 200, await resp.text()
    return await resp.json(), resp.headers["ETag"]


async def _patch(api: Api, template_id: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    etag = await api.etag(f"/templates/{template_id}")
    resp = await api.request("PATCH", f"/templates/{template_id}", json=body, headers={"If-Match": etag})
    assert resp.status == status, await resp.text()
    doc: dict[str, Any] = await resp.json()
    return doc


async def _realign(api: Api, key_id: str, dry_run: bool, status: int = 200) -> dict[str, Any]:
    etag = (await _key_doc(api, key_id))[1]
    query = "?dry_run=true" if dry_run else ""
    headers = {} if dry_run else {"If-Match": etag}
    resp = await api.request("POST", f"/managed_keys/{key_id}/update_from_template{query}", headers=headers)
    assert resp.status == status, await resp.text()
    doc: dict[str, Any] = await resp.json()
    return doc


def _alignment(doc: dict[str, Any]) -> str:
    status: str = doc["template"]["alignment_status"]
    return status


async def test_patch_needs_if_match_and_refuses_a_stale_one(api: Api) -> None:
    vault = await api.vault()
    made = await _template(api, vault, keystores=[await _keystore(api, vault)])
    path = f"/templates/{made['id']}"
    resp = await api.request("PATCH", path, json={"description": "x"})
    assert resp.status == 428
    assert target_of((await error_of(resp))["errors"][0]) == ("header", "If-Match")
    stale = f'"{made["id"]}:1"'
    await _patch(api, made["id"], {"description": "first"})
    resp = await api.request("PATCH", path, json={"description": "second"}, headers={"If-Match": stale})
    assert resp.status == 412
    await error_of(resp)
    doc = await (await api.request("GET", path)).json()
    assert (doc["description"], doc["version"]) == ("first", 2)


async def test_a_distribution_change_flags_the_keys_unaligned_and_a_description_change_does_not(api: Api) -> None:
    vault = await api.vault()
    first = await _keystore(api, vault, groups=("prod",))
    made = await _template(api, vault, keystores=[{"group": "prod", "type": "aws_kms"}])
    key = await keys.create_key(api.ctx(), template=made["id"], label="k1")
    doc, etag_before = await _key_doc(api, key.id)
    assert _alignment(doc) == "aligned" and [k["id"] for k in doc["referenced_keystores"]] == [first]
    assert violations("ManagedKey", doc) == []

    patched = await _patch(api, made["id"], {"description": "only words"})
    check_uko("Template", patched)
    assert _alignment((await _key_doc(api, key.id))[0]) == "aligned"

    second = await _keystore(api, vault, groups=("dr",))
    patched = await _patch(
        api, made["id"], {"keystores": [{"group": "prod", "type": "aws_kms"}, {"group": "dr", "type": "aws_kms"}]}
    )
    check_uko("Template", patched)
    assert patched["keystores"] == [{"group": "prod", "type": "aws_kms"}, {"group": "dr", "type": "aws_kms"}]
    doc, etag_after = await _key_doc(api, key.id)
    assert _alignment(doc) == "unaligned" and etag_after != etag_before  # a read-before ETag is stale now
    assert [k["id"] for k in doc["referenced_keystores"]] == [first]  # nothing moved yet
    stored = await keys.get_key(api.ctx(), key.id)
    assert [t.keystore_id for t in stored.targets] == [first] and not stored.template_aligned
    assert second not in [t.keystore_id for t in stored.targets]


async def test_the_dry_run_lists_the_change_and_makes_none_then_the_update_makes_it(api: Api) -> None:
    vault = await api.vault()
    first = await _keystore(api, vault)
    second = await _keystore(api, vault)
    made = await _template(api, vault, keystores=[first])
    key = await keys.create_key(api.ctx(), template=made["id"], label="k1")
    await _patch(api, made["id"], {"keystores": [first, second]})
    before = await keys.get_key(api.ctx(), key.id)

    preview = await _realign(api, key.id, dry_run=True)
    assert preview["dry_run"] is True
    assert [(c["field"], c["blocked"]) for c in preview["changes"]] == [("keystores", None)]
    assert second in preview["changes"][0]["description"] and preview["changes"][0]["description"].startswith("add")
    assert {k["id"] for k in preview["referenced_keystores"]} == {first, second}  # as it would be
    assert violations("ManagedKey", {k: v for k, v in preview.items() if k not in ("changes", "dry_run")}) == []
    assert await keys.get_key(api.ctx(), key.id) == before  # nothing changed: same record, same version

    resp = await api.request("POST", f"/managed_keys/{key.id}/update_from_template")
    assert resp.status == 428  # the real run needs If-Match

    done = await _realign(api, key.id, dry_run=False)
    assert done["dry_run"] is False and _alignment(done) == "aligned"
    after = await keys.get_key(api.ctx(), key.id)
    assert {t.keystore_id for t in after.targets} == {first, second} and after.template_aligned
    [new] = [t for t in after.targets if t.keystore_id == second]
    assert (new.status, new.sync_flag, new.synced_generation) == (TargetStatus.UNKNOWN, SyncFlag.PENDING, None)
    assert key.id in api.changed  # the reconciler is told to provision it
    again = await _realign(api, key.id, dry_run=True)
    assert again["changes"] == []


async def test_a_usable_key_is_never_taken_out_of_a_keystore_the_template_dropped(api: Api) -> None:
    vault = await api.vault()
    first = await _keystore(api, vault)
    second = await _keystore(api, vault)
    made = await _template(api, vault, keystores=[first, second])
    active = await keys.activate_key(api.ctx(), (await keys.create_key(api.ctx(), template=made["id"], label="a")).id)
    waiting = await keys.create_key(api.ctx(), template=made["id"], label="p")
    await _patch(api, made["id"], {"keystores": [first]})

    preview = await _realign(api, active.id, dry_run=True)
    [change] = preview["changes"]
    assert change["description"].startswith("remove") and "active" in change["blocked"]
    refused = await _realign(api, active.id, dry_run=False, status=409)
    assert second in refused["errors"][0]["message"] and "remove keystore" in refused["errors"][0]["message"]
    kept = await keys.get_key(api.ctx(), active.id)
    assert not kept.template_aligned
    assert len(kept.targets) == 2 and all(t.status is not TargetStatus.REMOVED for t in kept.targets)

    # a pre-active key was never put in a keystore: its target there is simply dropped
    done = await _realign(api, waiting.id, dry_run=False)
    assert [c["blocked"] for c in done["changes"]] == [None]
    after = await keys.get_key(api.ctx(), waiting.id)
    assert {t.keystore_id: t.status for t in after.targets} == {
        first: TargetStatus.UNKNOWN,
        second: TargetStatus.REMOVED,
    }


async def test_planned_dates_come_from_the_template_and_follow_its_change(api: Api) -> None:
    vault = await api.vault()
    made = await _template(
        api,
        vault,
        keystores=[await _keystore(api, vault)],
        key={"size": "256", "algorithm": "aes", "activation_date": "P1M", "expiration_date": "P1Y"},
    )
    today = api.clock.now().date()
    key = await keys.create_key(api.ctx(), template=made["id"], label="dated")
    assert key.activation_date is not None and key.expiration_date is not None
    assert (key.activation_date - today).days in range(28, 32)  # one month after creation
    assert key.expiration_date.replace(year=key.expiration_date.year - 1) == key.activation_date  # a year after that

    patched = await _patch(api, made["id"], {"key": {"size": "256", "algorithm": "aes", "expiration_date": "P2Y"}})
    assert patched["key"]["expiration_date"] == "P2Y" and patched["key"]["activation_date"] == "P1M"
    preview = await _realign(api, key.id, dry_run=True)
    assert [c["field"] for c in preview["changes"]] == ["expiration_date"]
    done = await _realign(api, key.id, dry_run=False)
    assert done["expiration_date"] == key.expiration_date.replace(year=key.expiration_date.year + 1).isoformat()


@pytest.mark.parametrize(
    ("key", "field"),
    [({"size": "512"}, "key.size"), ({"algorithm": "rsa"}, "key.algorithm"), ({"state": "active"}, "key.state")],
)
async def test_key_material_cannot_change_but_round_trips(api: Api, key: dict[str, Any], field: str) -> None:
    vault = await api.vault()
    made = await _template(api, vault, keystores=[await _keystore(api, vault)])
    refused = await _patch(api, made["id"], {"key": key}, status=400)
    assert target_of(refused["errors"][0]) == ("field", field)
    same = await _patch(api, made["id"], {"key": {"size": "256", "algorithm": "AES", "state": "pre_activation"}})
    assert same["version"] == 2


async def test_delete_is_refused_while_keys_exist_and_answers_204_after(api: Api) -> None:
    vault = await api.vault()
    made = await _template(api, vault, keystores=[await _keystore(api, vault)])
    key = await keys.create_key(api.ctx(), template=made["id"], label="k")
    path = f"/templates/{made['id']}"
    assert (await api.request("DELETE", path)).status == 428
    resp = await api.request("DELETE", path, headers={"If-Match": await api.etag(path)})
    assert resp.status == 409
    assert "1 managed key" in (await error_of(resp))["errors"][0]["message"]
    removed = await api.confirm_gone(await keys.destroy_key(api.ctx(), key.id))
    await keys.remove_key(api.ctx(), removed.id)
    resp = await api.request("DELETE", path, headers={"If-Match": await api.etag(path)})
    assert resp.status == 204 and await resp.read() == b""
    assert (await api.request("GET", path)).status == 404


async def test_an_archived_template_makes_no_keys_until_unarchived(api: Api) -> None:
    vault = await api.vault()
    made = await _template(api, vault, keystores=[await _keystore(api, vault)])
    path = f"/templates/{made['id']}"
    assert (await api.request("POST", f"{path}/archive")).status == 428
    resp = await api.request("POST", f"{path}/archive", headers={"If-Match": await api.etag(path)})
    assert resp.status == 200
    archived = await resp.json()
    check_uko("Template", archived)
    assert archived["state"] == "archived"
    resp = await api.request("POST", "/managed_keys", json={"template": made["id"], "label": "no"})
    assert resp.status == 409 and "archived" in (await error_of(resp))["errors"][0]["message"]
    stale = f'"{made["id"]}:1"'
    assert (await api.request("POST", f"{path}/unarchive", headers={"If-Match": stale})).status == 412
    resp = await api.request("POST", f"{path}/unarchive", headers={"If-Match": await api.etag(path)})
    assert resp.status == 200 and (await resp.json())["state"] == "unarchived"
    resp = await api.request("POST", "/managed_keys", json={"template": made["id"], "label": "yes"})
    assert resp.status == 201, await resp.text()
