"""Managed keys as UKO v4 (IBM's Go SDK) has them: its create body, PATCH with If-Match, every filter of
ListManagedKeys, sort and the pager's links; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import quote

import pytest

from keyorch.service import keys as ops
from tests.uko.contract import validate_uko

from .conftest import API, Api, auth, error_of


@pytest.fixture
def api_db_url(db_url: str) -> str:
    return db_url


async def _listing(api: Api, query: str) -> dict[str, Any]:
    resp = await api.request("GET", "/managed_keys" + query)
    assert resp.status == 200, await resp.text()
    doc: dict[str, Any] = await resp.json()
    validate_uko("ManagedKeyList", doc)
    return doc


async def _ids(api: Api, query: str) -> set[str]:
    return {k["id"] for k in (await _listing(api, query))["managed_keys"]}


async def test_sdk_create_body_round_trips_description_and_tags(api: Api) -> None:
    vault, template = await api.shared()
    async with api.store.read() as tx:
        name = (await tx.template(template)).name
    body = {
        "template_name": name,
        "vault": {"id": vault},
        "label": "uko-made",
        "description": "payments, EU",
        "tags": [{"name": "team", "value": "payments"}, {"name": "env", "value": "prod"}],
    }
    made = await api.request("POST", "/managed_keys", user="creator", json=body)
    assert made.status == 201, await made.text()
    key = await made.json()
    validate_uko("ManagedKey", key)
    assert (key["description"], key["tags"]) == ("payments, EU", body["tags"])
    assert (key["created_by"], key["template"]["id"], key["vault"]["id"]) == ("creator", template, vault)
    got = await api.client.get(API + key["href"].removeprefix(API), headers=auth("reader"))
    assert await got.json() == key

    # the template named in another vault is not found there; both template fields at once are refused
    other = await api.vault()
    elsewhere = await api.request("POST", "/managed_keys", user="creator", json={**body, "vault": {"id": other}})
    assert elsewhere.status == 404, await elsewhere.text()
    both = await api.request("POST", "/managed_keys", user="creator", json={**body, "template": template})
    assert both.status == 400 and "template_name" in (await error_of(both))["errors"][0]["message"]
    twice = [{"name": "team", "value": "a"}, {"name": "team", "value": "b"}]
    dup = await api.request("POST", "/managed_keys", user="creator", json={**body, "label": "x2", "tags": twice})
    assert dup.status == 400 and "team" in (await error_of(dup))["errors"][0]["message"]
    async with api.store.read() as tx:
        assert not await tx.label_taken(vault, "x2")  # nothing half-written


async def test_patch_needs_if_match_and_changes_only_what_it_names(api: Api) -> None:
    key = await api.key(state="active")
    path = f"/managed_keys/{key.id}"
    missing = await api.request("PATCH", path, json={"description": "after"})
    assert missing.status == 428, await missing.text()
    stale = await api.request("PATCH", path, json={"description": "after"}, headers={"If-Match": f'"{key.id}:9"'})
    assert stale.status == 412, await stale.text()

    etag = await api.etag(path)
    change = {
        "label": "renamed",
        "description": "after",
        "tags": [{"name": "cost-center", "value": "42"}],
        "activation_date": "2027-01-01",
        "expiration_date": "2029-12-31",
    }
    resp = await api.request("PATCH", path, user="creator", json=change, headers={"If-Match": etag})
    assert resp.status == 200, await resp.text()
    doc = await resp.json()
    validate_uko("ManagedKey", doc)
    assert {k: doc[k] for k in change} == change
    assert (doc["state"], doc["updated_by"], doc["version"]) == ("active", "creator", key.version + 1)
    assert resp.headers["ETag"] != etag
    async with api.store.read() as tx:
        stored = await tx.key(key.id)
    assert (stored.label, stored.activation_date, stored.state) == ("renamed", date(2027, 1, 1), key.state)

    # a null date clears it, an absent one stays; an expiration before the activation is refused
    cleared = await api.request(
        "PATCH", path, json={"expiration_date": None}, headers={"If-Match": await api.etag(path)}
    )
    assert cleared.status == 200
    after = await cleared.json()
    assert "expiration_date" not in after and after["activation_date"] == "2027-01-01"
    backwards = await api.request(
        "PATCH", path, json={"expiration_date": "2026-01-01"}, headers={"If-Match": await api.etag(path)}
    )
    assert backwards.status == 400
    assert (await error_of(backwards))["errors"][0]["target"]["name"] == "expiration_date"
    # the reader may not change a key
    reader = await api.request("PATCH", path, user="reader", json={"description": "x"}, headers={"If-Match": "*"})
    assert reader.status == 403


async def test_every_list_filter_filters(api: Api) -> None:
    vault, template = await api.shared()
    pre = await api.key(state="pre_active")
    act = await api.key(state="active")
    deact = await api.key(state="deactivated")
    other = await api.key(vault=await api.vault(), state="active")
    ctx = api.ctx()
    await ops.update_key(ctx, act.id, activation_date=date(2027, 3, 1), expiration_date=date(2028, 3, 1))
    await ops.update_key(ctx, deact.id, activation_date=date(2026, 1, 1))
    async with api.store.read() as tx:
        tname = (await tx.template(template)).name
        keystore = await tx.keystore(act.targets[0].keystore_id)
    mine = {pre.id, act.id, deact.id}

    assert await _ids(api, f"?vault.id={vault}") >= mine and other.id not in await _ids(api, f"?vault.id={vault}")
    assert await _ids(api, f"?vault.id={vault}&state=active") == {act.id}
    assert await _ids(api, f"?vault.id={vault}&state=pre_activation,deactivated") == {pre.id, deact.id}
    assert await _ids(api, f"?label={act.label}") == {act.id}
    assert await _ids(api, f"?vault.id={vault}&algorithm=aes") >= mine
    assert await _ids(api, f"?vault.id={vault}&algorithm=rsa,hmac") == set()
    assert await _ids(api, f"?vault.id={vault}&size=256") >= mine
    assert await _ids(api, f"?vault.id={vault}&size_min=257") == set()
    assert await _ids(api, f"?vault.id={vault}&template.id={template}") >= mine
    assert await _ids(api, f"?template.name={tname}&vault.id={vault}") >= mine
    assert await _ids(api, "?template.name=no-such-template") == set()
    assert await _ids(api, f"?vault.id={vault}&{quote('referenced_keystores[].type')}=aws_kms") >= mine
    assert await _ids(api, f"?vault.id={vault}&{quote('referenced_keystores[].type')}=google_kms") == set()
    assert await _ids(api, f"?vault.id={vault}&{quote('instances[].keystore.type')}=ibm_cloud_kms") == set()
    named = f"?vault.id={vault}&{quote('referenced_keystores[].name')}={keystore.name}"
    assert await _ids(api, named) >= mine
    assert await _ids(api, "?activation_date=2027-03-01") == {act.id}
    assert await _ids(api, "?activation_date_min=2026-06-01") == {act.id}
    assert await _ids(api, "?activation_date_max=2026-06-01") == {deact.id}
    assert await _ids(api, "?expiration_date_min=2028-01-01&expiration_date_max=2028-12-31") == {act.id}
    today = api.clock.now().date().isoformat()
    assert await _ids(api, f"?vault.id={vault}&created_at={today}") >= mine
    assert await _ids(api, f"?vault.id={vault}&created_at_max=2000-01-01") == set()
    assert await _ids(api, f"?vault.id={vault}&updated_at_min={today}") >= mine

    by_label = await _listing(api, f"?vault.id={vault}&include_destroyed=true&sort=-label")
    labels = [k["label"] for k in by_label["managed_keys"]]
    assert labels == sorted(labels, reverse=True)

    for bad, name in (
        ("?deactivation_date=2026-01-01", "deactivation_date"),
        ("?state=broken", "state"),
        ("?algorithm=des", "algorithm"),
        ("?sort=colour", "sort"),
        ("?activation_date=yesterday", "activation_date"),
        (f"?{quote('referenced_keystores[].type')}=floppy", "referenced_keystores[].type"),
        ("?unknown_filter=1", "unknown_filter"),
    ):
        resp = await api.request("GET", "/managed_keys" + bad)
        assert resp.status == 400, (bad, await resp.text())
        err = (await error_of(resp))["errors"][0]
        assert name in err["message"] or err.get("target", {}).get("name", "").startswith(name), (bad, err)


async def test_walking_next_returns_every_key_exactly_once(api: Api) -> None:
    vault = await api.vault()
    template = await api.template(vault)
    made = {(await api.key(vault=vault, template=template, state=s)).id for s in ["pre_active", "active"] * 4}
    seen: list[str] = []
    href: str | None = f"{API}/managed_keys?vault.id={vault}&limit=3"
    while href is not None:
        resp = await api.client.get(href, headers=auth("reader"))
        assert resp.status == 200, await resp.text()
        doc = await resp.json()
        validate_uko("ManagedKeyList", doc)
        seen.extend(k["id"] for k in doc["managed_keys"])
        href = doc["next"]["href"] if "next" in doc else None
    assert len(seen) == len(made) and set(seen) == made


async def test_uko_vault_header_keeps_every_lookup_to_that_vault(api: Api) -> None:
    vault, _ = await api.shared()
    mine = await api.key(state="active")
    other_vault = await api.vault()
    theirs = await api.key(vault=other_vault, state="active")
    scoped = {"UKO-Vault": vault}
    listed = await api.request("GET", "/managed_keys", headers=scoped)
    ids = {k["id"] for k in (await listed.json())["managed_keys"]}
    assert mine.id in ids and theirs.id not in ids
    assert (await api.request("GET", f"/managed_keys/{mine.id}", headers=scoped)).status == 200
    assert (await api.request("GET", f"/managed_keys/{theirs.id}", headers=scoped)).status == 404
    vaults_seen = await (await api.request("GET", "/vaults", headers=scoped)).json()
    assert [v["id"] for v in vaults_seen["vaults"]] == [vault]
    # a reader limited to one vault does not reach another by naming it in the header
    nowhere = await api.request("GET", f"/managed_keys/{mine.id}", headers={"UKO-Vault": "no-such-vault"})
    assert nowhere.status == 404
