"""Migration 0010 (UKO's template fields, the key's template_aligned flag) over a database made at 0009 that
already holds a template (with the audit record of its creation), and a key made from it."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from sqlalchemy import text

from keyorch.audit import Actor
from keyorch.domain.models import TemplateState
from keyorch.service import keys, templates
from keyorch.service.context import ServiceContext
from keyorch.store import audit_chain
from keyorch.store.engine import _alembic_config, migrate
from keyorch.store.repository import Store
from keyorch.views import template_json
from tests.store.migrations import LATEST_MIGRATION

MADE = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
VAULT = "00000000-0000-4000-8000-000000000001"
KEYSTORE = "00000000-0000-4000-8000-000000000002"
TEMPLATE = "00000000-0000-4000-8000-000000000003"
KEY = "00000000-0000-4000-8000-000000000004"
ORPHAN = "00000000-0000-4000-8000-000000000005"  # a template the audit trail has no record of


async def test_a_template_and_its_key_made_at_0009_keep_working_after_0010(db_url: str) -> None:
    store = Store.from_url(db_url)
    try:
        async with store.engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(_alembic_config(c), "0009"))
            t = {"t": MADE.replace(tzinfo=None)}
            await conn.execute(
                text(
                    "INSERT INTO vaults (id, name, dual_auth, created_at, updated_at, version, description) "
                    f"VALUES ('{VAULT}', 'old', false, :t, :t, 1, '')"
                ),
                t,
            )
            await conn.execute(
                text(
                    "INSERT INTO keystores (id, vault_id, name, type, settings, credentials_mode, credentials, "
                    "drift_policy, status, created_at, updated_at, version) VALUES "
                    f"('{KEYSTORE}', '{VAULT}', 'aws-old', 'aws_kms', "
                    """'{"allow_insecure_http": false, "region": "us-east-1"}', 'environment', NULL, """
                    "'flag', 'connected', :t, :t, 1)"
                ),
                t,
            )
            for template_id, name in ((TEMPLATE, "tmpl-old"), (ORPHAN, "orphan")):
                await conn.execute(
                    text(
                        "INSERT INTO templates (id, vault_id, name, naming_scheme, algorithm, size, keystore_ids, "
                        f"initial_state, created_at, updated_at, version) VALUES ('{template_id}', '{VAULT}', "
                        f"""'{name}', 'OLD-{{label}}', 'aes', 256, '["{KEYSTORE}"]', 'active', :t, :t, 2)"""
                    ),
                    t,
                )
            await conn.execute(
                text(
                    "INSERT INTO managed_keys (id, vault_id, template_id, label, name, algorithm, size, state, "
                    "state_code, destroy_force, created_at, updated_at, version, generation) VALUES "
                    f"('{KEY}', '{VAULT}', '{TEMPLATE}', 'k-old', 'OLD-k-old', 'aes', 256, 'active', 1, false, "
                    ":t, :t, 1, 1)"
                ),
                t,
            )
            record = {
                "at": MADE,
                "user": "alice",
                "source": "cli-direct",
                "action": "template.create",
                "object_type": "template",
                "object_id": TEMPLATE,
                "outcome": "accepted",
                "before": None,
                "after": None,
                "detail": None,
                "role": None,
            }
            await audit_chain.append(conn, record, None)
            await audit_chain.append(conn, {**record, "outcome": "refused", "user": "mallory"}, None)
        assert await migrate(store.engine) == ("0009", LATEST_MIGRATION)

        ctx = ServiceContext(store=store, actor=Actor(user="bob", source="api", role="key_custodian_creator"))
        old = await templates.get_template(ctx, "tmpl-old")
        assert (old.description, old.types, old.state, old.groups) == (
            "",
            ("user_defined",),
            TemplateState.UNARCHIVED,
            (),
        )
        assert (old.activation_date, old.expiration_date) == (None, None)
        assert (old.created_by, old.updated_by) == ("alice", "alice")  # from its accepted template.create record
        assert (old.version, old.created_at, old.keystore_ids) == (2, MADE, (KEYSTORE,))
        orphan = await templates.get_template(ctx, "orphan")
        assert (orphan.created_by, orphan.updated_by) == (None, None)

        doc = template_json(old, await templates.template_facts(ctx, [old]))
        assert (doc["keys_count"], doc["created_by"], doc["state"]) == (1, "alice", "unarchived")
        assert doc["key"] == {"size": "256", "algorithm": "aes", "state": "active", "deactivate_on_rotation": False}
        assert doc["keystores"][0]["id"] == KEYSTORE and doc["keystores"][0]["type"] == "aws_kms"
        assert template_json(orphan, await templates.template_facts(ctx, [orphan]))["created_by"] == ""

        key = await keys.get_key(ctx, "k-old")
        assert key.template_aligned is True  # nothing changed its template since it was made

        made = await keys.create_key(ctx, template="tmpl-old", label="k-new")  # the old template still makes keys
        assert (made.name, [t.keystore_id for t in made.targets], made.template_aligned) == (
            "OLD-k-new",
            [KEYSTORE],
            True,
        )
    finally:
        await store.close()
