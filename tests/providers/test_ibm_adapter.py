"""IBM Key Protect adapter: contract cases against the real Key Protect fake over loopback.

Create (twice → one key, and a replay after a lost answer → one key), list across pages, enable,
disable, schedule destruction, repeats, not found, invalid states, the state mapping of
docs/providers.md §4.3, and the deletion refusals (registrations, retention, Key Protect's dual
authorization) surfaced as ``Conflict`` with the provider's reason.

``adapter_env`` yields ``(client, fake)``; the client's retry policy sleeps through :class:`Sleeps`,
which records each wait and moves the fake's clock instead of sleeping.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from keyorch.domain.models import CredentialsMode, DriftPolicy, Keystore, KeystoreStatus, KeystoreType
from keyorch.domain.states import KeyState
from keyorch.fakes.base import RunningFake, start_fake
from keyorch.fakes.faults import ProviderFaults
from keyorch.fakes.ibm import KeyProtectFake
from keyorch.fakes.ibm_state import Policy
from keyorch.providers.base import KeyRef, KeySpec, factory_for
from keyorch.providers.errors import Conflict, InvalidRequest, NotFound
from keyorch.providers.ibm import KeyProtectClient, KeyProtectFactory, create_client
from keyorch.providers.retry import RetryPolicy

APIKEY_GRANT = "urn:ibm:params:oauth:grant-type:apikey"
SPEC = KeySpec(algorithm="aes", size=256, name="payments-key", labels={"keyorch-label": "payments"})


@dataclass
class Sleeps:
    """The retry policy's sleep: records each wait and moves the fake's clock by it."""

    waits: list[float] = field(default_factory=list)
    fake: KeyProtectFake | None = None

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.fake is not None:
            self.fake.clock.advance(seconds)
        await asyncio.sleep(0)


def keystore_record(endpoint: str, **settings: Any) -> Keystore:
    now = datetime.now(UTC)
    return Keystore(
        id="ks-ibm",
        vault_id="v-1",
        name="kp-test",
        type=KeystoreType.IBM_KEY_PROTECT,
        settings={"endpoint": endpoint, "allow_insecure_http": True, **settings},
        credentials_mode=CredentialsMode.STORED,
        drift_policy=DriftPolicy.FLAG,
        status=KeystoreStatus.CONNECTED,
        created_at=now,
        updated_at=now,
    )


def fast_retry(sleeps: Sleeps, attempts: int = 4) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=attempts,
        base_delay_seconds=0.05,
        max_delay_seconds=1.0,
        total_timeout_seconds=600.0,
        sleep=sleeps,
    )


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def running() -> AsyncIterator[RunningFake]:
    started = await start_fake(KeyProtectFake(), "127.0.0.1", 0)
    try:
        yield started
    finally:
        await started.stop()


MakeClient = Callable[..., KeyProtectClient]


@pytest.fixture
async def make_client(running: RunningFake, sleeps: Sleeps) -> AsyncIterator[MakeClient]:
    """Build more clients against the running fake (other settings or credentials); all closed at the end."""
    fake = running.fake
    assert isinstance(fake, KeyProtectFake)
    sleeps.fake = fake
    made: list[KeyProtectClient] = []

    def make(credentials: dict[str, Any] | None = None, *, endpoint: str | None = None, **kw: Any) -> KeyProtectClient:
        settings = {"instance_id": fake.instance_id, "rate_per_second": 0, **kw.pop("settings", {})}
        record = keystore_record(endpoint or running.url, **settings)
        creds = fake.credentials(running.url) if credentials is None else credentials
        client = create_client(record, creds, retry=kw.pop("retry", fast_retry(sleeps)), **kw)
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            await client.aclose()


@pytest.fixture
async def adapter_env(make_client: MakeClient, running: RunningFake) -> tuple[KeyProtectClient, KeyProtectFake]:
    fake = running.fake
    assert isinstance(fake, KeyProtectFake)
    return make_client(), fake


def faults(fake: KeyProtectFake, *rules: dict[str, Any]) -> None:
    fake.faults.configure(ProviderFaults.model_validate({"rules": list(rules)}))


async def second_user_token(url: str, user: str = "IBMid-approver") -> str:
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/_fake/ibm/apikeys", json={"user": user}) as response:
            apikey = (await response.json())["apikey"]
        form = {"grant_type": APIKEY_GRANT, "apikey": apikey}
        async with session.post(url + "/identity/token", data=form) as response:
            return str((await response.json())["access_token"])


async def kp_call(url: str, fake: KeyProtectFake, token: str, method: str, path: str) -> int:
    headers = {"Authorization": f"Bearer {token}", "bluemix-instance": fake.instance_id}
    async with aiohttp.ClientSession() as session, session.request(method, url + path, headers=headers) as response:
        await response.read()
        return response.status


async def register(url: str, key_id: str, crn: str, *, prevent: bool = False) -> None:
    doc = {"keyId": key_id, "resourceCrn": crn, "preventKeyDeletion": prevent}
    async with aiohttp.ClientSession() as session, session.post(url + "/_fake/ibm/registrations", json=doc) as r:
        assert r.status == 201, await r.text()


# -- registration and settings ------------------------------------------------------------------
def test_factory_is_registered_and_checks_settings() -> None:
    assert isinstance(factory_for(KeystoreType.IBM_KEY_PROTECT), KeyProtectFactory)
    factory = KeyProtectFactory()
    factory.validate_settings(keystore_record("http://127.0.0.1:9", instance_id="abc-123"))
    record = keystore_record("http://127.0.0.1:9", instance_id="abc-123")
    for bad in ({"instance_id": ""}, {"page_size": 0}, {"page_size": 5001}, {"endpoint": "http://example.com"}):
        broken = Keystore(**{**record.__dict__, "settings": {**record.settings, **bad}})
        with pytest.raises(Exception, match=r"instance_id|page_size|plain HTTP|endpoint"):
            factory.validate_settings(broken)


# -- create -------------------------------------------------------------------------------------
async def test_ensure_key_twice_makes_one_key(adapter_env: tuple[KeyProtectClient, KeyProtectFake]) -> None:
    client, fake = adapter_env
    managed = str(uuid.uuid4())
    first = await client.ensure_key(managed, SPEC)
    second = await client.ensure_key(managed, SPEC)
    assert first.key_id_in_keystore == second.key_id_in_keystore
    assert first.managed_key_id == managed and first.state is KeyState.ACTIVE
    keys = fake.state_snapshot()["keys"]
    assert len(keys) == 1
    assert keys[0]["aliases"] == [f"keyorch-{managed}"] and keys[0]["extractable"] is False
    assert keys[0]["name"] == "payments-key"
    assert fake.log.counts["CreateKey"] == 1 and fake.log.counts["GetKeyMetadata"] == 2


async def test_create_replayed_after_a_lost_answer_is_one_key(
    adapter_env: tuple[KeyProtectClient, KeyProtectFake],
) -> None:
    """The first create succeeds but its answer is cut short; the retry meets the alias and reads it."""
    client, fake = adapter_env
    faults(fake, {"operation": "CreateKey", "sequence": ["truncate"]})
    managed = str(uuid.uuid4())
    observation = await client.ensure_key(managed, SPEC)
    assert fake.log.counts["CreateKey"] == 2  # the replay got 409 KEY_ALIAS_NOT_UNIQUE_ERR
    assert len(fake.state_snapshot()["keys"]) == 1
    assert observation.key_id_in_keystore == fake.state_snapshot()["keys"][0]["id"]


async def test_an_action_whose_answer_was_lost_is_read_not_resent(
    adapter_env: tuple[KeyProtectClient, KeyProtectFake],
) -> None:
    """Key Protect refuses a repeated action with 409; after a cut-short answer the adapter reads the
    key, finds the action done, and sends nothing more (the chaos test counts any such refusal)."""
    client, fake = adapter_env
    managed = str(uuid.uuid4())
    created = await client.ensure_key(managed, SPEC)
    ref = KeyRef(created.key_id_in_keystore, managed)
    for action, operation, state in (
        ("disable", "DisableKey", KeyState.DEACTIVATED),
        ("enable", "EnableKey", KeyState.ACTIVE),
    ):
        fake.clock.advance(31)  # past Key Protect's 30 s pause between two actions on a key
        faults(fake, {"operation": operation, "sequence": ["truncate"]})
        observation = await getattr(client, action)(ref)
        assert observation.state is state
        assert fake.log.counts[operation] == 1, [(e.operation, e.status, e.fault) for e in fake.log.entries]
    assert not [e for e in fake.log.entries if e.status == 409]


async def test_a_delete_whose_answer_was_lost_is_read_not_resent(
    adapter_env: tuple[KeyProtectClient, KeyProtectFake],
) -> None:
    client, fake = adapter_env
    managed = str(uuid.uuid4())
    key = await client.ensure_key(managed, SPEC)
    fake.clock.advance(31)
    await client.disable(key.ref)
    faults(fake, {"operation": "DeleteKey", "sequence": ["truncate"]})
    pending = await client.schedule_destruction(key.ref)
    assert pending.destruction_pending
    assert fake.log.counts["DeleteKey"] == 1
    assert not [e for e in fake.log.entries if e.status == 409]


async def test_create_after_a_503_is_retried(adapter_env: tuple[KeyProtectClient, KeyProtectFake]) -> None:
    client, fake = adapter_env
    faults(fake, {"operation": "CreateKey", "sequence": ["error_503", "ok"]})
    await client.ensure_key(str(uuid.uuid4()), SPEC)
    assert fake.log.counts["CreateKey"] == 2 and len(fake.state_snapshot()["keys"]) == 1


async def test_create_refuses_what_key_protect_cannot_generate(
    adapter_env: tuple[KeyProtectClient, KeyProtectFake],
) -> None:
    client, fake = adapter_env
    for algorithm, size in (("aes", 128), ("rsa", 2048)):
        with pytest.raises(InvalidRequest, match="256-bit AES"):
            await client.ensure_key(str(uuid.uuid4()), KeySpec(algorithm, size, "k"))
    with pytest.raises(InvalidRequest, match="alias"):
        await client.ensure_key("x" * 90, SPEC)
    assert fake.log.counts["CreateKey"] == 0


async def test_long_or_short_names_are_made_acceptable(adapter_env: tuple[KeyProtectClient, KeyProtectFake]) -> None:
    client, fake = adapter_env
    await client.ensure_key("m1", KeySpec("aes", 256, "n" * 120))
    await client.ensure_key("m2", KeySpec("aes", 256, "n"))
    names = sorted(k["name"] for k in fake.state_snapshot()["keys"])
    assert names == ["keyorch-m2", "n" * 90]


# -- list ---------------------------------------------------------------------------------------
async def test_list_across_pages(make_client: MakeClient, running: RunningFake) -> None:
    fake = running.fake
    assert isinstance(fake, KeyProtectFake)
    client = make_client(settings={"page_size": 3})
    managed = [f"m-{i}" for i in range(6)]
    for m in managed:
        await client.ensure_key(m, SPEC)
    foreign = fake.state.create_key({"name": "not-ours", "extractable": False}, "someone", "default", overrides=False)
    pending = await client.ensure_key("m-pending", SPEC)
    await client.schedule_destruction(pending.ref)
    fake.log.clear()
    listed = [o async for o in client.list_keys()]
    assert len(listed) == 8  # 6 + foreign + pending: pages of 3, 3, 2
    assert fake.log.counts["ListKeys"] == 3
    by_managed = {o.managed_key_id: o for o in listed}
    assert set(by_managed) == {*managed, "m-pending", None}
    assert by_managed[None].key_id_in_keystore == foreign.id
    assert by_managed["m-pending"].destruction_pending and by_managed["m-pending"].state is KeyState.DEACTIVATED
    assert len({o.key_id_in_keystore for o in listed}) == 8


async def test_list_of_an_exact_number_of_pages_costs_one_more_request(
    make_client: MakeClient, running: RunningFake
) -> None:
    fake = running.fake
    assert isinstance(fake, KeyProtectFake)
    client = make_client(settings={"page_size": 2})
    for i in range(4):
        await client.ensure_key(f"m-{i}", SPEC)
    fake.log.clear()
    assert len([o async for o in client.list_keys()]) == 4
    assert fake.log.counts["ListKeys"] == 3  # 2 + 2 + an empty page


async def test_empty_instance_lists_nothing(adapter_env: tuple[KeyProtectClient, KeyProtectFake]) -> None:
    client, fake = adapter_env
    assert [o async for o in client.list_keys()] == []
    assert fake.log.counts["ListKeys"] == 1


# -- enable / disable ---------------------------------------------------------------------------
async def test_disable_enable_and_repeats(adapter_env: tuple[KeyProtectClient, KeyProtectFake]) -> None:
    client, fake = adapter_env
    key = await client.ensure_key("m-1", SPEC)
    off = await client.disable(key.ref)
    assert off.state is KeyState.DEACTIVATED and off.raw_state.startswith("2")
    again = await client.disable(key.ref)  # Key Protect: 409 KEY_ACTION_INVALID_STATE_ERR → re-read → done
    assert again.state is KeyState.DEACTIVATED
    assert fake.log.counts["DisableKey"] == 2
    assert (await client.get_key(key.ref)) == again
    fake.clock.advance(31)  # Key Protect's 30 s between actions
    on = await client.enable(key.ref)
    assert on.state is KeyState.ACTIVE
    assert (await client.enable(key.ref)).state is KeyState.ACTIVE
    observed = await client.get_key(key.ref)
    assert observed is not None and observed.state is KeyState.ACTIVE


async def test_actions_by_managed_id_alone(adapter_env: tuple[KeyProtectClient, KeyProtectFake]) -> None:
    """Without the key id (a crash before it was recorded), the alias finds the key."""
    client, fake = adapter_env
    key = await client.ensure_key("m-1", SPEC)
    ref = KeyRef(None, "m-1")
    assert (await client.disable(ref)).key_id_in_keystore == key.key_id_in_keystore
    fake.log.clear()
    assert (await client.disable(ref)).state is KeyState.DEACTIVATED
    assert fake.log.counts["DisableKey"] == 0  # already disabled: seen on the read, nothing sent
    with pytest.raises(NotFound):
        await client.enable(KeyRef(None, "m-unknown"))


async def test_enable_too_soon_after_disable_waits_and_succeeds(
    adapter_env: tuple[KeyProtectClient, KeyProtectFake], sleeps: Sleeps
) -> None:
    client, fake = adapter_env
    key = await client.ensure_key("m-1", SPEC)
    await client.disable(key.ref)
    on = await client.enable(key.ref)  # 409 REQ_TOO_EARLY_ERR → Throttled(retry_after=30) → retried
    assert on.state is KeyState.ACTIVE
    assert fake.log.counts["EnableKey"] == 2
    assert sleeps.waits == [30.0]
    assert client.transport.stats.throttles == 1


async def test_enable_too_soon_surfaces_as_throttled_when_retries_run_out(
    make_client: MakeClient, running: RunningFake, sleeps: Sleeps
) -> None:
    from keyorch.providers.errors import Throttled

    client = make_client(retry=fast_retry(sleeps, attempts=1))
    key = await client.ensure_key("m-1", SPEC)
    await client.disable(key.ref)
    with pytest.raises(Throttled, match="REQ_TOO_EARLY_ERR") as caught:
        await client.enable(key.ref)
    assert caught.value.retry_after == 30.0 and caught.value.transient


# -- schedule destruction -----------------------------------------------------------------------
async def test_schedule_destruction_and_repeat(adapter_env: tuple[KeyProtectClient, KeyProtectFake]) -> None:
    client, fake = adapter_env
    key = await client.ensure_key("m-1", SPEC)
    await client.disable(key.ref)
    before = fake.clock.now()
    pending = await client.schedule_destruction(key.ref)
    assert pending.state is KeyState.DEACTIVATED and pending.destruction_pending
    assert pending.pending_until is not None
    assert abs(pending.pending_until - (before + timedelta(days=30))) < timedelta(seconds=5)
    assert fake.log.counts["DeleteKey"] == 1 and fake.log.counts["GetKeyMetadata"] == 1  # representation
    again = await client.schedule_destruction(key.ref)  # 410 KEY_DELETED_ERR → re-read
    assert again == pending
    by_alias = await client.schedule_destruction(KeyRef(None, "m-1"))
    assert by_alias.destruction_pending and fake.log.counts["DeleteKey"] == 2
    observed = await client.get_key(key.ref)
    assert observed == pending


async def test_enable_after_schedule_is_a_conflict_and_disable_is_done(
    adapter_env: tuple[KeyProtectClient, KeyProtectFake],
) -> None:
    client, fake = adapter_env
    key = await client.ensure_key("m-1", SPEC)
    await client.schedule_destruction(key.ref)
    fake.clock.advance(31)
    with pytest.raises(Conflict, match="KEY_ACTION_INVALID_STATE_ERR") as caught:
        await client.enable(key.ref)
    assert not caught.value.transient and fake.log.counts["EnableKey"] == 1
    disabled = await client.disable(key.ref)
    assert disabled.state is KeyState.DEACTIVATED and disabled.destruction_pending


async def test_force_state_mapping_through_the_window(adapter_env: tuple[KeyProtectClient, KeyProtectFake]) -> None:
    client, fake = adapter_env
    key = await client.ensure_key("m-1", SPEC)
    await client.schedule_destruction(key.ref)
    fake.clock.advance(31 * 86400)  # past the 30-day restore window: no longer undoable
    destroyed = await client.get_key(key.ref)
    assert destroyed is not None and destroyed.state is KeyState.DESTROYED and not destroyed.destruction_pending
    assert (await client.schedule_destruction(key.ref)).state is KeyState.DESTROYED
    fake.clock.advance(60 * 86400)  # purged automatically at 90 days
    assert await client.get_key(key.ref) is None
    assert await client.get_key(KeyRef(None, "m-1")) is None
    gone = await client.schedule_destruction(key.ref)  # 404: nothing left to destroy
    assert gone.state is KeyState.DESTROYED and gone.key_id_in_keystore == key.key_id_in_keystore


async def test_pre_active_and_expired_states(adapter_env: tuple[KeyProtectClient, KeyProtectFake]) -> None:
    client, fake = adapter_env
    key = await client.ensure_key("m-1", SPEC)
    stored = fake.state.keys[key.key_id_in_keystore]
    stored.state = 0
    observed = await client.get_key(key.ref)
    assert observed is not None and observed.state is KeyState.PRE_ACTIVE
    stored.state, stored.forced_deactivated = 1, True  # state 3: expired, for good
    observed = await client.get_key(key.ref)
    assert observed is not None and observed.state is KeyState.DEACTIVATED and observed.raw_state.startswith("3")
    fake.clock.advance(31)
    with pytest.raises(Conflict, match="KEY_ACTION_INVALID_STATE_ERR"):
        await client.enable(key.ref)
    assert (await client.disable(key.ref)).state is KeyState.DEACTIVATED


async def test_get_unknown_key_is_none(adapter_env: tuple[KeyProtectClient, KeyProtectFake]) -> None:
    client, fake = adapter_env
    assert await client.get_key(KeyRef(str(uuid.uuid4()), "m-x")) is None
    assert await client.get_key(KeyRef(None, "m-x")) is None
    with pytest.raises(InvalidRequest):
        await client.get_key(KeyRef(None, None))
    assert fake.log.counts["GetKeyMetadata"] == 2  # 404s are not retried


# -- refusals -----------------------------------------------------------------------------------
async def test_registrations_refuse_deletion_unless_forced(
    adapter_env: tuple[KeyProtectClient, KeyProtectFake], running: RunningFake
) -> None:
    client, fake = adapter_env
    key = await client.ensure_key("m-1", SPEC)
    await register(
        running.url, key.key_id_in_keystore, "crn:v1:bluemix:public:cloud-object-storage:global:a/1::bucket:b"
    )
    with pytest.raises(Conflict) as caught:
        await client.schedule_destruction(key.ref)
    assert caught.value.provider_code == "PROTECTED_RESOURCE_ERR"
    assert "PROTECTED_RESOURCE_ERR: Key is protecting one or more cloud resources" in caught.value.message
    assert "force" in caught.value.message
    assert fake.log.counts["DeleteKey"] == 1  # a refusal is not retried
    forced = await client.schedule_destruction(key.ref, force=True)
    assert forced.destruction_pending
    assert fake.state.registrations == []  # a forced delete drops them


async def test_retention_refuses_even_a_forced_deletion(
    adapter_env: tuple[KeyProtectClient, KeyProtectFake], running: RunningFake
) -> None:
    client, _ = adapter_env
    key = await client.ensure_key("m-1", SPEC)
    await register(running.url, key.key_id_in_keystore, "crn:v1:bluemix:public:cos:global:a/1::bucket:r", prevent=True)
    with pytest.raises(Conflict, match="PREV_KEY_DEL_ERR: The key cannot be deleted") as caught:
        await client.schedule_destruction(key.ref, force=True)
    assert "retention" in caught.value.message and caught.value.status == 409


async def test_key_protect_dual_authorization_needs_a_second_user(
    adapter_env: tuple[KeyProtectClient, KeyProtectFake], running: RunningFake
) -> None:
    client, fake = adapter_env
    now = fake.clock.now()
    fake.state.instance_policies["dualAuthDelete"] = Policy({"enabled": True}, "admin", now, "admin", now)
    key = await client.ensure_key("m-1", SPEC)
    with pytest.raises(Conflict) as caught:
        await client.schedule_destruction(key.ref)
    assert caught.value.provider_code == "AUTHORIZATIONS_NOT_MET"
    assert caught.value.message.count("AUTHORIZATIONS_NOT_MET") >= 1
    assert "different user" in caught.value.message and "setKeyForDeletion" in caught.value.message
    token = await second_user_token(running.url)
    path = f"/api/v2/keys/{key.key_id_in_keystore}/actions/setKeyForDeletion"
    assert await kp_call(running.url, fake, token, "POST", path) == 204
    deleted = await client.schedule_destruction(key.ref)
    assert deleted.destruction_pending
