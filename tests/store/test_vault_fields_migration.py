"""Migration 0007 (UKO's vault fields) over a database made at 0006 that already holds a vault."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from sqlalchemy import text

from keyorch.audit import Actor
from keyorch.service import vaults
from keyorch.service.context import ServiceContext
from keyorch.store.engine import _alembic_config, migrate, schema_revisions
from keyorch.store.repository import Store
from tests.store.migrations import LATEST_MIGRATION

MADE = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


async def test_a_vault_made_at_0006_keeps_working_after_0007(db_url: str) -> None:
    store = Store.from_url(db_url)
    try:
        async with store.engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(_alembic_config(c), "0006"))
            await conn.execute(
                text(
                    "INSERT INTO vaults (id, name, dual_auth, created_at, updated_at, version) "
                    "VALUES ('00000000-0000-4000-8000-000000000001', 'old', false, :t, :t, 3)"
                ),
                {"t": MADE.replace(tzinfo=None)},
            )
        assert await migrate(store.engine) == ("0006", LATEST_MIGRATION)
        assert await schema_revisions(store.engine) == (LATEST_MIGRATION, LATEST_MIGRATION)

        ctx = ServiceContext(store=store, actor=Actor(user="alice", source="api", role="vault_administrator"))
        old = await vaults.get_vault(ctx, "old")
        assert (old.description, old.recovery_key_label, old.created_by, old.updated_by) == ("", None, None, None)
        assert (old.version, old.created_at) == (3, MADE)

        changed = await vaults.update_vault(ctx, "old", 3, description="made before 0007")
        assert (changed.description, changed.updated_by, changed.created_by, changed.version) == (
            "made before 0007",
            "alice",
            None,
            4,
        )
        assert (await vaults.get_vault(ctx, old.id)).description == "made before 0007"
    finally:
        await store.close()
