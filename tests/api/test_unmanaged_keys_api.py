"""``GET /api/v4/keystores/{id}/unmanaged_keys`` (issue 16) on a real socket, with the Key Protect fake on loopback.

The list is read live from the fake: the keys no managed key targets, paged by ``routing.linked_page`` (walked
by ``next.href``, each key once), filtered by ``made_by`` and ``uko_name``, with the keystore's counts. Refusals
are UKO's error model: an unknown keystore 404, a disconnected one 409, an unknown filter value 400 naming it,
a fake answering nonsense 502 naming what was wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from keyorch.cli.remote import RemoteBackend
from keyorch.domain.uko_markers import uko_description
from keyorch.fakes.base import RunningFake
from keyorch.fakes.faults import ProviderFaults
from keyorch.fakes.seed import parse_keys
from keyorch.service import inventory, keystores
from keyorch.views import scan_json
from tests.api.test_keystore_associations import _fake, _ibm_keystore, _key_in, _sync
from tests.providers.test_ibm_adapter import running

from .conftest import Api, auth, error_of, target_of, token_of

__all__ = ["running"]  # the Key Protect fake on a real socket, a fixture of tests/providers/test_ibm_adapter.py

SEED = [
    {"name": "payroll prod", "uko": "uko-key-1", "created": "2023-01-02T03:04:05Z", "versions": 2},
    {"name": "billing prod", "uko": "uko-key-2", "state": "disabled", "tags": {"team": "billing"}},
    {"name": "hr prod", "uko": "uko-key-3", "state": "destruction_pending"},
    {"name": "by hand", "aliases": ["by-hand"]},
    {"name": "scratch"},
]


@pytest.fixture
def kp(running: RunningFake) -> RunningFake:
    return running


async def _page(api: Api, url: str, **params: str) -> tuple[int, dict[str, Any]]:
    resp = await api.client.get(url, headers=auth("reader"), params=params or None)
    return resp.status, await resp.json()


async def test_unmanaged_keys_are_the_fakes_keys_no_managed_key_targets_paged_once_each(
    api: Api, kp: RunningFake, tmp_path: Path
) -> None:
    vault = await api.vault()
    keystore = await _ibm_keystore(api, vault, kp, tmp_path)
    key = await _key_in(api, await api.template(vault, keystore), "active")
    await _sync(api, key.id)
    made = _fake(kp).seed(parse_keys({"keys": SEED}))
    _fake(kp).log.clear()

    path = f"/api/v4/keystores/{keystore}/unmanaged_keys"
    status, doc = await _page(api, path, limit="2")
    seen: list[dict[str, Any]] = []
    pages = 0
    while True:
        assert status == 200, doc
        assert (doc["total_count"], doc["keys_in_keystore"], doc["managed_in_keystore"]) == (5, 6, 1)
        assert doc["keystore"]["id"] == keystore and doc["keystore"]["type"] == "ibm_cloud_kms"
        seen += doc["unmanaged_keys"]
        pages += 1
        if "next" not in doc:
            break
        status, doc = await _page(api, doc["next"]["href"])
    assert pages == 3 and sorted(k["key_id_in_keystore"] for k in seen) == sorted(m["id"] for m in made)
    assert set(_fake(kp).log.counts) <= {"Token", "ListKeys", "GetKeyMetadata", "ListKeyVersions"}

    by_name = {k["label_in_keystore"]: k for k in seen}
    payroll = by_name["payroll prod"]
    assert payroll["made_by"] == "uko" and payroll["uko_managed_key_id"] == "uko-key-1"
    assert (
        payroll["description"] == uko_description("uko-key-1") and payroll["created_at"] == "2023-01-02T03:04:05+00:00"
    )
    assert [v["primary"] for v in payroll["versions"]] == [False, True] and payroll["state"] == "active"
    assert by_name["billing prod"]["state"] == "deactivated"
    assert by_name["billing prod"]["tags"] == [{"name": "team", "value": "billing"}]
    hr = by_name["hr prod"]
    assert hr["destruction_pending"] is True and "pending_until" in hr and hr["state_in_keystore"].startswith("5")
    assert by_name["by hand"]["made_by"] == "unknown" and by_name["by hand"]["aliases"] == ["by-hand"]

    _, uko = await _page(api, path, made_by="uko")
    assert sorted(k["label_in_keystore"] for k in uko["unmanaged_keys"]) == ["billing prod", "hr prod", "payroll prod"]
    _, named = await _page(api, path, made_by="uko", uko_name="by*,scr?tch")
    assert named["total_count"] == 5
    assert (
        "its name matches UKO's 'by*'"
        in next(k for k in named["unmanaged_keys"] if k["label_in_keystore"] == "by hand")["evidence"]
    )


async def test_unmanaged_keys_refusals_are_ukos_error_model(api: Api, kp: RunningFake, tmp_path: Path) -> None:
    vault = await api.vault()
    keystore = await _ibm_keystore(api, vault, kp, tmp_path)
    path = f"/api/v4/keystores/{keystore}/unmanaged_keys"

    resp = await api.client.get(path, headers=auth("reader"), params={"made_by": "someone"})
    assert resp.status == 400
    assert target_of((await error_of(resp))["errors"][0]) == ("parameter", "made_by")

    resp = await api.client.get(
        "/api/v4/keystores/00000000-0000-4000-8000-000000000000/unmanaged_keys", headers=auth("reader")
    )
    assert resp.status == 404
    await error_of(resp)

    _fake(kp).faults.configure(
        ProviderFaults.model_validate({"rules": [{"operation": "ListKeys", "sequence": ["non_json"]}]})
    )
    resp = await api.client.get(path, headers=auth("reader"))
    assert resp.status == 502
    message = (await error_of(resp))["errors"][0]["message"]
    assert "JSON" in message or "json" in message, message

    await keystores.disconnect_keystore(api.ctx(), keystore)
    resp = await api.client.get(path, headers=auth("reader"))
    assert resp.status == 409
    assert "disconnected" in (await error_of(resp))["errors"][0]["message"]


async def test_keyorch_keys_a_target_awaits_are_managed_and_other_keyorch_keys_are_orphans(
    api: Api, kp: RunningFake, tmp_path: Path
) -> None:
    """A key with keyorch's identity for a managed key whose target recorded no key yet (a create whose answer was
    lost) is that key's; one with keyorch's identity for no managed key is an orphan keyorch made."""
    vault = await api.vault()
    keystore = await _ibm_keystore(api, vault, kp, tmp_path)
    template = await api.template(vault, keystore)
    waiting = await _key_in(api, template, "pre_active")  # targets the keystore, no key recorded
    synced = await _key_in(api, template, "active")
    synced = await _sync(api, synced.id)
    _fake(kp).seed(
        parse_keys(
            {
                "keys": [
                    {"name": "lost answer", "aliases": [f"keyorch-{waiting.id}"]},
                    {"name": "second copy", "aliases": [f"keyorch-x{synced.id[1:]}"]},
                    {"name": "long gone", "aliases": ["keyorch-mk-removed-1"]},
                ]
            }
        )
    )
    status, doc = await _page(api, f"/api/v4/keystores/{keystore}/unmanaged_keys")
    assert status == 200, doc
    by_name = {k["label_in_keystore"]: k for k in doc["unmanaged_keys"]}
    assert set(by_name) == {"second copy", "long gone"}
    assert (doc["keys_in_keystore"], doc["managed_in_keystore"]) == (4, 2)
    gone = by_name["long gone"]
    assert (gone["made_by"], gone["managed_key_id"]) == ("keyorch", "mk-removed-1")
    assert "no such managed key" in gone["evidence"][1]
    assert by_name["second copy"]["made_by"] == "keyorch"


async def test_the_cli_over_the_api_gets_the_same_scan_as_the_cli_on_the_database(
    api: Api, kp: RunningFake, tmp_path: Path
) -> None:
    """``keyorch --server … keystore scan`` (RemoteBackend) and the direct CLI (DirectBackend's views.scan_json)."""
    vault = await api.vault()
    keystore = await _ibm_keystore(api, vault, kp, tmp_path)
    _fake(kp).seed(parse_keys({"keys": SEED}))
    remote = RemoteBackend(str(api.client.make_url("")).rstrip("/"), token_of("reader"))
    try:
        over_api = await remote.scan_keystore(keystore, ["by*"], "uko")
    finally:
        await remote.aclose()
    direct = scan_json(
        await inventory.unmanaged_keys(
            api.ctx(),
            await keystores.get_keystore(api.ctx(), keystore),
            uko_names=["by*"],
            made_by=inventory.MadeBy.UKO,
        )
    )
    assert over_api == direct
    assert sorted(k["label_in_keystore"] for k in direct["unmanaged_keys"]) == [
        "billing prod", "by hand", "hr prod", "payroll prod",
    ]  # fmt: skip
