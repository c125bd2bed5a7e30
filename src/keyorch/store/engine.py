"""Database engines: URL handling, SQLite durability pragmas, and migrations (Alembic)."""

from __future__ import annotations

import os
import socket
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from keyorch.domain.errors import ConfigurationError
from keyorch.domain.validation import shown
from keyorch.urls import redact_url

if TYPE_CHECKING:
    from alembic.config import Config

SQLITE_BUSY_TIMEOUT_MS = 15_000
READONLY_OPTION = "keyorch_readonly"


def async_url(url: str) -> str:
    """``sqlite:///PATH`` → aiosqlite, ``postgresql://…`` → asyncpg; anything else is refused."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError(
            f"database URL {shown(redact_url(url))} is not valid; use sqlite:///PATH or postgresql://USER@HOST/DB"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ConfigurationError("a SQLite database URL needs a file path: sqlite:///PATH (no :memory:)")
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise ConfigurationError(f"database URL scheme {parsed.drivername!r} is not supported; use sqlite or postgresql")


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(async_url(url))
    return Path(parsed.database) if parsed.get_backend_name() == "sqlite" and parsed.database else None


#: Every PostgreSQL session's limits (docs/ha.md): a replica paused or cut off in the middle of a
#: transaction would otherwise keep its row locks for as long as its connection lives, and every other
#: replica's transaction on those rows would wait for it. Its session is ended after 15 s idle in a
#: transaction (its locks released, its transaction rolled back), and no statement waits more than 15 s
#: for a lock (the transaction fails and is tried again later).
PG_SESSION_SETTINGS = {"idle_in_transaction_session_timeout": "15000", "lock_timeout": "15000"}


def _application_name() -> str:
    """How this process's sessions are named in ``pg_stat_activity`` (which replica holds which lock):
    ``keyorch <host> <pid>``, within PostgreSQL's 63 bytes."""
    return f"keyorch {socket.gethostname()[:40]} {os.getpid()}"


def create_engine(url: str) -> AsyncEngine:
    target = async_url(url)
    if target.startswith("sqlite"):
        engine = create_async_engine(target, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        _private_file(engine, sqlite_path(url))
        _sqlite_pragmas(engine)
        return engine
    return create_async_engine(
        target,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        connect_args={"server_settings": {**PG_SESSION_SETTINGS, "application_name": _application_name()}},
    )


def _private_file(engine: AsyncEngine, path: Path | None) -> None:
    """A SQLite file this engine creates is created mode 0600 (its ``-wal`` and ``-shm`` files take the
    database file's mode): it holds key metadata, the audit trail and the chain's stored key."""

    @event.listens_for(engine.sync_engine, "do_connect")
    def _before_connect(*_: Any) -> None:
        if path is None:
            return
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:  # it exists (its mode is the operator's), or SQLite will say why it cannot be opened
            return
        os.fchmod(fd, 0o600)
        os.close(fd)


def _sqlite_pragmas(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own handling is off).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front so two never deadlock upgrading a read lock;
        # read-only units of work (Store.read) take none and run beside a writer (WAL).
        readonly = conn.get_execution_options().get(READONLY_OPTION, False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


#: The PostgreSQL advisory lock taken while migrating (any constant unlikely to clash: "keyorch" in ASCII).
MIGRATION_LOCK_ID = 0x6B65796F726368


#: The migrations, one file each, named ``NNNN_what.py`` with revision ``NNNN`` following ``NNNN - 1``.
VERSIONS_DIR = Path(__file__).parent / "migrations" / "versions"


def _alembic_config(connection: Connection) -> Config:
    from alembic.config import Config  # Alembic only where the schema changes: one-shot commands start faster

    config = Config()
    config.set_main_option("script_location", "keyorch.store:migrations")
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    from alembic import command

    command.upgrade(_alembic_config(connection), "head")


@cache
def head_revision() -> str:
    """The newest revision keyorch knows: the highest-numbered migration file (the revisions are one line,
    each file's ``down_revision`` the one before; tests/store check that this is Alembic's own head)."""
    return max(p.name.split("_", 1)[0] for p in VERSIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.py"))


def _current_revision(connection: Connection) -> str | None:
    """The database's schema revision (Alembic's ``alembic_version``), read without Alembic."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    found = list(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
    if len(found) > 1:
        raise ConfigurationError(f"the database records several schema revisions at once ({sorted(found)}); repair it")
    return str(found[0]) if found else None


def _revisions(connection: Connection) -> tuple[str | None, str | None]:
    return _current_revision(connection), head_revision()


async def migrate(engine: AsyncEngine) -> tuple[str | None, str | None]:
    """Create or upgrade the schema to the newest revision; return (before, after). On PostgreSQL the
    migration holds an advisory lock for its transaction: replicas starting together migrate one
    after the other (the later ones find the schema current)."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        before, _ = await conn.run_sync(_revisions)
        await conn.run_sync(_upgrade)
        after, _ = await conn.run_sync(_revisions)
    return before, after


async def schema_revisions(engine: AsyncEngine) -> tuple[str | None, str | None]:
    """(current revision in the database, newest revision keyorch knows)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_revisions)
