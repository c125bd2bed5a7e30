"""Keystore connect takes the CLI's request limits; the key list counts and pages in SQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import event

from keyorch.api.openapi import OPENAPI_PATH
from keyorch.domain.models import KeystoreType, ManagedKey, SyncFlag
from keyorch.providers.limits import limits_for
from keyorch.service import keystores, templates
from tests.api.conftest import Api, aws_connect_body, error_of, target_of

# --- keystore connect: rate_per_second, max_concurrency, provider_quotas -------------------------


async def test_connect_takes_the_request_limits_as_the_cli_does(api: Api) -> None:
    vault = await api.vault()
    body = aws_connect_body(vault, "limited", rate_per_second=2.5, max_concurrency=8, provider_quotas=False)
    resp = await api.request("POST", "/keystores", json=body)
    assert resp.status == 201, await resp.text()
    doc = await resp.json()
    settings = doc["settings"]
    assert (settings["rate_per_second"], settings["max_concurrency"], settings["provider_quotas"]) == (2.5, 8, False)

    # the same request through the service (as `keyorch keystore connect` makes it) stores the same settings
    cli = keystores.ConnectRequest(
        vault=vault,
        name="limited-cli",
        type="aws_kms",
        region="us-east-1",
        credentials_from_environment=True,
        rate_per_second=2.5,
        max_concurrency=8,
        provider_quotas=False,
    )
    assert (await keystores.connect_keystore(api.ctx(), cli)).settings == (
        await keystores.get_keystore(api.ctx(), doc["id"])
    ).settings

    limits = limits_for(KeystoreType.AWS_KMS, settings)
    assert (limits.rate_per_second, limits.max_concurrency, limits.quotas) == (2.5, 8, ())


async def test_connect_limits_default_to_the_providers_and_zero_rate_means_no_cap(api: Api) -> None:
    vault = await api.vault()
    plain = await (await api.request("POST", "/keystores", json=aws_connect_body(vault, "plain"))).json()
    assert not {"rate_per_second", "max_concurrency", "provider_quotas"} & set(plain["settings"])
    assert limits_for(KeystoreType.AWS_KMS, plain["settings"]) == limits_for(KeystoreType.AWS_KMS)

    body = aws_connect_body(vault, "uncapped", type="ibm_key_protect", region="us-south", instance_id="inst-1")
    resp = await api.request("POST", "/keystores", json={**body, "rate_per_second": 0, "max_concurrency": 1024})
    assert resp.status == 201, await resp.text()
    settings = (await resp.json())["settings"]
    assert settings["rate_per_second"] == 0 and settings["max_concurrency"] == 1024
    assert limits_for(KeystoreType.IBM_KEY_PROTECT, settings).rate_per_second is None


@pytest.mark.parametrize(
    ("raw", "field", "shown"),
    [
        ('"rate_per_second": -1', "rate_per_second", "greater than or equal to 0"),
        ('"rate_per_second": -0.001', "rate_per_second", "greater than or equal to 0"),
        ('"rate_per_second": "5"', "rate_per_second", "valid number"),
        ('"rate_per_second": true', "rate_per_second", "valid number"),
        ('"rate_per_second": 1e999', "rate_per_second", "finite number"),
        ('"max_concurrency": 0', "max_concurrency", "greater than or equal to 1"),
        ('"max_concurrency": -3', "max_concurrency", "greater than or equal to 1"),
        ('"max_concurrency": 1025', "max_concurrency", "less than or equal to 1024"),
        ('"max_concurrency": 2.5', "max_concurrency", "valid integer"),
        ('"max_concurrency": "8"', "max_concurrency", "valid integer"),
        ('"provider_quotas": "no"', "provider_quotas", "valid boolean"),
        ('"provider_quotas": null', "provider_quotas", "valid boolean"),
    ],
)
async def test_connect_refuses_bad_limits_naming_field_value_and_allowed(
    api: Api, raw: str, field: str, shown: str
) -> None:
    vault = await api.vault()
    data = (
        f'{{"vault": "{vault}", "name": "bad", "type": "aws_kms", "region": "us-east-1", '
        f'"credentials_from_environment": true, {raw}}}'
    )
    resp = await api.request("POST", "/keystores", data=data, headers={"Content-Type": "application/json"})
    assert resp.status == 400, await resp.text()
    err = (await error_of(resp))["errors"][0]
    assert err["code"] == "invalid_input" and target_of(err) == ("field", field)
    assert f"body field {field} is not valid (got " in err["message"] and shown in err["message"]
    assert await keystores.list_keystores(api.ctx(), vault) == []


async def test_connect_refuses_a_rate_so_low_the_keystore_would_stall(api: Api) -> None:
    vault = await api.vault()
    resp = await api.request("POST", "/keystores", json={**aws_connect_body(vault, "slow"), "rate_per_second": 0.001})
    assert resp.status == 400, await resp.text()
    err = (await error_of(resp))["errors"][0]
    assert target_of(err) == ("field", "rate_per_second")
    assert "0.001" in err["message"] and "at least 0.1" in err["message"]
    assert await keystores.list_keystores(api.ctx(), vault) == []


async def test_openapi_describes_the_connect_limits(api: Api) -> None:
    doc = await (await api.client.get(OPENAPI_PATH)).json()
    props = doc["components"]["schemas"]["KeystoreConnect"]["properties"]
    rate = next(o for o in props["rate_per_second"]["anyOf"] if o["type"] != "null")
    assert rate == {"type": "number", "minimum": 0}
    concurrency = next(o for o in props["max_concurrency"]["anyOf"] if o["type"] != "null")
    assert concurrency == {"type": "integer", "minimum": 1, "maximum": 1024}
    assert props["provider_quotas"]["type"] == "boolean" and props["provider_quotas"]["default"] is True
    assert all(props[name].get("description") for name in ("rate_per_second", "max_concurrency", "provider_quotas"))


# --- GET /managed_keys: total_count and the page come from SQL ------------------------------------


@contextmanager
def _statements(api: Api) -> Iterator[list[str]]:
    """The SQL statements run on the store's engine meanwhile."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(api.store.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(api.store.engine.sync_engine, "before_cursor_execute", record)


async def _listing(api: Api, query: str = "", user: str = "admin") -> dict[str, Any]:
    resp = await api.request("GET", "/managed_keys" + query, user=user)
    assert resp.status == 200, await resp.text()
    doc: dict[str, Any] = await resp.json()
    return doc


async def _flag_out_of_sync(api: Api, key_id: str) -> None:
    async with api.store.transaction() as tx:
        key = await tx.key(key_id)
        first, *rest = key.targets
        flagged = (first.with_changes(sync_flag=SyncFlag.OUT_OF_SYNC), *rest)
        await tx.update_key(replace(key, targets=flagged), key.version)


def _ordered(keys: list[ManagedKey]) -> list[str]:
    """The listing's order: creation time, then id (keys made in the same instant are ordered by id)."""
    return [k.id for k in sorted(keys, key=lambda k: (k.created_at, k.id))]


async def test_more_keys_than_one_page_total_count_and_pages(api: Api) -> None:
    made = [await api.key(state="active") for _ in range(105)]  # all at one instant (a fixed clock)
    api.clock.advance(seconds=1)
    destroyed = await api.key(state="destroyed")
    api.clock.advance(seconds=1)
    payments = await api.vault("payments")
    theirs = [await api.key(vault=payments, state="active") for _ in range(3)]
    everything = _ordered(made) + _ordered(theirs)
    assert everything == _ordered(made + theirs)

    first = await _listing(api)  # the default page is 100
    assert first["total_count"] == 108 and first["limit"] == 100 and first["offset"] == 0
    assert [k["id"] for k in first["managed_keys"]] == everything[:100]
    rest = await _listing(api, "?offset=100")
    assert rest["total_count"] == 108 and [k["id"] for k in rest["managed_keys"]] == everything[100:]

    paged: list[str] = []
    for offset in range(0, 120, 40):
        page = await _listing(api, f"?limit=40&offset={offset}")
        assert page["total_count"] == 108 and page["limit"] == 40 and page["offset"] == offset
        paged += [k["id"] for k in page["managed_keys"]]
    assert paged == everything  # creation order, each key once
    beyond = await _listing(api, "?limit=40&offset=500")
    assert beyond["total_count"] == 108 and beyond["managed_keys"] == []

    with_destroyed = await _listing(api, "?include_destroyed=true&limit=1&offset=105")
    assert with_destroyed["total_count"] == 109 and with_destroyed["managed_keys"][0]["id"] == destroyed.id
    assert (await _listing(api, "?state=destroyed"))["total_count"] == 1

    # a caller who reads only the payments vault counts and pages only its keys
    carol = await _listing(api, "?limit=2", user="carol")
    carol_next = await _listing(api, "?limit=2&offset=2", user="carol")
    assert carol["total_count"] == carol_next["total_count"] == 3
    assert [k["id"] for k in carol["managed_keys"] + carol_next["managed_keys"]] == _ordered(theirs)

    # out of sync: a key with any target flagged, counted and paged in SQL as well
    drifted = [made[3], made[50], made[104], theirs[1]]
    for key in drifted:
        await _flag_out_of_sync(api, key.id)
    drift1 = await _listing(api, "?out_of_sync=true&limit=3")
    drift2 = await _listing(api, "?out_of_sync=true&limit=3&offset=3")
    assert drift1["total_count"] == drift2["total_count"] == 4
    assert [k["id"] for k in drift1["managed_keys"] + drift2["managed_keys"]] == _ordered(drifted)
    assert all(k["out_of_sync"] for k in drift1["managed_keys"])
    scoped = await _listing(api, f"?out_of_sync=true&vault={payments}")
    assert scoped["total_count"] == 1 and [k["id"] for k in scoped["managed_keys"]] == [theirs[1].id]
    assert (await _listing(api, "?out_of_sync=true&state=deactivated"))["total_count"] == 0

    # the page is read with LIMIT/OFFSET and the total with count(*); never the whole list
    with _statements(api) as seen:
        page = await _listing(api, "?limit=5&offset=10&out_of_sync=false")
    assert page["total_count"] == 108 and [k["id"] for k in page["managed_keys"]] == everything[10:15]
    key_selects = [s for s in seen if "FROM managed_keys" in s]
    assert any("count(*)" in s for s in key_selects), key_selects
    rows = [s for s in key_selects if "count(*)" not in s and "managed_keys.label" in s]
    assert rows and all("LIMIT" in s and "OFFSET" in s for s in rows), rows


async def test_out_of_sync_key_with_several_targets_is_counted_once(api: Api) -> None:
    vault = await api.vault()
    template = await api.template(vault)
    stores = [await api.keystore(vault), await api.keystore(vault)]
    both = await templates.create_template(api.ctx(), vault=vault, name="two-stores", keystores=stores)
    lone = await api.key(vault=vault, template=template, state="active")
    double = await api.key(vault=vault, template=both.id, state="active")
    assert len(double.targets) == 2
    async with api.store.transaction() as tx:
        key = await tx.key(double.id)
        flagged = tuple(t.with_changes(sync_flag=SyncFlag.OUT_OF_SYNC) for t in key.targets)
        await tx.update_key(replace(key, targets=flagged), key.version)
    drift = await _listing(api, f"?out_of_sync=true&vault={vault}")
    assert drift["total_count"] == 1 and [k["id"] for k in drift["managed_keys"]] == [double.id]
    assert (await _listing(api, f"?vault={vault}"))["total_count"] == 2
    assert lone.id in [k["id"] for k in (await _listing(api, f"?vault={vault}"))["managed_keys"]]
