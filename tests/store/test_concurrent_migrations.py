"""Issue 13: replicas starting together on one PostgreSQL database migrate it one after the other."""

from __future__ import annotations

import asyncio

import pytest

from keyorch.store.engine import create_engine, migrate, schema_revisions


@pytest.mark.postgres
async def test_five_concurrent_migrations_of_a_fresh_database_all_succeed(pg_url: str) -> None:
    engines = [create_engine(pg_url) for _ in range(5)]
    try:
        results = await asyncio.gather(*(migrate(e) for e in engines))
        current, head = await schema_revisions(engines[0])
        assert current == head
        befores = [before for before, _ in results]
        assert befores.count(None) == 1 and befores.count(head) == 4, befores  # one created it, in turn
        assert {after for _, after in results} == {head}
    finally:
        for engine in engines:
            await engine.dispose()
