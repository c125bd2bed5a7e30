"""Migration 0008 (UKO's keystore fields) over a database made at 0007 that already holds a keystore."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from sqlalchemy import text

from keyorch.audit import Actor
from keyorch.service import keystores
from keyorch.service.context import ServiceContext
from keyorch.store.engine import _alembic_config, migrate
from keyorch.store.repository import Store

MADE = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
VAULT = "00000000-0000-4000-8000-000000000001"
KEYSTORE = "00000000-0000-4000-8000-000000000002"


async def test_a_keystore_made_at_0007_keeps_working_after_0008(db_url: str) -> None:
    store = Store.from_url(db_url)
    try:
        async with store.engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(_alembic_config(c), "0007"))
            made = {"t": MADE.replace(tzinfo=None)}
            await conn.execute(
                text(
                    "INSERT INTO vaults (id, name, dual_auth, created_at, updated_at, version, description) "
                    f"VALUES ('{VAULT}', 'old', false, :t, :t, 1, '')"
                ),
                made,
            )
            await conn.execute(
                text(
                    "INSERT INTO keystores (id, vault_id, name, type, settings, credentials_mode, credentials, "
                    "drift_policy, status, created_at, updated_at, version) VALUES "
                    f"('{KEYSTORE}', '{VAULT}', 'aws-old', 'aws_kms', "
                    """'{"allow_insecure_http": false, "region": "us-east-1"}', 'environment', NULL, """
                    "'flag', 'connected', :t, :t, 2)"
                ),
                made,
            )
        before, head = await migrate(store.engine)
        assert before == "0007" and head is not None and head >= "0008"

        ctx = ServiceContext(store=store, actor=Actor(user="alice", source="api", role="vault_administrator"))
        old = await keystores.get_keystore(ctx, "aws-old")
        assert (old.description, old.location, old.groups, old.created_by, old.updated_by) == ("", "", (), None, None)
        assert (old.id, old.version, old.created_at, old.settings["region"]) == (KEYSTORE, 2, MADE, "us-east-1")

        made_now = await keystores.connect_keystore(
            ctx,
            keystores.ConnectRequest(
                vault="old",
                name="aws-new",
                type="aws_kms",
                region="eu-west-1",
                credentials_from_environment=True,
                description="payments in Frankfurt",
                location="eu-de",
                groups=("payments", "eu"),
            ),
        )
        again = await keystores.get_keystore(ctx, made_now.id)
        assert (again.description, again.location, again.groups) == (
            "payments in Frankfurt",
            "eu-de",
            ("payments", "eu"),
        )
        assert (again.created_by, again.updated_by) == ("alice", "alice")
    finally:
        await store.close()
