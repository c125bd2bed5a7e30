"""Crash: ``keyorch reconcile --once`` (a real subprocess on a SQLite file) is killed with SIGKILL
at many points of a run; a final clean run converges without any duplicate side effect.

The fakes run in this test's event loop with added latency (most requests wait 40-120 ms), so a
pass over 40 keys x 4 keystores lasts long enough for kills to land mid-run. Kill points are set
by progress, not by wall-clock time (which would depend on the machine's load): the k-th run is
killed as soon as the fakes have received ``KILL_AFTER[k]`` mutating requests from it, so the
kills land at increasing depths of the work, including between a request and its answer.

Half way to each kill, two keys are deactivated by another process (as through the API) while the run
works on them. Afterwards: every target in sync, each fake shows every key in its final desired state
(enabled, or disabled for those deactivated), per managed key exactly one
key in each fake, successful create operations per fake ≤ number of keys, and no intent left
``started`` (the journal's ``intents`` table; ``resolve_intents`` closes a target's open intents
once it is in line).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from tests.e2e.harness import (
    EXPECTED,
    KINDS,
    MUTATING,
    AsyncCli,
    RejectionRecorder,
    clear_faults,
    configure_faults,
    duplicates,
    provider_states,
    start_world_fakes,
    successful_creates,
)

from keyorch.audit import Actor
from keyorch.crypto import MasterKey
from keyorch.domain.clock import SystemClock
from keyorch.domain.models import SyncFlag
from keyorch.fakes.registry import FakeCluster, connect_args
from keyorch.service import keys, templates
from keyorch.service.context import ServiceContext
from keyorch.store.repository import Store
from keyorch.store.schema import intents

KEYS = 40
#: mutating requests (summed over the fakes) after which the k-th run is killed
KILL_AFTER = (1, 2, 3, 5, 7, 9, 11, 13, 15, 18, 21, 24)
LATENCY_RULES: list[dict[str, Any]] = [
    {
        "operation": "*",
        "rate": 0.8,
        "faults": [{"kind": "latency", "delay_ms": 40}, {"kind": "latency", "delay_ms": 120}],
    }
]
FAST_SETTINGS: dict[str, Any] = {"provider_quotas": False, "rate_per_second": 0}
RUN_TIMEOUT_SECONDS = 90.0
#: keys deactivated (as through the API) half way through each killed run
CHANGED_PER_RUN = 2


@dataclass
class Crashed:
    cli: AsyncCli
    cluster: FakeCluster
    recorder: RejectionRecorder
    key_ids: list[str]
    ctx: ServiceContext
    kills: list[int] = field(default_factory=list)  # mutating requests seen when each kill landed
    finished_early: int = 0
    desired: dict[str, str] = field(default_factory=dict)  # key id -> its desired state at the end


def mutating_requests(cluster: FakeCluster) -> int:
    return sum(cluster[k].fake.log.counts[op] for k in cluster for op in MUTATING[k])


async def setup(workdir: Path, cli: AsyncCli, cluster: FakeCluster, credentials: dict[str, Path]) -> list[str]:
    """keyorch init, a vault, the four keystores (through the CLI), then keys in-process (fast)."""
    assert (await cli("init")).code == 0
    await cli.ok("vault", "create", "crash")
    for kind in KINDS:
        await cli.ok(
            "keystore",
            "connect",
            "--vault",
            "crash",
            "--name",
            kind,
            *connect_args(kind, cluster[kind], credentials[kind]),
        )
    store = Store.from_url(cli.db_url)
    try:
        async with store.transaction() as tx:
            for ks in await tx.list_keystores():
                await tx.update_keystore(replace(ks, settings={**ks.settings, **FAST_SETTINGS}), ks.version)
        ctx = ServiceContext(
            store=store, actor=Actor("crash"), clock=SystemClock(), master_key=MasterKey.from_base64(cli.master_key)
        )
        await templates.create_template(
            ctx, vault="crash", name="everywhere", keystores=list(KINDS), naming_scheme="CRASH-{label}", state="active"
        )
        return [(await keys.create_key(ctx, template="everywhere", label=f"c{i:02d}")).id for i in range(KEYS)]
    finally:
        await store.close()


async def run_and_kill(world: Crashed, threshold: int, change: list[str]) -> None:
    """One ``reconcile --once`` killed after ``threshold`` mutating requests; half way there, the keys in
    ``change`` are deactivated (as through the API, by another process) while the run works."""
    start = mutating_requests(world.cluster)
    changed = False
    proc = await asyncio.create_subprocess_exec(
        *world.cli.argv("reconcile", "--once"),
        cwd=world.cli.workdir,
        env=world.cli.env(),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RUN_TIMEOUT_SECONDS
    while proc.returncode is None and loop.time() < deadline:
        seen = mutating_requests(world.cluster) - start
        if not changed and seen >= threshold / 2:
            changed = True
            for key_id in change:
                await keys.deactivate_key(world.ctx, key_id)
                world.desired[key_id] = "deactivated"
        if seen >= threshold:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            assert proc.returncode == -signal.SIGKILL
            world.kills.append(seen)
            return
        await asyncio.sleep(0.002)
    if proc.returncode is None:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"reconcile --once neither finished nor reached {threshold} mutating requests")
    world.finished_early += 1


@pytest.fixture
async def crashed(tmp_path: Path) -> AsyncIterator[Crashed]:
    cluster, credentials, recorder = await start_world_fakes(tmp_path)
    try:
        cli = AsyncCli(tmp_path)
        key_ids = await setup(tmp_path, cli, cluster, credentials)
        store = Store.from_url(cli.db_url)
        ctx = ServiceContext(
            store=store, actor=Actor("api"), clock=SystemClock(), master_key=MasterKey.from_base64(cli.master_key)
        )
        world = Crashed(cli, cluster, recorder, key_ids, ctx, desired=dict.fromkeys(key_ids, "active"))
        configure_faults(cluster, 7, LATENCY_RULES)
        for run, threshold in enumerate(KILL_AFTER):
            await run_and_kill(world, threshold, key_ids[run * CHANGED_PER_RUN : (run + 1) * CHANGED_PER_RUN])
        clear_faults(cluster)
        yield world
    finally:
        await ctx.store.close()
        await cluster.stop(grace_seconds=0.2)


async def test_killed_reconcile_resumes_without_duplicates(crashed: Crashed) -> None:
    assert len(crashed.kills) >= 10, f"only {len(crashed.kills)} kills landed mid-run ({crashed.finished_early} early)"

    # restart: clean runs until one reports everything in sync (bounded)
    final = None
    for _ in range(3):
        final = await crashed.cli("reconcile", "--once")
        if final.code == 0:
            break
    assert final is not None and final.code == 0, str(final)
    summary = final.json()
    assert summary["keys_checked"] == KEYS and summary["in_sync"] == KEYS, summary

    assert sorted(set(crashed.desired.values())) == ["active", "deactivated"]
    for key_id in crashed.key_ids:
        assert provider_states(crashed.cluster, key_id) == EXPECTED[crashed.desired[key_id]], key_id
    assert duplicates(crashed.cluster, crashed.key_ids) == {kind: {} for kind in KINDS}
    creates = {kind: successful_creates(kind, crashed.cluster[kind].fake) for kind in KINDS}
    assert all(n <= KEYS for n in creates.values()), creates
    assert crashed.recorder.invalid_state() == []

    store = Store.from_url(crashed.cli.db_url)
    try:
        async with store.transaction() as tx:
            open_intents = await tx.open_intents()
            rows = (await tx.conn.execute(select(intents.c.status, func.count()).group_by(intents.c.status))).all()
            by_status: dict[str, int] = {str(status): int(n) for status, n in rows}
            all_keys = await tx.list_keys()
    finally:
        await store.close()
    in_sync = {(k.id, t.keystore_id) for k in all_keys for t in k.targets if t.sync_flag is SyncFlag.IN_SYNC}
    assert len(in_sync) == KEYS * len(KINDS)
    unresolved = [i for i in open_intents if (i["key_id"], i["keystore_id"]) in in_sync]
    assert unresolved == [], (unresolved[:5], by_status)
    assert open_intents == [], by_status
    print(f"\ncrash: kills at {crashed.kills} mutating requests; creates {creates}; intents {by_status}")
