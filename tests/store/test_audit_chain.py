"""The tamper-evident audit chain on SQLite and PostgreSQL, through the store layer.

A real history is written through the service layer; then rows are edited, deleted or cut off
with plain SQL (as someone with database access would) and verify must name the first bad seq.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import func, select, text, update
from sqlalchemy.engine import Connection

from keyorch.audit import Actor, AuditRecord
from keyorch.crypto import MasterKey, generate_master_key
from keyorch.domain.errors import ConfigurationError, NotFound, RuleViolation
from keyorch.service import keys, keystores, templates, vaults
from keyorch.service.context import ServiceContext
from keyorch.store import audit_chain, rows
from keyorch.store.audit_chain import AuditChainBroken, AuditWriteFailed, Verified
from keyorch.store.audit_keys import MasterKeyMismatch, MasterKeyRequired
from keyorch.store.engine import _alembic_config, migrate, schema_revisions
from keyorch.store.repository import Store
from keyorch.store.schema import audit_log

pytestmark = pytest.mark.filterwarnings("error")


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = Store.from_url(db_url)
    await migrate(s.engine)
    yield s
    await s.close()


def ctx_for(store: Store, master_key: MasterKey | None = None, user: str = "alice") -> ServiceContext:
    return ServiceContext(
        store=store, actor=Actor(user=user, source="api", role="vault_administrator"), master_key=master_key
    )


async def history(ctx: ServiceContext, prefix: str = "") -> None:
    """Seven records: five accepted changes, two refusals."""
    await vaults.create_vault(ctx, f"{prefix}payments")
    ks = await keystores.connect_keystore(
        ctx,
        keystores.ConnectRequest(
            vault=f"{prefix}payments", name="aws", type="aws_kms", region="us-east-1", credentials_from_environment=True
        ),
    )
    tmpl = await templates.create_template(ctx, vault=f"{prefix}payments", name="t", keystores=[ks.id])
    await keys.create_key(ctx, template=tmpl.id, label=f"{prefix}k1", state="active")
    with pytest.raises(RuleViolation):
        await keys.destroy_key(ctx, f"{prefix}k1")
    await keys.deactivate_key(ctx, f"{prefix}k1")
    with pytest.raises(NotFound):
        await keys.deactivate_key(ctx, "no-such-key")


async def verify(store: Store, master_key: MasterKey | None = None) -> Verified:
    async with store.transaction() as tx:
        return await audit_chain.verify(tx.conn, master_key)


async def sql(store: Store, statement: str) -> None:
    async with store.transaction() as tx:
        await tx.conn.execute(text(statement))


async def test_a_real_history_verifies_and_records_role_and_source(store: Store) -> None:
    assert await verify(store) == Verified(0, 0, 0, 0)
    await history(ctx_for(store))
    assert await verify(store) == Verified(records=7, sealed_with_master_key=0, sealed_with_stored_key=7, last_seq=7)
    async with store.transaction() as tx:
        records = await tx.list_audit()
    assert [r.seq for r in records] == list(range(1, 8))
    assert {(r.role, r.source) for r in records} == {("vault_administrator", "api")}
    assert [r.outcome for r in records].count("refused") == 2


async def test_an_edited_record_is_named(store: Store) -> None:
    await history(ctx_for(store))
    await sql(store, "UPDATE audit_log SET outcome = 'accepted' WHERE seq = 5")
    with pytest.raises(AuditChainBroken, match="audit record 5 fails verification: it was edited") as info:
        await verify(store)
    assert info.value.seq == 5 and info.value.exit_code == 3


@pytest.mark.parametrize(
    "column", ["at", "user", "role", "source", "action", "object_type", "object_id", "before", "detail", "chain_key"]
)
async def test_every_column_is_covered(store: Store, column: str) -> None:
    await history(ctx_for(store))
    value = {"at": "at", "chain_key": "'master_key'"}.get(column, "'x'")
    if column == "at":
        async with store.transaction() as tx:
            at = (await tx.conn.execute(select(audit_log.c.at).where(audit_log.c.seq == 1))).scalar_one()
            await tx.conn.execute(update(audit_log).where(audit_log.c.seq == 3).values(at=at))
    else:
        await sql(store, f'UPDATE audit_log SET "{column}" = {value} WHERE seq = 3')
    with pytest.raises((AuditChainBroken, ConfigurationError), match="3"):
        await verify(store)


async def test_a_record_deleted_in_the_middle_is_named(store: Store) -> None:
    await history(ctx_for(store))
    await sql(store, "DELETE FROM audit_log WHERE seq IN (3, 4)")
    with pytest.raises(AuditChainBroken, match=r"record 5 .*chained to record 4.*between 2 and 5 were deleted") as info:
        await verify(store)
    assert info.value.seq == 5


async def test_the_first_record_deleted_is_named(store: Store) -> None:
    await history(ctx_for(store))
    await sql(store, "DELETE FROM audit_log WHERE seq = 1")
    with pytest.raises(AuditChainBroken, match="before 2 were deleted"):
        await verify(store)


async def test_a_truncated_tail_is_found(store: Store) -> None:
    await history(ctx_for(store))
    await sql(store, "DELETE FROM audit_log WHERE seq >= 6")
    with pytest.raises(AuditChainBroken, match="after seq 5 were deleted") as info:
        await verify(store)
    assert info.value.seq == 6


async def test_a_truncated_tail_with_a_moved_head_is_found(store: Store) -> None:
    """Moving the head back onto the new last record does not help without the key."""
    await history(ctx_for(store))
    await sql(store, "DELETE FROM audit_log WHERE seq >= 6")
    await sql(store, "UPDATE audit_chain SET last_seq = 5, last_hmac = (SELECT hmac FROM audit_log WHERE seq = 5)")
    with pytest.raises(AuditChainBroken, match=r"head .* was edited"):
        await verify(store)


async def test_a_forged_swap_of_two_records_is_found(store: Store) -> None:
    await history(ctx_for(store))
    await sql(store, "UPDATE audit_log SET seq = 100 WHERE seq = 3")
    await sql(store, "UPDATE audit_log SET seq = 3 WHERE seq = 4")
    await sql(store, "UPDATE audit_log SET seq = 4 WHERE seq = 100")
    with pytest.raises(AuditChainBroken, match="record 3 "):
        await verify(store)


async def test_master_key_chain_detects_a_rewrite_with_the_stored_key(store: Store) -> None:
    """With the master key, someone who can read the stored key still cannot rewrite the chain."""
    master = MasterKey.from_base64(generate_master_key())
    await history(ctx_for(store), prefix="a-")  # before the master key was configured: stored key
    await history(ctx_for(store, master), prefix="b-")
    assert await verify(store, master) == Verified(14, 7, 7, 14)
    with pytest.raises(ConfigurationError, match="from seq 8 on are sealed with the master key"):
        await verify(store)
    with pytest.raises(MasterKeyMismatch, match="is not this database's"):  # refused before the walk
        await verify(store, MasterKey.from_base64(generate_master_key()))

    # The attacker edits record 10 and re-seals 8..14 with the stored key they can read.
    await sql(store, "UPDATE audit_log SET detail = 'nothing to see' WHERE seq = 10")
    await reseal_with_stored_key(store, 8)
    assert (await verify(store)).records == 14  # without the master key the forgery holds...
    with pytest.raises(AuditChainBroken, match="not sealed with the configured master key: it was rewritten"):
        await verify(store, master)  # ...but not with it


async def test_a_partial_rewrite_with_the_stored_key_is_named(store: Store) -> None:
    master = MasterKey.from_base64(generate_master_key())
    await history(ctx_for(store, master))
    await sql(store, "UPDATE audit_log SET detail = 'rewritten' WHERE seq = 5")
    await reseal_with_stored_key(store, 5)
    with pytest.raises(AuditChainBroken, match="record 5 is sealed with the stored key after records sealed with"):
        await verify(store, master)


async def reseal_with_stored_key(store: Store, from_seq: int) -> None:
    """What someone who can read the audit_chain row can do: re-seal the tail with the stored key."""

    def reseal(conn: Connection) -> None:
        key = bytes(conn.execute(text("SELECT stored_key FROM audit_chain")).scalar_one())
        prev = conn.execute(select(audit_log.c.hmac).where(audit_log.c.seq == from_seq - 1)).scalar_one()
        last = from_seq - 1
        for row in conn.execute(select(audit_log).where(audit_log.c.seq >= from_seq).order_by("seq")).mappings():
            digest = audit_chain.record_hmac(key, {**row, "chain_key": "stored_key"}, prev)
            conn.execute(
                update(audit_log).where(audit_log.c.seq == row["seq"]).values(chain_key="stored_key", hmac=digest)
            )
            prev, last = digest, row["seq"]
        conn.execute(
            text("UPDATE audit_chain SET last_hmac = :h, chain_key = 'stored_key', head_hmac = :s, key_check = NULL"),
            {"h": prev, "s": audit_chain.head_seal(key, last, prev)},
        )

    async with store.transaction() as tx:
        await tx.conn.run_sync(reseal)


async def test_without_the_master_key_a_master_sealed_chain_refuses_changes(store: Store) -> None:
    master = MasterKey.from_base64(generate_master_key())
    await vaults.create_vault(ctx_for(store, master), "sealed")
    with pytest.raises(MasterKeyRequired, match=r"sealed with its master key, which is not configured.*FILE"):
        await vaults.create_vault(ctx_for(store), "unsealed")
    async with store.transaction() as tx:
        assert [v.name for v in await tx.list_vaults()] == ["sealed"]
    assert (await verify(store, master)).records == 1


async def test_a_change_whose_audit_record_cannot_be_written_is_refused(store: Store) -> None:
    ctx = ctx_for(store)
    await vaults.create_vault(ctx, "before")
    if store.engine.dialect.name == "sqlite":
        await sql(
            store,
            "CREATE TRIGGER audit_full BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit disk full'); END",
        )
    else:
        await sql(
            store,
            "CREATE FUNCTION audit_full() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'audit disk full'; END $$",
        )
        await sql(
            store, "CREATE TRIGGER audit_full BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_full()"
        )
    with pytest.raises(AuditWriteFailed, match=r"vault.create could not be written \(.*audit disk full.*nothing was"):
        await vaults.create_vault(ctx, "after")
    with pytest.raises(NotFound, match=r"no vault .*\(the refusal itself could not be audited"):  # still bad input
        await vaults.delete_vault(ctx, "no-such-vault")
    async with store.transaction() as tx:
        assert [v.name for v in await tx.list_vaults()] == ["before"]
        assert (await tx.conn.execute(select(func.count()).select_from(audit_log))).scalar_one() == 1
    assert (await verify(store)).records == 1


async def test_concurrent_appends_serialize(store: Store) -> None:
    """Many writers at once: every change gets its record, in one unbroken chain."""
    ctx = ctx_for(store)
    results = await asyncio.gather(*(vaults.create_vault(ctx, f"v{i}") for i in range(12)), return_exceptions=True)
    assert not [r for r in results if isinstance(r, BaseException)]
    assert await verify(store) == Verified(12, 0, 12, 12)


async def test_the_migration_seals_records_written_before_it(db_url: str) -> None:
    store = Store.from_url(db_url)
    try:
        async with store.engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(_alembic_config(c), "0002"))
        old = AuditRecord(
            at=datetime(2026, 1, 1, tzinfo=UTC),
            user="bob",
            source="cli",
            action="vault.create",
            object_type="vault",
            object_id=None,
            outcome="accepted",
        )
        async with store.transaction() as tx:
            for i in range(3):
                values = {k: v for k, v in rows.audit_to_row(old).items() if k not in ("role", "detail")}
                await tx.conn.execute(audit_log.insert().values(**values, detail=f"old {i}"))
            await tx.conn.execute(text("DELETE FROM audit_log WHERE seq = 2"))  # a gap from before the chain
        assert await migrate(store.engine) == ("0002", (await schema_revisions(store.engine))[1])
        assert await verify(store) == Verified(2, 0, 2, 3)
        await vaults.create_vault(ctx_for(store), "new")
        assert await verify(store) == Verified(3, 0, 3, 4)
    finally:
        await store.close()
