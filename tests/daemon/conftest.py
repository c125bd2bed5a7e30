"""Fixtures of the daemon tests: the world (four fakes, a session) and the daemons a test starts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.daemon.harness import DaemonProcess
from tests.daemon.world import World
from tests.e2e.harness import start_world_fakes


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    cluster, credentials, _ = await start_world_fakes(tmp_path)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        yield World(tmp_path, cluster, credentials, session)
    finally:
        await session.close()
        await cluster.stop()


@pytest.fixture
async def daemons() -> AsyncIterator[list[DaemonProcess]]:
    """Every daemon a test starts is killed at its end, whatever happened."""
    started: list[DaemonProcess] = []
    try:
        yield started
    finally:
        for daemon in started:
            await daemon.kill()
