"""Rotation through a real ``keyorch serve``: SIGKILL between the providers' rotation and keyorch's record of it,
and the rotation rule refused through the API and ``keyorch --server`` (exit 3 / 409), lowered by its setting.

The kill lands in that window deterministically: every fake holds the answer of its rotate operation (the fault
``hold_after``: the rotation is carried out, its answer held), and the daemon is SIGKILLed once each fake's request
log shows every key's rotation carried out. keyorch has then recorded the base of each rotation (the provider's
primary before it) and nothing after it. A daemon started again on the same database recognises each rotation
(the primary is no longer the base) instead of sending it again: every fake holds exactly one new version of
every key, and its log exactly one rotation accepted per key. Google's rotation is two calls, and the kill falls
between them: the version made is made primary after the restart, not made again.
"""

from __future__ import annotations

import signal
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from keyorch.fakes.faults import ProviderFaults
from keyorch.store.repository import Store
from tests.daemon.cli_server import RemoteCli
from tests.daemon.harness import ADMIN_TOKEN, ApiClient, DaemonProcess, eventually
from tests.daemon.world import World, in_sync, serving, serving_world
from tests.e2e.harness import (
    KINDS,
    ROTATE_OPERATION,
    VERSION_READERS,
    accepted_rotations,
    carried_out,
    clear_faults,
)

KEYS = 3
CONVERGE_SECONDS = 90.0
#: a daemon's claim on a key: it cuts a call off at the claim's end (a held answer too), and the dead daemon's
#: keys wait this long after the kill
LEASE_SECONDS = 20


def hold_rotations(world: World) -> None:
    """Every fake carries out each rotation at once and holds its answer (an hour: past the kill)."""
    for kind in KINDS:
        rule = {"operation": ROTATE_OPERATION[kind], "rate": 1.0, "faults": [{"kind": "hold_after"}]}
        world.cluster[kind].fake.faults.configure(ProviderFaults.model_validate({"rules": [rule]}))


def held(world: World) -> dict[str, int]:
    """Per fake, the rotations carried out whose answer is held."""
    return {
        kind: sum(
            1
            for e in world.cluster[kind].fake.log.entries
            if e.operation == ROTATE_OPERATION[kind] and e.fault == "hold_after" and 200 <= (e.status or 0) < 300
        )
        for kind in KINDS
    }


def versions(world: World, key_id: str) -> dict[str, list[tuple[str, bool]]]:
    return {kind: VERSION_READERS[kind](world.cluster[kind].fake.state_snapshot(), key_id) for kind in KINDS}


async def rotate(client: ApiClient, key_id: str) -> tuple[int, Any]:
    etag = (await client.api("GET", f"/managed_keys/{key_id}")).headers["ETag"]
    answer = await client.api("POST", f"/managed_keys/{key_id}/rotate", if_match=etag)
    return answer.status, answer.doc


async def all_at(client: ApiClient, key_ids: list[str], version: int) -> bool | None:
    """Every key's four targets in sync and serving ``version``."""
    for key_id in key_ids:
        targets = await client.key_targets(key_id)
        if not in_sync(targets) or any(t["key_version"] != version for t in targets):
            return None
    return True


async def rotations_counted(client: ApiClient) -> dict[tuple[str, str], float]:
    """keyorch_rotations_total of this daemon, by (keystore, outcome)."""
    answer = await client.call("GET", "/metrics")
    families = {f.name: f for f in text_string_to_metric_families(answer.doc)}
    family = families.get("keyorch_rotations")
    samples = family.samples if family is not None else []
    return {(s.labels["keystore"], s.labels["outcome"]): s.value for s in samples if s.name.endswith("_total")}


async def test_sigkill_between_the_providers_rotation_and_its_record_rotates_once_after_restart(
    world: World, daemons: list[DaemonProcess]
) -> None:
    config = world.config(reconcile={"lease_seconds": LEASE_SECONDS})
    first, client, template = await serving_world(world, daemons, config)
    key_ids = []
    for i in range(KEYS):
        key = await client.create_key(template, f"rot{i}")
        (await client.activate(key["id"], key["etag"])).ok()
        key_ids.append(key["id"])
    waiting = await client.create_key(template, "waiting")  # pre-active: never rotates
    await eventually(lambda: all_at(client, key_ids, 1), CONVERGE_SECONDS, "every key in sync at version 1")
    before = {key_id: versions(world, key_id) for key_id in key_ids}
    assert all(len(v) == 1 for found in before.values() for v in found.values()), before

    hold_rotations(world)
    for key_id in key_ids:
        status, doc = await rotate(client, key_id)
        assert (status, doc["current_version"]) == (200, 2), doc

    async def all_held() -> bool | None:
        return True if held(world) == dict.fromkeys(KINDS, KEYS) else None

    try:
        await eventually(all_held, CONVERGE_SECONDS, f"{KEYS} rotations carried out and held in every fake", 0.02)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: held {held(world)}; daemon said:\n{first.output[-3000:]}") from None
    first.signal(signal.SIGKILL)
    assert await first.wait(30) == -signal.SIGKILL
    assert "cut off" not in first.output, first.output[-3000:]  # killed while every answer was still held

    store = Store.from_url(world.db_url)
    try:
        async with store.read() as tx:
            stored = {key_id: await tx.key(key_id) for key_id in key_ids}
            names = {ks.id: ks.name for ks in await tx.list_keystores()}
    finally:
        await store.close()
    for key in stored.values():
        assert key.current_version == 2
        # the base of each rotation was recorded before it was sent; the rotation's own record never was
        recorded = {names[t.keystore_id]: (t.key_version, t.primary_version_id) for t in key.targets}
        assert all(v == 1 and base for v, base in recorded.values()), (recorded, versions(world, key.id))
    for key_id in key_ids:  # the providers did rotate: two versions each (Google's new one not primary yet)
        assert all(len(v) == 2 for v in versions(world, key_id).values()), versions(world, key_id)

    clear_faults(world.cluster)
    second, client = await serving(world, daemons, config)
    await eventually(lambda: all_at(client, key_ids, 2), CONVERGE_SECONDS, "every key in sync at version 2")

    for key_id in key_ids:
        found = versions(world, key_id)
        targets = {t["keystore_name"]: t for t in await client.key_targets(key_id)}
        for kind in KINDS:
            (old, old_primary), (new, new_primary) = found[kind]
            assert (old, old_primary) == (before[key_id][kind][0][0], False) and new_primary, (kind, found[kind])
            assert targets[kind]["primary_version_id"] == new, (kind, targets[kind], found[kind])
    accepted = {kind: accepted_rotations(kind, world.cluster[kind].fake) for kind in KINDS}
    assert accepted == dict.fromkeys(KINDS, KEYS), accepted  # one rotation accepted per key in each fake
    google = world.cluster["google_kms"].fake
    assert carried_out(google, "UpdateCryptoKeyPrimaryVersion") == KEYS
    counted = await rotations_counted(client)
    # the restarted daemon recognised every rotation and sent none
    assert counted == {(kind, "recognised"): float(KEYS) for kind in KINDS}, counted

    # the rule, through the API and through `keyorch --server`, on the default interval (an hour)
    status, doc = await rotate(client, key_ids[0])
    assert status == 409, doc
    message = doc["errors"][0]["message"]
    assert "at most once every 3600 s (setting keys.rotation_min_interval_seconds)" in message, message
    status, doc = await rotate(client, waiting["id"])
    assert status == 409 and "rotate is allowed only from active" in doc["errors"][0]["message"], doc
    remote = RemoteCli(world.workdir, server=second.url, token=ADMIN_TOKEN)
    again = await remote("key", "rotate", key_ids[1])
    assert again.code == 3 and "at most once every 3600 s" in again.err, str(again)
    pending = await remote("key", "rotate", waiting["id"])
    assert pending.code == 3 and "rotate is allowed only from active" in pending.err, str(pending)
    second.signal(signal.SIGTERM)
    assert await second.wait(30) == 0

    # lowered to 0 (no limit), a key rotates again at once: one more version in every keystore, sent this time.
    # Key Protect keeps its own limit (once an hour per key): its keystore refuses until its clock has moved on
    lowered = world.config("lowered", extra={"keys": {"rotation_min_interval_seconds": 0}})
    _, client = await serving(world, daemons, lowered)
    status, doc = await rotate(client, key_ids[0])
    assert (status, doc["current_version"]) == (200, 3), doc
    ibm = "ibm_key_protect"

    async def refused_by_key_protect() -> dict[str, dict[str, Any]] | None:
        targets = {t["keystore_name"]: t for t in await client.key_targets(key_ids[0])}
        others = all(t["sync_flag"] == "in_sync" and t["key_version"] == 3 for k, t in targets.items() if k != ibm)
        return targets if others and targets[ibm]["last_error"] else None

    targets = await eventually(
        refused_by_key_protect, CONVERGE_SECONDS, "three keystores at version 3, Key Protect not"
    )
    assert targets[ibm]["key_version"] == 2 and targets[ibm]["sync_flag"] == "out_of_sync", targets[ibm]
    assert "rotate failed" in targets[ibm]["last_error"], targets[ibm]
    world.cluster[ibm].fake.clock.advance(3600)
    (await client.api("POST", f"/managed_keys/{key_ids[0]}/sync_status_in_keystores")).ok()
    await eventually(lambda: all_at(client, key_ids[:1], 3), CONVERGE_SECONDS, "the key in sync at version 3")
    assert all(len(v) == 3 and v[-1][1] for v in versions(world, key_ids[0]).values()), versions(world, key_ids[0])
    accepted = {kind: accepted_rotations(kind, world.cluster[kind].fake) for kind in KINDS}
    assert accepted == dict.fromkeys(KINDS, KEYS + 1), accepted
    counted = await rotations_counted(client)
    assert {k: v for k, v in counted.items() if k[1] != "refused"} == {(kind, "rotated"): 1.0 for kind in KINDS}
    assert counted.get((ibm, "refused"), 0) >= 1, counted
