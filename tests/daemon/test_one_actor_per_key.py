"""Issue 11, points 4 and 7, on `keyorch serve` (a real subprocess) over a real PostgreSQL.

Point 4: an API "sync" used to reconcile outside the work queue, so it raced the daemon's own worker
on the same key: deadlocks between the two transactions (a 503 to the user) and state actions sent
twice. Here every key is deactivated and synced at once while the fakes answer slowly, so that each
sync arrives while a worker is on the key; every sync must answer 200 and each fake must have been
asked to disable each key exactly once (counted in the fakes' own request logs).

Point 7: every mutating call the reconciler makes is in the audit chain (actor ``reconciler``, the
keystore, the provider's key id, the outcome), and `keyorch audit verify` still passes.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import pytest

from tests.daemon.harness import DaemonProcess, eventually, slow_every_call, write_config
from tests.daemon.world import World, in_sync, run_keyorch, serving, setup_world_via_api
from tests.e2e.harness import EXPECTED, KINDS, clear_faults, provider_states

KEYS = 12
#: the operation that disables a key, per fake
DISABLE = {
    "aws_kms": "DisableKey",
    "azure_key_vault": "UpdateKey",
    "google_kms": "UpdateCryptoKeyVersion",
    "ibm_key_protect": "DisableKey",
}


@pytest.mark.postgres
async def test_api_syncs_racing_the_workers_act_once_per_key_and_are_audited(
    world: World, daemons: list[DaemonProcess], pg_url: str
) -> None:
    config = write_config(world.workdir / "pg.yaml", pg_url, master_key=world.master_key, workers=4)
    _, client = await serving(world, daemons, config)
    template, _ = await setup_world_via_api(client, world.cluster.running, world.credentials)
    keys = [await client.create_key(template, f"k{i}") for i in range(KEYS)]
    await asyncio.gather(*(client.activate(k["id"], k["etag"]) for k in keys))

    async def all_in_sync() -> bool | None:
        targets = await asyncio.gather(*(client.key_targets(k["id"]) for k in keys))
        return True if all(in_sync(t) for t in targets) else None

    await eventually(all_in_sync, 60, "every key active in every keystore")
    for kind in KINDS:
        world.cluster[kind].fake.log.clear()
    slow_every_call(world.cluster, 150)  # each call takes a while: the syncs meet the workers on the keys

    async def deactivate_and_sync(key_id: str) -> int:
        etag = (await client.api("GET", f"/managed_keys/{key_id}")).headers["ETag"]
        (await client.api("POST", f"/managed_keys/{key_id}/deactivate", if_match=etag)).ok()
        answer = await client.api("POST", f"/managed_keys/{key_id}/sync_status_in_keystores")
        assert answer.status == 200, answer.doc
        return answer.status

    statuses = await asyncio.gather(*(deactivate_and_sync(k["id"]) for k in keys))
    assert statuses == [200] * KEYS
    await eventually(all_in_sync, 60, "every key deactivated in every keystore")
    clear_faults(world.cluster)
    for key in keys:
        assert provider_states(world.cluster, key["id"]) == EXPECTED["deactivated"]

    for kind in KINDS:
        calls = Counter(e.operation for e in world.cluster[kind].fake.log.entries)
        assert calls[DISABLE[kind]] == KEYS, f"{kind}: {dict(calls)}"  # once per key, never twice

    # point 7: the reconciler's own calls are in the audit chain, with the provider's key ids
    key = keys[0]
    code, out, err = await run_keyorch(
        world, "--config", str(config), "--output", "json", "audit", "list", "--object", key["id"]
    )
    assert code == 0, err
    records: list[dict[str, Any]] = json.loads(out)
    calls_audited = [r for r in records if r["source"] == "reconciler"]
    seen = Counter((r["action"], r["outcome"]) for r in calls_audited)
    assert seen == {("provider.create", "succeeded"): 4, ("provider.disable", "succeeded"): 4}, seen
    provider_ids = {t["keystore"]: t["key_id_in_keystore"] for t in await client.key_targets(key["id"])}
    for record in calls_audited:
        assert record["user"] == "reconciler"
        detail = json.loads(record["detail"])
        assert detail["key_id_in_keystore"] == provider_ids[detail["keystore_id"]], detail
        assert detail["lease"]["epoch"] >= 1 and detail["desired_state"] in ("active", "deactivated")
    assert {json.loads(r["detail"])["keystore_type"] for r in calls_audited} == set(KINDS)
    code, out, err = await run_keyorch(world, "--config", str(config), "audit", "verify")
    assert code == 0, out + err
