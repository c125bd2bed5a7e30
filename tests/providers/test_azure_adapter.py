"""Azure Key Vault adapter against the real Azure fake over loopback (and, for shapes the fake cannot
make, tiny aiohttp handlers on real sockets). Retry waits go through a recording sleep, so the tests
assert exact waits without sleeping."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from keyorch.domain.errors import InvalidInput
from keyorch.domain.models import CredentialsMode, DriftPolicy, Keystore, KeystoreStatus, KeystoreType
from keyorch.domain.states import KeyState
from keyorch.fakes.azure import AzureKeyVaultFake
from keyorch.fakes.base import start_fake
from keyorch.fakes.clock import FakeClock
from keyorch.fakes.faults import ProviderFaults
from keyorch.providers.azure import AzureKeyVaultClient, AzureKeyVaultFactory
from keyorch.providers.azure_auth import identity_from_environment, scope_for
from keyorch.providers.azure_wire import key_name_for, map_error
from keyorch.providers.base import HealthStatus, KeyRef, KeySpec, factory_for
from keyorch.providers.errors import (
    AuthError,
    Conflict,
    InvalidRequest,
    KeystoreConfigurationError,
    MalformedResponse,
    NotFound,
    Throttled,
    Unavailable,
)
from keyorch.providers.retry import RetryPolicy

AES = KeySpec("aes", 256, "payments")
DAY = 86400


@dataclass
class Sleeps:
    """A retry sleep that records each wait instead of sleeping."""

    waits: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def keystore_for(url: str, **settings: Any) -> Keystore:
    now = datetime.now(UTC)
    base: dict[str, Any] = {
        "endpoint": url,
        "allow_insecure_http": True,
        "rate_per_second": 0,
        "provider_quotas": False,
    }
    return Keystore(
        id=str(uuid.uuid4()),
        vault_id=str(uuid.uuid4()),
        name="azure-test",
        type=KeystoreType.AZURE_KEY_VAULT,
        settings=base | settings,
        credentials_mode=CredentialsMode.STORED,
        drift_policy=DriftPolicy.FLAG,
        status=KeystoreStatus.CONNECTED,
        created_at=now,
        updated_at=now,
    )


def client_for(url: str, credentials: dict[str, Any] | None, sleeps: Sleeps, **kwargs: Any) -> AzureKeyVaultClient:
    settings = kwargs.pop("settings", {})
    retry = RetryPolicy(max_attempts=4, base_delay_seconds=0.8, max_delay_seconds=60, sleep=sleeps, random=lambda: 0.5)
    return AzureKeyVaultClient(keystore_for(url, **settings), credentials, retry=retry, **kwargs)


@dataclass
class FakeClockSleeps(Sleeps):
    """Records each wait and moves a fake's clock by it."""

    clock: FakeClock | None = None

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.clock is not None:
            self.clock.advance(seconds)


@asynccontextmanager
async def serving(fake: AzureKeyVaultFake) -> AsyncIterator[str]:
    """The fake on a loopback socket while the block runs; yields its URL."""
    running = await start_fake(fake)
    try:
        yield running.url
    finally:
        await running.stop()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def fake_options() -> dict[str, Any]:
    """Constructor options of the fake (AES keys need a Managed HSM)."""
    return {"managed_hsm": True}


@pytest.fixture
def keystore_settings() -> dict[str, Any]:
    return {}


@pytest.fixture
async def adapter_env(
    sleeps: Sleeps, fake_options: dict[str, Any], keystore_settings: dict[str, Any]
) -> AsyncIterator[tuple[AzureKeyVaultClient, AzureKeyVaultFake]]:
    """The fake on a loopback socket and an adapter client connected to it with the fake's credentials."""
    fake = AzureKeyVaultFake(**fake_options)
    async with serving(fake) as url, client_for(url, fake.credentials(url), sleeps, settings=keystore_settings) as c:
        yield c, fake


def faults(fake: AzureKeyVaultFake, operation: str, *sequence: Any) -> None:
    fake.faults.configure(
        ProviderFaults.model_validate({"rules": [{"operation": operation, "sequence": list(sequence)}]})
    )


def snapshot_keys(fake: AzureKeyVaultFake) -> list[dict[str, Any]]:
    keys: list[dict[str, Any]] = fake.state_snapshot()["keys"]
    return keys


def mk_id() -> str:
    return str(uuid.uuid4())


# -- factory and settings ---------------------------------------------------------------------


async def test_factory_is_registered_and_builds_a_client() -> None:
    factory = factory_for(KeystoreType.AZURE_KEY_VAULT)
    assert isinstance(factory, AzureKeyVaultFactory)
    async with factory.create(keystore_for("http://127.0.0.1:9"), None) as client:
        assert isinstance(client, AzureKeyVaultClient)
        assert "secret" not in repr(client)


@pytest.mark.parametrize(
    ("settings", "target"),
    [
        ({"endpoint": ""}, "endpoint"),
        ({"endpoint": "http://vault.example.com"}, "endpoint"),
        ({"page_size": 26}, "page_size"),
        ({"page_size": "5"}, "page_size"),
        ({"managed_hsm": "yes"}, "managed_hsm"),
    ],
)
def test_settings_are_checked(settings: dict[str, Any], target: str) -> None:
    keystore = keystore_for("http://127.0.0.1:9", **settings)
    with pytest.raises(InvalidInput) as caught:
        AzureKeyVaultFactory().validate_settings(keystore)
    assert caught.value.target in (target, None)


def test_scope_follows_the_cloud_and_service() -> None:
    assert scope_for("https://v1.vault.azure.net") == "https://vault.azure.net/.default"
    assert scope_for("https://v1.vault.azure.cn") == "https://vault.azure.cn/.default"
    assert scope_for("https://h1.managedhsm.azure.net") == "https://managedhsm.azure.net/.default"
    assert scope_for("http://127.0.0.1:8080") == "https://vault.azure.net/.default"


# -- create, get, list ------------------------------------------------------------------------


async def test_create_twice_makes_one_key(adapter_env: tuple[AzureKeyVaultClient, AzureKeyVaultFake]) -> None:
    client, fake = adapter_env
    managed = mk_id()
    first = await client.ensure_key(managed, KeySpec("aes", 256, "payments", {"team": "pay"}))
    second = await client.ensure_key(managed, AES)
    assert first == second
    assert first.key_id_in_keystore == f"keyorch-{managed}" == key_name_for(managed)
    assert first.managed_key_id == managed and first.state is KeyState.ACTIVE and not first.destruction_pending
    keys = snapshot_keys(fake)
    assert len(keys) == 1 and len(keys[0]["versions"]) == 1
    version = keys[0]["versions"][0]
    assert version["kty"] == "oct-HSM"
    assert version["tags"] == {"team": "pay", "keyorch-managed-key-id": managed, "keyorch-name": "payments"}
    assert fake.log.counts["CreateKey"] == 1
    assert await client.get_key(KeyRef(None, managed)) == first
    assert await client.get_key(KeyRef(first.key_id_in_keystore)) == first


async def test_rsa_keys_are_rsa_on_a_vault(adapter_env: tuple[AzureKeyVaultClient, AzureKeyVaultFake]) -> None:
    client, fake = adapter_env
    observed = await client.ensure_key(mk_id(), KeySpec("rsa", 2048, "signing"))
    assert observed.state is KeyState.ACTIVE
    assert snapshot_keys(fake)[0]["versions"][0]["kty"] == "RSA"


@pytest.mark.parametrize("keystore_settings", [{"managed_hsm": False}])
async def test_aes_on_a_standard_vault_is_refused_before_any_request(
    adapter_env: tuple[AzureKeyVaultClient, AzureKeyVaultFake],
) -> None:
    client, fake = adapter_env
    with pytest.raises(InvalidRequest, match="standard Azure key vault holds no AES keys"):
        await client.ensure_key(mk_id(), AES)
    assert sum(fake.log.counts.values()) == 0


@pytest.mark.parametrize("fake_options", [{"managed_hsm": False}])
async def test_aes_refused_by_the_service_says_why_and_is_not_retried(
    adapter_env: tuple[AzureKeyVaultClient, AzureKeyVaultFake], sleeps: Sleeps
) -> None:
    client, fake = adapter_env
    with pytest.raises(InvalidRequest, match="only an Azure Managed HSM holds AES keys") as caught:
        await client.ensure_key(mk_id(), AES)
    assert caught.value.status == 400 and caught.value.provider_code == "BadParameter"
    assert fake.log.counts["CreateKey"] == 1 and sleeps.waits == []


async def test_get_of_an_unknown_key_is_none(adapter_env: tuple[AzureKeyVaultClient, AzureKeyVaultFake]) -> None:
    client, _ = adapter_env
    assert await client.get_key(KeyRef(None, mk_id())) is None
    assert await client.get_key(KeyRef("no-such-key")) is None
    assert await client.get_key(KeyRef("https://x.vault.azure.net/keys/no-such-key/0123")) is None
    with pytest.raises(InvalidRequest):
        await client.get_key(KeyRef("bad name!"))
    with pytest.raises(InvalidRequest):
        await client.get_key(KeyRef(None))


@pytest.mark.parametrize("keystore_settings", [{"page_size": 2}])
async def test_list_follows_every_page_of_keys_and_deleted_keys(
    adapter_env: tuple[AzureKeyVaultClient, AzureKeyVaultFake],
) -> None:
    client, fake = adapter_env
    ids = [mk_id() for _ in range(7)]
    for managed in ids:
        await client.ensure_key(managed, AES)
    for managed in ids[:3]:
        await client.schedule_destruction(KeyRef(None, managed))
    listed = [o async for o in client.list_keys()]
    assert sorted(o.managed_key_id or "" for o in listed) == sorted(ids)
    pending = {o.managed_key_id for o in listed if o.destruction_pending}
    assert pending == set(ids[:3])
    assert all(o.state is KeyState.DEACTIVATED for o in listed if o.destruction_pending)
    assert all(o.state is KeyState.ACTIVE for o in listed if not o.destruction_pending)
    assert fake.log.counts["ListKeys"] == 2 and fake.log.counts["ListDeletedKeys"] == 2


async def test_list_reports_foreign_keys_without_a_managed_id(
    adapter_env: tuple[AzureKeyVaultClient, AzureKeyVaultFake],
) -> None:
    client, _ = adapter_env
    url = f"{client.endpoint}/keys/someone-elses/create?api-version=7.5"
    await client.transport.request("POST", url, operation="CreateKey", idempotent=False, json={"kty": "RSA"})
    [observed] = [o async for o in client.list_keys()]
    assert observed.key_id_in_keystore == "someone-elses" and observed.managed_key_id is None


# -- enable, disable, schedule destruction ------------------------------------------------------


async def rotate(client: AzureKeyVaultClient, name: str) -> None:
    url = f"{client.endpoint}/keys/{name}/rotate?api-version=7.5"
    await client.transport.request("POST", url, operation="RotateKey", idempotent=False)


async def test_disable_and_enable_every_version_and_repeat(
    adapter_env: tuple[AzureKeyVaultClient, AzureKeyVaultFake],
) -> None:
    client, fake = adapter_env
    managed = mk_id()
    ref = (await client.ensure_key(managed, AES)).ref
    await rotate(client, ref.key_id_in_keystore or "")
    disabled = await client.disable(ref)
    assert disabled.state is KeyState.DEACTIVATED and disabled.raw_state == "enabled=false"
    assert [v["enabled"] for v in snapshot_keys(fake)[0]["versions"]] == [False, False]
    patches = fake.log.counts["UpdateKey"]
    assert patches == 2
    assert (await client.disable(ref)).state is KeyState.DEACTIVATED
    assert fake.log.counts["UpdateKey"] == patches  # nothing left to change
    assert (await client.get_key(ref)) == disabled
    enabled = await client.enable(ref)
    assert enabled.state is KeyState.ACTIVE
    assert [v["enabled"] for v in snapshot_keys(fake)[0]["versions"]] == [True, True]
    assert (await client.enable(ref)) == enabled
    assert fake.log.counts["UpdateKey"] == 4


async def test_an_old_version_disabled_elsewhere_is_enabled_again(
    adapter_env: tuple[AzureKeyVaultClient, AzureKeyVaultFake],
) -> None:
    client, fake = adapter_env
    ref = (await client.ensure_key(mk_id(), AES)).ref
    await rotate(client, ref.key_id_in_keystore or "")
    fake.vault.live[(ref.key_id_in_keystore or "").lower()].versions[0].enabled = False
    assert (await client.get_key(ref)).state is KeyState.ACTIVE  # type: ignore[union-attr]
    assert (await client.enable(ref)).state is KeyState.ACTIVE
    assert [v["enabled"] for v in snapshot_keys(fake)[0]["versions"]] == [True, True]
    assert fake.log.counts["UpdateKey"] == 1


async def test_schedule_destruction_repeats_and_blocks_enable(
    adapter_env: tuple[AzureKeyVaultClient, AzureKeyVaultFake],
) -> None:
    client, fake = adapter_env
    managed = mk_id()
    ref = (await client.ensure_key(managed, AES)).ref
    now = fake.clock.now().timestamp()
    scheduled = await client.schedule_destruction(ref)
    assert scheduled.state is KeyState.DEACTIVATED and scheduled.destruction_pending
    assert scheduled.managed_key_id == managed
    assert scheduled.pending_until is not None
    assert abs(scheduled.pending_until.timestamp() - (now + 90 * DAY)) < 5
    assert await client.schedule_destruction(ref) == scheduled
    assert await client.get_key(ref) == scheduled
    assert await client.disable(ref) == scheduled
    with pytest.raises(Conflict, match="scheduled for destruction"):
        await client.enable(ref)
    assert await client.ensure_key(managed, AES) == scheduled  # no second key, no 409 from a create
    assert fake.log.counts["CreateKey"] == 1 and fake.log.counts["DeleteKey"] == 2
    fake.clock.advance(91 * DAY)
    assert await client.get_key(ref) is None
    gone = await client.schedule_destruction(ref)
    assert gone.state is KeyState.DESTROYED and not gone.destruction_pending


async def test_schedule_destruction_waits_for_the_asynchronous_delete() -> None:
    fake = AzureKeyVaultFake(managed_hsm=True, settle_seconds=5)
    sleeps = FakeClockSleeps(clock=fake.clock)
    async with serving(fake) as url, client_for(url, fake.credentials(url), sleeps) as client:
        ref = (await client.ensure_key(mk_id(), AES)).ref
        scheduled = await client.schedule_destruction(ref)
        assert scheduled.destruction_pending
        assert sleeps.waits == [2.0, 2.0, 2.0]  # the delete lands 5 s (fake time) after it is answered
        assert fake.log.counts["GetDeletedKey"] == 1 + 4  # ensure_key's look, then the polls
        assert await client.get_key(ref) == scheduled


async def test_nbf_and_exp_map_to_pre_active_and_deactivated(
    adapter_env: tuple[AzureKeyVaultClient, AzureKeyVaultFake],
) -> None:
    client, fake = adapter_env
    ref = (await client.ensure_key(mk_id(), AES)).ref
    version = fake.vault.live[(ref.key_id_in_keystore or "").lower()].versions[0]
    version.nbf = int(datetime.now(UTC).timestamp()) + 3600
    assert (await client.get_key(ref)).state is KeyState.PRE_ACTIVE  # type: ignore[union-attr]
    version.nbf, version.exp = None, int(datetime.now(UTC).timestamp()) - 1
    assert (await client.get_key(ref)).state is KeyState.DEACTIVATED  # type: ignore[union-attr]


# -- auth -------------------------------------------------------------------------------------


async def test_revoked_tokens_refresh_once(adapter_env: tuple[AzureKeyVaultClient, AzureKeyVaultFake]) -> None:
    client, fake = adapter_env
    ref = (await client.ensure_key(mk_id(), AES)).ref
    assert client.auth.fetches == 1
    fake.tokens.strict = True
    fake.tokens.revoke_all()
    results = await asyncio.gather(*(client.get_key(ref) for _ in range(16)))
    assert all(r is not None and r.state is KeyState.ACTIVE for r in results)
    assert client.auth.fetches == 2  # one new token for all 16 refused requests
    assert fake.log.counts["Token"] == 2
    assert any(e.status == 401 for e in fake.log.entries)


async def test_a_refused_new_token_is_an_auth_error(adapter_env: tuple[AzureKeyVaultClient, AzureKeyVaultFake]) -> None:
    client, fake = adapter_env
    await client.validate()
    fake.tokens.check_header = lambda header: "revoked"  # type: ignore[method-assign]
    with pytest.raises(AuthError) as caught:
        await client.get_key(KeyRef(None, mk_id()))
    assert caught.value.status == 401 and fake.log.counts["Token"] == 2
    assert fake.log.counts["GetKey"] == 2  # the request and its one replay with a new token


async def test_token_is_renewed_before_it_expires(sleeps: Sleeps) -> None:
    fake = AzureKeyVaultFake(strict_tokens=True)
    now = [1000.0]
    async with (
        serving(fake) as url,
        client_for(url, fake.credentials(url), sleeps, monotonic=lambda: now[0]) as client,
    ):
        await client.get_key(KeyRef(None, mk_id()))
        now[0] += 3600 - 301
        await client.get_key(KeyRef(None, mk_id()))
        assert client.auth.fetches == 1
        now[0] += 2  # less than 300 s of the token remain
        await client.get_key(KeyRef(None, mk_id()))
        assert client.auth.fetches == 2
        assert all(e.status != 401 for e in fake.log.entries)


async def test_bad_credentials_are_a_configuration_error_without_the_secret(
    adapter_env: tuple[AzureKeyVaultClient, AzureKeyVaultFake], sleeps: Sleeps
) -> None:
    client, fake = adapter_env
    creds = fake.credentials(client.endpoint) | {"client_secret": "wrong-secret-value-1234"}
    async with client_for(client.endpoint, creds, sleeps) as bad:
        health = await bad.validate()
        assert health.status is HealthStatus.CONFIGURATION_ERROR
        assert "invalid_client" in health.message and "AADSTS7000215" in health.message
        assert "wrong-secret-value-1234" not in health.message
        with pytest.raises(AuthError) as caught:
            await bad.ensure_key(mk_id(), AES)
        assert "wrong-secret-value-1234" not in f"{caught.value} {caught.value!r}"
    assert fake.log.counts["Token"] == 2 and fake.log.counts["CreateKey"] == 0 and sleeps.waits == []
    tenant = fake.credentials(client.endpoint) | {"tenant_id": "not-my-tenant"}
    async with client_for(client.endpoint, tenant, sleeps) as bad:
        assert (await bad.validate()).status is HealthStatus.CONFIGURATION_ERROR
    async with client_for(client.endpoint, {"tenant_id": "t"}, sleeps) as bad:
        health = await bad.validate()
        assert health.status is HealthStatus.CONFIGURATION_ERROR and "client_id" in health.message


async def test_validate_ok_and_not_responding(
    adapter_env: tuple[AzureKeyVaultClient, AzureKeyVaultFake], sleeps: Sleeps
) -> None:
    client, fake = adapter_env
    assert (await client.validate()).status is HealthStatus.OK
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    closed = f"http://127.0.0.1:{port}"
    async with client_for(closed, fake.credentials(closed), sleeps) as dead:
        health = await dead.validate()
    assert health.status is HealthStatus.NOT_RESPONDING and "cannot connect" in health.message
    assert len(sleeps.waits) == 3  # four attempts of the token request, then give up


async def test_environment_credentials(
    adapter_env: tuple[AzureKeyVaultClient, AzureKeyVaultFake], sleeps: Sleeps
) -> None:
    client, fake = adapter_env
    creds = fake.credentials(client.endpoint)
    environ = {
        "AZURE_TENANT_ID": creds["tenant_id"],
        "AZURE_CLIENT_ID": creds["client_id"],
        "AZURE_CLIENT_SECRET": creds["client_secret"],
        "AZURE_AUTHORITY_HOST": creds["authority_host"],
    }
    async with client_for(client.endpoint, None, sleeps, environ=environ) as from_env:
        assert (await from_env.validate()).ok
    async with client_for(client.endpoint, None, sleeps, environ={"AZURE_CLIENT_ID": "x"}) as empty:
        health = await empty.validate()
    assert health.status is HealthStatus.CONFIGURATION_ERROR and "AZURE_TENANT_ID" in health.message
    with pytest.raises(KeystoreConfigurationError, match="AZURE_CLIENT_SECRET or AZURE_FEDERATED_TOKEN_FILE"):
        identity_from_environment({"AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c"})


async def test_workload_identity_sends_the_federated_token_as_client_assertion(
    adapter_env: tuple[AzureKeyVaultClient, AzureKeyVaultFake], sleeps: Sleeps, tmp_path: Path
) -> None:
    client, _ = adapter_env
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text("federated-jwt-1\n")
    forms: list[dict[str, str]] = []

    async def token(request: web.Request) -> web.Response:
        forms.append({k: str(v) for k, v in (await request.post()).items()})
        return web.json_response({"token_type": "Bearer", "expires_in": 3600, "access_token": "wi-token"})

    app = web.Application()
    app.router.add_post("/{tenant}/oauth2/v2.0/token", token)
    async with TestServer(app, host="127.0.0.1") as entra:
        environ = {
            "AZURE_TENANT_ID": "tenant-1",
            "AZURE_CLIENT_ID": "client-1",
            "AZURE_FEDERATED_TOKEN_FILE": str(token_file),
            "AZURE_AUTHORITY_HOST": str(entra.make_url("")).rstrip("/"),
        }
        async with client_for(client.endpoint, None, sleeps, environ=environ) as wi:
            assert (await wi.validate()).ok
    assert forms == [
        {
            "grant_type": "client_credentials",
            "client_id": "client-1",
            "scope": "https://vault.azure.net/.default",
            "client_assertion": "federated-jwt-1",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        }
    ]


async def test_a_missing_federated_token_file_is_a_configuration_error(
    adapter_env: tuple[AzureKeyVaultClient, AzureKeyVaultFake], sleeps: Sleeps, tmp_path: Path
) -> None:
    client, fake = adapter_env
    environ = {"AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c", "AZURE_FEDERATED_TOKEN_FILE": str(tmp_path / "none")}
    async with client_for(client.endpoint, None, sleeps, environ=environ) as wi:
        health = await wi.validate()
    assert health.status is HealthStatus.CONFIGURATION_ERROR and "AZURE_FEDERATED_TOKEN_FILE" in health.message
    assert fake.log.counts["Token"] == 0 and sleeps.waits == []


async def test_an_entra_outage_is_retried_by_the_vault_call(
    adapter_env: tuple[AzureKeyVaultClient, AzureKeyVaultFake], sleeps: Sleeps
) -> None:
    client, fake = adapter_env
    faults(fake, "Token", "error_503", "ok")
    managed = mk_id()
    assert (await client.ensure_key(managed, AES)).state is KeyState.ACTIVE
    assert fake.log.counts["Token"] == 2 and len(sleeps.waits) == 1
    assert fake.log.counts["CreateKey"] == 1 and len(snapshot_keys(fake)) == 1


def test_error_mapping_of_entra_and_vault_answers() -> None:
    description = "AADSTS7000215: Invalid client secret.\r\nTrace ID: x"
    entra = json.dumps({"error": "invalid_client", "error_description": description}).encode()
    error = map_error(401, {}, entra)
    assert isinstance(error, AuthError) and not error.refresh and error.provider_code == "invalid_client"
    assert "AADSTS7000215: Invalid client secret." in error.message and "Trace ID" not in error.detail
    vault_401 = map_error(401, {}, b'{"error": {"code": "Unauthorized", "message": "expired"}}')
    assert isinstance(vault_401, AuthError) and vault_401.refresh
    throttled = map_error(429, {"x-ms-retry-after-ms": "1500"}, b'{"error": {"code": "Throttled", "message": "x"}}')
    assert isinstance(throttled, Throttled) and throttled.retry_after == 1.5
    busy = map_error(409, {}, b'{"error": {"code": "Conflict", "innererror": {"code": "ObjectIsBeingDeleted"}}}')
    assert isinstance(busy, Conflict) and busy.transient and busy.provider_code == "Conflict/ObjectIsBeingDeleted"
    purge = map_error(403, {}, b'{"error": {"code": "Forbidden", "message": "... purge protection is enabled"}}')
    assert isinstance(purge, Conflict)
    assert isinstance(map_error(500, {}, b"<html><title>oops</title></html>"), Unavailable)
    assert isinstance(map_error(404, {}, b""), NotFound)


async def test_managed_hsm_setting_makes_rsa_keys_hsm_keys(sleeps: Sleeps) -> None:
    fake = AzureKeyVaultFake(managed_hsm=True)
    async with serving(fake) as url:
        creds = fake.credentials(url)
        async with client_for(url, creds, sleeps, settings={"managed_hsm": True}) as client:
            await client.ensure_key(mk_id(), KeySpec("rsa", 3072, "signing"))
        version = snapshot_keys(fake)[0]["versions"][0]
        assert version["kty"] == "RSA-HSM"


# -- retries and faults -------------------------------------------------------------------------


async def test_a_503_then_success_is_retried(
    adapter_env: tuple[AzureKeyVaultClient, AzureKeyVaultFake], sleeps: Sleeps
) -> None:
    client, fake = adapter_env
    ref = (await client.ensure_key(mk_id(), AES)).ref
    faults(fake, "GetKey", "error_503", "error_500", "ok")
    assert (await client.get_key(ref)) is not None
    assert fake.log.counts["GetKey"] == 1 + 3  # ensure_key's GET, then three attempts
    assert sleeps.waits == [0.4, 0.8]  # full jitter at random=0.5: 0.5 * 0.8, 0.5 * 1.6


async def test_persistent_503_gives_up_after_four_attempts(
    adapter_env: tuple[AzureKeyVaultClient, AzureKeyVaultFake], sleeps: Sleeps
) -> None:
    client, fake = adapter_env
    faults(fake, "GetKey", *["error_503"] * 5)
    with pytest.raises(Unavailable) as caught:
        await client.get_key(KeyRef(None, mk_id()))
    assert caught.value.status == 503 and fake.log.counts["GetKey"] == 4 and len(sleeps.waits) == 3


async def test_throttle_honours_retry_after(
    adapter_env: tuple[AzureKeyVaultClient, AzureKeyVaultFake], sleeps: Sleeps
) -> None:
    client, fake = adapter_env
    fake.faults.configure(
        ProviderFaults.model_validate(
            {"rules": [{"operation": "ListKeys", "sequence": [{"kind": "throttle", "retry_after_seconds": 7}, "ok"]}]}
        )
    )
    assert (await client.validate()).ok
    assert sleeps.waits == [7.0] and fake.log.counts["ListKeys"] == 2


async def test_a_throttled_create_is_sent_again_after_its_retry_after(
    adapter_env: tuple[AzureKeyVaultClient, AzureKeyVaultFake], sleeps: Sleeps
) -> None:
    # A 429 means the create was refused unprocessed: the transport sends it again, Retry-After later.
    client, fake = adapter_env
    faults(fake, "CreateKey", "throttle")
    managed = mk_id()
    assert (await client.ensure_key(managed, AES)).state is KeyState.ACTIVE
    assert fake.log.counts["CreateKey"] == 2 and sleeps.waits == [1.0]
    assert len(snapshot_keys(fake)) == 1


async def test_a_create_whose_answer_is_lost_is_found_not_repeated(
    adapter_env: tuple[AzureKeyVaultClient, AzureKeyVaultFake],
) -> None:
    client, fake = adapter_env
    faults(fake, "CreateKey", "truncate")
    managed = mk_id()
    observed = await client.ensure_key(managed, AES)
    assert observed.managed_key_id == managed and observed.state is KeyState.ACTIVE
    assert fake.log.counts["CreateKey"] == 1
    assert len(snapshot_keys(fake)) == 1 and len(snapshot_keys(fake)[0]["versions"]) == 1


async def test_permanent_4xx_is_not_retried(
    adapter_env: tuple[AzureKeyVaultClient, AzureKeyVaultFake], sleeps: Sleeps
) -> None:
    client, fake = adapter_env
    url = f"{client.endpoint}/keys/x/create?api-version=7.5"
    with pytest.raises(InvalidRequest) as caught:
        await client.transport.request("POST", url, operation="CreateKey", idempotent=True, json={"kty": "nope"})
    assert caught.value.provider_code == "BadParameter" and fake.log.counts["CreateKey"] == 1 and sleeps.waits == []


async def test_html_200_is_malformed_and_not_retried(
    adapter_env: tuple[AzureKeyVaultClient, AzureKeyVaultFake], sleeps: Sleeps
) -> None:
    client, fake = adapter_env
    faults(fake, "GetKey", "non_json")
    with pytest.raises(MalformedResponse, match="not JSON"):
        await client.get_key(KeyRef(None, mk_id()))
    assert fake.log.counts["GetKey"] == 1 and sleeps.waits == []


async def test_html_502_is_unavailable_and_retried(
    adapter_env: tuple[AzureKeyVaultClient, AzureKeyVaultFake], sleeps: Sleeps
) -> None:
    client, fake = adapter_env
    fake.faults.configure(
        ProviderFaults.model_validate(
            {"rules": [{"operation": "GetKey", "sequence": [{"kind": "non_json", "status": 502}] * 4}]}
        )
    )
    with pytest.raises(Unavailable, match="an HTML page 'Bad Gateway'"):
        await client.get_key(KeyRef(None, mk_id()))
    assert fake.log.counts["GetKey"] == 4


async def test_truncated_bodies_are_retried_then_reported(
    adapter_env: tuple[AzureKeyVaultClient, AzureKeyVaultFake], sleeps: Sleeps
) -> None:
    client, fake = adapter_env
    ref = (await client.ensure_key(mk_id(), AES)).ref
    faults(fake, "GetKey", "truncate", "ok")
    assert await client.get_key(ref) is not None
    faults(fake, "GetKey", *["truncate"] * 4)
    with pytest.raises(Unavailable):
        await client.get_key(ref)
    assert fake.log.counts["GetKey"] == 1 + 2 + 4


# -- malformed shapes the fake cannot make ------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TOKEN = {"token_type": "Bearer", "expires_in": 3600, "access_token": "tok-abcdef"}


async def scripted(
    keys: Handler, sleeps: Sleeps, *, token: dict[str, Any] | None = None
) -> tuple[TestServer, AzureKeyVaultClient]:
    async def token_handler(_: web.Request) -> web.Response:
        return web.json_response(token or TOKEN)

    app = web.Application()
    app.router.add_post("/{tenant}/oauth2/v2.0/token", token_handler)
    app.router.add_route("*", "/{tail:(keys|deletedkeys).*}", keys)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    creds = {"tenant_id": "t1", "client_id": "c1", "client_secret": "s3cret-value", "authority_host": url}
    return server, client_for(url, creds, sleeps)


def replying(doc: Any, status: int = 200) -> Handler:
    async def handler(_: web.Request) -> web.Response:
        return web.json_response(doc, status=status)

    return handler


GOOD_BUNDLE = {
    "key": {"kid": "https://v.vault.azure.net/keys/k1/abc", "kty": "oct-HSM"},
    "attributes": {"enabled": True},
}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"error": {"code": "Oops", "message": "bad"}}, "error body"),
        ([1, 2], "expected a JSON object"),
        ({"attributes": {"enabled": True}}, "no key object"),
        ({"key": {"kid": 5}, "attributes": {"enabled": True}}, "no kid"),
        ({"key": {"kid": "https://v/secrets/x"}, "attributes": {"enabled": True}}, "not a Key Vault key identifier"),
        ({"key": GOOD_BUNDLE["key"]}, "no attributes"),
        ({"key": GOOD_BUNDLE["key"], "attributes": {"enabled": "yes"}}, "enabled is not a boolean"),
        ({"key": GOOD_BUNDLE["key"], "attributes": {"enabled": True, "exp": "soon"}}, "exp is not a Unix time"),
        ({"key": GOOD_BUNDLE["key"], "attributes": {"enabled": True}, "tags": {"a": 1}}, "tags is not a map"),
    ],
)
async def test_wrong_shapes_are_malformed(doc: Any, message: str, sleeps: Sleeps) -> None:
    server, client = await scripted(replying(doc), sleeps)
    async with server, client:
        with pytest.raises(MalformedResponse, match=message):
            await client.get_key(KeyRef("k1"))
    assert sleeps.waits == []


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"value": {"a": 1}}, "no value array"),
        ({"value": [], "nextLink": 3}, "nextLink is not a string"),
        ({"value": ["x"]}, "not an object"),
        ({"value": [], "nextLink": "https://evil.example.com/keys?api-version=7.5"}, "away from the vault"),
    ],
)
async def test_wrong_list_pages_are_malformed(doc: Any, message: str, sleeps: Sleeps) -> None:
    server, client = await scripted(replying(doc), sleeps)
    async with server, client:
        with pytest.raises(MalformedResponse, match=message):
            _ = [o async for o in client.list_keys()]


async def test_a_next_link_that_repeats_is_refused(sleeps: Sleeps) -> None:
    async def page(request: web.Request) -> web.Response:
        return web.json_response({"value": [], "nextLink": "/keys?api-version=7.5&$skiptoken=a"})

    server, client = await scripted(page, sleeps)
    async with server, client:
        with pytest.raises(MalformedResponse, match="repeats"):
            _ = [o async for o in client.list_keys()]


@pytest.mark.parametrize(
    "token",
    [
        {"token_type": "Bearer", "expires_in": 3600},
        {"token_type": "MAC", "expires_in": 3600, "access_token": "t"},
        {"token_type": "Bearer", "expires_in": -1, "access_token": "t"},
        {"token_type": "Bearer", "expires_in": 3600, "access_token": "has space"},
    ],
)
async def test_malformed_token_answers(token: dict[str, Any], sleeps: Sleeps) -> None:
    server, client = await scripted(replying(GOOD_BUNDLE), sleeps, token=token)
    async with server, client:
        with pytest.raises(MalformedResponse):
            await client.get_key(KeyRef("k1"))
        assert (await client.validate()).status is HealthStatus.CONFIGURATION_ERROR


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (403, {"code": "Forbidden", "message": "Caller is not authorized"}, AuthError),
        (403, {"code": "Forbidden", "message": "disabled", "innererror": {"code": "KeyDisabled"}}, Conflict),
        (
            409,
            {"code": "Conflict", "message": "deleted", "innererror": {"code": "ObjectIsDeletedButRecoverable"}},
            Conflict,
        ),
        (400, {"code": "BadParameter", "message": "bad"}, InvalidRequest),
    ],
)
async def test_vault_errors_map_to_the_tree(
    status: int, error: dict[str, Any], expected: type[Exception], sleeps: Sleeps
) -> None:
    server, client = await scripted(replying({"error": error}, status), sleeps)
    async with server, client:
        with pytest.raises(expected) as caught:
            await client.get_key(KeyRef("k1"))
    assert sleeps.waits == [] and not getattr(caught.value, "transient", False)


async def test_a_good_bundle_from_a_custom_server(sleeps: Sleeps) -> None:
    async def keys(request: web.Request) -> web.Response:
        if request.path.endswith("/versions"):  # get_key lists the versions too
            return web.json_response({"value": [{"kid": GOOD_BUNDLE["key"]["kid"], "attributes": {"enabled": True}}]})
        return web.json_response(GOOD_BUNDLE)

    server, client = await scripted(keys, sleeps)
    async with server, client:
        observed = await client.get_key(KeyRef("k1"))
        assert observed is not None and observed.state is KeyState.ACTIVE and observed.managed_key_id is None
        assert "tok-abcdef" not in repr(client.auth)


async def test_many_requests_at_once_fetch_one_token_without_deadlock(sleeps: Sleeps) -> None:
    fake = AzureKeyVaultFake(managed_hsm=True)
    async with serving(fake) as url:
        creds = fake.credentials(url)
        async with client_for(url, creds, sleeps, settings={"max_concurrency": 2}) as client:
            refs = [KeyRef(None, mk_id()) for _ in range(40)]
            results = await asyncio.wait_for(asyncio.gather(*(client.get_key(r) for r in refs)), 20)
            assert results == [None] * 40 and client.auth.fetches == 1
