"""The store: one transaction per change, optimistic concurrency, records in and out."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Table, and_, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from keyorch.audit import AuditRecord
from keyorch.crypto import MasterKey
from keyorch.domain.errors import InvalidInput, NotFound, StaleVersion
from keyorch.domain.models import (
    Keystore,
    KeystoreStatus,
    KeyTemplate,
    KeyVersion,
    ManagedKey,
    SyncFlag,
    Target,
    Vault,
    VaultCounts,
)
from keyorch.domain.validation import check_text
from keyorch.store import audit_chain, rows
from keyorch.store.engine import READONLY_OPTION, create_engine
from keyorch.store.key_selection import EVERY_KEY, KeySelection
from keyorch.store.retry import run_retrying
from keyorch.store.schema import (
    audit_log,
    intents,
    key_leases,
    key_targets,
    key_version_ids,
    key_versions,
    keystores,
    managed_keys,
    templates,
    vaults,
)

# The task holding this process's turn to write (see Store.transaction); copied into tasks it starts.
_WRITER: ContextVar[asyncio.Task[Any] | None] = ContextVar("keyorch_store_writer", default=None)
WRITER_TURN_TIMEOUT_S = 60.0
T = TypeVar("T")


class Store:
    """Owns the engine. ``async with store.transaction() as tx`` for every change; ``store.read()``
    for a unit of work that only reads."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._queue_writers = engine.dialect.name == "sqlite"
        self._writer_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    @classmethod
    def from_url(cls, url: str) -> Store:
        return cls(create_engine(url))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """One writing unit of work. On SQLite, which admits one writer at a time, this process's
        writers wait their turn in order (an asyncio lock) rather than in SQLite's busy handler, which
        polls and lets a waiter starve past its timeout ("database is locked") when many workers
        write at once; other processes (a CLI beside the daemon) still meet at SQLite's lock."""
        task = asyncio.current_task()
        if task is not None and _WRITER.get() is task:
            raise RuntimeError("a write transaction was opened inside another one in the same task")
        token = _WRITER.set(task)
        try:
            async with self._writer_turn(), self.engine.begin() as conn:
                tx = Transaction(conn)
                yield tx
            audit_chain.log_heads(tx.sealed_heads)  # committed: the new head goes to the log as an anchor
        finally:
            _WRITER.reset(token)

    async def run(self, body: Callable[[Transaction], Awaitable[T]], *, what: str = "the change") -> T:
        """``body`` in one writing transaction, run again from the start (a bounded number of times) when
        PostgreSQL aborts it to break a deadlock or a serialization conflict: :mod:`keyorch.store.retry`,
        which also states the lock order every writer keeps. ``body`` must be safe to run again: it may
        only act through ``tx`` (everything it did is rolled back with the aborted attempt)."""

        async def attempt() -> T:
            async with self.transaction() as tx:
                return await body(tx)

        return await run_retrying(attempt, what=what)

    @asynccontextmanager
    async def _writer_turn(self) -> AsyncIterator[None]:
        if not self._queue_writers:
            yield
            return
        loop = asyncio.get_running_loop()
        turn = self._writer_turns.get(loop)
        if turn is None:
            turn = self._writer_turns[loop] = asyncio.Lock()
        try:
            async with asyncio.timeout(WRITER_TURN_TIMEOUT_S):
                await turn.acquire()
        except TimeoutError:
            raise SQLAlchemyTimeout(
                f"waited {WRITER_TURN_TIMEOUT_S:.0f} s for this process's turn to write to the SQLite database"
            ) from None
        try:
            yield
        finally:
            turn.release()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Transaction]:
        """A read-only unit of work on one snapshot: every statement in it sees the same data (a count and
        the page it counts agree). On SQLite it takes no write lock (WAL readers run beside a writer and
        keep their snapshot); on PostgreSQL it is a READ ONLY, REPEATABLE READ transaction."""
        options: dict[str, Any] = {READONLY_OPTION: True}
        if self.engine.dialect.name == "postgresql":
            options.update(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(**options)
            async with conn.begin():
                yield Transaction(conn)

    async def close(self) -> None:
        await self.engine.dispose()


class Transaction:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.sealed_heads: list[audit_chain.Anchor] = []  # heads after this transaction's accepted records

    # --- generic helpers ----------------------------------------------------------------

    async def _one(self, table: Table, **where: Any) -> Any:
        clause = and_(*(table.c[k] == v for k, v in where.items()))
        return (await self.conn.execute(select(table).where(clause))).mappings().first()

    @staticmethod
    def _within(column: Any, vault_ids: Collection[str] | None) -> tuple[Any, ...]:
        """The clause keeping a lookup to these vaults (None: every vault)."""
        return () if vault_ids is None else (column.in_(sorted(vault_ids)),)

    async def _by_ref(self, table: Table, ref: str, name_col: str, kind: str, *extra: Any) -> Any:
        """The record with this id, else the one with this name; refused before any query if ``ref`` is not
        text a column can hold. ``extra`` clauses narrow the search (e.g. to the caller's vaults): a record
        outside them is not found, exactly like one that does not exist."""
        check_text(kind, ref)
        row = (await self.conn.execute(select(table).where(table.c.id == ref, *extra))).mappings().first()
        if row is not None:
            return row
        found = (await self.conn.execute(select(table).where(table.c[name_col] == ref, *extra))).mappings().all()
        if len(found) == 1:
            return found[0]
        if not found:
            raise NotFound(f"no {kind} has the id or {name_col} {ref!r}", target=kind)
        ids = ", ".join(r["id"] for r in found[:10])
        raise InvalidInput(f"{name_col} {ref!r} matches {len(found)} {kind}s ({ids}); give the id", target=kind)

    async def object_id(self, kind: str, ref: str) -> str | None:
        """The id of the ``kind`` (vault, keystore, template or key) that ``ref`` names by id or unique name
        (a key: its label); None if none does. A name several of them share is refused (InvalidInput)."""
        lookups: dict[str, Callable[[str], Awaitable[Vault | Keystore | KeyTemplate | ManagedKey]]] = {
            "vault": self.vault,
            "keystore": self.keystore,
            "template": self.template,
            "key": self.key,
        }
        try:
            return (await lookups[kind](ref)).id
        except NotFound:
            return None

    async def _update_versioned(self, table: Table, record_id: str, expected: int, values: dict[str, Any]) -> int:
        values = {k: v for k, v in values.items() if k not in ("id", "version")}
        result = await self.conn.execute(
            update(table)
            .where(table.c.id == record_id, table.c.version == expected)
            .values(**values, version=expected + 1)
        )
        if result.rowcount != 1:
            current = await self._one(table, id=record_id)
            if current is None:
                raise NotFound(f"{table.name[:-1]} {record_id} no longer exists", target=table.name)
            raise StaleVersion(
                f"{table.name[:-1]} {record_id} changed meanwhile (version {current['version']}, you had "
                f"{expected}); read it again and retry",
                target="version",
            )
        return expected + 1

    # --- vaults ---------------------------------------------------------------------------

    async def insert_vault(self, vault: Vault) -> None:
        await self.conn.execute(insert(vaults).values(**rows.vault_to_row(vault)))

    async def vault(self, ref: str, within: Collection[str] | None = None) -> Vault:
        """By id or name; with ``within``, only among those vault ids."""
        return rows.vault_from_row(await self._by_ref(vaults, ref, "name", "vault", *self._within(vaults.c.id, within)))

    async def vault_by_id(self, vault_id: str) -> Vault:
        row = await self._one(vaults, id=vault_id)
        if row is None:
            raise NotFound(f"vault {vault_id} does not exist", target="vault")
        return rows.vault_from_row(row)

    async def vault_name_taken(self, name: str) -> bool:
        return await self._one(vaults, name=name) is not None

    async def list_vaults(self) -> list[Vault]:
        result = await self.conn.execute(select(vaults).order_by(vaults.c.created_at, vaults.c.id))
        return [rows.vault_from_row(r) for r in result.mappings()]

    async def update_vault(self, vault: Vault, expected_version: int) -> Vault:
        version = await self._update_versioned(vaults, vault.id, expected_version, rows.vault_to_row(vault))
        return replace(vault, version=version)

    async def delete_vault(self, vault: Vault) -> None:
        await self.conn.execute(delete(keystores).where(keystores.c.vault_id == vault.id))
        await self.conn.execute(delete(vaults).where(vaults.c.id == vault.id, vaults.c.version == vault.version))

    async def vault_counts(self, vault_ids: Collection[str]) -> dict[str, VaultCounts]:
        """What each of these vaults holds (one grouped query per kind; connected keystores only)."""
        found: dict[str, dict[str, int]] = {v: {} for v in vault_ids}
        if not found:
            return {}
        wanted = sorted(found)
        for kind, table, extra in (
            ("keys", managed_keys, None),
            ("key_templates", templates, None),
            ("keystores", keystores, keystores.c.status == KeystoreStatus.CONNECTED.value),
        ):
            stmt = select(table.c.vault_id, func.count()).where(table.c.vault_id.in_(wanted)).group_by(table.c.vault_id)
            if extra is not None:
                stmt = stmt.where(extra)
            for vault_id, count in await self.conn.execute(stmt):
                found[vault_id][kind] = int(count)
        return {v: VaultCounts(**c) for v, c in found.items()}

    async def vault_contents(self, vault_id: str) -> tuple[int, int, int]:
        """(connected keystores, templates, keys) in a vault."""
        counts = []
        for table, extra in (
            (keystores, keystores.c.status == KeystoreStatus.CONNECTED.value),
            (templates, None),
            (managed_keys, None),
        ):
            stmt = select(func.count()).select_from(table).where(table.c.vault_id == vault_id)
            if extra is not None:
                stmt = stmt.where(extra)
            counts.append(int((await self.conn.execute(stmt)).scalar_one()))
        return counts[0], counts[1], counts[2]

    # --- keystores ------------------------------------------------------------------------

    async def insert_keystore(self, keystore: Keystore, credentials: bytes | None) -> None:
        await self.conn.execute(insert(keystores).values(**rows.keystore_to_row(keystore), credentials=credentials))

    async def keystore(self, ref: str, within: Collection[str] | None = None) -> Keystore:
        """By id (connected or not) or by the name of a connected one; with ``within``, only in those vaults."""
        check_text("keystore", ref)
        scope = self._within(keystores.c.vault_id, within)
        row = (await self.conn.execute(select(keystores).where(keystores.c.id == ref, *scope))).mappings().first()
        if row is None:
            connected = keystores.c.status == KeystoreStatus.CONNECTED.value
            row = await self._by_ref(keystores, ref, "name", "keystore", connected, *scope)
        return rows.keystore_from_row(row)

    async def keystores_by_id(self, ids: Iterable[str]) -> dict[str, Keystore]:
        """The keystores with these ids (connected or not), in one query; an unknown id is refused."""
        wanted = set(ids)
        if not wanted:
            return {}
        result = await self.conn.execute(select(keystores).where(keystores.c.id.in_(sorted(wanted))))
        found = {r["id"]: rows.keystore_from_row(r) for r in result.mappings()}
        missing = wanted - found.keys()
        if missing:
            raise NotFound(f"no keystore has the id {sorted(missing)[0]!r}", target="keystore")
        return found

    async def connected_keystore_named(self, vault_id: str, name: str) -> Keystore | None:
        row = await self._one(keystores, vault_id=vault_id, name=name, status=KeystoreStatus.CONNECTED.value)
        return rows.keystore_from_row(row) if row is not None else None

    async def list_keystores(self, vault_id: str | None = None, include_disconnected: bool = False) -> list[Keystore]:
        stmt = select(keystores).order_by(keystores.c.created_at, keystores.c.id)
        if vault_id is not None:
            stmt = stmt.where(keystores.c.vault_id == vault_id)
        if not include_disconnected:
            stmt = stmt.where(keystores.c.status == KeystoreStatus.CONNECTED.value)
        return [rows.keystore_from_row(r) for r in (await self.conn.execute(stmt)).mappings()]

    async def keystore_credentials(self, keystore_id: str) -> bytes | None:
        stmt = select(keystores.c.credentials).where(keystores.c.id == keystore_id)
        value = (await self.conn.execute(stmt)).scalar_one_or_none()
        return bytes(value) if value is not None else None

    async def update_keystore(
        self,
        keystore: Keystore,
        expected_version: int,
        *,
        wipe_credentials: bool = False,
        credentials: bytes | None = None,
    ) -> Keystore:
        """Write the keystore's record; ``credentials`` replaces the stored (encrypted) credentials."""
        values = rows.keystore_to_row(keystore)
        if wipe_credentials:
            values["credentials"] = None
        elif credentials is not None:
            values["credentials"] = credentials
        version = await self._update_versioned(keystores, keystore.id, expected_version, values)
        return replace(keystore, version=version)

    # --- templates ------------------------------------------------------------------------

    async def insert_template(self, template: KeyTemplate) -> None:
        await self.conn.execute(insert(templates).values(**rows.template_to_row(template)))

    async def template(self, ref: str, within: Collection[str] | None = None) -> KeyTemplate:
        scope = self._within(templates.c.vault_id, within)
        return rows.template_from_row(await self._by_ref(templates, ref, "name", "template", *scope))

    async def template_name_taken(self, vault_id: str, name: str) -> bool:
        return await self._one(templates, vault_id=vault_id, name=name) is not None

    async def list_templates(self, vault_id: str | None = None) -> list[KeyTemplate]:
        stmt = select(templates).order_by(templates.c.created_at, templates.c.id)
        if vault_id is not None:
            stmt = stmt.where(templates.c.vault_id == vault_id)
        return [rows.template_from_row(r) for r in (await self.conn.execute(stmt)).mappings()]

    async def template_key_counts(self, template_ids: Collection[str]) -> dict[str, int]:
        """How many managed keys each of these templates made (one grouped query)."""
        if not template_ids:
            return {}
        stmt = (
            select(managed_keys.c.template_id, func.count())
            .where(managed_keys.c.template_id.in_(sorted(template_ids)))
            .group_by(managed_keys.c.template_id)
        )
        found = {str(template_id): int(n) for template_id, n in await self.conn.execute(stmt)}
        return {t: found.get(t, 0) for t in template_ids}

    async def delete_template(self, template: KeyTemplate) -> None:
        """Delete the template as read (``StaleVersion`` if it changed since)."""
        result = await self.conn.execute(
            delete(templates).where(templates.c.id == template.id, templates.c.version == template.version)
        )
        if result.rowcount != 1:
            raise StaleVersion(f"template {template.id} changed meanwhile; read it again and retry", target="version")

    async def mark_template_keys_unaligned(self, template_id: str, now: datetime) -> int:
        """Flag every key made from the template as no longer aligned with it (a new version of each key, so
        an ETag read before is stale); how many keys that was."""
        result = await self.conn.execute(
            update(managed_keys)
            .where(managed_keys.c.template_id == template_id, managed_keys.c.template_aligned.is_(True))
            .values(template_aligned=False, version=managed_keys.c.version + 1, updated_at=now)
        )
        return int(result.rowcount)

    async def update_template(self, template: KeyTemplate, expected_version: int) -> KeyTemplate:
        version = await self._update_versioned(templates, template.id, expected_version, rows.template_to_row(template))
        return replace(template, version=version)

    # --- managed keys ---------------------------------------------------------------------

    async def insert_key(self, key: ManagedKey) -> None:
        await self.conn.execute(insert(managed_keys).values(**rows.key_to_row(key)))
        await self._write_targets(key)
        await self.insert_key_version(key.id, KeyVersion(1, key.created_at, key.created_by))

    async def insert_key_version(self, key_id: str, version: KeyVersion) -> None:
        await self.conn.execute(
            insert(key_versions).values(
                key_id=key_id, version=version.version, created_at=version.created_at, created_by=version.created_by
            )
        )

    async def key_versions(self, key_id: str) -> list[KeyVersion]:
        """The key's versions, oldest first."""
        stmt = select(key_versions).where(key_versions.c.key_id == key_id).order_by(key_versions.c.version)
        return [
            KeyVersion(r["version"], r["created_at"], r["created_by"])
            for r in (await self.conn.execute(stmt)).mappings()
        ]

    async def _write_targets(self, key: ManagedKey) -> None:
        await self.conn.execute(delete(key_targets).where(key_targets.c.key_id == key.id))
        if key.targets:
            await self.conn.execute(insert(key_targets), [rows.target_to_row(key.id, t) for t in key.targets])

    async def _keys_from_rows(self, key_rows: Sequence[Any]) -> list[ManagedKey]:
        if not key_rows:
            return []
        ids = [r["id"] for r in key_rows]
        by_key: dict[str, list[Any]] = {i: [] for i in ids}
        for chunk_start in range(0, len(ids), 500):
            chunk = ids[chunk_start : chunk_start + 500]
            result = await self.conn.execute(select(key_targets).where(key_targets.c.key_id.in_(chunk)))
            for t in result.mappings():
                by_key[t["key_id"]].append(rows.target_from_row(t))
        return [rows.key_from_row(r, by_key[r["id"]]) for r in key_rows]

    async def key(self, ref: str, within: Collection[str] | None = None) -> ManagedKey:
        row = await self._by_ref(managed_keys, ref, "label", "key", *self._within(managed_keys.c.vault_id, within))
        return (await self._keys_from_rows([row]))[0]

    async def keys_by_id(self, ids: Sequence[str]) -> list[ManagedKey]:
        """The keys with these ids that exist (a removed one is left out), in a few queries."""
        found: list[Any] = []
        for start in range(0, len(ids), 500):
            stmt = select(managed_keys).where(managed_keys.c.id.in_(ids[start : start + 500]))
            found.extend((await self.conn.execute(stmt)).mappings().all())
        return await self._keys_from_rows(found)

    async def key_ids_with_targets(self) -> list[str]:
        """Every key that targets at least one keystore, by creation time: the keys a pass reconciles."""
        targeted = select(key_targets.c.key_id).where(key_targets.c.key_id == managed_keys.c.id).exists()
        stmt = select(managed_keys.c.id).where(targeted).order_by(managed_keys.c.created_at, managed_keys.c.id)
        return list((await self.conn.execute(stmt)).scalars())

    async def out_of_sync_counts(self) -> dict[str, int]:
        """Per keystore id, how many keys have a target there flagged out of sync (counted in SQL)."""
        stmt = (
            select(key_targets.c.keystore_id, func.count())
            .where(key_targets.c.sync_flag == SyncFlag.OUT_OF_SYNC.value)
            .group_by(key_targets.c.keystore_id)
        )
        return {keystore_id: int(n) for keystore_id, n in (await self.conn.execute(stmt)).all()}

    async def key_generation(self, key_id: str, *, lock: bool = False) -> int | None:
        """The generation of the key's desired state (``None`` once the key is removed). ``lock``: read
        it ``FOR UPDATE`` (PostgreSQL), so that every writer of a key's rows takes the key's row first,
        as a state change does: one lock order (key, lease, intents, targets, audit head; see
        :mod:`keyorch.store.retry`), no deadlock."""
        stmt = select(managed_keys.c.generation).where(managed_keys.c.id == key_id)
        if lock and self.conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        value = (await self.conn.execute(stmt)).scalar_one_or_none()
        return None if value is None else int(value)

    async def target_stamps(self, key_id: str) -> dict[str, datetime | None]:
        """When each of the key's targets' records last changed (keystore id -> ``updated_at``)."""
        rows = await self.conn.execute(
            select(key_targets.c.keystore_id, key_targets.c.updated_at).where(key_targets.c.key_id == key_id)
        )
        return {str(keystore_id): stamp for keystore_id, stamp in rows}

    async def label_taken(self, vault_id: str, label: str) -> bool:
        return await self._one(managed_keys, vault_id=vault_id, label=label) is not None

    async def key_named_in_keystore(self, keystore_id: str, label: str, *, ignore_case: bool = False) -> str | None:
        """The id of a key whose target in that keystore is called ``label`` there (``ignore_case``: compared
        without case), or ``None``."""
        column = key_targets.c.label_in_keystore
        match = func.lower(column) == label.lower() if ignore_case else column == label
        stmt = select(key_targets.c.key_id).where(key_targets.c.keystore_id == keystore_id, match).limit(1)
        return (await self.conn.execute(stmt)).scalar_one_or_none()

    async def list_keys(
        self,
        selection: KeySelection = EVERY_KEY,
        *,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ManagedKey]:
        """The keys the selection picks, in its order (by default by creation time, then id), filtered in SQL;
        only the ``limit``/``offset`` page is read."""
        stmt = select(managed_keys).where(*selection.conditions()).order_by(*selection.order())
        if limit is not None:
            stmt = stmt.limit(limit)
        if offset:
            stmt = stmt.offset(offset)
        return await self._keys_from_rows((await self.conn.execute(stmt)).mappings().all())

    async def count_keys(self, selection: KeySelection = EVERY_KEY) -> int:
        """How many keys :meth:`list_keys` with the same selection finds (SELECT count(*))."""
        stmt = select(func.count()).select_from(managed_keys).where(*selection.conditions())
        return int((await self.conn.execute(stmt)).scalar_one())

    async def keys_targeting(self, keystore_id: str) -> list[ManagedKey]:
        ids = select(key_targets.c.key_id).where(key_targets.c.keystore_id == keystore_id)
        stmt = select(managed_keys).where(managed_keys.c.id.in_(ids)).order_by(managed_keys.c.created_at)
        return await self._keys_from_rows((await self.conn.execute(stmt)).mappings().all())

    async def update_key(self, key: ManagedKey, expected_version: int) -> ManagedKey:
        version = await self._update_versioned(managed_keys, key.id, expected_version, rows.key_to_row(key))
        await self._write_targets(key)
        return replace(key, version=version)

    async def delete_key(self, key: ManagedKey) -> None:
        await self.key_generation(key.id, lock=True)  # the key's row first, then its targets (lock order)
        await self.conn.execute(delete(key_targets).where(key_targets.c.key_id == key.id))
        await self.conn.execute(delete(key_leases).where(key_leases.c.key_id == key.id))
        result = await self.conn.execute(
            delete(managed_keys).where(managed_keys.c.id == key.id, managed_keys.c.version == key.version)
        )
        if result.rowcount != 1:
            raise StaleVersion(f"key {key.id} changed meanwhile; read it again and retry", target="version")

    async def update_targets(self, key_id: str, generation: int, targets: Sequence[Target]) -> bool:
        """Record what the reconciler saw and did, without touching the key's version.

        Written only while the key's desired state is still at ``generation``: a result computed
        for an older desired state is dropped (the caller reconciles again). Returns whether written.
        All targets go in one statement (executemany).
        """
        if await self.key_generation(key_id) != generation:
            return False
        if not targets:
            return True
        # Each write moves a target's stamp strictly forward, even at the same clock reading (a coarse or
        # frozen clock, or another replica's clock behind this one's): the stamp is how an actor learns that
        # a target was recorded after it read it (Reconciler.reconcile_key's journal), so it must never repeat.
        stamps = await self.target_stamps(key_id)
        targets = [_stamped_after(t, stamps.get(t.keystore_id)) for t in targets]
        params = [{f"p_{k}": v for k, v in rows.target_to_row(key_id, t).items()} for t in targets]
        columns = [k for k in params[0] if k not in ("p_key_id", "p_keystore_id")]
        stmt = (
            update(key_targets)
            .where(
                key_targets.c.key_id == bindparam("p_key_id"), key_targets.c.keystore_id == bindparam("p_keystore_id")
            )
            .values({name.removeprefix("p_"): bindparam(name) for name in columns})
        )
        await self.conn.execute(stmt, params)
        return True

    async def note_version_ids(self, key_id: str, keystore_id: str, ids: Mapping[int, str]) -> None:
        """Record the provider's id of versions of the key in one keystore (version -> id; a later record of a
        version replaces an earlier one)."""
        for version, version_id in ids.items():
            await self.conn.execute(
                delete(key_version_ids).where(
                    key_version_ids.c.key_id == key_id,
                    key_version_ids.c.keystore_id == keystore_id,
                    key_version_ids.c.version == version,
                )
            )
            await self.conn.execute(
                insert(key_version_ids).values(
                    key_id=key_id, keystore_id=keystore_id, version=version, version_id_in_keystore=version_id
                )
            )

    async def key_version_ids(self, key_id: str) -> dict[tuple[str, int], str]:
        """The provider's id of each version of the key keyorch learned, by (keystore id, version)."""
        stmt = select(key_version_ids).where(key_version_ids.c.key_id == key_id)
        return {
            (r["keystore_id"], r["version"]): r["version_id_in_keystore"]
            for r in (await self.conn.execute(stmt)).mappings()
        }

    async def note_rotation_base(self, key_id: str, keystore_id: str, version_id: str) -> None:
        """Record the provider's primary version a rotation starts from, where none is recorded yet (kept
        even if the rotation's own record is lost: the next attempt then sees the primary moved on)."""
        await self.conn.execute(
            update(key_targets)
            .where(
                key_targets.c.key_id == key_id,
                key_targets.c.keystore_id == keystore_id,
                key_targets.c.primary_version_id.is_(None),
            )
            .values(primary_version_id=version_id)
        )

    # --- intents (journal of mutating provider calls) -------------------------------------

    async def start_intents(
        self, key_id: str, generation: int, started: Sequence[tuple[str, str, int]], now: datetime
    ) -> dict[str, int]:
        """Journal the mutating calls about to be made, one per keystore as ``(keystore_id, action,
        attempts)``, in one statement; return each keystore's intent id. Each target's record is stamped
        with the intent's time, so that no observation older than the intent decides for it (a listing
        another replica took before this actor acted, should this actor die before recording results)."""
        if not started:
            return {}
        await self.conn.execute(
            update(key_targets)
            .where(key_targets.c.key_id == key_id, key_targets.c.keystore_id.in_(sorted(k for k, _, _ in started)))
            .values(updated_at=now)
        )
        stmt = insert(intents).returning(intents.c.id, intents.c.keystore_id)  # matched by keystore, any order
        params = [
            {
                "key_id": key_id,
                "keystore_id": keystore_id,
                "generation": generation,
                "action": action,
                "status": "started",
                "attempts": attempts,
                "started_at": now,
            }
            for keystore_id, action, attempts in started
        ]
        return {str(r.keystore_id): int(r.id) for r in await self.conn.execute(stmt, params)}

    async def finish_intents(self, finished: Sequence[tuple[int, str, str | None]], now: datetime) -> None:
        """Record the outcome of journalled calls, ``(intent_id, status, error)`` each, in one statement."""
        if not finished:
            return
        stmt = (
            update(intents)
            .where(intents.c.id == bindparam("p_id"))
            .values(status=bindparam("p_status"), last_error=bindparam("p_error"), finished_at=now)
        )
        await self.conn.execute(
            stmt, [{"p_id": intent_id, "p_status": status, "p_error": error} for intent_id, status, error in finished]
        )

    async def resolve_intents(self, key_id: str, keystore_ids: Collection[str], now: datetime) -> int:
        """Close every open intent of the key's targets on ``keystore_ids`` once they are in line with
        the desired state."""
        if not keystore_ids:
            return 0
        result = await self.conn.execute(
            update(intents)
            .where(
                intents.c.key_id == key_id,
                intents.c.keystore_id.in_(list(keystore_ids)),
                intents.c.status == "started",
            )
            .values(status="resolved", finished_at=now)
        )
        return int(result.rowcount)

    async def calls_in_doubt_many(self, key_ids: Sequence[str]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
        """Per key, from one read of the journal: (the keystores where its latest create attempt did not
        succeed, the keystores whose latest call of any kind was interrupted).

        A create that failed or was interrupted may have made a key in the provider whose answer never
        came; it stays in doubt until the target is seen in line with a key present or the doubt is
        resolved by a search (the intent is then ``resolved``). An interrupted call (still ``started``:
        its actor died or lost its lease before recording the result) has an unknown effect."""
        latest_create: dict[tuple[str, str], str] = {}
        latest_call: dict[tuple[str, str], str] = {}
        for start in range(0, len(key_ids), 500):
            stmt = (
                select(intents.c.key_id, intents.c.keystore_id, intents.c.action, intents.c.status)
                .where(intents.c.key_id.in_(key_ids[start : start + 500]))
                .order_by(intents.c.id)
            )
            for r in await self.conn.execute(stmt):
                target = (str(r.key_id), str(r.keystore_id))
                latest_call[target] = str(r.status)
                if "create" in str(r.action):
                    latest_create[target] = str(r.status)
        return _by_key(latest_create, ("started", "failed")), _by_key(latest_call, ("started",))

    async def open_intents(self, key_id: str | None = None) -> list[dict[str, Any]]:
        stmt = select(intents).where(intents.c.status == "started").order_by(intents.c.id)
        if key_id is not None:
            stmt = stmt.where(intents.c.key_id == key_id)
        return [dict(r) for r in (await self.conn.execute(stmt)).mappings()]

    # --- audit ----------------------------------------------------------------------------

    async def add_audit(self, record: AuditRecord, *, master_key: MasterKey | None) -> int:
        """Append a record to the audit chain (sealed with the master key when given); return its seq."""
        head = await audit_chain.append(self.conn, rows.audit_to_row(record), master_key)
        if record.outcome != "refused":
            self.sealed_heads.append(head)
        return head.seq

    async def list_audit(
        self, object_id: str | None = None, limit: int = 1000, *, object_ids: Collection[str] = ()
    ) -> list[AuditRecord]:
        """The newest ``limit`` records, oldest first: about ``object_id`` or any of ``object_ids`` if given."""
        stmt = select(audit_log).order_by(audit_log.c.seq.desc()).limit(limit)
        wanted = sorted({*object_ids, *([object_id] if object_id is not None else [])})
        if wanted:
            stmt = stmt.where(audit_log.c.object_id.in_(wanted))
        result = (await self.conn.execute(stmt)).mappings().all()
        return [rows.audit_from_row(r) for r in reversed(result)]


def _by_key(latest: dict[tuple[str, str], str], statuses: tuple[str, ...]) -> dict[str, set[str]]:
    """Per key id, the keystores whose latest status is one of ``statuses``."""
    found: dict[str, set[str]] = {}
    for (key_id, keystore_id), status in latest.items():
        if status in statuses:
            found.setdefault(key_id, set()).add(keystore_id)
    return found


def _stamped_after(target: Target, stamp: datetime | None) -> Target:
    """``target`` with an ``updated_at`` later than ``stamp`` (the record it replaces)."""
    if stamp is None or (target.updated_at is not None and target.updated_at > stamp):
        return target
    return replace(target, updated_at=stamp + timedelta(microseconds=1))
