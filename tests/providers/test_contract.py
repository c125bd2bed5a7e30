"""The keystore contract, written once, against all four adapters on their fakes over loopback.

Each case runs for AWS KMS, Azure Key Vault (a Managed HSM, for AES keys), Google Cloud KMS and IBM
Key Protect. The client comes from the registered factory; what differs between the providers is
data in ``contract_env.PROVIDERS``. Provider-specific behaviour (version handling, deletion
refusals, moto, malformed answers, exact backoff figures) stays in each provider's own test file.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from tests.providers.contract_env import PAGE_SIZE, PROVIDERS, ContractEnv, contract_env

from keyorch.domain.states import KeyState
from keyorch.providers.base import HealthStatus, KeyRef, KeySpec, Observation
from keyorch.providers.errors import AuthError, Conflict, NotFound

AES = KeySpec(algorithm="aes", size=256, name="contract-key", labels={"keyorch-label": "contract"})
SLACK = timedelta(seconds=5)


@pytest.fixture(params=PROVIDERS, ids=[p.name for p in PROVIDERS])
async def env(request: pytest.FixtureRequest) -> AsyncIterator[ContractEnv]:
    async with contract_env(request.param) as made:
        yield made


def managed_id() -> str:
    return f"mk-{uuid.uuid4().hex[:12]}"


async def created(env: ContractEnv) -> Observation:
    key = await env.client.ensure_key(managed_id(), AES)
    env.between_actions()
    return key


def assert_state(observed: Observation | None, key: Observation, state: KeyState, *, pending: bool = False) -> None:
    assert observed is not None
    assert (observed.key_id_in_keystore, observed.managed_key_id) == (key.key_id_in_keystore, key.managed_key_id)
    assert (observed.state, observed.destruction_pending) == (state, pending)


# -- create ------------------------------------------------------------------------------------------


async def test_create_twice_makes_one_key(env: ContractEnv) -> None:
    managed = managed_id()
    first = await env.client.ensure_key(managed, AES)
    creates = env.count(env.provider.create_operation)  # Google's first also makes the key ring
    second = await env.client.ensure_key(managed, AES)
    assert first.key_id_in_keystore == second.key_id_in_keystore
    assert (first.managed_key_id, first.state, first.destruction_pending) == (managed, KeyState.ACTIVE, False)
    assert env.keys_for(managed) == 1
    assert env.count(env.provider.create_operation) == creates  # the second found the key: no create sent
    assert await env.client.get_key(KeyRef(None, managed)) == second
    assert await env.client.get_key(first.ref) == second


# -- list --------------------------------------------------------------------------------------------


async def test_list_across_pages_returns_every_key(env: ContractEnv) -> None:
    made = {m: await env.client.ensure_key(m, AES) for m in (managed_id() for _ in range(2 * PAGE_SIZE + 1))}
    env.fake.log.clear()
    listed = [o async for o in env.client.list_keys()]
    assert {o.managed_key_id: o.key_id_in_keystore for o in listed} == {
        m: o.key_id_in_keystore for m, o in made.items()
    }
    assert len(listed) == len(made)
    assert all(o.state is KeyState.ACTIVE and not o.destruction_pending for o in listed)
    assert env.count(env.provider.list_operation) >= 3


async def test_empty_keystore_lists_nothing(env: ContractEnv) -> None:
    assert [o async for o in env.client.list_keys()] == []


# -- lifecycle ---------------------------------------------------------------------------------------


async def test_disable_enable_and_their_repeats(env: ContractEnv) -> None:
    client = env.client
    key = await created(env)
    for _ in range(2):
        assert_state(await client.disable(key.ref), key, KeyState.DEACTIVATED)
        assert_state(await client.get_key(key.ref), key, KeyState.DEACTIVATED)
    env.between_actions()
    for _ in range(2):
        assert_state(await client.enable(key.ref), key, KeyState.ACTIVE)
        assert_state(await client.get_key(key.ref), key, KeyState.ACTIVE)
    by_managed_id = KeyRef(None, key.managed_key_id)
    env.between_actions()
    assert_state(await client.disable(by_managed_id), key, KeyState.DEACTIVATED)
    env.between_actions()
    assert_state(await client.enable(by_managed_id), key, KeyState.ACTIVE)
    assert env.waits.seconds == []


async def test_schedule_destruction_and_repeat(env: ContractEnv) -> None:
    client = env.client
    key = await created(env)
    assert_state(await client.disable(key.ref), key, KeyState.DEACTIVATED)
    env.between_actions()
    deadline = env.pending_deadline()
    first = await client.schedule_destruction(key.ref)
    assert_state(first, key, KeyState.DEACTIVATED, pending=True)
    assert first.pending_until is not None and abs(first.pending_until - deadline) < SLACK
    env.between_actions()
    again = await client.schedule_destruction(key.ref)
    assert_state(again, key, KeyState.DEACTIVATED, pending=True)
    assert again.pending_until == first.pending_until
    by_managed_id = await client.schedule_destruction(KeyRef(None, key.managed_key_id))
    assert_state(by_managed_id, key, KeyState.DEACTIVATED, pending=True)
    assert_state(await client.get_key(key.ref), key, KeyState.DEACTIVATED, pending=True)
    assert env.keys_for(key.managed_key_id or "") == 1


async def test_schedule_destruction_of_an_active_key(env: ContractEnv) -> None:
    key = await created(env)
    assert_state(await env.client.schedule_destruction(key.ref), key, KeyState.DEACTIVATED, pending=True)


# -- invalid states ----------------------------------------------------------------------------------


async def test_enable_after_schedule_is_a_conflict_and_disable_is_done(env: ContractEnv) -> None:
    client = env.client
    key = await created(env)
    await client.schedule_destruction(key.ref)
    env.between_actions()
    with pytest.raises(Conflict) as caught:
        await client.enable(key.ref)
    assert not caught.value.transient and env.waits.seconds == []
    assert_state(await client.disable(key.ref), key, KeyState.DEACTIVATED, pending=True)
    assert_state(await client.get_key(key.ref), key, KeyState.DEACTIVATED, pending=True)


# -- not found ---------------------------------------------------------------------------------------


async def test_unknown_keys(env: ContractEnv) -> None:
    client = env.client
    await created(env)  # a keystore that holds something, so the lookups below are not trivially empty
    unknown = KeyRef(env.provider.unknown_key_id())
    nobody = KeyRef(None, managed_id())
    assert await client.get_key(unknown) is None
    assert await client.get_key(nobody) is None
    for action in (client.enable, client.disable):
        for ref in (unknown, nobody):
            with pytest.raises(NotFound):
                await action(ref)
    if env.provider.schedule_unknown == "not_found":
        with pytest.raises(NotFound):
            await client.schedule_destruction(unknown)
    else:  # nothing left to destroy: the destruction is as done as it can be
        gone = await client.schedule_destruction(unknown)
        assert gone.state is KeyState.DESTROYED and not gone.destruction_pending
    assert env.keys_for(nobody.managed_key_id or "") == 0
    assert env.waits.seconds == []  # a 404 is not retried


# -- auth --------------------------------------------------------------------------------------------


async def test_a_refused_token_is_refreshed_once(env: ContractEnv) -> None:
    if not env.provider.bearer_tokens:
        pytest.skip("AWS SigV4 signs every request with the access key: there is no token to refresh")
    key = await created(env)
    tokens_before = env.count("Token")
    assert tokens_before == 1
    assert env.fake.tokens.revoke_all() >= 1
    env.fake.log.clear()
    assert await env.client.get_key(key.ref) == key
    assert env.count("Token") == 1  # exactly one more token
    assert env.statuses(env.provider.get_operation) == [401, 200]
    assert env.transport.auth_refreshes == 1 and env.waits.seconds == []


async def test_refused_credentials_are_an_auth_error_without_the_secret(env: ContractEnv) -> None:
    secret = str(env.credentials[env.provider.secret])
    async with env.client_with(env.provider.wrong_credentials(env.credentials)) as client:
        health = await client.validate()
        assert health.status is HealthStatus.CONFIGURATION_ERROR, health
        with pytest.raises(AuthError) as caught:
            await client.get_key(KeyRef(None, managed_id()))
    assert not caught.value.transient
    for message in (health.message, caught.value.message, str(caught.value)):
        assert secret not in message and secret[-16:] not in message


# -- retries and health ------------------------------------------------------------------------------


async def test_a_503_then_success_is_retried(env: ContractEnv) -> None:
    key = await created(env)
    env.fake.log.clear()
    env.faults(env.provider.get_operation, "error_503", "ok")
    assert await env.client.get_key(key.ref) == key
    assert env.statuses(env.provider.get_operation) == [503, 200]
    assert len(env.waits.seconds) == 1 and env.transport.stats.retries == 1


async def test_validate_ok(env: ContractEnv) -> None:
    assert (await env.client.validate()).status is HealthStatus.OK
    await created(env)
    assert (await env.client.validate()).status is HealthStatus.OK
