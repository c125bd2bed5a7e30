"""The console's test world: ``keyorch serve`` as a subprocess over the four fakes (in this loop), with an admin,
a reader and a deployer token, a vault, a keystore per fake and a template over all four (made through the API),
and a signed-in HTTP session of the console (aiohttp, its own cookie jar)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.daemon.harness import ADMIN_TOKEN, ApiClient, DaemonProcess, eventually
from tests.daemon.world import World, in_sync, serving_world
from tests.e2e.harness import start_world_fakes

READER_TOKEN = "console-test-reader-token-0123456789"
DEPLOYER_TOKEN = "console-test-deployer-token-0123456789"
USERS = {
    "rita": (READER_TOKEN, {"*": "reader"}),
    "dan": (DEPLOYER_TOKEN, {"*": "key_custodian_deployer"}),
}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class ConsoleWorld:
    world: World
    daemon: DaemonProcess
    api: ApiClient
    template: str

    @property
    def url(self) -> str:
        return self.daemon.url

    async def active_key(self, label: str) -> dict[str, Any]:
        """A key made active through the API, once every keystore holds it active."""
        body = {"template": self.template, "label": label, "state": "active"}
        key = (await self.api.api("POST", "/managed_keys", json_body=body)).ok(201)
        await self.wait_in_sync(key["id"])
        return dict(key)

    async def wait_in_sync(self, key_id: str, timeout: float = 40) -> list[dict[str, Any]]:
        async def synced() -> list[dict[str, Any]] | None:
            targets = await self.api.key_targets(key_id)
            return targets if in_sync(targets) else None

        return await eventually(synced, timeout, f"key {key_id} in sync in every keystore")


@asynccontextmanager
async def console_world(tmp_path: Path) -> AsyncIterator[ConsoleWorld]:
    cluster, credentials, _ = await start_world_fakes(tmp_path)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
    daemons: list[DaemonProcess] = []
    try:
        world = World(tmp_path, cluster, credentials, session)
        daemon, api, template = await serving_world(world, daemons, world.config(users=USERS))
        try:
            yield ConsoleWorld(world, daemon, api, template)
        except BaseException:
            errors = [line for line in daemon.lines if "error" in line.lower() or "Traceback" in line]
            print("daemon's error lines:\n" + "\n".join(errors[-20:])[-6000:])
            raise
    finally:
        for daemon in daemons:
            await daemon.kill()
        await session.close()
        await cluster.stop()


@dataclass
class Page:
    status: int
    url: str
    text: str
    headers: dict[str, str]

    @property
    def csrf(self) -> str:
        found = CSRF.search(self.text)
        assert found, f"no CSRF field on {self.url}:\n{self.text[:2000]}"
        return found.group(1)


class ConsoleClient:
    """A browser-less console user: cookies kept, redirects followed, pages as text."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=aiohttp.ClientTimeout(total=60)
        )

    async def close(self) -> None:
        await self.session.close()

    async def get(self, path: str, **kwargs: Any) -> Page:
        async with self.session.get(self.base + path, **kwargs) as resp:
            return Page(resp.status, str(resp.url), await resp.text(), dict(resp.headers))

    async def post(self, path: str, form: dict[str, str], **kwargs: Any) -> Page:
        async with self.session.post(self.base + path, data=form, **kwargs) as resp:
            return Page(resp.status, str(resp.url), await resp.text(), dict(resp.headers))

    async def sign_in(self, token: str = ADMIN_TOKEN) -> Page:
        form = await self.get("/ui/sign-in")
        page = await self.post("/ui/sign-in", {"csrf": form.csrf, "token": token, "next": "/ui/keys"})
        assert page.status == 200 and page.url.endswith("/ui/keys"), (page.status, page.url, page.text[:500])
        return page
