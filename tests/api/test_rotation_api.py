"""POST /managed_keys/{id}/rotate and GET /managed_keys/{id}/versions: If-Match, the rule refused by name
(409), the versions and which one each keystore serves; on SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from keyorch.api.auth import token_hash
from keyorch.settings import ApiSettings, ApiToken, KeySettings, Settings
from tests.uko.contract import violations

from .conftest import USERS, Api, ApiFactory, error_of, target_of, token_of


@pytest.fixture
def api_db_url(db_url: str) -> str:
    return db_url


async def test_rotate_needs_if_match_gives_the_next_version_and_lists_versions(api: Api) -> None:
    key = await api.key(state="active")
    path = f"/managed_keys/{key.id}"
    resp = await api.request("POST", f"{path}/rotate")
    assert resp.status == 428
    assert target_of((await error_of(resp))["errors"][0]) == ("header", "If-Match")

    resp = await api.request("POST", f"{path}/rotate", headers={"If-Match": await api.etag(path)})
    assert resp.status == 200, await resp.text()
    doc = await resp.json()
    assert violations("ManagedKey", doc) == []
    assert doc["current_version"] == 2 and doc["rotated_at"] == api.clock.now().isoformat()
    assert all(s["keystore_sync_flag"] != "ok" for s in doc["status_in_keystores"])  # every keystore to rotate
    assert key.id in api.changed

    resp = await api.request("GET", f"{path}/versions", user="reader")
    assert resp.status == 200
    versions = await resp.json()
    assert versions["current_version"] == 2
    assert [(v["version"], v["current"]) for v in versions["versions"]] == [(1, False), (2, True)]
    [first, second] = versions["versions"]
    assert [k["keystore"]["id"] for k in first["keystores"]] == [t.keystore_id for t in key.targets]
    assert second["keystores"] == []  # no keystore serves version 2 until the reconciler rotated it there
    assert first["keystores"][0]["version_id_in_keystore"] is None  # not learned yet


async def test_a_second_rotation_within_the_hour_and_a_non_active_key_are_refused(api: Api) -> None:
    key = await api.key(state="active")
    path = f"/managed_keys/{key.id}"
    assert (await api.request("POST", f"{path}/rotate", headers={"If-Match": await api.etag(path)})).status == 200
    resp = await api.request("POST", f"{path}/rotate", headers={"If-Match": await api.etag(path)})
    assert resp.status == 409
    message = (await error_of(resp))["errors"][0]["message"]
    assert "at most once every 3600 s" in message and "next allowed at" in message
    api.clock.advance(hours=1)
    assert (await api.request("POST", f"{path}/rotate", headers={"If-Match": await api.etag(path)})).status == 200

    waiting = await api.key(state="deactivated")
    wpath = f"/managed_keys/{waiting.id}"
    resp = await api.request("POST", f"{wpath}/rotate", headers={"If-Match": await api.etag(wpath)})
    assert resp.status == 409
    assert "rotate is allowed only from active" in (await error_of(resp))["errors"][0]["message"]
    assert (await api.request("GET", "/managed_keys/no-such-key/versions")).status == 404


def _settings(min_interval_seconds: float) -> Settings:
    tokens: list[Any] = [ApiToken(user=u, sha256=token_hash(token_of(u)), roles=r) for u, r in USERS.items()]  # type: ignore[arg-type]
    return Settings(
        api=ApiSettings(tokens=tokens), keys=KeySettings(rotation_min_interval_seconds=min_interval_seconds)
    )


async def _rotate(api: Api, key_id: str) -> tuple[int, Any]:
    path = f"/managed_keys/{key_id}"
    resp = await api.request("POST", f"{path}/rotate", headers={"If-Match": await api.etag(path)})
    return resp.status, await resp.json()


async def test_the_rotation_interval_is_the_setting(api_factory: ApiFactory) -> None:
    """keys.rotation_min_interval_seconds lowered to 600: refused within 10 minutes naming the setting, allowed
    after; at 0, rotations follow each other at once."""
    api = await api_factory(settings=_settings(600))
    key = await api.key(state="active")
    assert (await _rotate(api, key.id))[0] == 200
    status, doc = await _rotate(api, key.id)
    assert status == 409, doc
    message = doc["errors"][0]["message"]
    assert "at most once every 600 s (setting keys.rotation_min_interval_seconds)" in message, message
    api.clock.advance(minutes=10)
    status, doc = await _rotate(api, key.id)
    assert (status, doc["current_version"]) == (200, 3)

    unlimited = await api_factory(settings=_settings(0))  # the same database, another daemon's settings
    unlimited.clock.advance(minutes=10)
    assert [(await _rotate(unlimited, key.id))[1]["current_version"] for _ in range(3)] == [4, 5, 6]


async def test_deactivate_on_rotation_on_templates_and_keys(api: Api) -> None:
    vault = await api.vault()
    keystore = await api.keystore(vault)
    properties = {"activation_date": "P1D", "expiration_date": "P1Y", "deactivate_on_rotation": True}
    body = {"vault": vault, "name": api.unique("t"), "keystores": [keystore], "key": properties}
    resp = await api.request("POST", "/templates", json=body)
    assert resp.status == 201, await resp.text()
    template = await resp.json()
    assert violations("Template", template) == [], template
    assert template["key"]["deactivate_on_rotation"] is True

    resp = await api.request("POST", "/managed_keys", json={"template": template["id"], "label": api.unique("k")})
    assert resp.status == 201, await resp.text()
    key = await resp.json()
    assert violations("ManagedKey", key) == []
    assert key["deactivate_on_rotation"] is True
    assert [o["older_versions"] for o in key["older_versions_in_keystores"]] == ["decrypt_only"]  # an AWS keystore

    path = f"/managed_keys/{key['id']}"
    resp = await api.request(
        "PATCH", path, json={"deactivate_on_rotation": False}, headers={"If-Match": await api.etag(path)}
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["deactivate_on_rotation"] is False
    tpath = f"/templates/{template['id']}"
    resp = await api.request(
        "PATCH", tpath, json={"key": {"deactivate_on_rotation": False}}, headers={"If-Match": await api.etag(tpath)}
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["key"]["deactivate_on_rotation"] is False


@pytest.mark.parametrize("value", ["yes", 1, None])
async def test_deactivate_on_rotation_must_be_a_boolean(api: Api, value: object) -> None:
    key = await api.key()
    path = f"/managed_keys/{key.id}"
    resp = await api.request(
        "PATCH", path, json={"deactivate_on_rotation": value}, headers={"If-Match": await api.etag(path)}
    )
    if value is None:  # UKO's null: leave it as it is
        assert resp.status == 200 and (await resp.json())["deactivate_on_rotation"] is False
        return
    assert resp.status == 400, await resp.text()
    error = (await error_of(resp))["errors"][0]
    assert "deactivate_on_rotation" in str(error), error
