"""Rotation policies over the API: a template's ``key.rotation_policy`` (UKO's Template still validates), a key's
own policy in its create and PATCH bodies overriding its template's, ``next_rotation_at`` in the key's answer,
bad values refused with 400 naming the field, the value and the form allowed; on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from keyorch.api.auth import token_hash
from keyorch.service import keys, rotation
from keyorch.settings import ApiSettings, ApiToken, KeySettings, Settings
from tests.uko.contract import violations

from .conftest import USERS, Api, ApiFactory, error_of, target_of, token_of


@pytest.fixture
def api_db_url(db_url: str) -> str:
    return db_url


async def _template(api: Api, policy: str | None) -> dict[str, Any]:
    vault = await api.vault()
    keystore = await api.keystore(vault)
    key: dict[str, Any] = {
        "size": "256",
        "algorithm": "aes",
        "state": "active",
        "activation_date": "P0D",
        "expiration_date": "P5Y",
    }
    if policy is not None:
        key["rotation_policy"] = policy
    body = {"vault": {"id": vault}, "name": api.unique("t"), "description": "", "key": key, "keystores": [keystore]}
    resp = await api.request("POST", "/templates", json=body)
    assert resp.status == 201, await resp.text()
    doc: dict[str, Any] = await resp.json()
    return doc


async def _patch(api: Api, path: str, body: dict[str, Any]) -> Any:
    return await api.request("PATCH", path, json=body, headers={"If-Match": await api.etag(path)})


async def test_a_template_policy_is_shown_in_uko_shape_and_its_keys_follow_it(api: Api) -> None:
    template = await _template(api, "P90D")
    assert violations("Template", template) == []
    assert template["key"]["rotation_policy"] == "P90D"

    resp = await api.request("POST", "/managed_keys", json={"template": template["id"], "label": "k"})
    assert resp.status == 201, await resp.text()
    key = await resp.json()
    assert violations("ManagedKey", key) == []
    assert (key["rotation_policy"], key["rotation_policy_from"]) == ("P90D", "template")
    assert key["next_rotation_at"] == (api.clock.now() + timedelta(days=90)).isoformat()

    # the template's new policy is its keys' at once (they have none of their own)
    changed = await _patch(api, f"/templates/{template['id']}", {"key": {"rotation_policy": "P30D"}})
    assert changed.status == 200, await changed.text()
    assert (await changed.json())["key"]["rotation_policy"] == "P30D"
    shown = await (await api.request("GET", f"/managed_keys/{key['id']}")).json()
    assert shown["next_rotation_at"] == (api.clock.now() + timedelta(days=30)).isoformat()
    assert shown["template"]["alignment_status"] == "aligned"  # keys follow it: nothing to realign

    cleared = await _patch(api, f"/templates/{template['id']}", {"key": {"rotation_policy": None}})
    assert cleared.status == 200
    assert "rotation_policy" not in (await cleared.json())["key"]  # UKO's schemas take no null
    shown = await (await api.request("GET", f"/managed_keys/{key['id']}")).json()
    assert not {"rotation_policy", "rotation_policy_from", "next_rotation_at"} & set(shown)


async def test_a_keys_own_policy_overrides_its_templates_and_null_gives_it_back(api: Api) -> None:
    template = await _template(api, "P1Y")
    body = {"template": template["id"], "label": "own", "rotation_policy": "P3M", "state": "pre_active"}
    resp = await api.request("POST", "/managed_keys", json=body)
    assert resp.status == 201, await resp.text()
    key = await resp.json()
    assert (key["rotation_policy"], key["rotation_policy_from"]) == ("P3M", "key")
    assert "next_rotation_at" not in key  # pre-active: it rotates only once active

    api.clock.advance(days=3)
    await keys.activate_key(api.ctx(), key["id"])
    activated = api.clock.now()
    path = f"/managed_keys/{key['id']}"
    doc = await (await api.request("GET", path)).json()
    expected = activated.replace(month=activated.month + 3)  # three calendar months after its activation
    assert datetime.fromisoformat(doc["next_rotation_at"]) == expected

    resp = await _patch(api, path, {"rotation_policy": "P45D"})
    assert resp.status == 200, await resp.text()
    doc = await resp.json()
    assert violations("ManagedKey", doc) == []
    assert (doc["rotation_policy"], doc["next_rotation_at"]) == ("P45D", (activated + timedelta(days=45)).isoformat())

    resp = await _patch(api, path, {"rotation_policy": None})
    doc = await resp.json()
    assert (doc["rotation_policy"], doc["rotation_policy_from"]) == ("P1Y", "template")


@pytest.mark.parametrize(
    ("where", "value", "why"),
    [
        ("template", "90 days", "ISO 8601 duration such as P90D"),
        ("template", "PT30M", "shorter than the least time between two rotations"),
        ("key", "P1.5D", "ISO 8601 duration such as P90D"),
        ("patch", "P0D", "is no time at all"),
        ("patch", "P200Y", "longer than 36525 days"),
    ],
)
async def test_a_bad_policy_is_a_400_naming_the_field_the_value_and_what_is_allowed(
    api: Api, where: str, value: str, why: str
) -> None:
    template = await _template(api, None)
    if where == "template":
        resp = await _patch(api, f"/templates/{template['id']}", {"key": {"rotation_policy": value}})
        field = "key.rotation_policy"
    elif where == "key":
        body = {"template": template["id"], "label": "k", "rotation_policy": value}
        resp = await api.request("POST", "/managed_keys", json=body)
        field = "rotation_policy"
    else:
        key = await keys.create_key(api.ctx(), template=template["id"], label="k")
        resp = await _patch(api, f"/managed_keys/{key.id}", {"rotation_policy": value})
        field = "rotation_policy"
    assert resp.status == 400, await resp.text()
    [err] = (await error_of(resp))["errors"]
    assert target_of(err) == ("field", field)
    assert field in err["message"] and repr(value) in err["message"] and why in err["message"]


def _settings(min_interval_seconds: float) -> Settings:
    tokens: list[Any] = [ApiToken(user=u, sha256=token_hash(token_of(u)), roles=r) for u, r in USERS.items()]  # type: ignore[arg-type]
    return Settings(
        api=ApiSettings(tokens=tokens), keys=KeySettings(rotation_min_interval_seconds=min_interval_seconds)
    )


async def test_the_least_policy_is_the_rotation_limit_setting(api_factory: ApiFactory) -> None:
    """keys.rotation_min_interval_seconds at a day: PT12H is refused naming the setting, P1D taken; at 0, PT30M."""
    daily = await api_factory(settings=_settings(86400))
    template = await _template(daily, None)
    path = f"/templates/{template['id']}"
    resp = await _patch(daily, path, {"key": {"rotation_policy": "PT12H"}})
    assert resp.status == 400, await resp.text()
    message = (await error_of(resp))["errors"][0]["message"]
    assert "86400 s (setting keys.rotation_min_interval_seconds)" in message, message
    assert (await _patch(daily, path, {"key": {"rotation_policy": "P1D"}})).status == 200

    unlimited = await api_factory(settings=_settings(0))  # the same database, another daemon's settings
    body = {"template": template["id"], "label": "often", "rotation_policy": "PT30M"}
    resp = await unlimited.request("POST", "/managed_keys", json=body)
    assert resp.status == 201, await resp.text()


async def test_the_scheduler_waits_for_the_rotation_limit_without_a_refusal(api: Api) -> None:
    """A policy shorter than a limit set later: the due key waits for the limit, and no refused rotation is
    audited meanwhile; then it rotates, by the scheduler."""
    template = await _template(api, None)
    key = await keys.create_key(api.ctx(), template=template["id"], label="k", state="active", rotation_policy="PT1H")
    api.clock.advance(hours=1)
    ctx = api.ctx("scheduler")
    done = await rotation.rotate_due(ctx, min_interval=timedelta(hours=2))
    assert done.rotated == [key.id] and done.overdue == 0  # never rotated: nothing to wait for
    api.clock.advance(hours=1)  # due again by its policy, but within the two hours of the limit
    waited = await rotation.rotate_due(ctx, min_interval=timedelta(hours=2))
    assert (waited.rotated, list(waited.skipped), waited.overdue) == ([], [key.id], 1)
    assert "at most once every 7200 s" in waited.skipped[key.id]
    api.clock.advance(hours=1)
    assert (await rotation.rotate_due(ctx, min_interval=timedelta(hours=2))).rotated == [key.id]
    async with api.store.read() as tx:
        records = [r for r in await tx.list_audit(key.id) if r.action == "key.rotate"]
    assert [(r.user, r.outcome) for r in records] == [("scheduler", "accepted")] * 2
