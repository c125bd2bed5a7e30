"""The Key Protect adapter's registrations read against the real Key Protect fake over loopback: one key's and
the instance's, page by page, by key id or by keyorch's alias, a key the instance does not have, and the other
adapters' answer (none)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from tests.providers.test_ibm_adapter import Sleeps, fast_retry, keystore_record, running

__all__ = ["running"]  # the fixture: the Key Protect fake on a real socket

import keyorch.providers.adapters  # noqa: F401  (registers every adapter)
from keyorch.domain.models import KeystoreType
from keyorch.fakes.base import RunningFake
from keyorch.fakes.ibm import KeyProtectFake
from keyorch.providers.base import REGISTERING_KINDS, KeyRef, KeySpec, Registration, factory_for
from keyorch.providers.ibm import KeyProtectClient, create_client

SPEC = KeySpec(algorithm="aes", size=256, name="payments-key")
CRNS = [f"crn:v1:bluemix:public:cloud-object-storage:global:a/acct:inst:bucket:b{i}" for i in range(5)]


@pytest.fixture
async def client(running: RunningFake) -> AsyncIterator[KeyProtectClient]:
    fake = running.fake
    assert isinstance(fake, KeyProtectFake)
    settings = {"instance_id": fake.instance_id, "rate_per_second": 0, "page_size": 2}
    made = create_client(
        keystore_record(running.url, **settings), fake.credentials(running.url), retry=fast_retry(Sleeps())
    )
    try:
        yield made
    finally:
        await made.aclose()


async def _register(url: str, key_id: str, crn: str, **extra: Any) -> None:
    async with aiohttp.ClientSession() as session:
        body = {"keyId": key_id, "resourceCrn": crn, **extra}
        async with session.post(url + "/_fake/ibm/registrations", json=body) as response:
            assert response.status == 201, await response.text()


async def test_a_keys_registrations_across_pages_by_id_and_by_alias(
    running: RunningFake, client: KeyProtectClient
) -> None:
    key = await client.ensure_key("mk-1", SPEC)
    other = await client.ensure_key("mk-2", SPEC)
    for crn in CRNS:
        await _register(running.url, key.key_id_in_keystore, crn, description=f"for {crn[-2:]}")
    await _register(running.url, other.key_id_in_keystore, CRNS[0], preventKeyDeletion=True)

    by_id = await client.registrations(KeyRef(key.key_id_in_keystore, "mk-1"))
    assert [r.resource_crn for r in by_id] == CRNS  # 5 across pages of 2
    assert by_id[1] == Registration(key.key_id_in_keystore, CRNS[1], False, "for b1")
    by_alias = await client.registrations(KeyRef(None, "mk-1"))
    assert by_alias == by_id
    assert await client.registrations(KeyRef(None, "mk-2")) == [
        Registration(other.key_id_in_keystore, CRNS[0], True, "")
    ]
    everything = await client.registrations()
    assert sorted((r.key_id_in_keystore, r.resource_crn) for r in everything) == sorted(
        [(key.key_id_in_keystore, c) for c in CRNS] + [(other.key_id_in_keystore, CRNS[0])]
    )


async def test_a_key_the_instance_does_not_have_has_no_registrations(
    running: RunningFake, client: KeyProtectClient
) -> None:
    assert await client.registrations(KeyRef(None, "never-made")) == []
    assert await client.registrations(KeyRef("0b1c2d3e-0000-4000-8000-000000000000", "never-made")) == []


async def test_other_adapters_record_none_and_are_not_asked() -> None:
    assert frozenset({KeystoreType.IBM_KEY_PROTECT}) == REGISTERING_KINDS
    aws = replace(keystore_record("http://127.0.0.1:9"), type=KeystoreType.AWS_KMS, settings={"region": "us-east-1"})
    client = factory_for(KeystoreType.AWS_KMS).create(aws, {"access_key_id": "AKIA1", "secret_access_key": "s"})
    try:
        assert await client.registrations() == [] and await client.registrations(KeyRef("k", "mk")) == []
    finally:
        await client.aclose()
