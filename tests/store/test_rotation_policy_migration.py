"""Migration 0017 (rotation policies): templates and keys made before it are on no schedule, a key active already
counts from its creation; down to 0016 (policies forgotten) and up again, on SQLite and on PostgreSQL."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text

from keyorch.audit import Actor
from keyorch.domain import rotation
from keyorch.service import keys, keystores, template_edits, templates, vaults
from keyorch.service.context import ServiceContext
from keyorch.store.engine import _alembic_config, migrate
from keyorch.store.repository import Store
from tests.store.migrations import LATEST_MIGRATION


async def test_policies_are_forgotten_down_to_0016_and_set_again_after(db_url: str) -> None:
    store = Store.from_url(db_url)
    try:
        await migrate(store.engine)
        ctx = ServiceContext(store=store, actor=Actor("alice"))
        await vaults.create_vault(ctx, "v")
        request = keystores.ConnectRequest(
            vault="v", name="ks", type="aws_kms", region="us-east-1", credentials_from_environment=True
        )
        await keystores.connect_keystore(ctx, request)
        await templates.create_template(ctx, vault="v", name="t", keystores=["ks"], rotation_policy="P90D")
        key = await keys.create_key(ctx, template="t", label="old", state="active", rotation_policy="P30D")
        assert key.activated_at == key.created_at
        async with store.engine.begin() as conn:
            await conn.run_sync(lambda c: command.downgrade(_alembic_config(c), "0016"))
            if conn.dialect.name != "sqlite":  # SQLite keeps the column, cleared (see the migration)
                names = await conn.run_sync(lambda c: {col["name"] for col in c.dialect.get_columns(c, "templates")})
                assert "rotation_policy" not in names
        assert await migrate(store.engine) == ("0016", LATEST_MIGRATION)

        async with store.engine.connect() as conn:
            row = (await conn.execute(text("SELECT rotation_policy, activated_at FROM managed_keys"))).one()
            made = (await conn.execute(text("SELECT rotation_policy FROM templates"))).one()
        assert tuple(row) == (None, None) and tuple(made) == (None,)
        before = await keys.get_key(ctx, key.id)
        template = await templates.get_template(ctx, "t")
        assert rotation.schedule_of(before, template.rotation_policy) is None
        edit = template_edits.TemplateEdit(rotation_policy="P90D")
        await template_edits.update_template(ctx, "t", edit)
        after = await templates.get_template(ctx, "t")
        schedule = rotation.schedule_of(before, after.rotation_policy)
        assert rotation.next_rotation_at(before, schedule) == rotation.add_duration(
            before.created_at, rotation.parse_duration("p", "P90D")
        )
    finally:
        await store.close()
