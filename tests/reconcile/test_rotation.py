"""Rotation through the reconciler on an in-memory keystore and a real SQLite store: a rotated key gets
exactly one new primary version in the keystore, also when the rotation's answer is lost or the process dies
between the provider's rotation and its record; the rule (active only, once an hour) is refused by name.
(The four providers' own rotation, over the fakes, is tested in tests/providers.)"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import delete
from tests.reconcile.memory_keystore import MemoryKeystore, builder_for, one_keystore_store

from keyorch import metrics
from keyorch.domain.clock import FixedClock
from keyorch.domain.errors import RuleViolation
from keyorch.domain.models import SyncFlag, SyncReason
from keyorch.providers.base import KeyRef, KeyVersion
from keyorch.reconcile.clients import ClientPool
from keyorch.reconcile.controller import Controller
from keyorch.reconcile.engine import Reconciler
from keyorch.reconcile.queue import Backoff
from keyorch.service import keys, rotation
from keyorch.service.context import ServiceContext
from keyorch.store.schema import key_leases


def rotations() -> dict[str, float]:
    """keyorch_rotations_total of keystore ``ks``, by outcome (every test's keystore is ``ks``: compare deltas)."""
    found = {
        outcome: metrics.REGISTRY.get_sample_value("keyorch_rotations_total", {"keystore": "ks", "outcome": outcome})
        for outcome in metrics.ROTATION_OUTCOMES
    }
    return {outcome: value or 0.0 for outcome, value in found.items()}


def counted_since(before: dict[str, float]) -> dict[str, float]:
    return {outcome: n - before[outcome] for outcome, n in rotations().items() if n != before[outcome]}


async def _setup(tmp_path: Path, mem: MemoryKeystore) -> tuple[ServiceContext, ClientPool, Controller]:
    ctx = await one_keystore_store(tmp_path)
    pool = ClientPool(ctx.store, None, builder=builder_for({"ks": mem}))
    controller = Controller(ctx.store, pool, ctx.clock, workers=1, attempts=4, backoff=Backoff(0.001, 0.01))
    return ctx, pool, controller


async def test_a_rotation_makes_one_new_primary_and_the_target_records_it(tmp_path: Path) -> None:
    mem = MemoryKeystore("ks")
    ctx, pool, controller = await _setup(tmp_path, mem)
    try:
        key = await keys.create_key(ctx, template="t", label="k", state="active")
        assert (await controller.run_once()).exit_code == 0
        rotated = await rotation.rotate_key(ctx, key.id)
        assert rotated.current_version == 2
        [pending] = rotated.targets
        assert pending.sync_flag is SyncFlag.PENDING

        plan = await Reconciler(ctx.store, pool, ctx.clock).plan(key.id)
        [target] = plan.targets
        assert [a.value for a in target.plan.actions] == ["rotate"]
        assert target.plan.target.reason is SyncReason.KEY_VERSION_IS_NOT_CURRENT_IN_KEYSTORE

        before = rotations()
        assert (await controller.run_once()).exit_code == 0
        [mk] = mem.keys.values()
        assert mk.versions == ["v1", "v2"] and mem.calls["rotated"] == 1
        assert counted_since(before) == {"rotated": 1}
        after = await keys.get_key(ctx, key.id)
        [t] = after.targets
        assert (t.key_version, t.primary_version_id, t.sync_flag) == (2, "v2", SyncFlag.IN_SYNC)
        assert (await controller.run_once()).exit_code == 0
        assert mem.calls["rotated"] == 1  # in line: nothing more
        found = await rotation.key_versions(ctx, key.id)
        assert [v.version for v in found.versions] == [1, 2]
    finally:
        await pool.aclose()
        await ctx.store.close()


async def test_a_lost_rotation_answer_never_rotates_twice(tmp_path: Path) -> None:
    mem = MemoryKeystore("ks", lose_rotation_answers=2)
    ctx, pool, controller = await _setup(tmp_path, mem)
    try:
        key = await keys.create_key(ctx, template="t", label="k", state="active")
        assert (await controller.run_once()).exit_code == 0
        await rotation.rotate_key(ctx, key.id)
        before = rotations()
        await controller.run_once()
        await controller.run_once()
        [mk] = mem.keys.values()
        assert mk.versions == ["v1", "v2"], "the answer was lost twice; the rotation was made once"
        # sent and not answered, then found made (nothing sent)
        assert counted_since(before) == {"in_doubt": 1, "recognised": 1}
        after = await keys.get_key(ctx, key.id)
        assert [(t.key_version, t.primary_version_id, t.sync_flag) for t in after.targets] == [
            (2, "v2", SyncFlag.IN_SYNC)
        ]
    finally:
        await pool.aclose()
        await ctx.store.close()


class Killed(BaseException):
    """The process dying: no ``except Exception`` of keyorch's sees it, nothing more runs."""


@dataclass
class DiesAfterRotating(MemoryKeystore):
    """The provider rotates, then this process dies before anything is recorded (SIGKILL's effect on the
    store: the results transaction never runs)."""

    killed: bool = False

    async def rotate(self, ref: KeyRef, *, from_version: str) -> KeyVersion:
        made = await super().rotate(ref, from_version=from_version)
        if self.calls["rotated"] == 1 and not self.killed:
            self.killed = True
            raise Killed("killed after the provider rotated")
        return made


async def test_a_process_killed_between_rotation_and_record_rotates_once_after_restart(tmp_path: Path) -> None:
    mem = DiesAfterRotating("ks")
    ctx, pool, controller = await _setup(tmp_path, mem)
    try:
        key = await keys.create_key(ctx, template="t", label="k", state="active")
        assert (await controller.run_once()).exit_code == 0
        await rotation.rotate_key(ctx, key.id)
        before = rotations()
        with pytest.raises(Killed):
            outcome = await Reconciler(ctx.store, pool, ctx.clock).reconcile_key(key.id)
            pytest.fail(f"not killed: {outcome}")
        stored = await keys.get_key(ctx, key.id)
        assert [t.primary_version_id for t in stored.targets] == ["v1"]  # the base was recorded before it
        assert [t.key_version for t in stored.targets] == [1]  # the rotation's own record was not
        async with ctx.store.transaction() as tx:  # the dead holder's lease runs out
            await tx.conn.execute(delete(key_leases).where(key_leases.c.key_id == key.id))
        clock = ctx.clock
        restarted = ClientPool(ctx.store, None, builder=builder_for({"ks": mem}))
        again = Controller(ctx.store, restarted, clock, workers=1, attempts=3, backoff=Backoff(0.001, 0.01))
        try:
            assert (await again.run_once()).exit_code == 0
        finally:
            await restarted.aclose()
        [mk] = mem.keys.values()
        assert mk.versions == ["v1", "v2"] and mem.calls["rotated"] == 1
        assert counted_since(before) == {"in_doubt": 1, "recognised": 1}
        after = await keys.get_key(ctx, key.id)
        assert [(t.key_version, t.primary_version_id) for t in after.targets] == [(2, "v2")]
    finally:
        await pool.aclose()
        await ctx.store.close()


async def test_only_an_active_key_rotates_and_at_most_once_an_hour(tmp_path: Path) -> None:
    ctx = await one_keystore_store(tmp_path)
    try:
        waiting = await keys.create_key(ctx, template="t", label="p")
        with pytest.raises(RuleViolation, match="rotate is allowed only from active"):
            await rotation.rotate_key(ctx, waiting.id)
        active = await keys.create_key(ctx, template="t", label="a", state="active")
        await rotation.rotate_key(ctx, active.id)
        with pytest.raises(RuleViolation, match=r"at most once every 3600 s .*next allowed at"):
            await rotation.rotate_key(ctx, active.id)
        assert isinstance(ctx.clock, FixedClock)
        ctx.clock.advance(hours=1)
        assert (await rotation.rotate_key(ctx, active.id)).current_version == 3
    finally:
        await ctx.store.close()
