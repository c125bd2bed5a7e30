"""Every version of a rotated key, end to end through the CLI as a real subprocess, against the four fakes.

Deactivate, reactivate and destroy act on every version a keystore holds (Azure Key Vault's per-version
``attributes.enabled``, Cloud KMS's per-version state; AWS KMS and Key Protect keep one state for the key and
all its rotations), and drift is judged over all of them: an older version re-enabled behind keyorch's back
is flagged with keyorch's reason and put back by a push. Every check reads the fakes' own state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from tests.e2e.harness import (
    KINDS,
    FakeWorld,
    aws_keys,
    azure_keys,
    azure_version_states,
    duplicates,
    fake_world,
    google_keys,
    google_version_states,
    primaries,
)

from keyorch.fakes.azure_state import Changes
from keyorch.fakes.gcp_model import set_version_state
from keyorch.fakes.registry import FakeCluster

World = FakeWorld


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with fake_world(tmp_path) as made:
        yield made


def enable_older_behind_keyorchs_back(world: World, key_id: str) -> None:
    """Out of band: the Azure and Google fakes' own version updates (``PATCH /keys/{name}/{version}``
    ``enabled=true``; ``cryptoKeyVersions.patch`` ``state=ENABLED``) applied to their state for version 1."""
    azure = world.cluster["azure_key_vault"].fake
    [key] = azure_keys(azure.state_snapshot(), key_id)
    oldest = key["versions"][0]["version"]
    azure.vault.update(key["name"], oldest, Changes.parse({"attributes": {"enabled": True}}))  # type: ignore[attr-defined]
    google = world.cluster["google_kms"].fake
    [gkey] = google_keys(google.state_snapshot(), key_id)
    for ring in google.service.rings.values():  # type: ignore[attr-defined]
        for crypto_key in ring.keys.values():
            if crypto_key.name == gkey["name"]:
                set_version_state(crypto_key.versions[0], "ENABLED")


async def sync_in_line(world: World, key_id: str) -> dict[str, Any]:
    result = await world.cli("sync-key", key_id)
    assert result.code == 0, str(result)
    doc: dict[str, Any] = result.json()
    assert sorted(t["keystore_name"] for t in doc["targets"]) == sorted(KINDS), doc
    assert all(t["sync_flag"] == "in_sync" for t in doc["targets"]), doc
    return doc


async def rotated_key(world: World, label: str) -> tuple[str, dict[str, tuple[str, int]]]:
    """An active key made in the four fakes and rotated once there; its first primaries per fake."""
    cli = world.cli
    key_id = (await cli.ok("key", "create", "--template", "everywhere", "--label", label, "--state", "active"))["id"]
    await sync_in_line(world, key_id)
    first = primaries(world.cluster, key_id)
    await cli.ok("key", "rotate", key_id)
    await sync_in_line(world, key_id)
    return key_id, first


# -- the tests ---------------------------------------------------------------------------------------------


async def test_a_rotated_key_is_deactivated_reactivated_and_destroyed_in_every_version(world: World) -> None:
    cli = world.cli
    key_id, first = await rotated_key(world, "everyversion")

    # every keystore serves a new primary; Azure and Google hold both versions, the older one still enabled
    now = primaries(world.cluster, key_id)
    for kind in KINDS:
        assert now[kind][0] != first[kind][0], (kind, first, now)
    assert now["azure_key_vault"][1] == now["google_kms"][1] == now["aws_kms"][1] == 2, now
    assert [(p, e) for _, p, e in azure_version_states(world.cluster, key_id)] == [(False, True), (True, True)]
    google = google_version_states(world.cluster, key_id)
    assert [(p, s) for _, p, s in google] == [(False, "ENABLED"), (True, "ENABLED")]
    listed = await cli.ok("key", "versions", key_id)
    assert [(v["version"], v["current"]) for v in listed["versions"]] == [(1, False), (2, True)], listed
    serving = {ks["keystore"]["name"]: ks["version_id_in_keystore"] for ks in listed["versions"][1]["keystores"]}
    assert serving == {kind: now[kind][0] for kind in KINDS}, (serving, now)
    # every version's id in every keystore, the older ones too (AWS calls a key's initial material "original")
    older = {kind: first[kind][0] for kind in KINDS} | {"aws_kms": "original"}
    for index, expected, primary in ((0, older, False), (1, {kind: now[kind][0] for kind in KINDS}, True)):
        ids = listed["versions"][index]["version_ids_in_keystores"]
        assert {i["keystore"]["name"]: (i["version_id_in_keystore"], i["primary"]) for i in ids} == {
            kind: (expected[kind], primary) for kind in KINDS
        }, listed

    # deactivate: every version disabled where the provider keeps a state per version
    await cli.ok("key", "deactivate", key_id)
    await sync_in_line(world, key_id)
    assert [e for _, _, e in azure_version_states(world.cluster, key_id)] == [False, False]
    assert [s for _, _, s in google_version_states(world.cluster, key_id)] == ["DISABLED", "DISABLED"]
    [aws] = aws_keys(world.snapshot("aws_kms"), key_id)
    assert aws["KeyState"] == "Disabled"

    # reactivate: every version enabled again (deactivate_on_rotation is off)
    await cli.ok("key", "reactivate", key_id)
    await sync_in_line(world, key_id)
    assert [e for _, _, e in azure_version_states(world.cluster, key_id)] == [True, True]
    assert [s for _, _, s in google_version_states(world.cluster, key_id)] == ["ENABLED", "ENABLED"]

    # destroy: every Cloud KMS version scheduled for destruction, the Azure key soft-deleted (all its versions)
    await cli.ok("key", "deactivate", key_id)
    await sync_in_line(world, key_id)
    await cli.ok("key", "destroy", key_id)
    await sync_in_line(world, key_id)
    assert [s for _, _, s in google_version_states(world.cluster, key_id)] == ["DESTROY_SCHEDULED", "DESTROY_SCHEDULED"]
    [deleted] = azure_keys(world.snapshot("azure_key_vault"), key_id)
    assert deleted["collection"] == "deletedkeys" and len(deleted["versions"]) == 2
    assert duplicates(world.cluster, [key_id]) == {kind: {} for kind in KINDS}
    assert world.recorder.invalid_state() == []


async def test_an_older_version_enabled_behind_keyorchs_back_is_drift_and_is_put_back(world: World) -> None:
    cli = world.cli
    key_id, _ = await rotated_key(world, "driftversion")
    await cli.ok("key", "deactivate", key_id)
    await sync_in_line(world, key_id)

    enable_older_behind_keyorchs_back(world, key_id)
    assert [e for _, _, e in azure_version_states(world.cluster, key_id)] == [True, False]
    assert [s for _, _, s in google_version_states(world.cluster, key_id)] == ["ENABLED", "DISABLED"]

    # a pass flags it (drift policy 'flag'), naming keyorch's reason, and leaves the keystores alone
    flagged = await cli("reconcile", "--once")
    assert flagged.code == 1, str(flagged)
    report = flagged.json()
    reasons = {(t["keystore_name"], t["reason"]) for t in report["flagged_keys"] if t["key"] == key_id}
    assert reasons == {
        ("azure_key_vault", "older_key_version_is_enabled_in_keystore"),
        ("google_kms", "older_key_version_is_enabled_in_keystore"),
    }, report
    assert [e for _, _, e in azure_version_states(world.cluster, key_id)] == [True, False], "drift was overwritten"
    shown = await cli.ok("key", "show", key_id)
    targets = {t["keystore_name"]: t for t in shown["targets"]}
    assert targets["azure_key_vault"]["reason"] == "older_key_version_is_enabled_in_keystore", shown
    assert targets["azure_key_vault"]["sync_flag"] == "out_of_sync", shown
    # UKO's own field carries one of UKO's reasons: the deactivated key is not deactivated there
    status = {s["keystore"]["name"]: s for s in shown["status_in_keystores"]}
    assert status["google_kms"]["keystore_sync_flag_detail"] == "deactivated_key_is_not_deactivated_in_keystore"
    assert status["google_kms"]["keystore_sync_flag"] == "out_of_sync", shown

    # a push puts every version back to disabled
    doc = await sync_in_line(world, key_id)
    actions = {t["keystore_name"]: t["actions_taken"] for t in doc["targets"]}
    assert actions["azure_key_vault"] == actions["google_kms"] == ["disable"], doc
    assert [e for _, _, e in azure_version_states(world.cluster, key_id)] == [False, False]
    assert [s for _, _, s in google_version_states(world.cluster, key_id)] == ["DISABLED", "DISABLED"]
    assert (await cli("reconcile", "--once")).code == 0


def malformed_version_listings(cluster: FakeCluster) -> list[str]:
    """Wrap the Azure and Google fakes' servers (outside their own middleware) so every versions listing is
    answered 200 with a body of the wrong shape; returns the paths so answered."""
    answered: list[str] = []
    bodies = {
        "azure_key_vault": {"value": [{"kid": 12, "attributes": "yes"}]},
        "google_kms": {"cryptoKeyVersions": [{"name": 7, "state": "SOMETIMES"}], "nextPageToken": 3},
    }
    for kind, body in bodies.items():
        server = cluster[kind].runner.server
        assert server is not None
        inner = server.request_handler

        def wrapped(
            inner: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]], body: dict[str, Any]
        ) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
            async def handler(request: web.BaseRequest) -> web.StreamResponse:
                if request.method == "GET" and request.path.endswith(("/versions", "/cryptoKeyVersions")):
                    answered.append(request.path)
                    return web.json_response(body)
                return await inner(request)

            return handler

        server.request_handler = wrapped(inner, body)
    return answered


async def test_a_malformed_versions_listing_is_a_keystore_error_not_a_crash(world: World) -> None:
    cli = world.cli
    key_id, _ = await rotated_key(world, "oddversions")
    answered = malformed_version_listings(world.cluster)

    result = await cli("reconcile", "--once")
    assert answered, "no versions listing was asked for"
    assert result.code in (1, 4), str(result)  # out of sync or unreachable: a keystore error, not a traceback
    assert "Traceback" not in result.err, str(result)
    report = result.json()
    flagged = {t["keystore_name"]: t for t in report["flagged_keys"] if t["key"] == key_id}
    assert set(flagged) == {"azure_key_vault", "google_kms"}, report
    assert "ListKeyVersions: the key has no kid" in flagged["azure_key_vault"]["error"], flagged
    assert "cryptoKeyVersions.list: nextPageToken is not a page token" in flagged["google_kms"]["error"], flagged
    shown = await cli.ok("key", "show", key_id)
    targets = {t["keystore_name"]: t for t in shown["targets"]}
    for kind in ("aws_kms", "ibm_key_protect"):
        assert targets[kind]["sync_flag"] == "in_sync", shown  # the other keystores are judged as usual
    for kind in ("azure_key_vault", "google_kms"):
        assert targets[kind]["sync_flag"] != "in_sync" and targets[kind]["last_error"], shown
    # nothing was changed on the strength of an unreadable answer
    assert [e for _, _, e in azure_version_states(world.cluster, key_id)] == [True, True]
    assert [s for _, _, s in google_version_states(world.cluster, key_id)] == ["ENABLED", "ENABLED"]


async def test_deactivate_on_rotation_disables_the_older_versions_where_the_keystore_can(world: World) -> None:
    cli = world.cli
    made = await cli.ok(
        "key",
        "create",
        "--template",
        "everywhere",
        "--label",
        "onlynew",
        "--state",
        "active",
        "--deactivate-on-rotation",
    )
    key_id = made["id"]
    assert made["deactivate_on_rotation"] is True
    older = {o["keystore"]["name"]: o["older_versions"] for o in made["older_versions_in_keystores"]}
    assert older == {
        "aws_kms": "decrypt_only",
        "azure_key_vault": "disabled",
        "google_kms": "disabled",
        "ibm_key_protect": "decrypt_only",
    }, made
    await sync_in_line(world, key_id)
    await cli.ok("key", "rotate", key_id)
    doc = await sync_in_line(world, key_id)
    actions = {t["keystore_name"]: t["actions_taken"] for t in doc["targets"]}
    assert actions == {
        "aws_kms": ["rotate"],
        "azure_key_vault": ["rotate", "disable_older_versions"],
        "google_kms": ["rotate", "disable_older_versions"],
        "ibm_key_protect": ["rotate"],
    }, doc
    assert [(p, e) for _, p, e in azure_version_states(world.cluster, key_id)] == [(False, False), (True, True)]
    google = google_version_states(world.cluster, key_id)
    assert [(p, s) for _, p, s in google] == [(False, "DISABLED"), (True, "ENABLED")]
    [aws] = aws_keys(world.snapshot("aws_kms"), key_id)
    assert aws["KeyState"] == "Enabled" and len(aws["KeyMaterials"]) == 2  # KMS: one state, older material kept

    # deactivated: every version off; reactivated: the primary only, the older ones stay disabled
    await cli.ok("key", "deactivate", key_id)
    await sync_in_line(world, key_id)
    assert [e for _, _, e in azure_version_states(world.cluster, key_id)] == [False, False]
    assert [s for _, _, s in google_version_states(world.cluster, key_id)] == ["DISABLED", "DISABLED"]
    await cli.ok("key", "reactivate", key_id)
    world.clear_logs()
    await sync_in_line(world, key_id)
    assert [e for _, _, e in azure_version_states(world.cluster, key_id)] == [False, True]
    assert [s for _, _, s in google_version_states(world.cluster, key_id)] == ["DISABLED", "ENABLED"]
    assert world.mutating()["azure_key_vault"] == ["UpdateKey"], "an older version was enabled, even briefly"
    assert world.mutating()["google_kms"] == ["UpdateCryptoKeyVersion"], "an older version was enabled"

    # an older version enabled behind keyorch's back is drift; a push disables it again
    enable_older_behind_keyorchs_back(world, key_id)
    flagged = await cli("reconcile", "--once")
    assert flagged.code == 1, str(flagged)
    reasons = {(t["keystore_name"], t["reason"]) for t in flagged.json()["flagged_keys"] if t["key"] == key_id}
    assert reasons == {
        ("azure_key_vault", "older_key_version_is_enabled_in_keystore"),
        ("google_kms", "older_key_version_is_enabled_in_keystore"),
    }, flagged.json()
    doc = await sync_in_line(world, key_id)
    actions = {t["keystore_name"]: t["actions_taken"] for t in doc["targets"]}
    assert actions["azure_key_vault"] == actions["google_kms"] == ["disable_older_versions"], doc
    assert [e for _, _, e in azure_version_states(world.cluster, key_id)] == [False, True]
    assert [s for _, _, s in google_version_states(world.cluster, key_id)] == ["DISABLED", "ENABLED"]

    # turned off: the older versions are enabled again in every keystore that keeps them per version
    updated = await cli.ok("key", "update", key_id, "--no-deactivate-on-rotation")
    assert updated["deactivate_on_rotation"] is False
    assert {t["sync_flag"] for t in updated["targets"]} == {"pending"}, updated
    await sync_in_line(world, key_id)
    assert [e for _, _, e in azure_version_states(world.cluster, key_id)] == [True, True]
    assert [s for _, _, s in google_version_states(world.cluster, key_id)] == ["ENABLED", "ENABLED"]


async def test_templates_give_keys_deactivate_on_rotation(world: World) -> None:
    cli = world.cli
    made = await cli.ok(
        "template", "create", "--vault", "main", "--name", "rotating", "--keystore", "azure_key_vault",
        "--deactivate-on-rotation",
    )  # fmt: skip
    assert made["key"]["deactivate_on_rotation"] is True
    key = await cli.ok("key", "create", "--template", "rotating", "--label", "fromtemplate")
    assert key["deactivate_on_rotation"] is True
    overridden = await cli.ok(
        "key", "create", "--template", "rotating", "--label", "overridden", "--no-deactivate-on-rotation"
    )
    assert overridden["deactivate_on_rotation"] is False
    changed = await cli.ok("template", "update", "rotating", "--no-deactivate-on-rotation")
    assert changed["key"]["deactivate_on_rotation"] is False
    assert (await cli.ok("key", "show", key["id"]))["deactivate_on_rotation"] is True  # keys keep theirs
    later = await cli.ok("key", "create", "--template", "rotating", "--label", "later")
    assert later["deactivate_on_rotation"] is False
