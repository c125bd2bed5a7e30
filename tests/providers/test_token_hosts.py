"""A token (or a SigV4 signature) is only ever sent to the host it was issued for (issue 12, point 3).

Each provider's client is built the way the reconciler builds it (a keystore connected through the
service with the fake's credentials, a :class:`ClientPool`), but its endpoint is a request-recording
aiohttp handler that answers every request with a redirect to a second recording handler. The token
endpoints are the fakes' own, so real tokens are fetched and sent — to the keystore's endpoint only:
the second handler must never see a request, neither by the redirect, nor by Azure's ``nextLink``, nor
by a request the adapter's transport is asked to send there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from tests.daemon.harness import connect_body

import keyorch.providers.adapters  # noqa: F401 - registers the four factories
from keyorch.audit import Actor
from keyorch.crypto import MasterKey
from keyorch.domain.models import Keystore
from keyorch.fakes.registry import FAKE_KINDS, FakeCluster, start_fakes, write_credentials
from keyorch.providers.errors import KeystoreConfigurationError
from keyorch.providers.http import HttpTransport
from keyorch.reconcile.clients import ClientPool
from keyorch.service import keystores, vaults
from keyorch.service.context import ServiceContext
from keyorch.service.environment import EnvironmentPolicy
from keyorch.store.engine import migrate
from keyorch.store.repository import Store

MASTER_KEY = MasterKey(b"t" * 32)


@dataclass
class Recorder:
    """A handler on a real socket that records each request's path and Authorization header."""

    redirect_to: str | None = None  # answer every request with a redirect there
    next_link_to: str = ""  # else with an (empty) Azure listing page whose nextLink points there
    seen: list[tuple[str, str]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.seen.append((request.path_qs, request.headers.get("Authorization", "")))
        if self.redirect_to is not None:
            raise web.HTTPTemporaryRedirect(self.redirect_to + request.path_qs)
        azure_page = {"value": [], "nextLink": f"{self.next_link_to}/keys?api-version=7.4&$skiptoken=x"}
        return web.json_response(azure_page)


@pytest.fixture
async def recorders() -> AsyncIterator[tuple[Recorder, Recorder]]:
    """(the keystore's endpoint, somewhere else): the first redirects every request to the second."""
    elsewhere = Recorder()
    endpoint = Recorder()
    servers = []
    for recorder in (elsewhere, endpoint):
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", recorder.handle)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        recorder.url = str(server.make_url("")).rstrip("/")
        servers.append(server)
    endpoint.redirect_to = endpoint.next_link_to = elsewhere.url
    try:
        yield endpoint, elsewhere
    finally:
        for server in servers:
            await server.close()


@pytest.fixture
async def cluster() -> AsyncIterator[FakeCluster]:
    started = await start_fakes(FAKE_KINDS)
    try:
        yield started
    finally:
        await started.stop()


async def _keystore(tmp_path: Path, cluster: FakeCluster, kind: str, endpoint: str) -> tuple[Store, Keystore]:
    """The fake's keystore, with its stored credentials, connected with ``endpoint`` as its endpoint."""
    store = Store.from_url(f"sqlite:///{tmp_path / f'{kind}.db'}")
    await migrate(store.engine)
    ctx = ServiceContext(store=store, actor=Actor("operator"), master_key=MASTER_KEY)
    await vaults.create_vault(ctx, "v")
    credentials = write_credentials(cluster, tmp_path / "credentials")[kind]
    body = connect_body("v", kind, kind, cluster[kind], credentials)
    fields = {k: v for k, v in body.items() if k != "credentials"}
    request = keystores.ConnectRequest(**{**fields, "endpoint": endpoint, "credentials_file": str(credentials)})
    return store, await keystores.connect_keystore(ctx, request)


def _transport(client: object) -> HttpTransport:
    found = getattr(client, "transport", None) or getattr(client, "http", None)
    assert isinstance(found, HttpTransport)
    return found


@pytest.mark.parametrize("kind", FAKE_KINDS)
async def test_tokens_go_only_to_the_keystores_own_endpoint(
    kind: str, tmp_path: Path, cluster: FakeCluster, recorders: tuple[Recorder, Recorder]
) -> None:
    endpoint, elsewhere = recorders
    store, keystore = await _keystore(tmp_path, cluster, kind, endpoint.url)
    pool = ClientPool(store, MASTER_KEY)
    try:
        client = await pool.client(keystore)
        health = await client.validate()  # answered by a redirect to elsewhere, which is not followed
        assert not health.ok
        with pytest.raises(KeystoreConfigurationError, match="refusing to send this keystore's credentials"):
            await _transport(client).request("GET", elsewhere.url + "/steal", operation="probe", idempotent=True)
        if kind == "azure_key_vault":  # a listing page whose nextLink points elsewhere is not followed either
            endpoint.redirect_to = None
            with pytest.raises(Exception, match="nextLink"):
                async for _ in client.list_keys():
                    pass
    finally:
        await pool.aclose()
        await store.close()
    assert endpoint.seen and all(auth for _, auth in endpoint.seen), endpoint.seen  # the token was in play
    assert elsewhere.seen == [], f"{kind} sent requests to a host its credentials were not issued for"


async def test_a_record_with_environment_credentials_is_checked_again_when_its_client_is_built(
    tmp_path: Path, recorders: tuple[Recorder, Recorder]
) -> None:
    """A keystore recorded while the operator allowed an endpoint (or before the rule existed) gets no client
    once the endpoint is no longer allowed: its health is configuration_error and nothing is sent."""
    endpoint, elsewhere = recorders
    store = Store.from_url(f"sqlite:///{tmp_path / 'k.db'}")
    await migrate(store.engine)
    then = ServiceContext(
        store=store, actor=Actor("operator"), environment=EnvironmentPolicy(endpoints=(endpoint.url,))
    )
    await vaults.create_vault(then, "v")
    request = keystores.ConnectRequest(
        vault="v",
        name="kp",
        type="ibm_key_protect",
        endpoint=endpoint.url,
        instance_id="inst-1",
        credentials_from_environment=True,
        allow_insecure_http=True,
    )
    keystore = await keystores.connect_keystore(then, request)
    pool = ClientPool(store, None)  # today's setting lists no endpoint
    try:
        health = await pool.check(keystore)
    finally:
        await pool.aclose()
        await store.close()
    assert health.status.value == "configuration_error" and "environment_credentials.endpoints" in health.message
    assert endpoint.seen == [] and elsewhere.seen == []
