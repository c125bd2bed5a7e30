"""Rotation on schedule over the four fakes (on loopback): a ``P90D`` policy, keyorch's clock (a FixedClock in
process) and the fakes' clocks (their /_fake/clock) moved on a year a week at a time, two controllers (replicas)
passing at once on one database: exactly four rotations per key, made by the scheduler in four audited
transactions, and in every keystore four new versions, each made about 90 days after the one before (the fakes'
/_fake/state and their request logs say so; Cloud KMS's clock stays, see World.advance). Then `keyorch plan`'s
document lists the next rotations with their dates, and the overdue gauge counts the keys left due. On SQLite
and on PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.e2e.harness import KEY_FINDERS, KINDS, ROTATE_OPERATION, connect_request, start_world_fakes

from keyorch import metrics
from keyorch.audit import Actor
from keyorch.crypto import MasterKey, generate_master_key
from keyorch.domain.clock import FixedClock
from keyorch.domain.models import SyncFlag
from keyorch.fakes.registry import FakeCluster
from keyorch.reconcile import report
from keyorch.reconcile.clients import ClientPool
from keyorch.reconcile.controller import Controller
from keyorch.service import keys, keystores, rotation, templates, vaults
from keyorch.service.context import ServiceContext
from keyorch.store.engine import migrate
from keyorch.store.repository import Store

KEYS = 3
START = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
#: 13 weeks in two steps: 45 + 46 days
HALF_QUARTERS = (timedelta(days=45), timedelta(days=46))

#: the fakes whose clocks move with keyorch's (see World.advance)
MOVED = tuple(kind for kind in KINDS if kind != "google_kms")


def _aws(key: Mapping[str, Any]) -> list[str]:
    return [m["CreationDate"] for m in key["KeyMaterials"]]


def _azure(key: Mapping[str, Any]) -> list[str]:
    return [datetime.fromtimestamp(v["created"], UTC).isoformat() for v in key["versions"]]


def _google(key: Mapping[str, Any]) -> list[str]:
    return [v["createTime"].replace("Z", "+00:00") for v in key["cryptoKeyVersions"]]


def _ibm(key: Mapping[str, Any]) -> list[str]:
    return [v["creationDate"] for v in key["versions"]]


#: when each version of a key was made, oldest first, as the fake's state shows them
VERSION_TIMES: dict[str, Callable[[Mapping[str, Any]], list[str]]] = {
    "aws_kms": _aws,
    "azure_key_vault": _azure,
    "google_kms": _google,
    "ibm_key_protect": _ibm,
}


@dataclass
class World:
    cluster: FakeCluster
    store: Store
    clock: FixedClock
    ctx: ServiceContext
    replicas: list[Controller]
    key_ids: list[str]

    async def advance(self, delta: timedelta) -> None:
        """keyorch's clock and the fakes', moved on together (the fakes' over their admin route). Not Cloud KMS's:
        the adapter signs its OAuth assertion with the real time (``iat``), and the fake, as Google does, refuses
        one too far from its own clock."""
        self.clock.advance(seconds=delta.total_seconds())
        async with aiohttp.ClientSession() as session:
            for kind in MOVED:
                body = {"advance_seconds": delta.total_seconds()}
                async with session.post(self.cluster[kind].url + "/_fake/clock", json=body) as resp:
                    assert resp.status == 200, await resp.text()

    async def pass_all(self, replicas: int = 2) -> None:
        """The replicas' passes at once, then passes until every key is in sync everywhere."""
        await asyncio.gather(*(c.run_once() for c in self.replicas[:replicas]))
        for _ in range(5):
            summary = await self.replicas[0].run_once()
            if summary.exit_code == 0:
                return
        flagged = [
            f"{t.keystore_name}: {t.target.sync_flag.value} {t.target.reason} {t.error or t.target.last_error}"
            for o in summary.outcomes.values()
            for t in o.targets
            if not t.plan.in_sync
        ]
        raise AssertionError(f"not in sync after 5 passes: {summary.as_json()} {flagged}")


@pytest.fixture
async def world(db_url: str, tmp_path: Path) -> AsyncIterator[World]:
    cluster, credentials, _ = await start_world_fakes(tmp_path)
    store = Store.from_url(db_url)
    other = Store.from_url(db_url)  # the second replica's own connections
    pools: list[ClientPool] = []
    try:
        await migrate(store.engine)
        clock = FixedClock(START)
        master_key = MasterKey.from_base64(generate_master_key())
        ctx = ServiceContext(store=store, actor=Actor("alice"), clock=clock, master_key=master_key)
        await vaults.create_vault(ctx, "v")
        for kind in KINDS:
            await keystores.connect_keystore(ctx, connect_request("v", kind, cluster, credentials[kind]))
        await templates.create_template(
            ctx, vault="v", name="t", keystores=list(KINDS), state="active", rotation_policy="P90D"
        )
        key_ids = [(await keys.create_key(ctx, template="t", label=f"k{i}")).id for i in range(KEYS)]
        pools = [ClientPool(store, master_key), ClientPool(other, master_key)]
        replicas = [Controller(s, p, clock) for s, p in zip((store, other), pools, strict=True)]
        yield World(cluster, store, clock, ctx, replicas, key_ids)
    finally:
        for pool in pools:
            await pool.aclose()
        await cluster.stop(grace_seconds=0.2)
        await other.close()
        await store.close()


async def test_a_year_of_p90d_rotates_every_key_four_times_in_every_keystore_together(world: World) -> None:
    await world.pass_all()  # the keys made in every keystore
    plan = await report.plan_document(world.replicas[0], [], world.clock.now())
    assert [(r["key"], r["version"], r["next_rotation_at"], r["overdue"]) for r in plan["rotations"]] == [
        (key_id, 2, (START + timedelta(days=90)).isoformat(), False) for key_id in sorted(world.key_ids)
    ]

    for _ in range(4):  # each quarter a pass half-way (nothing is due) and one 91 days on (each key is due)
        for half in HALF_QUARTERS:
            await world.advance(half)
            await world.pass_all()
    await world.advance(timedelta(days=1))  # 365 days after the keys were made
    await world.pass_all()

    # keyorch: four rotations per key, each one audited transaction of the scheduler's
    async with world.store.read() as tx:
        records = await tx.list_audit(object_ids=world.key_ids, limit=10_000)
        found = {k.id: k for k in await tx.keys_by_id(world.key_ids)}
    for key_id, key in found.items():
        made = [r for r in records if r.object_id == key_id and r.action == "key.rotate" and r.outcome == "accepted"]
        assert [r.user for r in made] == ["scheduler"] * 4, [(r.user, r.at) for r in made]
        assert [r.at for r in made] == [START + timedelta(days=d) for d in (91, 182, 273, 364)]
        assert key.current_version == 5
        assert all(t.key_version == 5 and t.sync_flag is SyncFlag.IN_SYNC for t in key.targets)

    # the providers: five versions of every key (the first and four rotations), made ~90 days apart
    for kind in KINDS:
        fake = world.cluster[kind].fake
        assert fake.log.counts.get(ROTATE_OPERATION[kind], 0) == 4 * KEYS, (kind, dict(fake.log.counts))
        async with aiohttp.ClientSession() as session, session.get(world.cluster[kind].url + "/_fake/state") as resp:
            assert resp.status == 200
            state = await resp.json()
        for key_id in world.key_ids:
            [held] = KEY_FINDERS[kind](state, key_id)
            times = [datetime.fromisoformat(t) for t in VERSION_TIMES[kind](held)]
            assert len(times) == 5, (kind, times)
            if kind in MOVED:
                gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
                assert all(timedelta(days=90) < gap < timedelta(days=92) for gap in gaps), (kind, gaps)

    plan = await report.plan_document(world.replicas[0], world.key_ids[:1], world.clock.now())
    [upcoming] = plan["rotations"]
    assert (upcoming["version"], upcoming["next_rotation_at"]) == (6, (START + timedelta(days=454)).isoformat())


async def test_the_overdue_gauge_counts_the_due_keys_no_pass_rotated(world: World) -> None:
    await world.pass_all()
    await world.advance(timedelta(days=90))
    left = await rotation.rotate_due(world.replicas[0].scheduler, owns=lambda key_id: key_id == world.key_ids[0])
    assert left.rotated == [world.key_ids[0]] and left.overdue == KEYS - 1
    assert metrics.KEYS_OVERDUE_FOR_ROTATION._value.get() == KEYS - 1
    plan = await report.plan_document(world.replicas[0], [], world.clock.now())
    assert sorted(r["key"] for r in plan["rotations"] if r["overdue"]) == sorted(world.key_ids[1:])
    await world.pass_all(replicas=1)  # replicas passing at once are the test above's
    assert metrics.KEYS_OVERDUE_FOR_ROTATION._value.get() == 0
    async with world.store.read() as tx:
        assert sorted(k.current_version for k in await tx.keys_by_id(world.key_ids)) == [2] * KEYS
