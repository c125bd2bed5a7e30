"""A keystore's connection tried live, against the fakes on loopback: ``POST /keystores?dry_run=true`` (nothing
stored), UKO's ``GET /keystores/{id}/status`` (a cached live check) and ``PATCH /keystores/{id}`` rotating the
stored credentials (tried before they are saved; refused, the old ones stay in use)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from keyorch.fakes.aws import AwsKmsFake
from keyorch.fakes.base import RunningFake
from keyorch.providers.aws_wire import MANAGED_KEY_TAG
from keyorch.reconcile.clients import ClientPool
from keyorch.reconcile.engine import Reconciler
from keyorch.service import keys, templates
from tests.uko.contract import validate_uko

from .conftest import MASTER_KEY, START, Api, ApiFactory, error_of
from .uko_keystore_bodies import KINDS, PROBE_OPERATION, SECRET_FIELD, api_settings, running, uko_body

CACHE_SECONDS = 30.0


@pytest.fixture
async def checked_api(api_factory: ApiFactory) -> Api:
    """The API with a status cache of 30 s and connection tests cut off after 2 s (a closed port is retried)."""
    return await api_factory(
        settings=api_settings(keystore_status_cache_seconds=CACHE_SECONDS, keystore_check_timeout_seconds=2.0)
    )


@pytest.fixture
async def aws() -> AsyncIterator[RunningFake]:
    async with running("aws_kms") as fake:
        yield fake


async def _nothing_stored(api: Api) -> None:
    async with api.store.read() as tx:
        assert await tx.list_keystores(include_disconnected=True) == []
        actions = [r.action for r in await tx.list_audit(limit=1000)]
    assert not [a for a in actions if a.startswith("keystore.")], actions


@pytest.mark.parametrize("kind", KINDS)
async def test_a_dry_run_tests_the_connection_and_stores_nothing(checked_api: Api, kind: str) -> None:
    api = checked_api
    vault = await api.vault()
    async with running(kind) as fake:
        body = uko_body(vault, "tried", kind, fake)
        resp = await api.request("POST", "/keystores", params={"dry_run": "true"}, json=body)
        text = await resp.text()
        assert resp.status == 200, text
        assert body[SECRET_FIELD[kind]] not in text
        doc = await resp.json()
        validate_uko("Keystore", doc)
        validate_uko("KeystoreStatus", doc)
        assert (doc["dry_run"], doc["health_status"], doc["name"], doc["type"]) == (True, "ok", "tried", kind)
        assert "id" not in doc and "href" not in doc
        assert fake.fake.log.counts[PROBE_OPERATION[kind]] == 1  # the probe reached the provider, once
    await _nothing_stored(api)


async def test_a_dry_run_with_bad_credentials_or_no_keystore_is_refused_naming_the_problem(
    checked_api: Api, aws: RunningFake
) -> None:
    api = checked_api
    vault = await api.vault()
    wrong = "W" * 40
    bad = uko_body(vault, "tried", "aws_kms", aws, aws_secret_access_key=wrong)
    resp = await api.request("POST", "/keystores", params={"dry_run": "true"}, json=bad)
    text = await resp.text()
    assert resp.status == 400, text
    assert wrong not in text and aws.fake.credentials(aws.url)["secret_access_key"] not in text
    err = (await error_of(resp))["errors"][0]
    assert (
        err["code"] == "keystore_configuration_error" and "connection test of keystore tried failed" in err["message"]
    )
    assert "signature" in err["message"].lower(), err  # the provider's reason, in keyorch's words
    assert [e.status for e in aws.fake.log.entries if e.operation == "ListKeys"] == [400]

    closed = uko_body(vault, "tried", "aws_kms", aws)
    await aws.stop()
    resp = await api.request("POST", "/keystores", params={"dry_run": "true"}, json=closed)
    assert resp.status == 503, await resp.text()
    err = (await error_of(resp))["errors"][0]
    assert err["code"] == "keystore_unreachable" and "not responding" in err["message"], err
    await _nothing_stored(api)


async def _connect(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    resp = await api.request("POST", "/keystores", json=body)
    assert resp.status == 201, await resp.text()
    doc: dict[str, Any] = await resp.json()
    return doc


async def _status(api: Api, keystore: str) -> dict[str, Any]:
    resp = await api.request("GET", f"/keystores/{keystore}/status", user="reader")
    assert resp.status == 200, await resp.text()
    doc: dict[str, Any] = await resp.json()
    validate_uko("KeystoreStatus", doc)
    return doc


async def test_status_is_a_live_check_cached_for_the_configured_window(checked_api: Api, aws: RunningFake) -> None:
    api = checked_api
    keystore = (await _connect(api, uko_body(await api.vault(), "ks", "aws_kms", aws)))["id"]
    probes = aws.fake.log.counts
    assert probes["ListKeys"] == 0  # connecting tries nothing

    first = await _status(api, keystore)
    assert (first["health_status"], first["id"], first["status"]) == ("ok", keystore, "connected")
    assert first["last_heartbeat"] == START.isoformat()
    api.clock.advance(seconds=CACHE_SECONDS - 1)
    assert await _status(api, keystore) == first  # within the window: the same answer, no second probe
    assert probes["ListKeys"] == 1

    aws.fake.secret_access_key = secrets.token_urlsafe(30)  # the key pair was rotated at AWS: keyorch's is stale
    api.clock.advance(seconds=1)
    refused = await _status(api, keystore)
    assert refused["health_status"] == "configuration_error" and probes["ListKeys"] == 2
    assert "signature" in refused["message"].lower(), refused

    await aws.stop()
    api.clock.advance(seconds=CACHE_SECONDS)
    down = await _status(api, keystore)
    assert down["health_status"] == "not_responding", down


def _fake_key(fake: AwsKmsFake, managed_key_id: str) -> dict[str, Any]:
    tag = {"TagKey": MANAGED_KEY_TAG, "TagValue": managed_key_id}
    found = [k for k in fake.state_snapshot()["keys"] if tag in k["Tags"]]
    assert len(found) == 1, fake.state_snapshot()["keys"]
    return found[0]


async def _reconcile(api: Api, key_id: str) -> None:
    pool = ClientPool(api.store, MASTER_KEY)
    try:
        outcome = await Reconciler(api.store, pool, api.clock).reconcile_key(key_id, push=True)
    finally:
        await pool.aclose()
    assert outcome.in_sync, outcome


async def test_rotated_credentials_are_tried_before_they_are_saved(checked_api: Api, aws: RunningFake) -> None:
    api = checked_api
    fake = aws.fake
    assert isinstance(fake, AwsKmsFake)
    vault = await api.vault()
    made = await _connect(api, uko_body(vault, "aws-pay", "aws_kms", aws))
    ctx = api.ctx()
    template = await templates.create_template(ctx, vault=vault, name="t1", keystores=[made["id"]])
    key = await keys.activate_key(ctx, (await keys.create_key(ctx, template=template.id, label="k1")).id)
    await _reconcile(api, key.id)
    assert _fake_key(fake, key.id)["KeyState"] == "Enabled"

    path = f"/keystores/{made['id']}"
    change = {"aws_access_key_id": fake.access_key_id, "aws_secret_access_key": "B" * 40}
    assert (await api.request("PATCH", path, json=change)).status == 428
    stale = await api.request("PATCH", path, json=change, headers={"If-Match": f'"{made["id"]}:0"'})
    assert stale.status == 412
    etag = await api.etag(path)
    refused = await api.request("PATCH", path, json=change, headers={"If-Match": etag})
    text = await refused.text()
    assert refused.status == 400 and "B" * 40 not in text, text
    assert (await error_of(refused))["errors"][0]["code"] == "keystore_configuration_error"
    assert await api.etag(path) == etag  # nothing saved
    async with api.store.read() as tx:
        audit = [(r.action, r.outcome) for r in await tx.list_audit(made["id"])]
    assert audit[-1] == ("keystore.update", "refused"), audit

    # the old credentials stay in use: the reconciler disables the key with them
    await keys.deactivate_key(ctx, key.id)
    await _reconcile(api, key.id)
    assert _fake_key(fake, key.id)["KeyState"] == "Disabled"
    assert [e.status for e in fake.log.entries if e.operation == "DisableKey"] == [200]

    # AWS rotates the key pair: keyorch's is refused until the new one is saved, then that one is used
    old_secret = fake.secret_access_key
    fake.access_key_id, fake.secret_access_key = "AKIAROTATED000000001", secrets.token_urlsafe(30)
    assert (await _status(api, made["id"]))["health_status"] == "configuration_error"
    rotated = {"aws_access_key_id": fake.access_key_id, "aws_secret_access_key": fake.secret_access_key}
    saved = await api.request("PATCH", path, json=rotated, headers={"If-Match": etag})
    text = await saved.text()
    assert saved.status == 200, text
    assert fake.secret_access_key not in text and old_secret not in text
    assert (await saved.json())["credentials"] == "stored"
    assert (await _status(api, made["id"]))["health_status"] == "ok"  # a changed keystore is checked anew
    await keys.reactivate_key(ctx, key.id)
    await _reconcile(api, key.id)
    assert _fake_key(fake, key.id)["KeyState"] == "Enabled"
    assert [e.status for e in fake.log.entries if e.operation == "EnableKey"] == [200]


async def test_a_change_that_does_not_touch_the_connection_is_not_tried(checked_api: Api, aws: RunningFake) -> None:
    api = checked_api
    made = await _connect(api, uko_body(await api.vault(), "aws-1", "aws_kms", aws))
    path = f"/keystores/{made['id']}"
    await aws.stop()  # the keystore is down: a change of its name, description or groups still goes through
    change = {"name": "aws-renamed", "description": "renamed by the SDK", "groups": ["a", "b"]}
    resp = await api.request("PATCH", path, json=change, headers={"If-Match": await api.etag(path)})
    assert resp.status == 200, await resp.text()
    doc = await resp.json()
    validate_uko("Keystore", doc)
    assert {k: doc[k] for k in change} == change
    moved = await api.request(
        "PATCH", path, json={"aws_region": "eu_west_1"}, headers={"If-Match": resp.headers["ETag"]}
    )
    assert moved.status == 503, await moved.text()  # a new region is tried first: the keystore does not answer
    assert (await (await api.request("GET", path)).json())["aws_region"] == "us_east_1"
