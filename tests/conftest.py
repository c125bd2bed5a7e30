"""Fixtures shared by every test folder: databases (a real SQLite file, a real PostgreSQL)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

POSTGRES_ENV = "KEYORCH_TEST_POSTGRES_URL"


def postgres_admin_url() -> str | None:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{POSTGRES_ENV} is not set: CI must run the PostgreSQL store tests (scripts/test.sh)")
        pytest.skip(f"{POSTGRES_ENV} not set; run the suite through scripts/test.sh for PostgreSQL")
    return url


async def _create_database(admin_url: str) -> str:
    import asyncpg

    name = f"keyorch_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


async def _drop_database(admin_url: str, url: str) -> None:
    import asyncpg

    name = url.rpartition("/")[2]
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@asynccontextmanager
async def fresh_postgres_database() -> AsyncIterator[str]:
    """The URL of a new, empty database on the test PostgreSQL server, dropped afterwards."""
    admin = postgres_admin_url()
    assert admin is not None
    url = await _create_database(admin)
    try:
        yield url
    finally:
        await _drop_database(admin, url)


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database URL (for tests marked ``postgres``)."""
    async with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database URL on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'keyorch.db'}"
        return
    async with fresh_postgres_database() as url:
        yield url
