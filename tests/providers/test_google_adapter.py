"""Google Cloud KMS adapter against the real Cloud KMS fake over loopback: identity, listing, the
lifecycle on versions, repeats, invalid states, the JWT token flow with refresh, retries and faults.
Retry waits go through a recording sleep, so the tests assert exact waits without sleeping."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from keyorch.domain.errors import InvalidInput
from keyorch.domain.models import CredentialsMode, DriftPolicy, Keystore, KeystoreStatus, KeystoreType
from keyorch.domain.states import KeyState
from keyorch.fakes.base import start_fake
from keyorch.fakes.faults import ProviderFaults
from keyorch.fakes.gcp import GoogleKmsFake
from keyorch.providers.base import HealthStatus, KeyRef, KeySpec, factory_for
from keyorch.providers.errors import Conflict, InvalidRequest, MalformedResponse, NotFound, Throttled, Unavailable
from keyorch.providers.google import GoogleKmsClient, GoogleKmsFactory
from keyorch.providers.retry import RetryPolicy

AES = KeySpec("aes", 256, "payments", {"keyorch-label": "Payments Key #1"})
PROJECT = "keyorch-fake"
LOCATION = "us-east1"
RING = f"projects/{PROJECT}/locations/{LOCATION}/keyRings/keyorch-test"
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
        "project": PROJECT,
        "location": LOCATION,
        "key_ring": "keyorch-test",
        "endpoint": url,
        "allow_insecure_http": True,
        "provider_quotas": False,
    }
    return Keystore(
        id=str(uuid.uuid4()),
        vault_id=str(uuid.uuid4()),
        name="gcp-test",
        type=KeystoreType.GOOGLE_KMS,
        settings=base | settings,
        credentials_mode=CredentialsMode.STORED,
        drift_policy=DriftPolicy.FLAG,
        status=KeystoreStatus.CONNECTED,
        created_at=now,
        updated_at=now,
    )


def client_for(url: str, credentials: dict[str, Any] | None, sleeps: Sleeps, **settings: Any) -> GoogleKmsClient:
    retry = RetryPolicy(max_attempts=5, base_delay_seconds=0.1, max_delay_seconds=60, sleep=sleeps, random=lambda: 0.5)
    return GoogleKmsClient(keystore_for(url, **settings), credentials, retry=retry)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def keystore_settings() -> dict[str, Any]:
    return {}


@pytest.fixture
async def adapter_env(
    sleeps: Sleeps, keystore_settings: dict[str, Any]
) -> AsyncIterator[tuple[GoogleKmsClient, GoogleKmsFake]]:
    """The fake on a loopback socket and an adapter client connected to it with the fake's credentials."""
    fake = new_fake()
    running = await start_fake(fake)
    fake.url = running.url  # type: ignore[attr-defined]
    try:
        async with client_for(running.url, fake.credentials(running.url), sleeps, **keystore_settings) as client:
            yield client, fake
    finally:
        await running.stop()


def faults(fake: GoogleKmsFake, operation: str, *sequence: Any) -> None:
    fake.faults.configure(
        ProviderFaults.model_validate({"rules": [{"operation": operation, "sequence": list(sequence)}]})
    )


def keys_in(fake: GoogleKmsFake) -> dict[str, list[str]]:
    """Every key in the fake's state, with its versions' states."""
    snapshot = fake.state_snapshot()
    return {
        key["name"].rpartition("/")[2]: [v["state"] for v in key["cryptoKeyVersions"]]
        for ring in snapshot["keyRings"]
        for key in ring["cryptoKeys"]
    }


def count(fake: GoogleKmsFake, operation: str) -> int:
    return fake.log.counts[operation]


async def raw_call(fake: GoogleKmsFake, method: str, path: str, body: Any = None, **params: str) -> Any:
    """Act on the fake as someone else would (another tool, a console user), with any bearer token."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            f"{fake.url}/v1/{path}",  # type: ignore[attr-defined]
            json=body,
            params=params,
            headers={"Authorization": "Bearer someone-else"},
        ) as response,
    ):
        doc = await response.json(content_type=None)
        assert response.status == 200, doc
        return doc


_SHARED_KEY: list[rsa.RSAPrivateKey] = []


def new_fake() -> GoogleKmsFake:
    """A fake whose service account reuses one RSA key across tests (generating one costs 0.1-0.4 s)."""
    fake = GoogleKmsFake(project_id=PROJECT)
    if not _SHARED_KEY:
        _SHARED_KEY.append(fake.account.key)
    fake.account._key = _SHARED_KEY[0]
    return fake


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- identity and creation ---------------------------------------------------------------------


async def test_create_twice_makes_one_key_and_creates_the_ring(
    adapter_env: tuple[GoogleKmsClient, GoogleKmsFake],
) -> None:
    client, fake = adapter_env
    first = await client.ensure_key("k1", AES)
    assert first.key_id_in_keystore == f"{RING}/cryptoKeys/keyorch-k1"
    assert (first.managed_key_id, first.state, first.destruction_pending) == ("k1", KeyState.ACTIVE, False)
    # GET 404, create 404 (no ring), ring created, create again
    assert (count(fake, "GetCryptoKey"), count(fake, "CreateCryptoKey"), count(fake, "CreateKeyRing")) == (1, 2, 1)
    second = await client.ensure_key("k1", AES)
    assert second == first
    assert (count(fake, "GetCryptoKey"), count(fake, "CreateCryptoKey")) == (2, 2)
    assert keys_in(fake) == {"keyorch-k1": ["ENABLED"]}
    key = fake.state_snapshot()["keyRings"][0]["cryptoKeys"][0]
    assert key["labels"] == {"keyorch-label": "payments_key__1", "managed-by": "keyorch", "keyorch-managed-key": "k1"}
    assert key["purpose"] == "ENCRYPT_DECRYPT"


async def test_a_replayed_create_finds_the_key_made_by_the_lost_answer(
    adapter_env: tuple[GoogleKmsClient, GoogleKmsFake],
) -> None:
    client, fake = adapter_env
    await client.ensure_key("other", AES)  # the ring exists now
    faults(fake, "CreateCryptoKey", "truncate")  # created, but the answer is cut short
    observation = await client.ensure_key("k2", AES)
    assert observation.state is KeyState.ACTIVE
    # other (refused for want of a ring, then made), the cut one, the retry answered ALREADY_EXISTS
    assert count(fake, "CreateCryptoKey") == 4
    assert keys_in(fake) == {"keyorch-other": ["ENABLED"], "keyorch-k2": ["ENABLED"]}
    assert client.http.stats.retries == 1


async def test_a_create_retried_after_503_makes_one_key(adapter_env: tuple[GoogleKmsClient, GoogleKmsFake]) -> None:
    client, fake = adapter_env
    faults(fake, "CreateCryptoKey", "error_503", "ok")
    assert (await client.ensure_key("k3", AES)).state is KeyState.ACTIVE
    assert list(keys_in(fake)) == ["keyorch-k3"]


async def test_ensure_key_refuses_ids_and_algorithms_it_cannot_map(
    adapter_env: tuple[GoogleKmsClient, GoogleKmsFake],
) -> None:
    client, fake = adapter_env
    with pytest.raises(InvalidRequest, match=r"gcp-test.*cannot name a Cloud KMS key"):
        await client.ensure_key("x" * 60, AES)
    with pytest.raises(InvalidRequest, match="aes 256"):
        await client.ensure_key("k", KeySpec("aes", 128, "small"))
    assert fake.log.as_json(False)["total"] == 0


async def test_a_permanent_refusal_is_not_retried(adapter_env: tuple[GoogleKmsClient, GoogleKmsFake]) -> None:
    client, fake = adapter_env
    await client.ensure_key("ok", AES)
    with pytest.raises(InvalidRequest) as caught:  # the fake serves ENCRYPT_DECRYPT only
        await client.ensure_key("rsa", KeySpec("rsa", 2048, "signing"))
    assert caught.value.provider_code == "INVALID_ARGUMENT" and caught.value.status == 400
    assert count(fake, "CreateCryptoKey") == 3 and client.http.stats.retries == 0


# -- reads -------------------------------------------------------------------------------------


async def test_get_of_unknown_keys_is_none(adapter_env: tuple[GoogleKmsClient, GoogleKmsFake]) -> None:
    client, _ = adapter_env
    assert await client.get_key(KeyRef(None, "never-made")) is None  # no key ring at all yet
    await client.ensure_key("k1", AES)
    assert await client.get_key(KeyRef(None, "never-made")) is None
    assert await client.get_key(KeyRef("keyorch-nope")) is None
    assert await client.get_key(KeyRef(f"{RING}/cryptoKeys/nope")) is None
    assert await client.get_key(KeyRef("../../etc/passwd")) is None  # not a name: never sent
    other_ring = RING.replace("keyorch-test", "other")
    assert await client.get_key(KeyRef(f"{other_ring}/cryptoKeys/keyorch-k1")) is None  # not this keystore's
    assert await client.get_key(KeyRef(None, None)) is None
    with pytest.raises(NotFound):
        await client.enable(KeyRef("keyorch-nope"))
    with pytest.raises(NotFound):
        await client.schedule_destruction(KeyRef(None, "a/b"))


async def test_get_by_ref_forms(adapter_env: tuple[GoogleKmsClient, GoogleKmsFake]) -> None:
    client, _ = adapter_env
    made = await client.ensure_key("k1", AES)
    for ref in (made.ref, KeyRef(None, "k1"), KeyRef("keyorch-k1")):
        assert await client.get_key(ref) == made


async def test_list_across_pages_reads_versions_only_where_needed(
    adapter_env: tuple[GoogleKmsClient, GoogleKmsFake], keystore_settings: dict[str, Any]
) -> None:
    client, fake = adapter_env
    client._page_size = 2
    made = [await client.ensure_key(f"k{i}", AES) for i in range(5)]
    await raw_call(fake, "POST", f"{RING}/cryptoKeys", {"purpose": "ENCRYPT_DECRYPT"}, cryptoKeyId="foreign")
    await raw_call(fake, "POST", f"{RING}/cryptoKeys/foreign/cryptoKeyVersions/1:destroy", {})
    await client.disable(made[1].ref)
    await client.schedule_destruction(made[2].ref)
    fake.log.clear()
    listed = {o.key_id_in_keystore.rpartition("/")[2]: o async for o in client.list_keys()}
    assert count(fake, "ListCryptoKeys") == 3  # 6 keys, 2 per page
    assert count(fake, "ListCryptoKeyVersions") == 1  # only keyorch-k2 (destroy scheduled) needs its versions
    assert len(listed) == 6
    assert {k: (o.managed_key_id, o.state, o.destruction_pending) for k, o in listed.items()} == {
        "keyorch-k0": ("k0", KeyState.ACTIVE, False),
        "keyorch-k1": ("k1", KeyState.DEACTIVATED, False),
        "keyorch-k2": ("k2", KeyState.DEACTIVATED, True),
        "keyorch-k3": ("k3", KeyState.ACTIVE, False),
        "keyorch-k4": ("k4", KeyState.ACTIVE, False),
        "foreign": (None, KeyState.DEACTIVATED, True),  # from its primary alone
    }
    assert listed["keyorch-k2"].pending_until is not None
    assert listed["foreign"].raw_state == "primary DESTROY_SCHEDULED (other versions not read)"


async def test_list_of_a_missing_key_ring_is_empty(adapter_env: tuple[GoogleKmsClient, GoogleKmsFake]) -> None:
    client, fake = adapter_env
    assert [o async for o in client.list_keys()] == []
    assert count(fake, "ListCryptoKeys") == 1


async def test_page_size_setting(sleeps: Sleeps) -> None:
    fake = new_fake()
    running = await start_fake(fake)
    try:
        async with client_for(running.url, fake.credentials(running.url), sleeps, page_size=1) as client:
            for i in range(3):
                await client.ensure_key(f"p{i}", AES)
            assert len([o async for o in client.list_keys()]) == 3
            assert fake.log.counts["ListCryptoKeys"] == 3
    finally:
        await running.stop()


# -- lifecycle -----------------------------------------------------------------------------------


async def test_disable_enable_and_their_repeats(adapter_env: tuple[GoogleKmsClient, GoogleKmsFake]) -> None:
    client, fake = adapter_env
    made = await client.ensure_key("k1", AES)
    disabled = await client.disable(made.ref)
    assert (disabled.state, disabled.destruction_pending) == (KeyState.DEACTIVATED, False)
    assert keys_in(fake) == {"keyorch-k1": ["DISABLED"]}
    assert (await client.disable(made.ref)).state is KeyState.DEACTIVATED
    assert count(fake, "UpdateCryptoKeyVersion") == 1  # the repeat found nothing to change
    assert (await client.get_key(made.ref)).state is KeyState.DEACTIVATED  # type: ignore[union-attr]
    assert (await client.enable(made.ref)).state is KeyState.ACTIVE
    assert (await client.enable(made.ref)).state is KeyState.ACTIVE
    assert count(fake, "UpdateCryptoKeyVersion") == 2
    assert keys_in(fake) == {"keyorch-k1": ["ENABLED"]}


async def test_every_version_follows(adapter_env: tuple[GoogleKmsClient, GoogleKmsFake]) -> None:
    client, fake = adapter_env
    made = await client.ensure_key("k1", AES)
    name = made.key_id_in_keystore
    await raw_call(fake, "POST", f"{name}/cryptoKeyVersions", {})
    await raw_call(fake, "POST", f"{name}/cryptoKeyVersions", {})
    await raw_call(fake, "PATCH", f"{name}/cryptoKeyVersions/3", {"state": "DISABLED"}, updateMask="state")
    assert (await client.disable(made.ref)).raw_state == "primary DISABLED; versions: DISABLED x3"
    assert keys_in(fake) == {"keyorch-k1": ["DISABLED"] * 3}
    assert (await client.enable(made.ref)).state is KeyState.ACTIVE
    assert keys_in(fake) == {"keyorch-k1": ["ENABLED"] * 3}
    await raw_call(fake, "POST", f"{name}/cryptoKeyVersions/2:destroy", {})
    fake.clock.advance(600)  # versions scheduled ten minutes apart: the latest destroyTime counts
    pending = await client.schedule_destruction(made.ref)
    assert keys_in(fake) == {"keyorch-k1": ["DESTROY_SCHEDULED"] * 3}
    destroy_times = [
        datetime.fromisoformat(v["destroyTime"].replace("Z", "+00:00"))
        for v in fake.state_snapshot()["keyRings"][0]["cryptoKeys"][0]["cryptoKeyVersions"]
    ]
    assert pending.pending_until == max(destroy_times)
    assert count(fake, "DestroyCryptoKeyVersion") == 3  # two by the adapter, one by "someone else"


async def test_schedule_destruction_repeat_and_invalid_states(
    adapter_env: tuple[GoogleKmsClient, GoogleKmsFake],
) -> None:
    client, fake = adapter_env
    made = await client.ensure_key("k1", AES)
    before = fake.clock.now()
    pending = await client.schedule_destruction(made.ref)
    assert (pending.state, pending.destruction_pending) == (KeyState.DEACTIVATED, True)
    assert pending.pending_until is not None
    assert abs(pending.pending_until - (before + timedelta(days=30))) < timedelta(seconds=5)
    again = await client.schedule_destruction(made.ref)
    assert again == pending and count(fake, "DestroyCryptoKeyVersion") == 1
    assert await client.get_key(made.ref) == pending
    with pytest.raises(Conflict, match="cannot be enabled") as caught:
        await client.enable(made.ref)
    assert caught.value.provider_code == "FAILED_PRECONDITION"
    assert (await client.disable(made.ref)) == pending  # not usable already: nothing to do
    assert count(fake, "UpdateCryptoKeyVersion") == 0
    assert keys_in(fake) == {"keyorch-k1": ["DESTROY_SCHEDULED"]}


async def test_destroyed_once_every_version_is(adapter_env: tuple[GoogleKmsClient, GoogleKmsFake]) -> None:
    client, fake = adapter_env
    # The fake checks JWT and token times on its own clock: let this token outlive the jump below.
    fake.tokens.ttl_seconds = 40 * DAY
    made = await client.ensure_key("k1", AES)
    await client.schedule_destruction(made.ref)
    fake.clock.advance(31 * DAY)
    destroyed = await client.get_key(made.ref)
    assert destroyed is not None
    assert (destroyed.state, destroyed.destruction_pending, destroyed.pending_until) == (
        KeyState.DESTROYED,
        False,
        None,
    )
    assert await client.schedule_destruction(made.ref) == destroyed
    assert [o.state async for o in client.list_keys()] == [KeyState.DESTROYED]
    with pytest.raises(Conflict):
        await client.enable(made.ref)


async def test_a_destroy_refused_because_another_caller_won_is_success(
    adapter_env: tuple[GoogleKmsClient, GoogleKmsFake],
) -> None:
    client, fake = adapter_env
    made = await client.ensure_key("k1", AES)
    fake.log.clear()  # count schedule_destruction's listings only
    # Between the adapter's listing and its :destroy, someone else destroys the version: the fake
    # then answers FAILED_PRECONDITION, and the adapter re-reads the versions.
    real = client._change

    async def racing(version: Any, change: str, operation: str) -> Any:
        await raw_call(fake, "POST", f"{version.name}:destroy", {})
        return await real(version, change, operation)

    client._change = racing  # type: ignore[method-assign]
    pending = await client.schedule_destruction(made.ref)
    assert pending.destruction_pending
    assert count(fake, "ListCryptoKeyVersions") == 2


# -- auth ----------------------------------------------------------------------------------------


async def test_one_token_for_many_and_refresh_after_revocation(
    adapter_env: tuple[GoogleKmsClient, GoogleKmsFake],
) -> None:
    client, fake = adapter_env
    made = await client.ensure_key("k1", AES)
    assert count(fake, "Token") == 1
    await asyncio.gather(*(client.get_key(made.ref) for _ in range(20)))
    assert count(fake, "Token") == 1
    fake.tokens.revoke_all()
    assert await client.get_key(made.ref) == made
    assert count(fake, "Token") == 2 and client.http.auth_refreshes == 1
    fake.tokens.revoke_all()
    results = await asyncio.gather(*(client.get_key(made.ref) for _ in range(16)))
    assert all(r == made for r in results)
    assert count(fake, "Token") == 3  # 16 refused requests, one new token
    assert client.auth.fetches == 3


async def test_bad_credentials_are_a_configuration_error(adapter_env: tuple[GoogleKmsClient, GoogleKmsFake]) -> None:
    _, fake = adapter_env
    url = fake.url  # type: ignore[attr-defined]
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    wrong = fake.credentials(url) | {"private_key": pem}
    async with client_for(url, wrong, Sleeps()) as client:
        health = await client.validate()
    assert health.status is HealthStatus.CONFIGURATION_ERROR
    assert "invalid_grant" in health.message and "PRIVATE KEY" not in health.message
    assert count(fake, "Token") == 1  # a refusal at the token endpoint is not retried
    for broken, words in (
        ({"client_email": "x@y"}, "private_key"),
        (
            fake.credentials(url) | {"private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"},
            "PEM",
        ),
        (fake.credentials(url) | {"type": "authorized_user"}, "authorized_user"),
    ):
        async with client_for(url, broken, Sleeps()) as client:
            health = await client.validate()
        assert health.status is HealthStatus.CONFIGURATION_ERROR, broken
        assert words in health.message and "AAAA" not in health.message


async def test_validate(adapter_env: tuple[GoogleKmsClient, GoogleKmsFake]) -> None:
    client, _ = adapter_env
    before = await client.validate()
    assert before.status is HealthStatus.OK and "does not exist yet" in before.message
    await client.ensure_key("k1", AES)
    assert (await client.validate()).status is HealthStatus.OK


async def test_validate_of_a_wrong_endpoint_path_is_a_configuration_error(
    adapter_env: tuple[GoogleKmsClient, GoogleKmsFake],
) -> None:
    _, fake = adapter_env
    url = fake.url  # type: ignore[attr-defined]
    async with client_for(url + "/elsewhere", fake.credentials(url), Sleeps()) as client:
        health = await client.validate()
    assert health.status is HealthStatus.CONFIGURATION_ERROR and "requested URL" in health.message


async def test_validate_of_a_closed_port_is_not_responding(sleeps: Sleeps) -> None:
    fake = new_fake()
    url = f"http://127.0.0.1:{free_port()}"
    async with client_for(url, fake.credentials(url), sleeps) as client:
        health = await client.validate()
    assert health.status is HealthStatus.NOT_RESPONDING
    assert len(sleeps.waits) == 4  # five attempts, each failing to connect to the token endpoint


# -- retries and faults --------------------------------------------------------------------------


async def test_503_then_success_is_retried(adapter_env: tuple[GoogleKmsClient, GoogleKmsFake], sleeps: Sleeps) -> None:
    client, fake = adapter_env
    made = await client.ensure_key("k1", AES)
    faults(fake, "GetCryptoKey", "error_503", "error_500", "ok")
    assert await client.get_key(made.ref) == made
    assert count(fake, "GetCryptoKey") == 1 + 3
    assert sleeps.waits == [0.05, 0.1]  # full jitter at random() = 0.5 of 0.1 s, 0.2 s


async def test_throttle_honours_retry_after(adapter_env: tuple[GoogleKmsClient, GoogleKmsFake], sleeps: Sleeps) -> None:
    client, fake = adapter_env
    made = await client.ensure_key("k1", AES)
    faults(fake, "GetCryptoKey", {"kind": "throttle", "retry_after_seconds": 7}, "ok")
    assert await client.get_key(made.ref) == made
    assert sleeps.waits == [7.0] and client.http.stats.throttles == 1


async def test_retries_are_bounded(adapter_env: tuple[GoogleKmsClient, GoogleKmsFake], sleeps: Sleeps) -> None:
    client, fake = adapter_env
    made = await client.ensure_key("k1", AES)
    faults(fake, "GetCryptoKey", *["throttle"] * 5)
    with pytest.raises(Throttled) as caught:
        await client.get_key(made.ref)
    assert caught.value.provider_code == "RESOURCE_EXHAUSTED"
    assert count(fake, "GetCryptoKey") == 1 + 5 and len(sleeps.waits) == 4


async def test_html_and_truncated_answers(adapter_env: tuple[GoogleKmsClient, GoogleKmsFake]) -> None:
    client, fake = adapter_env
    made = await client.ensure_key("k1", AES)
    faults(fake, "GetCryptoKey", "non_json")  # an HTML page with 200: nonsense, not retried
    with pytest.raises(MalformedResponse, match="not JSON"):
        await client.get_key(made.ref)
    assert count(fake, "GetCryptoKey") == 2
    faults(fake, "GetCryptoKey", {"kind": "non_json", "status": 502}, "ok")  # a proxy's error page: retried
    assert await client.get_key(made.ref) == made
    faults(fake, "GetCryptoKey", "truncate", "ok")  # a body cut short on the wire: retried
    assert await client.get_key(made.ref) == made
    faults(fake, "GetCryptoKey", *["truncate"] * 5)
    with pytest.raises(Unavailable):
        await client.get_key(made.ref)


async def test_enum_encoding_int_is_sent_and_read(adapter_env: tuple[GoogleKmsClient, GoogleKmsFake]) -> None:
    client, _ = adapter_env
    made = await client.ensure_key("k1", AES)
    result = await client.http.request(
        "GET", client._url(made.key_id_in_keystore), operation="cryptoKeys.get", idempotent=True
    )
    assert result.json_object()["primary"]["state"] == 1 and result.json_object()["purpose"] == 1


# -- factory -------------------------------------------------------------------------------------


def test_factory_is_registered_and_checks_settings() -> None:
    factory = factory_for(KeystoreType.GOOGLE_KMS)
    assert isinstance(factory, GoogleKmsFactory)
    factory.validate_settings(keystore_for("http://127.0.0.1:1"))
    for settings, target in (
        ({"project": None}, "project"),
        ({"key_ring": "bad/ring"}, "project"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": 5000}, "page_size"),
        ({"endpoint": "http://example.com"}, "endpoint"),
        ({"rate_per_second": -1}, "rate_per_second"),
    ):
        with pytest.raises(InvalidInput) as caught:
            factory.validate_settings(keystore_for("http://127.0.0.1:1", **settings))
        assert caught.value.target == target, settings


# -- destruction whose answer is in doubt ----------------------------------------------------------


def statuses(fake: GoogleKmsFake, operation: str) -> list[int | None]:
    return [e.status for e in fake.log.entries if e.operation == operation]


async def test_a_destroy_whose_answer_was_lost_is_read_back_not_sent_again(
    adapter_env: tuple[GoogleKmsClient, GoogleKmsFake], sleeps: Sleeps
) -> None:
    """Cloud KMS scheduled the version but the answer was cut short: a GET, no refused repeat."""
    client, fake = adapter_env
    made = await client.ensure_key("k1", AES)
    await raw_call(fake, "POST", f"{made.key_id_in_keystore}/cryptoKeyVersions", {})  # a second version
    fake.log.clear()
    faults(fake, "DestroyCryptoKeyVersion", "truncate")
    pending = await client.schedule_destruction(made.ref)
    assert (pending.state, pending.destruction_pending) == (KeyState.DEACTIVATED, True)
    assert statuses(fake, "DestroyCryptoKeyVersion") == [200, 200]  # one per version, none refused (400)
    assert count(fake, "GetCryptoKeyVersion") == 1
    assert keys_in(fake) == {"keyorch-k1": ["DESTROY_SCHEDULED"] * 2}
    assert pending == await client.get_key(made.ref)
    assert sleeps.waits == [0.05]


@pytest.mark.parametrize("fault", ["error_503", "drop"])
async def test_a_destroy_in_doubt_but_not_done_is_sent_again_after_a_read(
    adapter_env: tuple[GoogleKmsClient, GoogleKmsFake], fault: str
) -> None:
    client, fake = adapter_env
    made = await client.ensure_key("k1", AES)
    fake.log.clear()
    faults(fake, "DestroyCryptoKeyVersion", fault)
    pending = await client.schedule_destruction(made.ref)
    assert pending.destruction_pending
    assert [e.operation for e in fake.log.entries if "CryptoKeyVersion" in e.operation][-3:] == [
        "DestroyCryptoKeyVersion",
        "GetCryptoKeyVersion",  # still ENABLED: the first request did nothing
        "DestroyCryptoKeyVersion",
    ]
    assert statuses(fake, "DestroyCryptoKeyVersion")[-1] == 200
    assert keys_in(fake) == {"keyorch-k1": ["DESTROY_SCHEDULED"]}


async def test_a_throttled_destroy_is_sent_again_without_a_read(
    adapter_env: tuple[GoogleKmsClient, GoogleKmsFake], sleeps: Sleeps
) -> None:
    client, fake = adapter_env
    made = await client.ensure_key("k1", AES)
    fake.log.clear()
    faults(fake, "DestroyCryptoKeyVersion", {"kind": "throttle", "retry_after_seconds": 3})
    assert (await client.schedule_destruction(made.ref)).destruction_pending
    assert statuses(fake, "DestroyCryptoKeyVersion") == [429, 200]
    assert count(fake, "GetCryptoKeyVersion") == 0
    assert sleeps.waits == [3.0] and client.http.stats.throttles == 1


async def test_a_destroy_in_doubt_every_time_gives_up_after_the_policy(
    adapter_env: tuple[GoogleKmsClient, GoogleKmsFake], sleeps: Sleeps
) -> None:
    client, fake = adapter_env
    made = await client.ensure_key("k1", AES)
    fake.log.clear()
    faults(fake, "DestroyCryptoKeyVersion", *["error_500"] * 5)
    with pytest.raises(Unavailable):
        await client.schedule_destruction(made.ref)
    # five attempts (the policy's), each after the first preceded by a read; a last read on giving up
    assert (count(fake, "DestroyCryptoKeyVersion"), count(fake, "GetCryptoKeyVersion")) == (5, 5)
    assert len(sleeps.waits) == 4
    assert keys_in(fake) == {"keyorch-k1": ["ENABLED"]}
