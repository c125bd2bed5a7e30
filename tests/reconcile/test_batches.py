"""A pass reads its keys in batches just ahead of the workers, and never acts on a desired state
that moved after the read: the journal's transaction re-checks the key's generation first."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from tests.reconcile.memory_keystore import MemoryKeystore, builder_for, one_keystore_store

from keyorch.reconcile.batches import KeyBatches
from keyorch.reconcile.clients import ClientPool
from keyorch.reconcile.controller import Controller
from keyorch.reconcile.engine import Loaded
from keyorch.reconcile.queue import Backoff
from keyorch.service import keys
from keyorch.service.context import ServiceContext


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[ServiceContext, MemoryKeystore, Controller]]:
    ctx = await one_keystore_store(tmp_path)
    store = ctx.store
    mem = MemoryKeystore("ks")
    pool = ClientPool(store, None, builder=builder_for({"ks": mem}))
    controller = Controller(store, pool, ctx.clock, workers=4, backoff=Backoff(0.001, 0.01), batch_size=10)
    yield ctx, mem, controller
    await pool.aclose()
    await store.close()


async def test_a_pass_reads_its_keys_in_batches(world: tuple[ServiceContext, MemoryKeystore, Controller]) -> None:
    ctx, mem, controller = world
    for i in range(25):
        await keys.create_key(ctx, template="t", label=f"k{i}", state="active")
    reconciler = controller.reconciler
    single_reads: list[str] = []
    batch_reads: list[int] = []
    real_load, real_load_many = reconciler.load, reconciler.load_many

    async def load(key_ref: str) -> Loaded:
        single_reads.append(key_ref)
        return await real_load(key_ref)

    async def load_many(key_ids: Sequence[str]) -> dict[str, Loaded]:
        batch_reads.append(len(key_ids))
        return await real_load_many(key_ids)

    reconciler.load = load  # type: ignore[method-assign]
    reconciler.load_many = load_many  # type: ignore[method-assign]
    summary = await controller.run_once()
    assert (summary.keys_checked, summary.in_sync, summary.actions) == (25, 25, 25)
    assert mem.calls["created"] == 25
    assert sorted(batch_reads) == [5, 10, 10] and single_reads == []


async def test_a_desired_state_that_moved_after_the_read_is_not_acted_on(
    world: tuple[ServiceContext, MemoryKeystore, Controller],
) -> None:
    ctx, mem, controller = world
    key = await keys.create_key(ctx, template="t", label="k", state="active")
    reconciler = controller.reconciler
    read_before = (await reconciler.load_many([key.id]))[key.id]
    await keys.deactivate_key(ctx, key.id)  # the desired state moves after the batch was read

    stale = await reconciler.reconcile_key(key.id, loaded=read_before)
    assert stale.stale and stale.actions == 0
    assert set(mem.calls) == {"get"} and mem.keys == {}  # observed, but nothing done for the outdated "active"
    async with ctx.store.read() as tx:
        assert await tx.calls_in_doubt_many([key.id]) == ({}, {})  # and no intent was journalled

    fresh = await reconciler.reconcile_key(key.id)  # what the pass does next: read it again
    assert not fresh.stale and fresh.in_sync
    assert [k.state for k in mem.keys.values()] == ["disabled"]


async def test_a_pass_retries_a_key_whose_desired_state_moved_from_a_fresh_read(
    world: tuple[ServiceContext, MemoryKeystore, Controller],
) -> None:
    ctx, mem, controller = world
    key = await keys.create_key(ctx, template="t", label="k", state="active")
    reconciler = controller.reconciler
    real_load_many = reconciler.load_many

    async def load_many_then_deactivate(key_ids: Sequence[str]) -> dict[str, Loaded]:
        loaded = await real_load_many(key_ids)
        await keys.deactivate_key(ctx, key.id)
        return loaded

    reconciler.load_many = load_many_then_deactivate  # type: ignore[method-assign]
    summary = await controller.run_once()
    assert summary.in_sync == 1 and summary.exit_code == 0, summary.as_json()
    assert [k.state for k in mem.keys.values()] == ["disabled"]
    assert mem.calls["enable"] == 0  # never enabled for the desired state that had moved


async def test_batches_hand_each_key_out_once() -> None:
    asked: list[list[str]] = []

    async def load_many(key_ids: Sequence[str]) -> dict[str, Loaded]:
        asked.append(list(key_ids))
        return {k: (object(), {}) for k in key_ids if k != "gone"}  # type: ignore[misc]

    batches = KeyBatches(load_many, ["a", "b", "gone", "c", "d"], size=2)
    assert await batches.take("b") is not None  # reads b and the key after it
    assert await batches.take("b") is None  # handed out once
    assert await batches.take("gone") is None  # removed meanwhile
    assert await batches.take("a") is not None
    assert await batches.take("nope") is None  # not in the pass
    assert await batches.take("d") is not None and await batches.take("c") is not None
    assert asked == [["b", "gone"], ["a"], ["d"], ["c"]]

    fresh = KeyBatches(load_many, ["x", "y"], size=5)
    fresh.discard("y")  # y's desired state changed before its batch was read: never handed out batched
    assert await fresh.take("x") is not None and await fresh.take("y") is None
    assert asked[-1] == ["x"]
    fresh.discard("x")  # discarding after the read is harmless
    with pytest.raises(ValueError, match="at least one"):
        KeyBatches(load_many, [], size=0)


async def test_the_daemon_reconciles_an_api_change_from_a_fresh_read(
    world: tuple[ServiceContext, MemoryKeystore, Controller],
) -> None:
    """The resync read a key in its batch; then the key changed through the API: the worker handles
    the change from a fresh read at once, not from the batched copy (which would come back stale)."""
    from keyorch.daemon import Daemon
    from keyorch.settings import Settings

    ctx, mem, controller = world
    first = await keys.create_key(ctx, template="t", label="k0", state="active")
    second = await keys.create_key(ctx, template="t", label="k1", state="active")
    daemon = Daemon(Settings(), ctx.store, ctx.clock, None)
    daemon.controller = controller
    await daemon.resync_once()
    assert daemon.batches is not None
    assert await daemon.batches.take(first.id) is not None  # read k0's batch, k1 with it

    await keys.deactivate_key(ctx, second.id)
    daemon.on_change(second.id)
    await daemon._handle(second.id)
    assert [k.state for k in mem.keys.values()] == ["disabled"]  # made for the new desired state
    async with ctx.store.read() as tx:
        assert (await tx.key(second.id)).targets[0].sync_flag.value == "in_sync"
    await daemon.pool.aclose()
