"""Migration 0012 (what each keystore calls a key, per target) over a database that already holds keys in all
four keystore types: each target gets the name keyorch gave the key before keys were named by their template
(``alias/keyorch/<id>``, ``keyorch-<id>``, the Key Protect name), so the adapters keep finding those keys."""

from __future__ import annotations

from alembic import command

from keyorch.audit import Actor
from keyorch.service import keys, keystores, templates, vaults
from keyorch.service.context import ServiceContext
from keyorch.store.engine import _alembic_config, migrate, schema_revisions
from keyorch.store.repository import Store
from tests.store.migrations import LATEST_MIGRATION

CONNECT = {
    "aws": {"type": "aws_kms", "region": "us-east-1"},
    "azure": {"type": "azure_key_vault", "endpoint": "https://old.vault.azure.net"},
    "google": {"type": "google_kms", "project": "old-project", "location": "us-east1", "key_ring": "ring"},
    "ibm": {"type": "ibm_key_protect", "region": "us-south", "instance_id": "inst-1"},
}


async def test_keys_made_before_0012_keep_their_old_names(db_url: str) -> None:
    store = Store.from_url(db_url)
    try:
        await migrate(store.engine)
        ctx = ServiceContext(store=store, actor=Actor("admin"))
        await vaults.create_vault(ctx, "v")
        for name, fields in CONNECT.items():
            request = keystores.ConnectRequest(vault="v", name=name, credentials_from_environment=True, **fields)
            await keystores.connect_keystore(ctx, request)
        await templates.create_template(ctx, vault="v", name="t", keystores=list(CONNECT), naming_scheme="N-{label}")
        key = await keys.create_key(ctx, template="t", label="k1")
        assert sorted(t.label_in_keystore or "" for t in key.targets) == ["N-k1", "N-k1", "N-k1", "alias/N-k1"]
        async with store.engine.begin() as conn:  # back to the schema keyorch had before, then forward again
            await conn.run_sync(lambda c: command.downgrade(_alembic_config(c), "0011"))
        assert await schema_revisions(store.engine) == ("0011", LATEST_MIGRATION)
        assert await migrate(store.engine) == ("0011", LATEST_MIGRATION)

        async with store.read() as tx:
            after = await tx.key(key.id)
            names = {(await tx.keystore(t.keystore_id)).name: t.label_in_keystore for t in after.targets}
        assert names == {
            "aws": f"alias/keyorch/{key.id}",
            "azure": f"keyorch-{key.id}",
            "google": f"keyorch-{key.id}",
            "ibm": "N-k1",  # Key Protect: the key's own name (its identity is the alias keyorch-<id>)
        }
    finally:
        await store.close()
