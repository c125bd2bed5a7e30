"""Issue 13, point 2: a deadlock or serialization abort raised by the PostgreSQL driver is retried a
bounded number of times (keyorch.store.retry), and a persistent one becomes one clear 503 sentence.

The aborts are real: PostgreSQL raises them with ``RAISE … USING ERRCODE``, so the exception comes
from asyncpg through SQLAlchemy exactly as a detected deadlock (40P01) or a serialization failure
(40001) does."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from keyorch.audit import Actor
from keyorch.service.context import Change, ServiceContext
from keyorch.store import audit_chain
from keyorch.store.engine import migrate
from keyorch.store.repository import Store, Transaction
from keyorch.store.retry import MAX_ATTEMPTS, StoreBusy, retryable
from tests.conftest import _create_database, _drop_database, postgres_admin_url

pytestmark = pytest.mark.postgres


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    admin = postgres_admin_url()
    assert admin is not None
    url = await _create_database(admin)
    s = Store.from_url(url)
    try:
        await migrate(s.engine)
        yield s
    finally:
        await s.close()
        await _drop_database(admin, url)


def abort(sqlstate: str) -> str:
    return f"DO $$ BEGIN RAISE EXCEPTION 'provoked by the test' USING ERRCODE = '{sqlstate}'; END $$"


class Flaky:
    """A transaction body that the database aborts on its first ``failures`` attempts."""

    def __init__(self, sqlstate: str, failures: int) -> None:
        self.sqlstate = sqlstate
        self.failures = failures
        self.attempts = 0

    async def __call__(self, tx: Transaction) -> tuple[int, Change]:
        self.attempts += 1
        await tx.conn.execute(text("CREATE TEMPORARY TABLE IF NOT EXISTS scratch (n int) ON COMMIT DROP"))
        await tx.conn.execute(text("INSERT INTO scratch VALUES (:n)"), {"n": self.attempts})
        if self.attempts <= self.failures:
            await tx.conn.execute(text(abort(self.sqlstate)))
        return self.attempts, Change(None, detail="flaky")


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])
async def test_an_abort_from_the_driver_is_retried_and_the_change_commits_once(store: Store, sqlstate: str) -> None:
    ctx = ServiceContext(store=store, actor=Actor(user="alice", source="api", role="vault_administrator"))
    body = Flaky(sqlstate, failures=MAX_ATTEMPTS - 1)
    assert await ctx.change("test.flaky", "key", None, body) == MAX_ATTEMPTS
    async with store.read() as tx:
        audit = await tx.list_audit()
        verified = await audit_chain.verify(tx.conn, None)
    assert [(r.action, r.outcome) for r in audit] == [("test.flaky", "accepted")]
    assert verified.records == 1


async def test_a_persistent_deadlock_becomes_a_clear_503_after_the_bound(store: Store) -> None:
    ctx = ServiceContext(store=store, actor=Actor(user="alice", source="api", role="vault_administrator"))
    body = Flaky("40P01", failures=10 * MAX_ATTEMPTS)
    with pytest.raises(StoreBusy) as caught:
        await ctx.change("test.flaky", "key", None, body)
    assert body.attempts == MAX_ATTEMPTS
    error = caught.value
    assert error.http_status == 503 and error.exit_code == 4 and error.code == "store_busy"
    assert "40P01" in error.message and f"{MAX_ATTEMPTS} times" in error.message
    assert "\n" not in error.message and "Traceback" not in error.message and "DO $$" not in error.message
    async with store.read() as tx:
        audit = await tx.list_audit()
    assert [(r.action, r.outcome) for r in audit] == [("test.flaky", "refused")]  # nothing else was written


async def test_other_database_errors_are_not_retried(store: Store) -> None:
    attempts = 0

    async def body(tx: Transaction) -> None:
        nonlocal attempts
        attempts += 1
        await tx.conn.execute(text(abort("23505")))  # unique_violation: running it again would not help

    with pytest.raises(DBAPIError) as caught:
        await store.run(body)
    assert attempts == 1 and not retryable(caught.value)
