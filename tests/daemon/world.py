"""A test world for daemon tests: the four fakes in this loop, an HTTP session, and helpers to start
``keyorch serve`` children on one SQLite database and drive them (fixtures in conftest.py)."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from keyorch.crypto import generate_master_key
from keyorch.fakes.registry import FakeCluster
from tests.daemon.harness import ApiClient, DaemonProcess, clean_env, eventually, setup_world_via_api, write_config
from tests.e2e.harness import KINDS


@dataclass
class World:
    workdir: Path
    cluster: FakeCluster
    credentials: dict[str, Path]
    session: aiohttp.ClientSession
    master_key: str = field(default_factory=generate_master_key)

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.workdir / 'keyorch.db'}"

    def config(self, name: str = "keyorch", **options: Any) -> Path:
        """A settings file over this world's database and master key (see ``write_config`` for options)."""
        return write_config(self.workdir / f"{name}.yaml", self.db_url, master_key=self.master_key, **options)

    def client(self, daemon: DaemonProcess) -> ApiClient:
        return ApiClient(self.session, daemon.url)


async def serving(world: World, daemons: list[DaemonProcess], config: Path) -> tuple[DaemonProcess, ApiClient]:
    """A daemon on ``config``, ready (/readyz 200), killed at the end of the test whatever happens."""
    daemon = await DaemonProcess.start(world.workdir, config)
    daemons.append(daemon)
    client = world.client(daemon)
    await eventually(lambda: is_ready(client), 20, "/readyz 200")
    return daemon, client


async def serving_world(
    world: World, daemons: list[DaemonProcess], config: Path
) -> tuple[DaemonProcess, ApiClient, str]:
    """A ready daemon with a vault, the four fakes' keystores and a template over them (made through its API)."""
    daemon, client = await serving(world, daemons, config)
    template, _ = await setup_world_via_api(client, world.cluster.running, world.credentials)
    return daemon, client, template


def in_sync(targets: list[dict[str, Any]]) -> bool:
    return len(targets) == len(KINDS) and all(t["sync_flag"] == "in_sync" for t in targets)


async def is_ready(client: ApiClient) -> int | None:
    try:
        return 200 if await client.status("/readyz") == 200 else None
    except aiohttp.ClientError:
        return None


async def run_keyorch(world: World, *args: str, timeout: float = 60) -> tuple[int, str, str]:
    """A one-shot ``keyorch`` command (a child process, so this loop keeps serving the fakes)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "keyorch",
        *args,
        cwd=world.workdir,
        env=clean_env(world.workdir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
