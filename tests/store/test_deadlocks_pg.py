"""Issue 13, point 2, on a real PostgreSQL: a deadlock between concurrent changes never reaches the
caller. PostgreSQL aborts one of the deadlocked transactions (SQLSTATE 40P01); the change is run
again from the start, so every caller gets its answer, each change is applied exactly once, and the
audit chain still verifies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import pytest
from sqlalchemy import text

from keyorch.audit import Actor
from keyorch.domain.models import TargetStatus
from keyorch.service import keys, keystores, templates, vaults
from keyorch.service.context import Change, ServiceContext
from keyorch.store import audit_chain
from keyorch.store.engine import migrate
from keyorch.store.repository import Store, Transaction
from tests.conftest import _create_database, _drop_database, postgres_admin_url

pytestmark = pytest.mark.postgres
Body = Callable[[Transaction], Awaitable[tuple[int, Change]]]


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    admin = postgres_admin_url()
    assert admin is not None
    url = await _create_database(admin)
    s = Store.from_url(url)
    try:
        await migrate(s.engine)
        yield s
    finally:
        await s.close()
        await _drop_database(admin, url)


def ctx_for(store: Store) -> ServiceContext:
    return ServiceContext(store=store, actor=Actor(user="alice", source="api", role="vault_administrator"))


async def make_keys(ctx: ServiceContext, n: int) -> list[str]:
    await vaults.create_vault(ctx, "payments")
    ks = await keystores.connect_keystore(
        ctx,
        keystores.ConnectRequest(
            vault="payments", name="aws", type="aws_kms", region="us-east-1", credentials_from_environment=True
        ),
    )
    tmpl = await templates.create_template(ctx, vault="payments", name="t", keystores=[ks.id])
    return [(await keys.create_key(ctx, template=tmpl.id, label=f"k{i}")).id for i in range(n)]


def rename_in_order(order: list[str], suffix: str, first_locks: asyncio.Barrier | None) -> Body:
    """A change that locks ``order``'s keys one after the other (the key row first, as every writer of a
    key does) and renames each; on its first attempt it waits at ``first_locks`` once it holds its first key."""
    attempts = 0

    async def body(tx: Transaction) -> tuple[int, Change]:
        nonlocal attempts
        attempts += 1
        for i, key_id in enumerate(order):
            await tx.key_generation(key_id, lock=True)
            if i == 0 and first_locks is not None and attempts == 1:
                await first_locks.wait()  # both hold their first key: each now waits for the other's
            key = await tx.key(key_id)
            await tx.update_key(replace(key, name=f"{key.name}-{suffix}"), key.version)
        return attempts, Change(order[0], detail=f"renamed {len(order)} keys")

    return body


async def versions(store: Store, ids: list[str]) -> list[int]:
    async with store.read() as tx:
        return [(await tx.key(i)).version for i in ids]


async def test_two_changes_locking_two_keys_in_opposite_order_both_succeed(store: Store) -> None:
    ctx = ctx_for(store)
    a, b = await make_keys(ctx, 2)
    before = await versions(store, [a, b])
    barrier = asyncio.Barrier(2)
    results = await asyncio.wait_for(
        asyncio.gather(
            ctx.change("key.rename", "key", a, rename_in_order([a, b], "x", barrier)),
            ctx.change("key.rename", "key", b, rename_in_order([b, a], "y", barrier)),
        ),
        timeout=60,
    )
    assert sorted(results) == [1, 2]  # PostgreSQL aborted one of the two; it ran again and succeeded
    assert await versions(store, [a, b]) == [v + 2 for v in before]
    async with store.read() as tx:
        names = sorted([(await tx.key(a)).name, (await tx.key(b)).name])
        verified = await audit_chain.verify(tx.conn, None)
        audit = await tx.list_audit()
    assert all(name.endswith(("-x-y", "-y-x")) for name in names)
    assert [r.outcome for r in audit if r.action == "key.rename"] == ["accepted", "accepted"]
    assert verified.records == len(audit)


async def lock_waiters(store: Store) -> int:
    """How many sessions of this database wait for a row lock now (PostgreSQL's own view)."""
    async with store.engine.connect() as conn:
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        return int((await conn.execute(text(query))).scalar_one())


async def test_removing_a_key_while_the_reconciler_records_its_results_does_not_deadlock(store: Store) -> None:
    """The reconciler's result transaction locks the key's row, then writes its targets; removing the key
    used to delete the targets first and then wait for the key's row: a deadlock (40P01) that reached
    the caller of ``keyorch key remove``. Now both take the key's row first."""
    ctx = ctx_for(store)
    [key_id] = await make_keys(ctx, 1)
    key = await keys.destroy_key(ctx, key_id)
    confirmed = [replace(t, status=TargetStatus.DESTROYED, synced_generation=key.generation) for t in key.targets]
    async with store.transaction() as tx:
        await tx.update_targets(key.id, key.generation, confirmed)
    holding = asyncio.Event()

    async def reconciler_results(tx: Transaction) -> None:  # as Reconciler.reconcile_key records them
        await tx.key_generation(key.id, lock=True)
        holding.set()
        for _ in range(500):  # until the removal waits for a lock this transaction holds
            if await lock_waiters(store):
                break
            await asyncio.sleep(0.01)
        await tx.update_targets(key.id, key.generation, confirmed)

    async def reconciler() -> None:
        async with store.transaction() as tx:
            await reconciler_results(tx)

    async def remove() -> None:
        await holding.wait()
        await keys.remove_key(ctx, key.id)

    await asyncio.wait_for(asyncio.gather(reconciler(), remove()), timeout=60)
    async with store.read() as tx:
        assert await tx.key_generation(key.id) is None  # removed
        verified = await audit_chain.verify(tx.conn, None)
        audit = await tx.list_audit()
    assert [r.outcome for r in audit if r.action == "key.remove"] == ["accepted"]
    assert verified.records == len(audit)
