"""Issue 13: three `keyorch serve` replicas (real subprocesses) on one real PostgreSQL, the four fakes.

The replicas share the keys (each reconciles some, counted by its own metric), list each keystore
once per interval for the whole cluster, take over the share of a replica that was SIGKILLed, and
never act twice: at the end each fake holds exactly one key per managed key (its own state, read
from the fake), Azure keys have one version, no destruction was scheduled twice, no fake refused a
call for its state table, and the audit chain verifies. A replica paused (SIGSTOP) past its leases
makes no provider call once resumed.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from keyorch.crypto import generate_master_key
from tests.daemon.harness import (
    ApiClient,
    DaemonProcess,
    eventually,
    setup_world_via_api,
    slow_every_call,
    write_config,
)
from tests.daemon.world import World, in_sync, is_ready, run_keyorch
from tests.e2e.harness import (
    EXPECTED,
    KINDS,
    RejectionRecorder,
    azure_keys,
    clear_faults,
    duplicates,
    mutating_calls,
    provider_states,
    start_world_fakes,
    successful_creates,
)

KEYS = int(os.environ.get("KEYORCH_HA_TEST_KEYS", "120"))  # the run: 500
KILLS = 10
REPLICAS = 3
RESYNC_SECONDS = 5.0
QUIET_SECONDS = 4 * RESYNC_SECONDS
SCHEDULE_DESTRUCTION = {
    "aws_kms": "ScheduleKeyDeletion",
    "azure_key_vault": "DeleteKey",
    "google_kms": "DestroyCryptoKeyVersion",
    "ibm_key_protect": "DeleteKey",
}


@dataclass
class Replicas:
    world: World
    config: Path
    recorder: RejectionRecorder
    slots: list[DaemonProcess | None] = field(default_factory=list)
    started: list[DaemonProcess] = field(default_factory=list)

    async def start(self, slot: int) -> DaemonProcess:
        daemon = await DaemonProcess.start(self.world.workdir, self.config)
        self.started.append(daemon)
        await eventually(lambda: is_ready(self.world.client(daemon)), 30, f"replica {slot} ready")
        while len(self.slots) <= slot:
            self.slots.append(None)
        self.slots[slot] = daemon
        return daemon

    def live(self) -> list[tuple[int, DaemonProcess]]:
        return [(i, d) for i, d in enumerate(self.slots) if d is not None and d.proc.returncode is None]

    def client(self, rng: random.Random) -> ApiClient:
        return self.world.client(rng.choice(self.live())[1])


@pytest.fixture
async def replicas(tmp_path: Path, pg_url: str) -> AsyncIterator[Replicas]:
    cluster, credentials, recorder = await start_world_fakes(tmp_path)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
    world = World(tmp_path, cluster, credentials, session, master_key=generate_master_key())
    config = write_config(
        tmp_path / "ha.yaml",
        pg_url,
        master_key=world.master_key,
        workers=8,
        resync_seconds=RESYNC_SECONDS,
        reconcile={"lease_seconds": 10.0, "heartbeat_seconds": 1.0},
    )
    group = Replicas(world, config, recorder)
    try:
        yield group
    finally:
        for daemon in group.started:
            if daemon.proc.returncode is None and daemon.proc.pid:
                os.kill(daemon.proc.pid, signal.SIGCONT)
            await daemon.kill()
        await session.close()
        await cluster.stop()


def _keys_reconciled(metrics_text: str) -> float:
    match = re.search(r"^keyorch_keys_reconciled_total (\S+)$", metrics_text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def _metrics(client: ApiClient) -> str:
    async with client.session.get(f"{client.base}/metrics") as response:
        return await response.text()


#: the state each action leads to
LEADS_TO = {"activate": "active", "deactivate": "deactivated", "reactivate": "active", "destroy": "destroyed"}


async def _change(group: Replicas, rng: random.Random, key_id: str, action: str) -> None:
    """One state action through a random live replica, until the key is in the state it leads to
    (a try on a replica killed meanwhile may or may not have been accepted; 412: the reconciler
    recorded a result between our read and our write)."""
    route = "activate" if action == "reactivate" else action  # UKO: activate a deactivated key
    for _ in range(20):
        client = group.client(rng)
        try:
            current = await client.api("GET", f"/managed_keys/{key_id}")
            if current.doc["state"] == LEADS_TO[action]:
                return
            answer = await client.api("POST", f"/managed_keys/{key_id}/{route}", if_match=current.headers["ETag"])
        except (aiohttp.ClientError, KeyError):
            await asyncio.sleep(0.2)
            continue
        if answer.status == 200:
            return
        if answer.status not in (409, 412, 503):
            raise AssertionError(f"{action} {key_id}: {answer.status} {answer.doc}")
        await asyncio.sleep(0.1)
    raise AssertionError(f"{action} {key_id}: not done after 20 tries")


@pytest.mark.postgres
async def test_three_replicas_share_the_keys_survive_kills_and_act_once(replicas: Replicas) -> None:
    group, cluster = replicas, replicas.world.cluster
    rng = random.Random(13)
    for slot in range(REPLICAS):
        await group.start(slot)
    admin = group.world.client(group.slots[0])  # type: ignore[arg-type]
    template, _ = await setup_world_via_api(admin, cluster.running, group.world.credentials)
    keys = []
    for start in range(0, KEYS, 25):
        batch = range(start, min(start + 25, KEYS))
        keys += await asyncio.gather(*(group.client(rng).create_key(template, f"ha-{i}") for i in batch))
    ids = [k["id"] for k in keys]
    desired = dict.fromkeys(ids, "active")
    await asyncio.gather(*(_change(group, rng, key_id, "activate") for key_id in ids))

    async def converged() -> bool | None:
        client = group.client(rng)
        for start in range(0, len(ids), 50):
            batch = ids[start : start + 50]
            try:
                targets = await asyncio.gather(*(client.key_targets(k) for k in batch))
            except aiohttp.ClientError:
                return None
            if not all(in_sync(t) for t in targets):
                return None
        return True

    await eventually(converged, 240, "every key active everywhere", interval=1)
    shares = [_keys_reconciled(await _metrics(group.world.client(d))) for _, d in group.live()]
    assert all(share > 0 for share in shares) and len(shares) == REPLICAS, shares  # each did a share

    # the periodic listing runs once per interval for the cluster, not once per replica: Cloud KMS's
    # ListCryptoKeys (one page here, plus at most a health check's) counted in a quiet while
    google = cluster["google_kms"].fake
    before = google.log.counts["ListCryptoKeys"]
    await asyncio.sleep(QUIET_SECONDS)
    listed = sum(1 for e in google.log.entries if e.operation == "ListCryptoKeys") - before
    runs = QUIET_SECONDS / RESYNC_SECONDS
    assert 1 <= listed <= 2 * (runs + 2), (
        f"{listed} ListCryptoKeys in {QUIET_SECONDS} s (resync every {RESYNC_SECONDS} s)"
    )

    # a stream of changes through random replicas while replicas are SIGKILLed and restarted
    for kill in range(KILLS):
        batch = rng.sample(ids, 12)
        actions = []
        for key_id in batch:
            state = desired[key_id]
            action = {"active": "deactivate", "deactivated": rng.choice(["reactivate", "destroy"])}.get(state)
            if action is None:
                continue
            desired[key_id] = LEADS_TO[action]
            actions.append(_change(group, rng, key_id, action))
        await asyncio.gather(*actions)
        slot, victim = rng.choice(group.live())
        victim.proc.send_signal(signal.SIGKILL)
        await victim.wait(10)
        group.slots[slot] = None
        await asyncio.sleep(rng.uniform(0.2, 1.5))
        if kill % 3 != 2 or len(group.live()) < 2:  # now and then two replicas carry the cluster a while
            await group.start(slot)
    for slot in range(REPLICAS):
        if group.slots[slot] is None or group.slots[slot].proc.returncode is not None:  # type: ignore[union-attr]
            await group.start(slot)

    lagging: list[Any] = []

    async def all_converged() -> bool | None:
        client = group.client(rng)
        docs = []
        try:
            for start in range(0, len(ids), 50):  # within the daemon's cap on requests at once
                docs += await asyncio.gather(
                    *(client.api("GET", f"/managed_keys/{k}") for k in ids[start : start + 50])
                )
        except aiohttp.ClientError:
            return None
        if any(d.status != 200 for d in docs):
            return None
        lagging[:] = [
            d.doc
            for k, d in zip(ids, docs, strict=True)
            if d.doc["state"] != desired[k] or not in_sync(d.doc["targets"])
        ]
        return None if lagging else True

    try:
        await eventually(all_converged, 240, "every key converged after the kills", interval=2)
    except AssertionError:
        raise AssertionError(f"{len(lagging)} keys not converged, e.g. {lagging[:2]}") from None
    for key_id in ids:
        assert provider_states(cluster, key_id) == EXPECTED[desired[key_id]], key_id
    assert duplicates(cluster, ids) == {kind: {} for kind in KINDS}
    for kind in KINDS:
        assert successful_creates(kind, cluster[kind].fake) == KEYS, kind
    azure = cluster["azure_key_vault"].fake.state_snapshot()
    assert [k for k in ids for key in azure_keys(azure, k) if len(key["versions"]) != 1] == []
    destroyed = sum(1 for state in desired.values() if state == "destroyed")
    for kind in KINDS:
        scheduled = [e for e in cluster[kind].fake.log.entries if e.operation == SCHEDULE_DESTRUCTION[kind]]
        assert sum(1 for e in scheduled if e.status is not None and e.status < 300) == destroyed, kind  # once each
    assert group.recorder.invalid_state() == []
    code, out, err = await run_keyorch(group.world, "--config", str(group.config), "audit", "verify")
    assert code == 0, out + err


async def _live_lease_holders(pg_url: str) -> list[str]:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(pg_url.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT holder FROM key_leases WHERE expires_at > now()"))
            return [str(r) for r in rows.scalars()]
    finally:
        await engine.dispose()


async def _pg_sessions(pg_url: str) -> list[str]:
    """The database's sessions that hold or wait for locks: state, since when, what they last ran."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(pg_url.replace("postgresql://", "postgresql+asyncpg://", 1))
    query = (
        "SELECT a.pid, a.application_name, a.state, a.wait_event_type, now() - a.xact_start AS age,"
        " left(a.query, 80) AS query, count(l.*) FILTER (WHERE l.granted) AS held,"
        " count(l.*) FILTER (WHERE NOT l.granted) AS waiting"
        " FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid"
        " WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()"
        " GROUP BY a.pid, a.application_name, a.state, a.wait_event_type, a.xact_start, a.query"
    )
    try:
        async with engine.connect() as conn:
            return [" ".join(map(str, row)) for row in await conn.execute(text(query))]
    finally:
        await engine.dispose()


def _lag_report(docs: list[Any], other: DaemonProcess) -> str:
    """A short account of the keys that did not converge (CI shows only the start of a long message)."""
    lagging = [d.doc for d in docs if d.doc["state"] != "deactivated" or not in_sync(d.doc["targets"])]

    def shape(doc: dict[str, Any]) -> str:
        parts = [f"{t['keystore_name']}={t['status']}/{t['reason'] or t['sync_flag']}" for t in doc["targets"]]
        return f"{doc['state']}:{','.join(parts)}"

    shapes = sorted({shape(d) for d in lagging})
    notes = [
        f"{r.get('event')}|{str(r.get('error') or r.get('reason') or '')[:120]}"
        for r in other.logs()
        if r.get("level") in ("warning", "error")
    ]
    return f"{len(lagging)} keys lag: {shapes[:3]}; the other replica's last warnings: {notes[-6:]}"


@pytest.mark.postgres
async def test_a_replica_paused_past_its_leases_makes_no_call_once_resumed(replicas: Replicas, pg_url: str) -> None:
    group, cluster = replicas, replicas.world.cluster
    rng = random.Random(7)
    paused, other = await group.start(0), await group.start(1)
    client = group.world.client(other)
    template, _ = await setup_world_via_api(client, cluster.running, group.world.credentials)
    keys = [await client.create_key(template, f"pause-{i}") for i in range(16)]
    await asyncio.gather(*(_change(group, rng, k["id"], "activate") for k in keys))

    async def converged(state: str) -> bool | None:
        docs = await asyncio.gather(*(client.api("GET", f"/managed_keys/{k['id']}") for k in keys))
        return True if all(d.doc["state"] == state and in_sync(d.doc["targets"]) for d in docs) else None

    await eventually(lambda: converged("active"), 120, "every key active everywhere", interval=0.5)

    # every provider call now takes 3 s: the replica to pause is caught holding leases, mid-call
    slow_every_call(cluster, 3000)
    await asyncio.gather(*(_change(group, rng, k["id"], "deactivate") for k in keys))
    marker = f":{paused.proc.pid}:"

    async def holding() -> bool | None:
        return True if any(marker in h for h in await _live_lease_holders(pg_url)) else None

    await eventually(holding, 60, "the replica to pause holds some keys' leases", interval=0.05)
    paused.proc.send_signal(signal.SIGSTOP)
    clear_faults(cluster)
    # its leases expire (10 s), the other replica takes the keys over and deactivates them everywhere
    try:
        await eventually(
            lambda: converged("deactivated"), 180, "every key deactivated by the other replica", interval=1
        )
    except AssertionError:
        docs = await asyncio.gather(*(client.api("GET", f"/managed_keys/{k['id']}") for k in keys))
        raise AssertionError(f"{_lag_report(docs, other)}; sessions: {await _pg_sessions(pg_url)}") from None
    for k in keys:
        assert provider_states(cluster, k["id"]) == EXPECTED["deactivated"], k["id"]
    before = {kind: len(mutating_calls(kind, cluster[kind].fake)) for kind in KINDS}
    resumed_at = datetime.now(UTC).isoformat()
    paused.proc.send_signal(signal.SIGCONT)
    resumed = group.world.client(paused)
    await eventually(lambda: is_ready(resumed), 30, "the resumed replica answers again")
    await asyncio.sleep(5)  # it rejoins, takes its share back and reconciles it: nothing left to do
    after = {kind: len(mutating_calls(kind, cluster[kind].fake)) for kind in KINDS}
    if after != before:
        _, out, _ = await run_keyorch(
            group.world, "--config", str(group.config), "--output", "json", "audit", "list", "--limit", "100000"
        )
        calls = [
            (r["at"], r["outcome"], json.loads(r["detail"]).get("lease"), json.loads(r["detail"]).get("keystore_type"))
            for r in json.loads(out)
            if r["source"] == "reconciler" and r["action"] == "provider.disable"
        ]
        raise AssertionError(
            f"after resume: {after} vs {before}; paused pid {paused.proc.pid}, other {other.proc.pid}; "
            f"resumed at {resumed_at}; disable calls audited: {calls[-12:]}"
        )
    assert await converged("deactivated")
    assert group.recorder.invalid_state() == []
