"""Issue 12: time never runs backwards along the audit chain (SQLite and PostgreSQL, an injected clock).

A clock that went back (an NTP step, a restored VM) dates a new record at its predecessor's time instead
of before it, and the chain still verifies; the times an injected test clock gives are what is recorded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from keyorch.audit import Actor
from keyorch.domain.clock import FixedClock
from keyorch.service import vaults
from keyorch.service.context import ServiceContext
from keyorch.store import audit_chain
from keyorch.store.engine import migrate
from keyorch.store.repository import Store


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = Store.from_url(db_url)
    await migrate(s.engine)
    yield s
    await s.close()


async def test_a_clock_set_back_never_dates_a_record_before_its_predecessor(store: Store) -> None:
    clock = FixedClock(datetime(2027, 6, 1, 12, 0, tzinfo=UTC))
    ctx = ServiceContext(store=store, actor=Actor(user="alice"), clock=clock)
    await vaults.create_vault(ctx, "first")
    clock.advance(days=-400)
    await vaults.create_vault(ctx, "second")
    clock.advance(days=800)
    await vaults.create_vault(ctx, "third")
    async with store.read() as tx:
        times = [r.at for r in await tx.list_audit()]
        verified = await audit_chain.verify(tx.conn, None)
    assert times == [datetime(2027, 6, 1, 12, 0, tzinfo=UTC)] * 2 + [datetime(2028, 7, 5, 12, 0, tzinfo=UTC)]
    assert verified.records == 3
