"""``keyorch --server URL`` as a real subprocess against a real ``keyorch serve`` (and the fakes in this loop).

:func:`served_world` starts the four fakes, then a daemon on a SQLite file with API users of each
role, and yields a :class:`Served`: ``served.remote(user)`` is the CLI with that user's token
(``--server``, no database, no master key), ``served.direct`` the CLI on the same database file
(``--db``, the same master key), so a test can run one command both ways and compare.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from keyorch.crypto import generate_master_key
from keyorch.fakes.registry import FakeCluster
from tests.daemon.harness import ApiClient, DaemonProcess, eventually, write_config
from tests.e2e.harness import AsyncCli, start_world_fakes

#: API users: name → (bearer token, roles per vault).
USERS: dict[str, tuple[str, dict[str, str]]] = {
    "alice": ("token-alice-0123456789abcdef", {"*": "vault_administrator"}),
    "bob": ("token-bob-0123456789abcdef", {"*": "vault_administrator"}),
    "carol": ("token-carol-0123456789abcdef", {"*": "key_custodian_creator"}),
    "dave": ("token-dave-0123456789abcdef", {"*": "key_custodian_deployer"}),
    "riley": ("token-riley-0123456789abcdef", {"*": "reader"}),
}


@dataclass
class RemoteCli(AsyncCli):
    """``python -m keyorch --server URL [--output json] ARGS`` with ``KEYORCH_TOKEN``; no database, no master key."""

    server: str = ""
    token: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in super().env().items() if k not in ("KEYORCH_MASTER_KEY", "KEYORCH_USER")}
        return {**env, "KEYORCH_TOKEN": self.token, **self.extra_env}

    def argv(self, *args: str, output_json: bool = True) -> list[str]:
        prefix = ["--server", self.server] + (["--output", "json"] if output_json else [])
        return [sys.executable, "-m", "keyorch", *prefix, *args]


@dataclass
class Served:
    workdir: Path
    cluster: FakeCluster
    credentials: dict[str, Path]
    daemon: DaemonProcess
    direct: AsyncCli
    api: ApiClient  # the harness's admin client, for fast setup

    def remote(self, user: str, token: str | None = None) -> RemoteCli:
        folder = self.workdir / f"remote-{user}"
        folder.mkdir(exist_ok=True)
        return RemoteCli(folder, server=self.daemon.url, token=token if token is not None else USERS[user][0])


async def _ready(client: ApiClient) -> bool | None:
    try:
        return True if await client.status("/readyz") == 200 else None
    except aiohttp.ClientError:
        return None


#: From the running fakes and their credentials files: more daemon settings, and its environment.
Configure = Callable[[FakeCluster, dict[str, Path]], tuple[Mapping[str, Any], Mapping[str, str]]]


@asynccontextmanager
async def served_world(workdir: Path, *, configure: Configure | None = None) -> AsyncIterator[Served]:
    """The fakes, a ready daemon with :data:`USERS` (and what ``configure`` adds), both CLIs."""
    cluster, credentials, _ = await start_world_fakes(workdir)
    extra, env = configure(cluster, credentials) if configure is not None else ({}, {})
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
    daemon: DaemonProcess | None = None
    try:
        master_key = generate_master_key()
        direct = AsyncCli(workdir, master_key=master_key, user="operator")
        config = write_config(workdir / "keyorch.yaml", direct.db_url, master_key=master_key, users=USERS, extra=extra)
        daemon = await DaemonProcess.start(workdir, config, env=env)
        api = ApiClient(session, daemon.url)
        await eventually(lambda: _ready(api), 20, "/readyz 200")
        yield Served(workdir, cluster, credentials, daemon, direct, api)
    finally:
        if daemon is not None:
            await daemon.kill()
        await session.close()
        await cluster.stop()
