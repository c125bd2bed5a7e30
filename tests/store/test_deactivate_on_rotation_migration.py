"""Migration 0015 (deactivate_on_rotation): templates and keys made before it have it off and can turn it on;
down to 0014 and up again, on SQLite and on PostgreSQL."""

from __future__ import annotations

from alembic import command

from keyorch.audit import Actor
from keyorch.service import keys, template_edits
from keyorch.service.context import ServiceContext
from keyorch.store.engine import _alembic_config, migrate
from keyorch.store.repository import Store
from tests.store.migrations import LATEST_MIGRATION, one_key


async def test_templates_and_keys_made_before_0015_do_not_deactivate_on_rotation(db_url: str) -> None:
    store = Store.from_url(db_url)
    try:
        await migrate(store.engine)
        ctx = ServiceContext(store=store, actor=Actor("alice"))
        key = await one_key(ctx)
        edit = template_edits.TemplateEdit(deactivate_on_rotation=True)
        assert (await template_edits.update_template(ctx, "t", edit)).deactivate_on_rotation
        assert (await keys.update_key(ctx, key.id, deactivate_on_rotation=True)).deactivate_on_rotation
        async with store.engine.begin() as conn:
            await conn.run_sync(lambda c: command.downgrade(_alembic_config(c), "0014"))
            columns = await conn.run_sync(lambda c: [col["name"] for col in c.dialect.get_columns(c, "templates")])
            assert ("deactivate_on_rotation" in columns) is (conn.dialect.name == "sqlite")  # SQLite keeps it
        assert await migrate(store.engine) == ("0014", LATEST_MIGRATION)

        before = await keys.get_key(ctx, key.id)
        assert before.deactivate_on_rotation is False
        async with store.read() as tx:
            assert (await tx.template("t")).deactivate_on_rotation is False
        on = await keys.update_key(ctx, key.id, deactivate_on_rotation=True)
        assert on.deactivate_on_rotation and on.generation == before.generation + 1
        made = await keys.create_key(ctx, template="t", label="new", deactivate_on_rotation=None)
        assert made.deactivate_on_rotation is False  # the template's, reset by the upgrade
        edited = await template_edits.update_template(ctx, "t", edit)
        assert edited.deactivate_on_rotation
        assert (await keys.create_key(ctx, template="t", label="newer")).deactivate_on_rotation
    finally:
        await store.close()
