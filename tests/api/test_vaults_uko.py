"""The vault resource as UKO v4 (IBM's Go SDK) has it: fields, counts, PATCH with If-Match, linked pages."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from keyorch.service import vaults
from tests.uko.contract import validate_uko

from .conftest import API, Api, auth, error_of

UKO_FIELDS = {
    "id", "name", "description", "created_at", "updated_at", "created_by", "updated_by", "href",
    "keys_count", "key_templates_count", "keystores_count", "recovery_key_label",
}  # fmt: skip


async def _create(api: Api, **body: Any) -> dict[str, Any]:
    resp = await api.request("POST", "/vaults", json=body)
    assert resp.status == 201, await resp.text()
    doc: dict[str, Any] = await resp.json()
    return doc


async def test_create_with_description_and_recovery_key_label_round_trips(api: Api) -> None:
    name = api.unique("uko")
    made = await _create(api, name=name, description="payments team\nEU", recovery_key_label="rk-1")
    assert UKO_FIELDS | {"dual_auth", "version"} == set(made)
    assert (made["name"], made["description"], made["recovery_key_label"]) == (name, "payments team\nEU", "rk-1")
    assert (made["created_by"], made["updated_by"]) == ("admin", "admin")
    assert made["href"] == f"{API}/vaults/{made['id']}"
    assert (made["keys_count"], made["key_templates_count"], made["keystores_count"]) == (0, 0, 0)

    resp = await api.client.get(made["href"], headers=auth("reader"))
    assert resp.status == 200
    assert await resp.json() == made

    plain = await _create(api, name=api.unique("uko"))  # the SDK may send the name alone
    assert (plain["description"], plain["recovery_key_label"]) == ("", None)


async def test_bad_description_and_recovery_key_label_are_refused_naming_the_field(api: Api) -> None:
    for body, field in (
        ({"description": "x" * 1025}, "description"),
        ({"description": "bell\x07"}, "description"),
        ({"recovery_key_label": "has space"}, "recovery_key_label"),
    ):
        resp = await api.request("POST", "/vaults", json={"name": api.unique("bad"), **body})
        assert resp.status == 400, (body, await resp.text())
        err = (await error_of(resp))["errors"][0]
        target = err["target"]
        # (a target is a field name today; UKO's error bodies make it {"type", "name"})
        assert (target["name"] if isinstance(target, dict) else target) == field, err
        assert field in err["message"], err


async def test_counts_follow_keystores_templates_and_keys(api: Api) -> None:
    vault = await api.vault()

    async def counts() -> tuple[int, int, int]:
        doc = await (await api.request("GET", f"/vaults/{vault}", user="reader")).json()
        return doc["keystores_count"], doc["key_templates_count"], doc["keys_count"]

    assert await counts() == (0, 0, 0)
    keystore = await api.keystore(vault)
    assert await counts() == (1, 0, 0)
    template = await api.template(vault, keystore)
    assert await counts() == (1, 1, 0)
    await api.key(vault=vault, template=template)
    await api.key(vault=vault, template=template)
    assert await counts() == (1, 1, 2)
    listed = await (await api.request("GET", "/vaults", user="reader", params={"limit": "1000"})).json()
    [mine] = [v for v in listed["vaults"] if v["id"] == vault]
    assert (mine["keystores_count"], mine["key_templates_count"], mine["keys_count"]) == (1, 1, 2)


async def test_patch_needs_if_match_refuses_a_stale_one_and_is_audited(api: Api) -> None:
    made = await _create(api, name=api.unique("p"), description="before")
    path = f"/vaults/{made['id']}"
    etag = await api.etag(path)

    missing = await api.request("PATCH", path, json={"description": "after"})
    assert missing.status == 428, await missing.text()
    stale = await api.request("PATCH", path, json={"description": "after"}, headers={"If-Match": f'"{made["id"]}:9"'})
    assert stale.status == 412, await stale.text()
    assert (await (await api.request("GET", path)).json())["description"] == "before"

    new_name = api.unique("renamed")
    ok = await api.request(
        "PATCH",
        path,
        user="admin2",
        json={"name": new_name, "description": "after", "recovery_key_label": "rk-2"},
        headers={"If-Match": etag},
    )
    assert ok.status == 200, await ok.text()
    after = await ok.json()
    assert (after["name"], after["description"], after["recovery_key_label"]) == (new_name, "after", "rk-2")
    assert (after["created_by"], after["updated_by"], after["version"]) == ("admin", "admin2", made["version"] + 1)
    assert ok.headers["ETag"] != etag and ok.headers["ETag"] == await api.etag(path)

    again = await api.request("PATCH", path, json={"description": "x"}, headers={"If-Match": etag})
    assert again.status == 412  # the ETag of before the change is stale now

    async with api.store.read() as tx:
        records = [r for r in await tx.list_audit(object_id=made["id"]) if r.action == "vault.update"]
    accepted = [r for r in records if r.outcome == "accepted"]
    assert len(accepted) == 1 and accepted[0].user == "admin2"
    assert "before" in str(accepted[0].before) and "after" in str(accepted[0].after)
    assert {r.outcome for r in records} == {"accepted", "refused"}


async def test_patch_refuses_a_taken_name_and_a_bad_description(api: Api) -> None:
    taken = await _create(api, name=api.unique("taken"))
    other = await _create(api, name=api.unique("other"))
    path = f"/vaults/{other['id']}"
    for body, status in (({"name": taken["name"]}, 409), ({"description": "\x00"}, 400), ({"colour": "red"}, 400)):
        resp = await api.request("PATCH", path, json=body, headers={"If-Match": await api.etag(path)})
        assert resp.status == status, (body, await resp.text())
    assert (await (await api.request("GET", path)).json())["version"] == other["version"]


async def test_list_pages_walk_next_href_and_show_every_vault_once(api: Api) -> None:
    for i in range(7):
        await vaults.create_vault(api.ctx(), api.unique(f"page{i}"))
    everything = await (await api.request("GET", "/vaults", params={"limit": "1000"})).json()
    total = everything["total_count"]
    assert total == len(everything["vaults"]) >= 7
    assert "next" not in everything and "previous" not in everything

    seen: list[str] = []
    href: str | None = f"{API}/vaults?limit=3"
    pages = 0
    while href is not None:
        resp = await api.client.get(href, headers=auth("admin"))
        assert resp.status == 200, await resp.text()
        doc = await resp.json()
        validate_uko("VaultList", doc)
        assert doc["total_count"] == total and doc["limit"] == 3
        assert parse_qs(urlsplit(doc["first"]["href"]).query)["offset"] == ["0"]
        assert parse_qs(urlsplit(doc["last"]["href"]).query)["offset"] == [str((total - 1) // 3 * 3)]
        if doc["offset"] > 0:
            assert parse_qs(urlsplit(doc["previous"]["href"]).query)["offset"] == [str(doc["offset"] - 3)]
        else:
            assert "previous" not in doc
        seen.extend(v["id"] for v in doc["vaults"])
        href = doc["next"]["href"] if "next" in doc else None
        pages += 1
    assert pages == -(-total // 3)
    assert sorted(seen) == sorted(v["id"] for v in everything["vaults"]) and len(set(seen)) == len(seen)


async def test_renaming_needs_the_administrator_role_under_the_new_name_too(api: Api) -> None:
    vault = await api.vault("payments")
    path = f"/vaults/{vault}"
    away = await api.request(
        "PATCH", path, user="payments_admin", json={"name": "elsewhere"}, headers={"If-Match": await api.etag(path)}
    )
    assert away.status == 403, await away.text()
    kept = await api.request(
        "PATCH", path, user="payments_admin", json={"description": "ok"}, headers={"If-Match": await api.etag(path)}
    )
    assert kept.status == 200, await kept.text()
    assert ((await kept.json())["name"], (await kept.json())["description"]) == ("payments", "ok")
