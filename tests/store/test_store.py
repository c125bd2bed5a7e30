"""The store on SQLite and on a real PostgreSQL: migrations, round trips, versions, atomicity."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import String, Text, select, text
from sqlalchemy.types import TypeEngine

from keyorch.audit import Actor
from keyorch.crypto import MasterKey, generate_master_key
from keyorch.domain.errors import ConfigurationError, NotFound, RuleViolation, StaleVersion
from keyorch.domain.models import SyncFlag, SyncReason, TargetStatus
from keyorch.domain.states import KeyState
from keyorch.service import keys, keystores, templates, vaults
from keyorch.service.context import ServiceContext
from keyorch.store.engine import head_revision, migrate, schema_revisions
from keyorch.store.repository import Store
from keyorch.store.schema import audit_log, managed_keys, metadata
from tests.store.migrations import LATEST_MIGRATION


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = Store.from_url(db_url)
    await migrate(s.engine)
    yield s
    await s.close()


def ctx_for(store: Store, user: str = "alice") -> ServiceContext:
    return ServiceContext(store=store, actor=Actor(user=user, source="cli"))


async def _populated(store: Store) -> tuple[ServiceContext, str, str]:
    ctx = ctx_for(store)
    await vaults.create_vault(ctx, "payments")
    ks = await keystores.connect_keystore(
        ctx,
        keystores.ConnectRequest(
            vault="payments", name="aws", type="aws_kms", region="us-east-1", credentials_from_environment=True
        ),
    )
    await templates.create_template(ctx, vault="payments", name="t", keystores=[ks.name])
    key = await keys.create_key(ctx, template="t", label="k1", state="active")
    return ctx, ks.id, key.id


def _compare_type(
    context: MigrationContext,
    _inspected: object,
    _column: object,
    inspected: TypeEngine[Any],
    declared: TypeEngine[Any],
) -> bool | None:
    """SQLite enforces no VARCHAR length, so there a length alone is no difference (migration 0011 widens a
    column on PostgreSQL only: on SQLite it would mean rebuilding the table); otherwise alembic's comparison."""
    if context.dialect.name == "sqlite" and all(
        isinstance(t, String) and not isinstance(t, Text) for t in (inspected, declared)
    ):
        return False
    return None


async def test_migrations_match_schema_and_are_idempotent(db_url: str) -> None:
    s = Store.from_url(db_url)
    try:
        _, head = await schema_revisions(s.engine)
        assert head == LATEST_MIGRATION
        assert await migrate(s.engine) == (None, head)
        assert await migrate(s.engine) == (head, head)
        assert await schema_revisions(s.engine) == (head, head)

        def diff(conn: object) -> list[object]:
            context = MigrationContext.configure(conn, opts={"compare_type": _compare_type})  # type: ignore[arg-type]
            return list(compare_metadata(context, metadata))

        async with s.engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await s.close()


async def test_round_trip_and_audit(store: Store) -> None:
    ctx, ks_id, key_id = await _populated(store)
    key = await keys.get_key(ctx, "k1")
    assert key.id == key_id and key.state.code == 1 and key.version == 1
    assert key.created_at.tzinfo is not None
    assert [t.keystore_id for t in key.targets] == [ks_id]
    assert key.targets[0].status is TargetStatus.UNKNOWN and key.targets[0].sync_flag is SyncFlag.PENDING
    async with store.transaction() as tx:
        records = await tx.list_audit()
    assert [r.action for r in records] == ["vault.create", "keystore.connect", "template.create", "key.create"]
    assert {r.outcome for r in records} == {"accepted"} and {r.user for r in records} == {"alice"}


async def test_stale_version_is_refused(store: Store) -> None:
    ctx, _, _ = await _populated(store)
    key = await keys.deactivate_key(ctx, "k1", expected_version=1)
    assert key.version == 2
    with pytest.raises(StaleVersion):
        await keys.reactivate_key(ctx, "k1", expected_version=1)
    async with store.transaction() as tx:
        with pytest.raises(StaleVersion):
            await tx.update_key(replace(key, label="changed"), expected_version=1)
    assert (await keys.get_key(ctx, "k1")).label == "k1"


async def test_refusal_changes_nothing_and_is_audited(store: Store) -> None:
    ctx, _, key_id = await _populated(store)
    before = await keys.get_key(ctx, "k1")
    with pytest.raises(RuleViolation):
        await keys.destroy_key(ctx, "k1")
    assert await keys.get_key(ctx, "k1") == before
    async with store.transaction() as tx:
        last = (await tx.list_audit(object_id=key_id))[-1]  # named by its label, filed under its id
    assert last.outcome == "refused" and last.action == "key.destroy" and "deactivate it first" in (last.detail or "")


async def test_failed_transaction_leaves_no_trace(store: Store) -> None:
    """A change and its audit record commit together or not at all."""
    ctx, _, _ = await _populated(store)
    async with store.transaction() as tx:
        count_before = len(await tx.list_audit())

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with store.transaction() as tx:
            key = await tx.key("k1")
            await tx.update_key(replace(key, label="half-written"), key.version)
            raise Boom
    assert (await keys.get_key(ctx, "k1")).label == "k1"
    async with store.transaction() as tx:
        assert len(await tx.list_audit()) == count_before


async def test_disconnect_unlinks_keys_and_templates(store: Store) -> None:
    ctx, ks_id, _ = await _populated(store)
    with pytest.raises(RuleViolation, match="k1"):
        await keystores.disconnect_keystore(ctx, "aws")
    await keys.deactivate_key(ctx, "k1")
    await keys.destroy_key(ctx, "k1")
    await keystores.disconnect_keystore(ctx, "aws")
    key = await keys.get_key(ctx, "k1")
    assert key.targets[0].status is TargetStatus.REMOVED
    assert key.targets[0].reason is SyncReason.TARGET_KEYSTORE_REMOVED_BY_USER
    assert (await templates.get_template(ctx, "t")).keystore_ids == ()
    async with store.transaction() as tx:
        assert await tx.keystore_credentials(ks_id) is None
    with pytest.raises(NotFound):
        await keystores.get_keystore(ctx, "aws")
    assert (await keystores.get_keystore(ctx, ks_id)).status.value == "disconnected"
    again = await keystores.connect_keystore(
        ctx,
        keystores.ConnectRequest(
            vault="payments", name="aws", type="aws_kms", region="us-east-1", credentials_from_environment=True
        ),
    )
    assert again.id != ks_id


async def test_concurrent_writers_one_wins(store: Store) -> None:
    ctx, _, _ = await _populated(store)

    async def attempt(action: str) -> str:
        try:
            if action == "deactivate":
                await keys.deactivate_key(ctx, "k1", expected_version=1)
            else:
                await keys.deactivate_key(ctx_for(store, "bob"), "k1", expected_version=1)
        except (StaleVersion, RuleViolation):
            return "refused"
        return "ok"

    results = await asyncio.gather(attempt("deactivate"), attempt("deactivate-bob"))
    assert sorted(results) == ["ok", "refused"]
    assert (await keys.get_key(ctx, "k1")).version == 2


async def test_stored_credentials_are_encrypted_and_bound_to_the_keystore(store: Store, tmp_path: Path) -> None:
    secret = "wJalrXUtnFEMI-very-secret-value"
    creds = tmp_path / "aws.json"
    creds.write_text(json.dumps({"access_key_id": "AKIAEXAMPLE", "secret_access_key": secret}))
    ctx = ctx_for(store)
    ctx.master_key = MasterKey.from_base64(generate_master_key())
    await vaults.create_vault(ctx, "v")
    ks = await keystores.connect_keystore(
        ctx,
        keystores.ConnectRequest(
            vault="v", name="aws", type="aws_kms", region="us-east-1", credentials_file=str(creds)
        ),
    )
    async with store.transaction() as tx:
        blob = await tx.keystore_credentials(ks.id)
        audit_text = " ".join(str(r.as_json()) for r in await tx.list_audit())
    assert blob is not None and secret.encode() not in blob and secret not in audit_text
    assert json.loads(ctx.master_key.decrypt(blob, ks.id))["secret_access_key"] == secret
    with pytest.raises(ConfigurationError, match="cannot be decrypted"):
        ctx.master_key.decrypt(blob, "another-keystore-id")
    with pytest.raises(ConfigurationError, match="cannot be decrypted"):
        MasterKey.from_base64(generate_master_key()).decrypt(blob, ks.id)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(audit_log.c.after))).scalars().all()
        assert all(secret not in (r or "") for r in rows)
        assert (await conn.execute(text("select count(*) from keystores"))).scalar_one() == 1


async def test_a_read_unit_of_work_sees_one_snapshot(store: Store) -> None:
    """A key list's total and its page come from one snapshot, even with a writer in between."""
    ctx, _, _ = await _populated(store)
    async with store.read() as tx:
        counted = await tx.count_keys()
        await keys.create_key(ctx, template="t", label="k2")  # committed by another connection meanwhile
        assert len(await tx.list_keys()) == counted == 1
    total, page = await keys.page_keys(ctx, keys.KeyFilter(limit=1, offset=1))
    assert total == 2 and [k.label for k in page] == ["k2"]
    assert await keys.page_keys(ctx, keys.KeyFilter(limit=5, offset=2)) == (2, [])


async def test_out_of_sync_counts_per_keystore(store: Store) -> None:
    ctx, ks_id, key_id = await _populated(store)
    await keys.create_key(ctx, template="t", label="k2", state="active")
    async with store.read() as tx:
        assert await tx.out_of_sync_counts() == {}
        key = await tx.key(key_id)
    flagged = key.targets[0].with_changes(sync_flag=SyncFlag.OUT_OF_SYNC)
    async with store.transaction() as tx:
        assert await tx.update_targets(key_id, key.generation, [flagged])
    async with store.read() as tx:
        assert await tx.out_of_sync_counts() == {ks_id: 1}


async def test_sqlite_writers_of_one_process_take_turns_without_busy_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forty concurrent changes on SQLite all commit even with SQLite's own busy wait switched off:
    this process's writers queue for the write lock instead of colliding in it ("database is locked")."""
    monkeypatch.setattr("keyorch.store.engine.SQLITE_BUSY_TIMEOUT_MS", 0)
    store = Store.from_url(f"sqlite:///{tmp_path / 'turns.db'}")
    try:
        await migrate(store.engine)
        ctx, _, _ = await _populated(store)
        made = await asyncio.gather(*(keys.create_key(ctx, template="t", label=f"c{i}") for i in range(40)))
        assert len({k.id for k in made}) == 40
        async with store.read() as tx:
            assert await tx.count_keys() == 41
            assert len(await tx.list_audit()) == 4 + 40
    finally:
        await store.close()


async def test_a_write_transaction_inside_another_in_the_same_task_is_refused(store: Store) -> None:
    """It could only wait for itself (SQLite) or deadlock on its own rows (PostgreSQL)."""
    async with store.transaction():
        with pytest.raises(RuntimeError, match="inside another one"):
            async with store.transaction():
                pass
    async with store.transaction() as tx:  # the first one's end freed the turn
        assert await tx.list_vaults() == []


async def test_intents_are_journalled_finished_and_resolved_together(store: Store) -> None:
    """One statement per kind: each keystore gets its own intent id back, outcomes land on the right
    intents, and resolving closes only the still-open intents of the keystores named."""
    ctx, ks_id, key_id = await _populated(store)
    now = ctx.clock.now()
    async with store.transaction() as tx:
        ids = await tx.start_intents(
            key_id, 1, [(ks_id, "create", 1), ("ks-b", "enable", 2), ("ks-c", "disable", 1)], now
        )
        assert set(ids) == {ks_id, "ks-b", "ks-c"} and len(set(ids.values())) == 3
        interrupted = await tx.start_intents(key_id, 1, [("ks-c", "disable", 2)], now)
        await tx.finish_intents([(ids[ks_id], "succeeded", None), (ids["ks-b"], "failed", "boom")], now)
        assert await tx.resolve_intents(key_id, ["ks-b", "ks-c"], now) == 2  # both ks-c intents were open
        assert await tx.resolve_intents(key_id, [], now) == 0
    async with store.read() as tx:
        assert await tx.open_intents(key_id) == []
        rows = {r["id"]: r for r in (await tx.conn.execute(text("select * from intents"))).mappings()}
    assert rows[ids[ks_id]]["status"] == "succeeded" and rows[ids[ks_id]]["action"] == "create"
    assert rows[ids["ks-b"]]["status"] == "failed" and rows[ids["ks-b"]]["last_error"] == "boom"
    assert rows[ids["ks-c"]]["status"] == rows[interrupted["ks-c"]]["status"] == "resolved"
    assert rows[ids["ks-b"]]["attempts"] == 2


async def test_every_key_state_is_stored_and_read_back(store: Store) -> None:
    """destroyed_compromised (21 characters) did not fit managed_keys.state (VARCHAR(16)) on PostgreSQL:
    destroying a compromised key failed there with a 500 (migration 0011 widens the column)."""
    ctx, _, key_id = await _populated(store)
    longest = max((state.value for state in KeyState), key=len)
    column = managed_keys.c.state.type
    assert isinstance(column, String) and column.length is not None and column.length >= len(longest), longest
    await keys.compromise_key(ctx, key_id)
    destroyed = await keys.destroy_key(ctx, key_id)
    assert destroyed.state is KeyState.DESTROYED_COMPROMISED
    async with store.engine.connect() as conn:
        stored = (await conn.execute(select(managed_keys.c.state).where(managed_keys.c.id == key_id))).scalar_one()
    assert stored == "destroyed_compromised"
    assert (await keys.get_key(ctx, key_id)).state is KeyState.DESTROYED_COMPROMISED


async def test_each_target_write_moves_its_stamp_forward_even_at_one_clock_reading(store: Store) -> None:
    """Two replicas whose clocks read the same (or the second's behind) still leave distinct stamps: the
    stamp is how a reconciler learns that another actor recorded a target after it read it."""
    _, ks_id, key_id = await _populated(store)
    async with store.read() as tx:
        key = await tx.key(key_id)
    at = key.targets[0].updated_at
    assert at is not None
    seen = []
    for earlier in (timedelta(0), timedelta(0), timedelta(seconds=-5)):
        written = key.targets[0].with_changes(sync_flag=SyncFlag.OUT_OF_SYNC, updated_at=at + earlier)
        async with store.transaction() as tx:
            assert await tx.update_targets(key_id, key.generation, [written])
        async with store.read() as tx:
            seen.append((await tx.target_stamps(key_id))[ks_id])
    assert at < seen[0] < seen[1] < seen[2]


@pytest.mark.postgres
async def test_postgres_sessions_are_named_and_bounded(pg_url: str) -> None:
    """Each session says which process it serves (pg_stat_activity shows who holds a lock) and carries the
    limits that free a paused replica's locks."""
    store = Store.from_url(pg_url)
    try:
        async with store.read() as tx:
            row = (
                await tx.conn.execute(
                    text(
                        "SELECT current_setting('application_name'), current_setting('lock_timeout'),"
                        " current_setting('idle_in_transaction_session_timeout')"
                    )
                )
            ).one()
    finally:
        await store.close()
    assert tuple(row) == (f"keyorch {socket.gethostname()[:40]} {os.getpid()}", "15s", "15s")


def test_the_head_revision_keyorch_checks_against_is_alembics_head() -> None:
    """One-shot commands compare the database with ``head_revision()`` (read without Alembic); it must be the
    head Alembic migrates to, one line of revisions from the first migration to it."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", "keyorch.store:migrations")
    scripts = ScriptDirectory.from_config(config)
    assert scripts.get_heads() == [head_revision()] == [LATEST_MIGRATION]
    line = [s.revision for s in scripts.walk_revisions()]
    assert line == sorted(line, reverse=True) and len(line) == int(head_revision())


async def test_schema_revisions_before_init_after_init_and_when_behind(db_url: str) -> None:
    s = Store.from_url(db_url)
    try:
        assert await schema_revisions(s.engine) == (None, head_revision())
        await migrate(s.engine)
        assert await schema_revisions(s.engine) == (head_revision(), head_revision())
        async with s.engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '0016'"))
        assert await schema_revisions(s.engine) == ("0016", head_revision())
    finally:
        await s.close()
