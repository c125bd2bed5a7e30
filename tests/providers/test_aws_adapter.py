"""AWS KMS adapter: the contract cases against the project's fake and against moto, over loopback.

Every case runs on two backends: the project's AWS KMS fake (``keyorch.fakes.aws``, which follows
docs/providers.md §1.7) and moto's server mode (a third-party KMS, a dev dependency). A case moto
does not implement (docs/providers.md §6.1: no signature checks, no fault injection, no paging, lenient
state rules, keys never removed) is skipped on moto with that reason; everything else must pass on
both. Retry waits are recorded by an injected sleep, so no case sleeps.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from tests.providers.test_http import keystore

from keyorch.domain.models import Keystore, KeystoreType
from keyorch.domain.states import KeyState
from keyorch.fakes import aws_ops
from keyorch.fakes.aws import AwsKmsFake
from keyorch.fakes.aws_ops import Operation
from keyorch.fakes.base import FakeError, start_fake
from keyorch.fakes.faults import ProviderFaults
from keyorch.providers.aws import AwsKmsClient
from keyorch.providers.aws_wire import ALIAS_PREFIX, MANAGED_KEY_TAG
from keyorch.providers.base import HealthStatus, KeyRef, KeySpec, Observation
from keyorch.providers.errors import (
    AuthError,
    Conflict,
    InvalidRequest,
    MalformedResponse,
    NotFound,
    ProviderError,
    Unavailable,
)
from keyorch.providers.retry import RetryPolicy

FAKE = "fake"
MOTO = "moto"
MOTO_CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing"}
AES = KeySpec(algorithm="aes", size=256, name="payments-key", labels={"keyorch-label": "payments"})
RSA = KeySpec(algorithm="rsa", size=2048, name="signing-key")
DAY = timedelta(days=1)
NEEDS_FAULTS = "the case injects faults and counts attempts in the request log; moto has neither"


@dataclass
class Waits:
    """An injected sleep: records each wait and moves a clock instead of sleeping."""

    seconds: list[float] = field(default_factory=list)
    now: float = 1000.0

    async def sleep(self, seconds: float) -> None:
        self.seconds.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now

    def policy(self, **overrides: Any) -> RetryPolicy:
        """AWS's default policy shape (3 attempts, base 1 s, cap 20 s, 60 s in all), jitter fixed at 1/2."""
        values: dict[str, Any] = {
            "max_attempts": 3,
            "base_delay_seconds": 1.0,
            "max_delay_seconds": 20.0,
            "total_timeout_seconds": 60.0,
        }
        values.update(overrides)
        return RetryPolicy(**values, sleep=self.sleep, clock=self.clock, random=lambda: 0.5)


def keystore_record(url: str | None, **settings: Any) -> Keystore:
    values: dict[str, Any] = {"region": "us-east-1", "allow_insecure_http": True, "provider_quotas": False}
    if url is not None:
        values["endpoint"] = url
    return keystore(KeystoreType.AWS_KMS, {**values, **settings})


def client_for(
    url: str, credentials: dict[str, Any] | None, waits: Waits, *, retry: RetryPolicy | None = None, **settings: Any
) -> AwsKmsClient:
    return AwsKmsClient(keystore_record(url, **settings), credentials, retry=retry or waits.policy())


@dataclass
class AdapterEnv:
    """One adapter against one backend. Unpacks as ``client, fake`` (``fake`` is None on moto)."""

    client: AwsKmsClient
    fake: AwsKmsFake | None
    backend: str
    url: str
    credentials: dict[str, Any]
    waits: Waits

    def __iter__(self) -> Iterator[Any]:
        return iter((self.client, self.fake))

    @property
    def kms(self) -> AwsKmsFake:
        """The fake; the case is skipped on moto (it needs the fake's request log, faults or clock)."""
        if self.fake is None:
            pytest.skip("moto has no request log, fault injection or clock control (docs/providers.md §6.1)")
        return self.fake

    def require_fake(self, reason: str) -> AwsKmsFake:
        """The fake; on moto the case is skipped with ``reason``."""
        if self.fake is None:
            pytest.skip(f"needs the project's fake: {reason}")
        return self.fake

    def skip_on_moto(self, reason: str) -> None:
        if self.backend == MOTO:
            pytest.skip(f"moto does not implement this (docs/providers.md §6.1): {reason}")

    def count(self, operation: str) -> int:
        return self.kms.log.counts[operation]

    def statuses(self, operation: str) -> list[int | None]:
        return [e.status for e in self.kms.log.entries if e.operation == operation]

    def faults(self, *rules: dict[str, Any]) -> None:
        self.kms.faults.configure(ProviderFaults.model_validate({"rules": list(rules)}))

    def another_client(self, **settings: Any) -> AwsKmsClient:
        return client_for(self.url, self.credentials, self.waits, **{"page_size": 2, **settings})

    async def raw(self, operation: str, members: dict[str, Any]) -> dict[str, Any]:
        """One signed KMS call outside the adapter's logic (to set up keys keyorch does not own)."""
        result = await self.client._call(operation, members)
        return result.json_object() if result.json_body is not None else {}

    async def key_count(self) -> int:
        return len((await self.raw("ListKeys", {}))["Keys"])


class MotoServer:
    """moto's server mode on a free loopback port, in a thread."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.url = f"http://{host}:{port}"

    async def reset(self) -> None:
        async with aiohttp.ClientSession() as session, session.post(self.url + "/moto-api/reset") as response:
            assert response.status == 200


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    try:
        yield server
    finally:
        server.server.stop()


@pytest.fixture(params=[FAKE, MOTO])
async def adapter_env(request: pytest.FixtureRequest) -> AsyncIterator[AdapterEnv]:
    """(client, fake) on the project's fake (strict: only its own access key) or on moto."""
    waits = Waits()
    if request.param == FAKE:
        fake = AwsKmsFake(strict=True)
        running = await start_fake(fake)
        credentials = fake.credentials(running.url)
        client = client_for(running.url, credentials, waits, page_size=2, pending_window_days=7)
        try:
            yield AdapterEnv(client, fake, FAKE, running.url, credentials, waits)
        finally:
            await client.aclose()
            await running.stop()
        return
    server: MotoServer = request.getfixturevalue("moto_server")
    await server.reset()
    client = client_for(server.url, MOTO_CREDENTIALS, waits, page_size=2, pending_window_days=7)
    try:
        yield AdapterEnv(client, None, MOTO, server.url, dict(MOTO_CREDENTIALS), waits)
    finally:
        await client.aclose()


@contextmanager
def patched_operation(name: str, replacement: Callable[[Operation, Any, Any], Any], *, times: int) -> Iterator[None]:
    """Serve the fake's operation ``name`` through ``replacement`` for the next ``times`` requests."""
    real = aws_ops.OPERATIONS[name]
    left = [times]

    def operation(store: Any, members: Any) -> Any:
        if left[0] > 0:
            left[0] -= 1
            return replacement(real, store, members)
        return real(store, members)

    aws_ops.OPERATIONS[name] = operation
    try:
        yield
    finally:
        aws_ops.OPERATIONS[name] = real


def fake_key(fake: AwsKmsFake, key_id: str) -> dict[str, Any]:
    keys: list[dict[str, Any]] = [k for k in fake.state_snapshot()["keys"] if k["KeyId"] == key_id]
    assert len(keys) == 1
    return keys[0]


# -- create ----------------------------------------------------------------------------------------


async def test_create_twice_gives_one_key_with_alias_and_tag(adapter_env: AdapterEnv) -> None:
    client, fake = adapter_env
    first = await client.ensure_key("mk-1", AES)
    second = await client.ensure_key("mk-1", AES)
    assert first.key_id_in_keystore == second.key_id_in_keystore
    assert (first.state, first.managed_key_id, first.destruction_pending) == (KeyState.ACTIVE, "mk-1", False)
    assert second == await client.get_key(KeyRef(None, "mk-1"))
    assert await adapter_env.key_count() == 1
    if fake is not None:
        key = fake_key(fake, first.key_id_in_keystore)
        assert key["Aliases"] == [ALIAS_PREFIX + "mk-1"]
        assert {"TagKey": MANAGED_KEY_TAG, "TagValue": "mk-1"} in key["Tags"]
        assert {"TagKey": "keyorch-label", "TagValue": "payments"} in key["Tags"]
        assert (key["KeySpec"], key["Description"]) == ("SYMMETRIC_DEFAULT", "payments-key")
        assert adapter_env.count("CreateKey") == 1 and adapter_env.count("CreateAlias") == 1
        assert adapter_env.count("DescribeKey") == 3  # a miss, the second ensure_key's hit, get_key


async def test_rsa_key_spec(adapter_env: AdapterEnv) -> None:
    client, fake = adapter_env
    created = await client.ensure_key("mk-rsa", RSA)
    if fake is not None:
        assert fake_key(fake, created.key_id_in_keystore)["KeySpec"] == "RSA_2048"
    with pytest.raises(InvalidRequest, match="cannot hold aes 128"):
        await client.ensure_key("mk-small", KeySpec("aes", 128, "x"))
    with pytest.raises(InvalidRequest, match="managed key id"):
        await client.ensure_key("bad id!", AES)


def miss_first_describe(client: AwsKmsClient) -> None:
    """Make the client's first DescribeKey answer "no such key" (KMS's eventual consistency)."""
    real_describe = client._describe
    calls: list[str] = []

    async def describe_missing_once(key: str, managed: str | None) -> Observation | None:
        calls.append(key)
        return None if len(calls) == 1 else await real_describe(key, managed)

    client._describe = describe_missing_once  # type: ignore[method-assign,assignment]


async def test_lost_race_keeps_the_winner_and_retires_the_orphan(adapter_env: AdapterEnv) -> None:
    """Another worker's alias appears between our DescribeKey and CreateAlias: one live key remains."""
    client, fake = adapter_env
    winner = await client.ensure_key("mk-race", AES)
    stale = adapter_env.another_client()
    miss_first_describe(stale)
    try:
        got = await stale.ensure_key("mk-race", AES)
    finally:
        await stale.aclose()
    assert got.key_id_in_keystore == winner.key_id_in_keystore
    keys = (await adapter_env.raw("ListKeys", {}))["Keys"]
    assert len(keys) == 2
    orphan = next(k["KeyId"] for k in keys if k["KeyId"] != winner.key_id_in_keystore)
    orphan_state = await client.get_key(KeyRef(orphan))
    assert orphan_state is not None and orphan_state.destruction_pending
    assert orphan_state.pending_until is not None
    days = (orphan_state.pending_until - datetime.now(UTC)) / DAY
    assert 6.9 < days <= 7.0  # the shortest window, whatever the keystore's setting
    current = await client.get_key(KeyRef(None, "mk-race"))
    assert current is not None and current.state is KeyState.ACTIVE
    if fake is not None:
        assert {"TagKey": MANAGED_KEY_TAG, "TagValue": "mk-race"} in fake_key(fake, orphan)["Tags"]


async def test_concurrent_creates_leave_one_live_key(adapter_env: AdapterEnv) -> None:
    client, _ = adapter_env
    others = [adapter_env.another_client() for _ in range(3)]
    try:
        made = await asyncio.gather(*(c.ensure_key("mk-many", AES) for c in [client, *others]))
    finally:
        for other in others:
            await other.aclose()
    assert len({o.key_id_in_keystore for o in made}) == 1
    live = []
    for entry in (await adapter_env.raw("ListKeys", {}))["Keys"]:
        seen = await client.get_key(KeyRef(entry["KeyId"]))
        assert seen is not None
        if not seen.destruction_pending:
            live.append(seen.key_id_in_keystore)
    assert live == [made[0].key_id_in_keystore]


async def test_alias_created_but_answer_lost_is_not_a_second_key(adapter_env: AdapterEnv) -> None:
    """CreateAlias is applied but answered with a 500; the retry gets AlreadyExists and finds our key."""
    client, _ = adapter_env
    adapter_env.require_fake("the case patches the fake's CreateAlias to apply and then fail")

    def applied_then_failed(real: Operation, store: Any, members: Any) -> Any:
        real(store, members)
        raise FakeError(500, "KMSInternalException", "the answer was lost")

    with patched_operation("CreateAlias", applied_then_failed, times=1):
        created = await client.ensure_key("mk-lost", AES)
    assert adapter_env.statuses("CreateAlias") == [500, 400]  # then AlreadyExistsException
    assert adapter_env.count("CreateKey") == 1 and adapter_env.count("ScheduleKeyDeletion") == 0
    assert await adapter_env.key_count() == 1
    assert adapter_env.waits.seconds == [0.5]
    assert created == await client.get_key(KeyRef(None, "mk-lost"))


async def test_create_key_is_not_retried_once_sent(adapter_env: AdapterEnv) -> None:
    adapter_env.require_fake(NEEDS_FAULTS)
    client, _ = adapter_env
    adapter_env.faults({"operation": "CreateKey", "sequence": ["error_503"]})
    with pytest.raises(Unavailable):
        await client.ensure_key("mk-once", AES)
    assert adapter_env.count("CreateKey") == 1 and adapter_env.waits.seconds == []
    created = await client.ensure_key("mk-once", AES)
    assert adapter_env.count("CreateKey") == 2
    assert await adapter_env.key_count() == 1 and created.state is KeyState.ACTIVE


async def test_create_in_doubt_adopts_the_key_a_lost_answer_made(adapter_env: AdapterEnv) -> None:
    """CreateKey made the key but its answer was cut off: the in-doubt retry finds it by its tag."""
    adapter_env.require_fake(NEEDS_FAULTS)
    client, _ = adapter_env
    await client.ensure_key("mk-other", AES)  # a key of another managed key, also tagged
    adapter_env.faults({"operation": "CreateKey", "sequence": ["truncate"]})
    with pytest.raises(ProviderError):
        await client.ensure_key("mk-lost", AES)
    assert await adapter_env.key_count() == 2  # the key exists, without its alias
    adopted = await client.ensure_key("mk-lost", AES, in_doubt=True)
    assert adapter_env.count("CreateKey") == 2, "no second CreateKey for mk-lost"
    assert await adapter_env.key_count() == 2
    assert adopted == await client.get_key(KeyRef(None, "mk-lost"))
    assert adopted.state is KeyState.ACTIVE


async def test_create_alias_waits_for_a_new_key_to_be_visible(adapter_env: AdapterEnv) -> None:
    """KMS is eventually consistent: CreateAlias right after CreateKey may not find the key yet."""
    client, _ = adapter_env
    fake = adapter_env.require_fake("the case patches the fake's CreateAlias to miss the new key once")

    def not_yet(real: Operation, store: Any, members: Any) -> Any:
        raise FakeError(400, "NotFoundException", "Key does not exist")

    with patched_operation("CreateAlias", not_yet, times=1):
        created = await client.ensure_key("mk-slow", AES)
    assert adapter_env.statuses("CreateAlias") == [400, 200]
    assert adapter_env.waits.seconds == [0.5]
    assert fake_key(fake, created.key_id_in_keystore)["Aliases"] == [ALIAS_PREFIX + "mk-slow"]


# -- list ------------------------------------------------------------------------------------------


async def test_list_across_pages_yields_only_owned_keys(adapter_env: AdapterEnv) -> None:
    client, fake = adapter_env
    made = {f"mk-{i}": await client.ensure_key(f"mk-{i}", AES) for i in range(5)}
    foreign = (await adapter_env.raw("CreateKey", {}))["KeyMetadata"]["KeyId"]
    await adapter_env.raw("CreateAlias", {"AliasName": "alias/someone-else", "TargetKeyId": foreign})
    await adapter_env.raw("CreateKey", {})  # no alias at all
    await client.disable(made["mk-3"].ref)
    if fake is not None:
        fake.log.clear()
    listed = [o async for o in client.list_keys()]
    assert {o.managed_key_id: o.key_id_in_keystore for o in listed} == {
        k: o.key_id_in_keystore for k, o in made.items()
    }
    assert {o.managed_key_id: o.state for o in listed}["mk-3"] is KeyState.DEACTIVATED
    if fake is not None:
        # 6 aliases at 2 per page: 3 ListAliases; one DescribeKey per owned key, none for the others.
        assert (adapter_env.count("ListAliases"), adapter_env.count("DescribeKey")) == (3, 5)
        assert adapter_env.count("ListKeys") == 0


async def test_list_follows_pending_deletion_until_the_key_is_gone(adapter_env: AdapterEnv) -> None:
    client, _ = adapter_env
    fake = adapter_env.require_fake("moto never removes a key when its DeletionDate passes (6.1, gap 9)")
    kept = await client.ensure_key("mk-kept", AES)
    doomed = await client.ensure_key("mk-doomed", AES)
    scheduled = await client.schedule_destruction(doomed.ref)
    listed = {o.managed_key_id: o async for o in client.list_keys()}
    assert listed["mk-doomed"].destruction_pending and listed["mk-doomed"].pending_until == scheduled.pending_until
    fake.clock.advance(7 * 86400 + 1)
    assert [o.managed_key_id async for o in client.list_keys()] == ["mk-kept"]
    assert await client.get_key(doomed.ref) is None
    assert await client.get_key(KeyRef(None, "mk-doomed")) is None
    assert kept == await client.get_key(kept.ref)


async def test_empty_keystore_lists_nothing(adapter_env: AdapterEnv) -> None:
    assert [o async for o in adapter_env.client.list_keys()] == []


# -- lifecycle -------------------------------------------------------------------------------------


async def test_disable_enable_and_their_repeats(adapter_env: AdapterEnv) -> None:
    client, _ = adapter_env
    key = await client.ensure_key("mk-life", AES)
    by_alias = KeyRef(None, "mk-life")
    for ref in (key.ref, by_alias):
        for _ in range(2):
            off = await client.disable(ref)
            assert (off.state, off.key_id_in_keystore, off.raw_state) == (
                KeyState.DEACTIVATED,
                key.key_id_in_keystore,
                "Disabled",
            )
            seen = await client.get_key(ref)
            assert seen is not None and seen.state is KeyState.DEACTIVATED and not seen.destruction_pending
        for _ in range(2):
            on = await client.enable(ref)
            assert (on.state, on.managed_key_id) == (KeyState.ACTIVE, "mk-life")
            seen = await client.get_key(ref)
            assert seen is not None and seen.state is KeyState.ACTIVE


async def test_schedule_destruction_and_repeat(adapter_env: AdapterEnv) -> None:
    client, _ = adapter_env
    key = await client.ensure_key("mk-gone", AES)
    await client.disable(key.ref)
    before = datetime.now(UTC)
    first = await client.schedule_destruction(key.ref)
    assert (first.state, first.destruction_pending, first.raw_state) == (KeyState.DEACTIVATED, True, "PendingDeletion")
    assert first.pending_until is not None
    assert before + 7 * DAY - timedelta(seconds=5) <= first.pending_until <= datetime.now(UTC) + 7 * DAY
    again = await client.schedule_destruction(KeyRef(None, "mk-gone"))
    assert again.destruction_pending and again.state is KeyState.DEACTIVATED
    seen = await client.get_key(key.ref)
    assert seen is not None and seen.destruction_pending and seen.pending_until is not None


async def test_schedule_repeat_keeps_the_first_deletion_date(adapter_env: AdapterEnv) -> None:
    adapter_env.skip_on_moto("a second ScheduleKeyDeletion succeeds with a new date (gap 3)")
    client, fake = adapter_env
    key = await client.ensure_key("mk-date", AES)
    first = await client.schedule_destruction(key.ref)
    adapter_env.kms.clock.advance(86400)
    again = await client.schedule_destruction(key.ref)
    assert again.pending_until == first.pending_until
    assert adapter_env.statuses("ScheduleKeyDeletion") == [200, 400]  # KMSInvalidState, then re-read
    assert fake is not None and fake_key(fake, key.key_id_in_keystore)["PendingWindowInDays"] == 7


async def test_disable_of_a_key_pending_deletion_is_already_done(adapter_env: AdapterEnv) -> None:
    adapter_env.skip_on_moto("DisableKey on a PendingDeletion key succeeds and cancels the deletion (gap 2)")
    client, _ = adapter_env
    key = await client.ensure_key("mk-off", AES)
    scheduled = await client.schedule_destruction(key.ref)
    off = await client.disable(key.ref)
    assert off.destruction_pending and off.pending_until == scheduled.pending_until
    assert adapter_env.statuses("DisableKey") == [400]


async def test_enable_after_schedule_is_a_conflict(adapter_env: AdapterEnv) -> None:
    adapter_env.skip_on_moto("EnableKey on a PendingDeletion key succeeds (gap 2)")
    client, _ = adapter_env
    key = await client.ensure_key("mk-late", AES)
    await client.schedule_destruction(key.ref)
    with pytest.raises(Conflict) as caught:
        await client.enable(key.ref)
    assert caught.value.provider_code == "KMSInvalidStateException" and not caught.value.transient
    assert adapter_env.count("EnableKey") == 1 and adapter_env.waits.seconds == []
    seen = await client.get_key(key.ref)
    assert seen is not None and seen.destruction_pending


async def test_unknown_keys(adapter_env: AdapterEnv) -> None:
    client, _ = adapter_env
    unknown = "1234abcd-12ab-34cd-56ef-1234567890ab"
    assert await client.get_key(KeyRef(unknown)) is None
    assert await client.get_key(KeyRef(None, "mk-nobody")) is None
    with pytest.raises(NotFound):
        await client.enable(KeyRef(unknown))
    with pytest.raises(NotFound):
        await client.disable(KeyRef(None, "mk-nobody"))
    with pytest.raises(NotFound):
        await client.schedule_destruction(KeyRef(None, "mk-nobody"))
    with pytest.raises(InvalidRequest, match="needs a key id or a managed key id"):
        await client.get_key(KeyRef(None))


# -- health ----------------------------------------------------------------------------------------


async def test_validate_ok(adapter_env: AdapterEnv) -> None:
    health = await adapter_env.client.validate()
    assert health.status is HealthStatus.OK


async def test_validate_closed_port_is_not_responding(unused_tcp_port: int) -> None:
    waits = Waits()
    async with client_for(f"http://127.0.0.1:{unused_tcp_port}", MOTO_CREDENTIALS, waits) as client:
        health = await client.validate()
    assert health.status is HealthStatus.NOT_RESPONDING and "cannot connect" in health.message
    assert waits.seconds == [0.5, 1.0]  # three attempts


async def test_validate_bad_credentials_is_a_configuration_error(adapter_env: AdapterEnv) -> None:
    adapter_env.skip_on_moto("signatures and access keys are not checked")
    fake = adapter_env.kms
    wrong_secret = {**adapter_env.credentials, "secret_access_key": "not-the-secret-at-all"}
    unknown_key = {"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "whatever-secret"}
    for credentials, code in (
        (wrong_secret, "InvalidSignatureException"),
        (unknown_key, "UnrecognizedClientException"),
    ):
        fake.log.clear()
        async with client_for(adapter_env.url, credentials, adapter_env.waits) as client:
            health = await client.validate()
            assert health.status is HealthStatus.CONFIGURATION_ERROR and code in health.message
            assert "not-the-secret-at-all" not in health.message
            with pytest.raises(AuthError) as caught:
                await client.get_key(KeyRef(None, "mk-x"))
            assert not caught.value.refresh
            assert client.transport.auth_refreshes == 0
        assert adapter_env.count("ListKeys") == 1  # static credentials: a refusal is not replayed


# -- auth ------------------------------------------------------------------------------------------


@pytest.fixture
def aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> pytest.MonkeyPatch:
    """botocore's default chain limited to the environment (no files, no metadata service)."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_CREDENTIAL_EXPIRATION",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


async def test_default_chain_rotated_credentials_refresh_once(
    adapter_env: AdapterEnv, aws_environment: pytest.MonkeyPatch
) -> None:
    adapter_env.skip_on_moto("signatures are not checked, so rotated credentials are never refused")
    fake = adapter_env.kms
    aws_environment.setenv("AWS_ACCESS_KEY_ID", fake.access_key_id)
    aws_environment.setenv("AWS_SECRET_ACCESS_KEY", fake.secret_access_key)
    async with client_for(adapter_env.url, None, adapter_env.waits) as client:
        assert client.credentials.from_chain
        key = await client.ensure_key("mk-chain", AES)
        # The secret is rotated (as a role's session credentials are): the fake and the environment agree.
        fake.secret_access_key = "rotated-secret-" + "x" * 25
        aws_environment.setenv("AWS_SECRET_ACCESS_KEY", fake.secret_access_key)
        fake.log.clear()
        seen = await client.get_key(key.ref)
        assert seen is not None and seen.state is KeyState.ACTIVE
        assert adapter_env.statuses("DescribeKey") == [400, 200]
        assert client.transport.auth_refreshes == 1 and adapter_env.waits.seconds == []
        assert (await client.get_key(key.ref)) == seen  # the new credentials stay
        assert client.transport.auth_refreshes == 1


async def test_default_chain_refused_twice_is_an_auth_error(
    adapter_env: AdapterEnv, aws_environment: pytest.MonkeyPatch
) -> None:
    adapter_env.skip_on_moto("signatures are not checked")
    fake = adapter_env.kms
    aws_environment.setenv("AWS_ACCESS_KEY_ID", fake.access_key_id)
    aws_environment.setenv("AWS_SECRET_ACCESS_KEY", "stale-secret-value")
    async with client_for(adapter_env.url, None, adapter_env.waits) as client:
        with pytest.raises(AuthError) as caught:
            await client.get_key(KeyRef(None, "mk-x"))
        assert caught.value.provider_code == "InvalidSignatureException"
        assert "stale-secret-value" not in str(caught.value) + repr(caught.value)
        assert adapter_env.statuses("DescribeKey") == [400, 400]  # refreshed exactly once
        health = await client.validate()
        assert health.status is HealthStatus.CONFIGURATION_ERROR


async def test_empty_default_chain_is_a_configuration_error(aws_environment: pytest.MonkeyPatch) -> None:
    async with client_for("http://127.0.0.1:9", None, Waits()) as client:
        health = await client.validate()
    assert health.status is HealthStatus.CONFIGURATION_ERROR
    assert "no AWS credentials found" in health.message


async def test_session_token_is_sent_and_signed(adapter_env: AdapterEnv) -> None:
    adapter_env.skip_on_moto("signatures are not checked, so a wrongly signed token would pass unnoticed")
    credentials = {**adapter_env.credentials, "session_token": "FwoGZXIvYXdzEXAMPLETOKEN"}
    async with client_for(adapter_env.url, credentials, adapter_env.waits) as client:
        assert (await client.validate()).ok
        headers = client.signer.sign(
            {"X-Amz-Target": "TrentService.ListKeys"}, "POST", b"{}", await client.credentials.current()
        )
        assert headers["X-Amz-Security-Token"] == "FwoGZXIvYXdzEXAMPLETOKEN"
        assert "x-amz-security-token" in headers["Authorization"]
        assert "FwoGZXIvYXdzEXAMPLETOKEN" not in repr(client) + repr(client.signer) + repr(client.credentials)


# -- retries and faults ----------------------------------------------------------------------------


async def test_unavailable_then_success_is_retried(adapter_env: AdapterEnv) -> None:
    adapter_env.require_fake(NEEDS_FAULTS)
    client, _ = adapter_env
    key = await client.ensure_key("mk-503", AES)
    adapter_env.kms.log.clear()
    adapter_env.faults({"operation": "DescribeKey", "sequence": ["error_503", "error_500", "ok"]})
    assert await client.get_key(key.ref) == key
    assert adapter_env.statuses("DescribeKey") == [503, 500, 200]
    assert adapter_env.waits.seconds == [0.5, 1.0]
    assert client.transport.stats.retries == 2 and client.transport.stats.throttles == 0


async def test_retries_are_bounded(adapter_env: AdapterEnv) -> None:
    adapter_env.require_fake(NEEDS_FAULTS)
    client, _ = adapter_env
    key = await client.ensure_key("mk-down", AES)
    adapter_env.kms.log.clear()
    adapter_env.faults({"operation": "EnableKey", "sequence": ["error_503"] * 5})
    with pytest.raises(Unavailable) as caught:
        await client.enable(key.ref)
    assert caught.value.provider_code == "ServiceUnavailable"
    assert adapter_env.count("EnableKey") == 3 and adapter_env.waits.seconds == [0.5, 1.0]


async def test_throttling_is_retried_with_backoff(adapter_env: AdapterEnv) -> None:
    adapter_env.require_fake(NEEDS_FAULTS)
    client, _ = adapter_env
    key = await client.ensure_key("mk-throttle", AES)
    adapter_env.kms.log.clear()
    adapter_env.faults({"operation": "DisableKey", "sequence": ["throttle", "throttle", "ok"]})
    off = await client.disable(key.ref)
    assert off.state is KeyState.DEACTIVATED
    assert adapter_env.statuses("DisableKey") == [400, 400, 200]  # AWS throttles with HTTP 400
    assert adapter_env.waits.seconds == [0.5, 1.0]  # no Retry-After from AWS: plain backoff
    assert client.transport.stats.throttles == 2


async def test_permanent_errors_are_not_retried(adapter_env: AdapterEnv) -> None:
    client, _ = adapter_env
    adapter_env.require_fake("the request log counts attempts (and moto answers a bad ARN with NotFound)")
    with pytest.raises(InvalidRequest) as caught:
        await client.get_key(KeyRef("arn:aws:kms:nowhere"))
    assert caught.value.provider_code == "InvalidArnException"
    assert adapter_env.count("DescribeKey") == 1 and adapter_env.waits.seconds == []


async def test_truncated_answer_is_retried(adapter_env: AdapterEnv) -> None:
    adapter_env.require_fake(NEEDS_FAULTS)
    client, _ = adapter_env
    key = await client.ensure_key("mk-cut", AES)
    adapter_env.kms.log.clear()
    adapter_env.faults({"operation": "DescribeKey", "sequence": ["truncate", "ok"]})
    assert await client.get_key(key.ref) == key
    assert adapter_env.count("DescribeKey") == 2 and adapter_env.waits.seconds == [0.5]


async def test_html_answers(adapter_env: AdapterEnv) -> None:
    adapter_env.require_fake(NEEDS_FAULTS)
    client, _ = adapter_env
    key = await client.ensure_key("mk-html", AES)
    adapter_env.kms.log.clear()
    adapter_env.faults({"operation": "DescribeKey", "sequence": ["non_json"]})
    with pytest.raises(MalformedResponse) as caught:  # a 200 HTML page: nonsense, not retried
        await client.get_key(key.ref)
    assert "not JSON" in caught.value.message and "Bad Gateway" in caught.value.message
    assert adapter_env.count("DescribeKey") == 1
    adapter_env.faults({"operation": "DescribeKey", "sequence": [{"kind": "non_json", "status": 502}, "ok"]})
    assert await client.get_key(key.ref) == key  # a 502 HTML page from a proxy: unavailable, retried
    assert adapter_env.statuses("DescribeKey")[1:] == [502, 200]


# -- destruction whose answer is in doubt ------------------------------------------------------------


async def test_schedule_answer_lost_is_read_back_not_sent_again(adapter_env: AdapterEnv) -> None:
    """KMS acted but its answer was cut short: one ScheduleKeyDeletion, then a read says it is done."""
    adapter_env.require_fake(NEEDS_FAULTS)
    client, _ = adapter_env
    key = await client.ensure_key("mk-cut-schedule", AES)
    adapter_env.kms.log.clear()
    adapter_env.faults({"operation": "ScheduleKeyDeletion", "sequence": ["truncate"]})
    scheduled = await client.schedule_destruction(key.ref)
    assert adapter_env.statuses("ScheduleKeyDeletion") == [200]  # carried out once, never refused as a repeat
    assert adapter_env.count("DescribeKey") == 1
    assert (scheduled.state, scheduled.destruction_pending, scheduled.raw_state) == (
        KeyState.DEACTIVATED,
        True,
        "PendingDeletion",
    )
    assert scheduled.pending_until is not None
    assert scheduled == await client.get_key(key.ref)
    assert adapter_env.waits.seconds == [0.5]


async def test_schedule_answer_lost_and_its_read_failing_once(adapter_env: AdapterEnv) -> None:
    adapter_env.require_fake(NEEDS_FAULTS)
    client, _ = adapter_env
    key = await client.ensure_key("mk-cut-twice", AES)
    adapter_env.kms.log.clear()
    adapter_env.faults(
        {"operation": "ScheduleKeyDeletion", "sequence": ["truncate"]},
        {"operation": "DescribeKey", "sequence": ["error_500"]},
    )
    scheduled = await client.schedule_destruction(key.ref)
    assert scheduled.destruction_pending
    assert adapter_env.statuses("ScheduleKeyDeletion") == [200]
    assert adapter_env.statuses("DescribeKey") == [500, 200]


@pytest.mark.parametrize("fault", ["error_503", "drop"])
async def test_schedule_in_doubt_but_not_done_is_sent_again_after_a_read(adapter_env: AdapterEnv, fault: str) -> None:
    """The request may have reached KMS (a 5xx, a dropped connection): read first, then send again."""
    adapter_env.require_fake(NEEDS_FAULTS)
    client, fake = adapter_env
    key = await client.ensure_key("mk-resend", AES)
    adapter_env.kms.log.clear()
    adapter_env.faults({"operation": "ScheduleKeyDeletion", "sequence": [fault]})
    scheduled = await client.schedule_destruction(key.ref)
    assert scheduled.destruction_pending and scheduled.raw_state == "PendingDeletion"
    assert adapter_env.count("ScheduleKeyDeletion") == 2 and adapter_env.statuses("ScheduleKeyDeletion")[1] == 200
    assert [e.operation for e in adapter_env.kms.log.entries] == [
        "ScheduleKeyDeletion",
        "DescribeKey",  # still Enabled: the first request did nothing
        "ScheduleKeyDeletion",
    ]
    assert fake is not None and fake_key(fake, key.key_id_in_keystore)["KeyState"] == "PendingDeletion"


async def test_throttled_schedule_is_sent_again_without_a_read(adapter_env: AdapterEnv) -> None:
    adapter_env.require_fake(NEEDS_FAULTS)
    client, _ = adapter_env
    key = await client.ensure_key("mk-throttled-schedule", AES)
    adapter_env.kms.log.clear()
    adapter_env.faults({"operation": "ScheduleKeyDeletion", "sequence": ["throttle"]})
    scheduled = await client.schedule_destruction(key.ref)
    assert scheduled.destruction_pending
    assert adapter_env.statuses("ScheduleKeyDeletion") == [400, 200]  # ThrottlingException: not processed
    assert adapter_env.count("DescribeKey") == 0
    assert client.transport.stats.throttles == 1 and adapter_env.waits.seconds == [0.5]


async def test_schedule_in_doubt_every_time_gives_up_after_the_policy(adapter_env: AdapterEnv) -> None:
    adapter_env.require_fake(NEEDS_FAULTS)
    client, _ = adapter_env
    key = await client.ensure_key("mk-schedule-down", AES)
    adapter_env.kms.log.clear()
    adapter_env.faults({"operation": "ScheduleKeyDeletion", "sequence": ["error_503"] * 3})
    with pytest.raises(Unavailable):
        await client.schedule_destruction(key.ref)
    # three attempts (the policy's), each after the first preceded by a read; a last read on giving up
    assert adapter_env.count("ScheduleKeyDeletion") == 3 and adapter_env.count("DescribeKey") == 3
    assert adapter_env.waits.seconds == [0.5, 1.0]
    seen = await client.get_key(key.ref)
    assert seen is not None and seen.state is KeyState.ACTIVE


# -- the orphan search of an in-doubt create -------------------------------------------------------


async def test_in_doubt_create_adopts_the_orphan_despite_faults_in_the_search(adapter_env: AdapterEnv) -> None:
    """The search skips keys a keyorch alias names and survives faults on ListKeys/ListResourceTags."""
    adapter_env.require_fake(NEEDS_FAULTS)
    client, fake = adapter_env
    for i in range(3):
        await client.ensure_key(f"mk-owned-{i}", AES)  # aliased: never a tag check
    await adapter_env.raw("CreateKey", {})  # someone else's key: no alias, no tag
    adapter_env.faults({"operation": "CreateKey", "sequence": ["truncate"]})
    with pytest.raises(ProviderError):
        await client.ensure_key("mk-orphan", AES)
    adapter_env.kms.log.clear()
    adapter_env.faults(
        {"operation": "ListKeys", "sequence": ["truncate"]},
        {"operation": "ListResourceTags", "sequence": ["error_503"]},
    )
    adopted = await client.ensure_key("mk-orphan", AES, in_doubt=True)
    assert (adopted.managed_key_id, adopted.state, adopted.destruction_pending) == ("mk-orphan", KeyState.ACTIVE, False)
    assert adapter_env.count("CreateKey") == 0
    assert adapter_env.count("ListAliases") == 1 and adapter_env.statuses("ListKeys") == [200, 200]
    assert adapter_env.count("ListResourceTags") == 3  # the foreign key and the orphan; one of them twice
    assert await adapter_env.key_count() == 5
    assert fake is not None and fake_key(fake, adopted.key_id_in_keystore)["Aliases"] == [ALIAS_PREFIX + "mk-orphan"]
    assert adopted == await client.get_key(KeyRef(None, "mk-orphan"))


async def test_in_doubt_create_adopts_neither_another_managed_keys_nor_a_retired_key(adapter_env: AdapterEnv) -> None:
    client, fake = adapter_env
    tags = [{"TagKey": MANAGED_KEY_TAG, "TagValue": "mk-x"}]
    claimed = (await adapter_env.raw("CreateKey", {"Tags": tags}))["KeyMetadata"]["KeyId"]
    await adapter_env.raw("CreateAlias", {"AliasName": ALIAS_PREFIX + "mk-y", "TargetKeyId": claimed})
    retired = (await adapter_env.raw("CreateKey", {"Tags": tags}))["KeyMetadata"]["KeyId"]
    await adapter_env.raw("ScheduleKeyDeletion", {"KeyId": retired, "PendingWindowInDays": 7})
    if fake is not None:
        fake.log.clear()
    made = await client.ensure_key("mk-x", AES, in_doubt=True)
    assert made.key_id_in_keystore not in (claimed, retired) and made.state is KeyState.ACTIVE
    assert await adapter_env.key_count() == 3
    if fake is not None:
        assert adapter_env.count("ListResourceTags") == 1  # only the retired key: mk-y's alias claims the other
        assert adapter_env.count("CreateKey") == 1


async def test_in_doubt_create_finds_its_alias_in_the_listing(adapter_env: AdapterEnv) -> None:
    """DescribeKey on the alias missed the key (eventual consistency): the alias list names it, no create."""
    client, _ = adapter_env
    made = await client.ensure_key("mk-lagging", AES)
    late = adapter_env.another_client()
    miss_first_describe(late)
    try:
        found = await late.ensure_key("mk-lagging", AES, in_doubt=True)
    finally:
        await late.aclose()
    assert found.key_id_in_keystore == made.key_id_in_keystore and not found.destruction_pending
    assert await adapter_env.key_count() == 1
    if adapter_env.fake is not None:
        assert adapter_env.count("CreateKey") == 1 and adapter_env.count("ListResourceTags") == 0


async def test_orphan_search_checks_tags_a_chunk_at_a_time(adapter_env: AdapterEnv) -> None:
    """At most ``max_concurrency`` tag checks at once, and none after the chunk that found the orphan."""
    adapter_env.require_fake(NEEDS_FAULTS)
    client, _ = adapter_env
    adapter_env.faults({"operation": "CreateKey", "sequence": ["truncate"]})
    with pytest.raises(ProviderError):
        await client.ensure_key("mk-first", AES)
    for _ in range(5):
        await adapter_env.raw("CreateKey", {})
    adapter_env.kms.log.clear()
    narrow = adapter_env.another_client(max_concurrency=2)
    try:
        adopted = await narrow.ensure_key("mk-first", AES, in_doubt=True)
    finally:
        await narrow.aclose()
    assert adopted.managed_key_id == "mk-first" and adapter_env.count("CreateKey") == 0
    assert adapter_env.count("ListResourceTags") == 2  # the orphan is listed first: one chunk of two
