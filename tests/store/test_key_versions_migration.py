"""Migration 0013 (key versions): keys made before it have version 1 and every keystore serving it, and can be
rotated; down to 0012 and up again, on SQLite and on PostgreSQL."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text

from keyorch.audit import Actor
from keyorch.service import keys, rotation
from keyorch.service.context import ServiceContext
from keyorch.store.engine import _alembic_config, migrate
from keyorch.store.repository import Store
from tests.store.migrations import LATEST_MIGRATION, one_key


async def test_keys_made_before_0013_have_version_1_and_rotate(db_url: str) -> None:
    store = Store.from_url(db_url)
    try:
        await migrate(store.engine)
        ctx = ServiceContext(store=store, actor=Actor("alice"))
        key = await one_key(ctx, "active")
        async with store.engine.begin() as conn:
            await conn.run_sync(lambda c: command.downgrade(_alembic_config(c), "0012"))
            tables = await conn.run_sync(lambda c: c.dialect.get_table_names(c))
            assert "key_versions" not in tables
        assert await migrate(store.engine) == ("0012", LATEST_MIGRATION)

        async with store.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT key_id, version, created_by FROM key_versions"))).all()
            targets = (await conn.execute(text("SELECT key_version, primary_version_id FROM key_targets"))).all()
        assert [tuple(r) for r in rows] == [(key.id, 1, "alice")]
        assert [tuple(t) for t in targets] == [(1, None)]
        before = await keys.get_key(ctx, key.id)
        assert (before.current_version, before.rotated_at) == (1, None)
        rotated = await rotation.rotate_key(ctx, key.id)
        assert rotated.current_version == 2
        found = await rotation.key_versions(ctx, key.id)
        assert [(v.version, v.created_by) for v in found.versions] == [(1, "alice"), (2, "alice")]
    finally:
        await store.close()
