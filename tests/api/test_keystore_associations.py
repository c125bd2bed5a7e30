"""UKO v4's keystore/key associations against the API on a real socket, with the Key Protect fake over loopback.

``GET /keystores/{id}/managed_keys`` (the key list kept to one keystore), ``GET /managed_keys/{id}/
associated_resources`` and ``GET /keystores/{id}/associated_resources`` (Key Protect's registrations, read
live through the adapter), and ``DELETE /keystores/{id}?mode=`` (every mode decided by the disconnect rule;
204 as UKO answers). Where a provider is involved, the fake's own state is checked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from keyorch.cli.remote import RemoteBackend, RemoteRefusal
from keyorch.domain.models import ManagedKey
from keyorch.fakes.base import RunningFake
from keyorch.fakes.faults import ProviderFaults
from keyorch.fakes.ibm import KeyProtectFake
from keyorch.reconcile.clients import ClientPool
from keyorch.reconcile.controller import Controller
from keyorch.reconcile.report import sync_pass
from keyorch.service import keys, keystores, templates
from tests.providers.test_ibm_adapter import running
from tests.uko.contract import validate_uko

from .conftest import Api, auth, error_of, target_of, token_of

CRN_BUCKET = "crn:v1:bluemix:public:cloud-object-storage:global:a/acct1:inst-1:bucket:invoices"
FOREIGN = {"name": "foreign", "extractable": False}  # a root key keyorch does not manage
CRN_DB = "crn:v1:bluemix:public:databases-for-postgresql:eu-de:a/acct1:inst-2::"


__all__ = ["running"]  # the Key Protect fake on a real socket, a fixture of tests/providers/test_ibm_adapter.py


@pytest.fixture
def kp(running: RunningFake) -> RunningFake:
    return running


def _fake(kp: RunningFake) -> KeyProtectFake:
    assert isinstance(kp.fake, KeyProtectFake)
    return kp.fake


async def _ibm_keystore(api: Api, vault: str, kp: RunningFake, tmp_path: Path) -> str:
    creds = tmp_path / f"{api.unique('creds')}.json"
    creds.write_text(json.dumps(_fake(kp).credentials(kp.url)))
    req = keystores.ConnectRequest(
        vault=vault,
        name=api.unique("kp"),
        type="ibm_key_protect",
        endpoint=kp.url,
        instance_id=_fake(kp).instance_id,
        credentials_file=str(creds),
        allow_insecure_http=True,
    )
    return (await keystores.connect_keystore(api.ctx(), req)).id


async def _key_in(api: Api, template: str, state: str = "active") -> ManagedKey:
    ctx = api.ctx()
    key = await keys.create_key(ctx, template=template, label=api.unique("k"), state="pre_active")
    if state in ("active", "deactivated"):
        key = await keys.activate_key(ctx, key.id)
    if state == "deactivated":
        key = await keys.deactivate_key(ctx, key.id)
    return key


async def _sync(api: Api, key_id: str) -> ManagedKey:
    """Push the key's desired state to its keystores with the real reconciler (as `keyorch sync-key` does)."""
    controller = Controller(api.store, ClientPool(api.store, api.master_key), api.clock)
    try:
        await sync_pass(controller, key_id)
    finally:
        await controller.pool.aclose()
    return await keys.get_key(api.ctx(), key_id)


def _kp_id(key: ManagedKey, keystore: str) -> str:
    found = next(t.key_id_in_keystore for t in key.targets if t.keystore_id == keystore)
    assert found is not None, key.targets
    return found


async def _fake_call(kp: RunningFake, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.request(method, kp.url + path, json=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def _register(kp: RunningFake, key_id: str, crn: str, *, prevent: bool = False, why: str = "") -> None:
    body = {"keyId": key_id, "resourceCrn": crn, "preventKeyDeletion": prevent, "description": why}
    status, doc = await _fake_call(kp, "POST", "/_fake/ibm/registrations", body)
    assert status == 201, doc


async def _fake_key(kp: RunningFake, key_id: str) -> dict[str, Any]:
    status, state = await _fake_call(kp, "GET", "/_fake/state")
    assert status == 200
    found: dict[str, Any] = next(k for k in state["keys"] if k["id"] == key_id)
    return found


async def _get(api: Api, path: str, **params: str) -> dict[str, Any]:
    resp = await api.request("GET", path, user="reader", params=params)
    assert resp.status == 200, await resp.text()
    doc: dict[str, Any] = await resp.json()
    return doc


# -- GET /keystores/{id}/managed_keys --------------------------------------------------------------------------


async def test_a_keystores_keys_are_those_targeting_it_and_its_pages_walk_each_once(api: Api) -> None:
    vault = await api.vault()
    mine, other = await api.keystore(vault), await api.keystore(vault)
    only_mine = await api.template(vault, mine)
    only_other = await api.template(vault, other)
    both = (await templates.create_template(api.ctx(), vault=vault, name="both", keystores=[mine, other])).id
    in_mine = {(await _key_in(api, only_mine, "pre_active")).id for _ in range(3)}
    shared = {(await _key_in(api, both, "pre_active")).id for _ in range(2)}
    in_other = {(await _key_in(api, only_other, "pre_active")).id for _ in range(3)}

    seen: list[str] = []
    doc = await _get(api, f"/keystores/{mine}/managed_keys", limit="2")
    pages = 0
    while True:
        validate_uko("ManagedKeyList", doc)
        assert doc["total_count"] == 5
        seen += [k["id"] for k in doc["managed_keys"]]
        assert all(any(r["id"] == mine for r in k["referenced_keystores"]) for k in doc["managed_keys"])
        pages += 1
        if "next" not in doc:
            break
        resp = await api.client.get(doc["next"]["href"], headers=auth("reader"))
        assert resp.status == 200
        doc = await resp.json()
    assert pages == 3 and len(seen) == len(set(seen)) and set(seen) == in_mine | shared
    assert not set(seen) & in_other
    theirs = await _get(api, f"/keystores/{other}/managed_keys")
    assert {k["id"] for k in theirs["managed_keys"]} == in_other | shared


async def test_a_keystores_keys_take_the_key_lists_filters_and_refuse_what_they_cannot(api: Api) -> None:
    vault = await api.vault()
    keystore = await api.keystore(vault)
    template = await api.template(vault, keystore)
    active = await _key_in(api, template, "active")
    pre = await _key_in(api, template, "pre_active")
    path = f"/keystores/{keystore}/managed_keys"

    assert [k["id"] for k in (await _get(api, path, state="active"))["managed_keys"]] == [active.id]
    assert [k["id"] for k in (await _get(api, path, label=pre.label))["managed_keys"]] == [pre.id]
    assert [k["id"] for k in (await _get(api, path, sort="-label"))["managed_keys"]] == sorted(
        [active.id, pre.id], key=lambda i: {active.id: active.label, pre.id: pre.label}[i], reverse=True
    )
    assert (await _get(api, path, algorithm="rsa"))["total_count"] == 0
    assert (await _get(api, path, size_min="512"))["total_count"] == 0
    # SDK parameters keyorch cannot answer are refused by name, never ignored
    for name, value in (("deactivation_date", "2026-01-01"), ("template.type[]", "user_defined")):
        resp = await api.request("GET", path, user="reader", params={name: value})
        assert resp.status == 400, (name, await resp.text())
        err = (await error_of(resp))["errors"][0]
        assert target_of(err) == ("parameter", name) and name in err["message"], err


async def test_a_keystores_keys_follow_the_uko_vault_header_and_unknown_keystores(api: Api) -> None:
    vault, elsewhere = await api.vault(), await api.vault()
    keystore = await api.keystore(vault)
    resp = await api.request("GET", f"/keystores/{keystore}/managed_keys", headers={"UKO-Vault": elsewhere})
    assert resp.status == 404 and (await error_of(resp))["errors"][0]["code"] == "not_found"
    resp = await api.request("GET", f"/keystores/{keystore}/managed_keys", headers={"UKO-Vault": vault})
    assert resp.status == 200 and (await resp.json())["total_count"] == 0
    assert (await api.request("GET", "/keystores/nope/managed_keys")).status == 404


# -- associated resources ----------------------------------------------------------------------------------------


async def test_a_keys_registrations_are_its_associated_resources(api: Api, kp: RunningFake, tmp_path: Path) -> None:
    vault = await api.vault()
    ibm = await _ibm_keystore(api, vault, kp, tmp_path)
    key = await _sync(api, (await _key_in(api, await api.template(vault, ibm))).id)
    kp_key = _kp_id(key, ibm)
    await _register(kp, kp_key, CRN_BUCKET, why="invoices bucket")
    await _register(kp, kp_key, CRN_DB, prevent=True)
    assert sorted((await _fake_key(kp, kp_key))["registrations"]) == sorted([CRN_BUCKET, CRN_DB])

    doc = await _get(api, f"/managed_keys/{key.id}/associated_resources")
    validate_uko("AssociatedResourceList", doc)
    assert doc["total_count"] == 2 and "next" not in doc
    by_crn = {r["com_ibm_cloud_kms_registration"]["crn"]: r for r in doc["associated_resources"]}
    bucket = by_crn[CRN_BUCKET]
    assert bucket["type"] == "com_ibm_cloud_kms_registration" and bucket["name"] == "invoices"
    assert bucket["key_id_in_keystore"] == kp_key
    assert bucket["managed_key"] == {"id": key.id, "label": key.label, "href": f"/api/v4/managed_keys/{key.id}"}
    assert bucket["referenced_keystore"]["id"] == ibm and bucket["referenced_keystore"]["type"] == "ibm_cloud_kms"
    assert bucket["vault"]["id"] == vault
    assert bucket["com_ibm_cloud_kms_registration"] == {
        "prevents_key_deletion": False,
        "service_name": "cloud-object-storage",
        "service_instance_name": "inst-1",
        "crn": CRN_BUCKET,
        "description": "invoices bucket",
    }
    db = by_crn[CRN_DB]["com_ibm_cloud_kms_registration"]
    assert db["prevents_key_deletion"] is True and by_crn[CRN_DB]["name"] == "inst-2"

    page = await _get(api, f"/managed_keys/{key.id}/associated_resources", limit="1", sort="-name")
    assert [r["name"] for r in page["associated_resources"]] == ["invoices"] and "next" in page
    resp = await api.request("GET", f"/managed_keys/{key.id}/associated_resources", params={"sort": "crn"})
    err = (await error_of(resp))["errors"][0]
    assert resp.status == 400 and target_of(err) == ("parameter", "sort") and "'crn'" in err["message"], err


async def test_a_keystores_associated_resources_are_those_of_its_managed_keys(
    api: Api, kp: RunningFake, tmp_path: Path
) -> None:
    vault = await api.vault()
    ibm = await _ibm_keystore(api, vault, kp, tmp_path)
    template = await api.template(vault, ibm)
    first, second, bare = [await _sync(api, (await _key_in(api, template)).id) for _ in range(3)]
    await _register(kp, _kp_id(first, ibm), CRN_BUCKET)
    await _register(kp, _kp_id(second, ibm), CRN_DB)
    # a key keyorch does not manage, in the same instance, with a registration of its own
    foreign = _fake(kp).state.create_key(
        {"name": "foreign", "extractable": False}, "someone", "default", overrides=False
    )
    await _register(kp, foreign.id, "crn:v1:bluemix:public:kms:global:a/acct1:inst-9:bucket:not-ours")

    doc = await _get(api, f"/keystores/{ibm}/associated_resources")
    validate_uko("AssociatedResourceList", doc)
    crns = {r["com_ibm_cloud_kms_registration"]["crn"]: r["managed_key"]["id"] for r in doc["associated_resources"]}
    assert crns == {CRN_BUCKET: first.id, CRN_DB: second.id} and doc["total_count"] == 2
    assert bare.id not in crns.values()
    paged = await _get(api, f"/keystores/{ibm}/associated_resources", limit="1", offset="1")
    assert paged["total_count"] == 2 and len(paged["associated_resources"]) == 1 and "previous" in paged


async def test_keystores_without_registrations_answer_an_empty_list(api: Api) -> None:
    key = await api.key(state="active")
    keystore = key.targets[0].keystore_id  # AWS: no such thing as registrations, and never asked
    for path in (f"/managed_keys/{key.id}/associated_resources", f"/keystores/{keystore}/associated_resources"):
        doc = await _get(api, path)
        validate_uko("AssociatedResourceList", doc)
        assert (doc["total_count"], doc["associated_resources"]) == (0, []) and "next" not in doc


async def _registered_key(api: Api, kp: RunningFake, tmp_path: Path) -> tuple[str, ManagedKey]:
    """A Key Protect keystore and an active key in it with one registration (CRN_BUCKET)."""
    vault = await api.vault()
    ibm = await _ibm_keystore(api, vault, kp, tmp_path)
    key = await _sync(api, (await _key_in(api, await api.template(vault, ibm))).id)
    await _register(kp, _kp_id(key, ibm), CRN_BUCKET)
    return ibm, key


async def test_a_malformed_or_failing_key_protect_answer_is_an_error_document_not_a_crash(
    api: Api, kp: RunningFake, tmp_path: Path
) -> None:
    ibm, key = await _registered_key(api, kp, tmp_path)
    for operation, path in (
        ("ListRegistrations", f"/managed_keys/{key.id}/associated_resources"),
        ("ListAllRegistrations", f"/keystores/{ibm}/associated_resources"),
    ):
        # nonsense is a malformed answer (502); a cut-off body is transient: retried, then unavailable (503)
        for fault, status in (("non_json", 502), ("truncate", 503))[: 2 if operation == "ListRegistrations" else 1]:
            rules = {"rules": [{"operation": operation, "sequence": [fault] * 8}]}
            _fake(kp).faults.configure(ProviderFaults.model_validate(rules))
            resp = await api.request("GET", path, user="reader")
            assert resp.status == status, (operation, fault, await resp.text())
            err = (await error_of(resp))["errors"][0]
            assert "Traceback" not in err["message"] and _fake(kp).apikey not in json.dumps(err), err
        _fake(kp).faults.configure(ProviderFaults())
        assert (await _get(api, path))["total_count"] == 1


async def test_registrations_that_are_not_what_key_protect_sends_are_refused(
    api: Api, kp: RunningFake, tmp_path: Path
) -> None:
    """A registration without a CRN, or with a non-boolean flag, is a malformed answer (502), not a guess."""
    ibm, key = await _registered_key(api, kp, tmp_path)
    registration = _fake(kp).state.registrations[0]
    registration.resource_crn = ""
    resp = await api.request("GET", f"/managed_keys/{key.id}/associated_resources", user="reader")
    err = (await error_of(resp))["errors"][0]
    assert resp.status == 502 and "resourceCrn" in err["message"], err
    registration.resource_crn = CRN_BUCKET
    registration.prevent_key_deletion = "yes"  # type: ignore[assignment]
    resp = await api.request("GET", f"/keystores/{ibm}/associated_resources", user="reader")
    err = (await error_of(resp))["errors"][0]
    assert resp.status == 502 and "preventKeyDeletion" in err["message"], err


# -- DELETE /keystores/{id}?mode= --------------------------------------------------------------------------------


async def _delete(api: Api, keystore: str, **params: str) -> aiohttp.ClientResponse:
    etag = await api.etag(f"/keystores/{keystore}")
    resp: aiohttp.ClientResponse = await api.request(
        "DELETE", f"/keystores/{keystore}", headers={"If-Match": etag}, params=params
    )
    return resp


async def test_an_unknown_mode_is_refused_naming_it_its_value_and_the_modes(api: Api) -> None:
    keystore = await api.keystore(await api.vault())
    for given in ("purge", "", "RESTRICT", "x" * 200):
        resp = await _delete(api, keystore, mode=given)
        assert resp.status == 400, given
        err = (await error_of(resp))["errors"][0]
        assert target_of(err) == ("parameter", "mode"), err
        assert repr(given)[:20] in err["message"], err
        assert "use one of restrict, disconnect, deactivate, destroy" in err["message"], err
    assert (await _get(api, f"/keystores/{keystore}"))["status"] == "connected"


@pytest.mark.parametrize("mode", [None, "restrict", "disconnect", "deactivate", "destroy"])
async def test_every_mode_is_refused_while_a_live_key_targets_it_and_changes_nothing_in_key_protect(
    api: Api, kp: RunningFake, tmp_path: Path, mode: str | None
) -> None:
    vault = await api.vault()
    ibm = await _ibm_keystore(api, vault, kp, tmp_path)
    key = await _sync(api, (await _key_in(api, await api.template(vault, ibm))).id)
    before = await _fake_key(kp, _kp_id(key, ibm))
    assert before["state"] == 1

    resp = await _delete(api, ibm, **({"mode": mode} if mode else {}))
    assert resp.status == 409, await resp.text()
    err = (await error_of(resp))["errors"][0]
    assert err["code"] == "rule_violation" and key.label in err["message"], err
    if mode in ("deactivate", "destroy"):
        assert f"mode {mode}:" in err["message"], err
    assert await _fake_key(kp, _kp_id(key, ibm)) == before  # nothing was deactivated or destroyed there
    assert (await _get(api, f"/keystores/{ibm}"))["status"] == "connected"


@pytest.mark.parametrize("mode", ["restrict", "disconnect", "deactivate", "destroy"])
async def test_a_disconnect_answers_204_and_leaves_key_protect_unchanged(
    api: Api, kp: RunningFake, tmp_path: Path, mode: str
) -> None:
    vault = await api.vault()
    ibm = await _ibm_keystore(api, vault, kp, tmp_path)
    template = await api.template(vault, ibm)
    pre = await _key_in(api, template, "pre_active")  # never in the keystore: it does not block
    foreign = _fake(kp).state.create_key(
        {"name": "foreign", "extractable": False}, "someone", "default", overrides=False
    )
    _, before = await _fake_call(kp, "GET", "/_fake/state")

    resp = await _delete(api, ibm, mode=mode)
    assert resp.status == 204 and await resp.read() == b"", await resp.text()
    shown = await _get(api, f"/keystores/{ibm}")
    assert shown["status"] == "disconnected"
    assert (await _fake_call(kp, "GET", "/_fake/state"))[1] == before  # UKO: the remote keystore is unchanged
    assert any(k["id"] == foreign.id for k in before["keys"])
    unlinked = await keys.get_key(api.ctx(), pre.id)
    assert all(t.status.value == "removed" for t in unlinked.targets if t.keystore_id == ibm)


async def test_a_stale_if_match_stays_412_in_every_mode(api: Api) -> None:
    keystore = await api.keystore(await api.vault())
    etag = await api.etag(f"/keystores/{keystore}")
    stale = etag.replace(":1", ":9")
    for mode in ("restrict", "deactivate", "destroy"):
        resp = await api.request("DELETE", f"/keystores/{keystore}", headers={"If-Match": stale}, params={"mode": mode})
        assert resp.status == 412, (mode, await resp.text())


async def test_keyorch_server_disconnect_shows_the_keystore_after_the_204(api: Api) -> None:
    """`keyorch --server … keystore disconnect` reads the keystore back after UKO's 204 (no body to show)."""
    vault = await api.vault()
    keystore = await api.keystore(vault)
    blocked = await api.keystore(vault)
    await _key_in(api, await api.template(vault, blocked), "active")
    remote = RemoteBackend(str(api.client.make_url("")).rstrip("/"), token_of("admin"))
    try:
        doc, note = await remote.disconnect_keystore(keystore, None)
        assert (doc["id"], doc["status"]) == (keystore, "disconnected")
        # no AWS behind it: the live check could not run, and the 204's Keyorch-Note says so
        assert note is not None and "checked keyorch's records only" in note
        with pytest.raises(RemoteRefusal) as refused:
            await remote.disconnect_keystore(blocked, None)
        assert refused.value.exit_code == 3 and "active" in refused.value.message
    finally:
        await remote.aclose()
