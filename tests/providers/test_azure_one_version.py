"""Azure ``ensure_key`` never adds a version to an existing key (issue 13, docs/providers.md §2.6).

A create on a live Key Vault name mints a new version, so a create whose answer was lost must be
settled by reading, not by creating again. The vault here is the Azure fake over loopback; for a
create the vault carries out after the client gave up (the shape behind "two daemons gave 44 Azure
keys a second version"), a small forwarding proxy on a real socket holds that one create back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from tests.loopback import serve
from tests.providers.test_azure_adapter import Sleeps, client_for, faults, mk_id, serving, snapshot_keys

from keyorch.domain.states import KeyState
from keyorch.fakes.azure import AzureKeyVaultFake
from keyorch.providers.azure import AzureKeyVaultClient
from keyorch.providers.azure_wire import key_name_for
from keyorch.providers.base import KeyRef, KeySpec
from keyorch.providers.errors import Timeout, Unavailable

RSA = KeySpec("rsa", 2048, "payments")


@dataclass
class Monotonic:
    """The client's monotonic clock, moved by the test."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class HoldingProxy:
    """Forwards every request to the fake; the first CreateKey is forwarded only once ``release`` is set
    (the vault carries it out after the client stopped waiting), or never when ``lose`` is set."""

    target: str
    release: asyncio.Event = field(default_factory=asyncio.Event)
    lose: bool = False
    held: asyncio.Task[None] | None = None
    session: aiohttp.ClientSession | None = None

    async def forward(self, method: str, path_qs: str, headers: dict[str, str], body: bytes) -> web.Response:
        assert self.session is not None
        async with self.session.request(method, self.target + path_qs, headers=headers, data=body) as answer:
            raw = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() in ("content-type", "retry-after")}
            return web.Response(status=answer.status, body=raw, headers=kept)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        body = await request.read()
        if request.method == "POST" and request.path.endswith("/create") and self.held is None:
            self.held = asyncio.create_task(self._late(request.method, request.path_qs, headers, body))
            await asyncio.Event().wait()  # no answer ever comes back to the client
        return await self.forward(request.method, request.path_qs, headers, body)

    async def _late(self, method: str, path_qs: str, headers: dict[str, str], body: bytes) -> None:
        await self.release.wait()
        if not self.lose:
            await self.forward(method, path_qs, headers, body)


@pytest.fixture
async def proxied() -> AsyncIterator[tuple[AzureKeyVaultClient, AzureKeyVaultFake, HoldingProxy, Monotonic]]:
    fake = AzureKeyVaultFake()
    clock = Monotonic()
    async with serving(fake) as url, aiohttp.ClientSession() as session:
        proxy = HoldingProxy(url, session=session)
        server = await serve(proxy.handle)
        proxy_url = str(server.make_url("")).rstrip("/")
        settings = {"read_timeout_seconds": 0.5, "call_timeout_seconds": 5}  # doubt: 1 s on the test's clock
        try:
            async with client_for(
                proxy_url, fake.credentials(proxy_url), Sleeps(), settings=settings, monotonic=clock
            ) as client:
                yield client, fake, proxy, clock
        finally:
            proxy.release.set()
            if proxy.held is not None:
                await proxy.held
            await server.close()


def versions(fake: AzureKeyVaultFake) -> list[int]:
    return [len(key["versions"]) for key in snapshot_keys(fake)]


async def test_a_create_the_vault_carries_out_late_is_read_not_repeated(
    proxied: tuple[AzureKeyVaultClient, AzureKeyVaultFake, HoldingProxy, Monotonic],
) -> None:
    client, fake, proxy, clock = proxied
    managed = mk_id()
    with pytest.raises(Timeout):  # the create's answer never comes; the vault has not carried it out yet
        await client.ensure_key(managed, RSA)
    # the reconciler's retry of the in-doubt create: it reads, and does not send a second create
    clock.now += 0.4
    refused: Unavailable | None = None
    try:
        await client.ensure_key(managed, RSA, in_doubt=True)
    except Unavailable as exc:
        refused = exc
    proxy.release.set()  # now the vault carries out the first create
    assert proxy.held is not None
    await proxy.held
    clock.now += 0.4
    observed = await client.ensure_key(managed, RSA, in_doubt=True)
    assert observed.managed_key_id == managed and observed.state is KeyState.ACTIVE
    assert versions(fake) == [1] and fake.log.counts["CreateKey"] == 1
    assert refused is not None and refused.transient and not refused.sent
    assert f"create of key {key_name_for(managed)}" in refused.message and "second version" in refused.message


async def test_a_create_that_never_landed_is_sent_again_once_the_doubt_is_over(
    proxied: tuple[AzureKeyVaultClient, AzureKeyVaultFake, HoldingProxy, Monotonic],
) -> None:
    client, fake, proxy, clock = proxied
    proxy.lose = True
    managed = mk_id()
    with pytest.raises(Timeout):
        await client.ensure_key(managed, RSA)
    with pytest.raises(Unavailable):
        await client.ensure_key(managed, RSA, in_doubt=True)
    proxy.release.set()
    assert proxy.held is not None
    await proxy.held  # the first create is gone for good
    clock.now += client.create_doubt_seconds
    observed = await client.ensure_key(managed, RSA, in_doubt=True)
    assert observed.state is KeyState.ACTIVE
    assert fake.log.counts["CreateKey"] == 1 and versions(fake) == [1]


async def test_a_cut_create_answer_then_a_retry_leaves_one_version() -> None:
    fake = AzureKeyVaultFake()
    async with serving(fake) as url, client_for(url, fake.credentials(url), Sleeps()) as client:
        faults(fake, "CreateKey", "truncate")  # the vault made the key; its answer is cut short
        managed = mk_id()
        first = await client.ensure_key(managed, RSA)
        assert await client.ensure_key(managed, RSA, in_doubt=True) == first
        assert fake.log.counts["CreateKey"] == 1 and versions(fake) == [1]


async def test_ensure_key_on_an_existing_key_in_any_state_adds_no_version() -> None:
    fake = AzureKeyVaultFake()
    async with serving(fake) as url, client_for(url, fake.credentials(url), Sleeps()) as client:
        live, disabled, deleted = mk_id(), mk_id(), mk_id()
        for managed in (live, disabled, deleted):
            await client.ensure_key(managed, RSA)
        await client.disable(KeyRef(None, disabled))
        await client.schedule_destruction(KeyRef(None, deleted))
        assert (await client.ensure_key(live, RSA)).state is KeyState.ACTIVE
        assert (await client.ensure_key(disabled, RSA)).state is KeyState.DEACTIVATED
        soft_deleted = await client.ensure_key(deleted, RSA)
        assert soft_deleted.state is KeyState.DEACTIVATED and soft_deleted.destruction_pending
        assert fake.log.counts["CreateKey"] == 3
        assert versions(fake) == [1, 1]  # the live keys
        assert [len(k["versions"]) for k in fake.state_snapshot()["deleted_keys"]] == [1]
