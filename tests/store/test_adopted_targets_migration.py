"""Migration 0014 (adopted targets): every target recorded before it was made by keyorch (not adopted), and an
adopted target keeps its mark through the store; down to 0013 and up again, on SQLite and on PostgreSQL."""

from __future__ import annotations

from dataclasses import replace

from alembic import command
from sqlalchemy import text

from keyorch.audit import Actor
from keyorch.service import keys
from keyorch.service.context import ServiceContext
from keyorch.store.engine import _alembic_config, migrate
from keyorch.store.repository import Store
from tests.store.migrations import LATEST_MIGRATION, one_key


async def test_targets_made_before_0014_are_not_adopted(db_url: str) -> None:
    store = Store.from_url(db_url)
    try:
        await migrate(store.engine)
        ctx = ServiceContext(store=store, actor=Actor("alice"))
        key = await one_key(ctx)
        async with store.engine.begin() as conn:
            await conn.run_sync(lambda c: command.downgrade(_alembic_config(c), "0013"))
            columns = await conn.run_sync(lambda c: [col["name"] for col in c.dialect.get_columns(c, "key_targets")])
            assert "adopted" not in columns
        assert await migrate(store.engine) == ("0013", LATEST_MIGRATION)
        async with store.engine.connect() as conn:
            assert [tuple(r) for r in (await conn.execute(text("SELECT adopted FROM key_targets"))).all()] == [(False,)]

        async with store.transaction() as tx:
            before = await tx.key(key.id)
            adopted = replace(before, targets=tuple(t.with_changes(adopted=True) for t in before.targets))
            await tx.update_key(adopted, before.version)
        assert all(t.adopted for t in (await keys.get_key(ctx, key.id)).targets)
    finally:
        await store.close()
