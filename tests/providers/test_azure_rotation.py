"""Azure Key Vault adapter: versions, rotation, the rotation policy and disabling one version, against the
Azure fake over loopback (docs/providers.md §2.3: ``POST /keys/{name}/rotate``, ``GET``/``PUT
/keys/{name}/rotationpolicy``, ``GET /keys/{name}/versions``, ``PATCH /keys/{name}/{version}``).
Each test checks the vault's own state (the fake's ``/_fake/state``) and its request log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from tests.providers.test_azure_adapter import AES, DAY, Sleeps, client_for, faults, mk_id, serving

from keyorch.fakes.azure import AzureKeyVaultFake
from keyorch.fakes.azure_crypto import b64url
from keyorch.providers.azure import AzureKeyVaultClient
from keyorch.providers.base import KeyRef
from keyorch.providers.errors import Conflict, InvalidRequest, MalformedResponse, NotFound, ProviderError

Env = tuple[AzureKeyVaultClient, AzureKeyVaultFake]


@pytest.fixture
def keystore_settings() -> dict[str, Any]:
    return {}


@pytest.fixture
async def adapter_env(keystore_settings: dict[str, Any]) -> AsyncIterator[Env]:
    """A Managed HSM fake (AES keys) on a loopback socket and an adapter client with its credentials."""
    fake = AzureKeyVaultFake(managed_hsm=True)
    async with serving(fake) as url, client_for(url, fake.credentials(url), Sleeps(), settings=keystore_settings) as c:
        yield c, fake


async def state(client: AzureKeyVaultClient) -> dict[str, Any]:
    """The fake's ``/_fake/state`` over HTTP."""
    async with aiohttp.ClientSession() as session, session.get(f"{client.endpoint}/_fake/state") as answer:
        assert answer.status == 200
        doc: dict[str, Any] = await answer.json()
        return doc


async def versions_in_state(client: AzureKeyVaultClient, name: str) -> list[dict[str, Any]]:
    [key] = [k for k in (await state(client))["keys"] if k["name"] == name]
    versions: list[dict[str, Any]] = key["versions"]
    return versions


async def new_key(client: AzureKeyVaultClient) -> tuple[KeyRef, str]:
    ref = (await client.ensure_key(mk_id(), AES)).ref
    return ref, ref.key_id_in_keystore or ""


async def test_rotate_makes_a_new_primary_and_lists_every_version_oldest_first(adapter_env: Env) -> None:
    client, fake = adapter_env
    ref, name = await new_key(client)
    [first] = await client.list_versions(ref)
    assert first.primary and first.enabled and first.created_at is not None
    fake.clock.advance(60)
    second = await client.rotate(ref, from_version=first.version_id)
    assert second.primary and second.version_id != first.version_id
    in_vault = await versions_in_state(client, name)
    assert [v["version"] for v in in_vault] == [first.version_id, second.version_id]
    assert [v["primary"] for v in in_vault] == [False, True]
    listed = await client.list_versions(ref)
    assert [(v.version_id, v.primary, v.enabled) for v in listed] == [
        (first.version_id, False, True),
        (second.version_id, True, True),
    ]
    assert listed[1].created_at is not None and listed[0].created_at is not None
    assert (listed[1].created_at - listed[0].created_at).total_seconds() >= 60
    assert fake.log.counts["RotateKey"] == 1


@pytest.mark.parametrize("keystore_settings", [{"page_size": 2}])
async def test_versions_are_listed_across_small_pages(adapter_env: Env) -> None:
    client, fake = adapter_env
    ref, name = await new_key(client)
    for _ in range(4):
        fake.clock.advance(1)
        current = next(v for v in await client.list_versions(ref) if v.primary)
        await client.rotate(ref, from_version=current.version_id)
    fake.log.clear()
    listed = await client.list_versions(ref)
    assert [v.version_id for v in listed] == [v["version"] for v in await versions_in_state(client, name)]
    assert [v.primary for v in listed] == [False] * 4 + [True]
    assert fake.log.counts["ListKeyVersions"] == 3  # 2 + 2 + 1


async def test_a_rotation_from_an_old_primary_sends_nothing(adapter_env: Env) -> None:
    client, fake = adapter_env
    ref, name = await new_key(client)
    [first] = await client.list_versions(ref)
    second = await client.rotate(ref, from_version=first.version_id)
    again = await client.rotate(ref, from_version=first.version_id)
    assert again == second
    assert fake.log.counts["RotateKey"] == 1
    assert len(await versions_in_state(client, name)) == 2


async def test_a_rotation_whose_answer_is_lost_makes_exactly_one_version(adapter_env: Env) -> None:
    client, fake = adapter_env
    ref, name = await new_key(client)
    [first] = await client.list_versions(ref)
    faults(fake, "RotateKey", "truncate")  # the vault rotates, then the answer is cut
    rotated = await client.rotate(ref, from_version=first.version_id)
    in_vault = await versions_in_state(client, name)
    assert len(in_vault) == 2 and in_vault[1]["version"] == rotated.version_id and rotated.primary
    assert fake.log.counts["RotateKey"] == 1


async def test_a_rotation_applied_but_answered_500_makes_exactly_one_version(adapter_env: Env) -> None:
    client, fake = adapter_env
    ref, name = await new_key(client)
    [first] = await client.list_versions(ref)
    faults(fake, "RotateKey", "error_500_after")
    rotated = await client.rotate(ref, from_version=first.version_id)
    assert [v["version"] for v in await versions_in_state(client, name)] == [first.version_id, rotated.version_id]
    assert fake.log.counts["RotateKey"] == 1


async def test_a_rotation_refused_with_a_5xx_is_read_then_sent_again(adapter_env: Env) -> None:
    client, fake = adapter_env
    ref, name = await new_key(client)
    [first] = await client.list_versions(ref)
    faults(fake, "RotateKey", "error_503")  # refused before the vault acted: the read finds no new version
    rotated = await client.rotate(ref, from_version=first.version_id)
    assert len(await versions_in_state(client, name)) == 2 and rotated.version_id != first.version_id
    assert fake.log.counts["RotateKey"] == 2


async def test_a_dropped_rotation_is_sent_again_only_after_a_read(adapter_env: Env) -> None:
    client, fake = adapter_env
    ref, name = await new_key(client)
    [first] = await client.list_versions(ref)
    faults(fake, "RotateKey", "drop")
    fake.log.clear()
    await client.rotate(ref, from_version=first.version_id)
    operations = [e.operation for e in fake.log.entries]
    dropped = operations.index("RotateKey")
    assert operations[dropped + 1 :].count("RotateKey") == 1
    assert "ListKeyVersions" in operations[dropped + 1 : operations.index("RotateKey", dropped + 1)]
    assert len(await versions_in_state(client, name)) == 2


async def test_rotation_policy_is_set_seen_by_the_vault_and_rotates_with_its_clock(adapter_env: Env) -> None:
    client, fake = adapter_env
    ref, name = await new_key(client)
    await client.set_rotation_policy(ref, None)  # no Rotate action to drop: nothing is written
    assert fake.log.counts["UpdateKeyRotationPolicy"] == 0
    await client.set_rotation_policy(ref, 30)
    await client.set_rotation_policy(ref, 30)  # already so: read, not written again
    assert fake.log.counts["UpdateKeyRotationPolicy"] == 1
    [key] = [k for k in (await state(client))["keys"] if k["name"] == name]
    assert key["rotation_policy"]["lifetimeActions"] == [  # the default policy's notification is kept
        {"trigger": {"timeAfterCreate": "P30D"}, "action": {"type": "Rotate"}},
        {"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "Notify"}},
    ]
    [first] = await client.list_versions(ref)
    fake.clock.advance(29 * DAY)
    assert len(await client.list_versions(ref)) == 1
    fake.clock.advance(2 * DAY)
    listed = await client.list_versions(ref)
    assert len(listed) == 2 and listed[1].primary and listed[1].version_id != first.version_id
    assert listed[0].created_at is not None and listed[1].created_at is not None
    assert (listed[1].created_at - listed[0].created_at).total_seconds() == 30 * DAY
    await client.set_rotation_policy(ref, None)
    [key] = [k for k in (await state(client))["keys"] if k["name"] == name]
    assert all(a["action"]["type"] != "Rotate" for a in key["rotation_policy"]["lifetimeActions"])
    fake.clock.advance(400 * DAY)
    assert len(await versions_in_state(client, name)) == 2
    assert fake.log.counts["UpdateKeyRotationPolicy"] == 2 and fake.log.counts["RotateKey"] == 0


async def test_a_policy_the_vault_cannot_express_is_refused_before_any_request(adapter_env: Env) -> None:
    client, fake = adapter_env
    ref, _ = await new_key(client)
    with pytest.raises(InvalidRequest, match="P7D"):
        await client.set_rotation_policy(ref, 6)
    assert fake.log.counts["GetKeyRotationPolicy"] == 0 and fake.log.counts["UpdateKeyRotationPolicy"] == 0


async def test_the_vault_refuses_a_rotation_too_close_to_the_policy_expiry(adapter_env: Env) -> None:
    client, _ = adapter_env
    ref, name = await new_key(client)
    url = f"{client.endpoint}/keys/{name}/rotationpolicy?api-version=7.5"
    body = {"lifetimeActions": [], "attributes": {"expiryTime": "P30D"}}
    await client.transport.request("PUT", url, operation="UpdateKeyRotationPolicy", idempotent=True, json=body)
    with pytest.raises(InvalidRequest, match="7 days before the expiryTime"):
        await client.set_rotation_policy(ref, 28)
    await client.set_rotation_policy(ref, 20)  # the expiryTime is kept, and rotated versions get it
    [first] = await client.list_versions(ref)
    rotated = await client.rotate(ref, from_version=first.version_id)
    [_, newest] = await versions_in_state(client, name)
    assert newest["version"] == rotated.version_id and newest["exp"] == newest["created"] + 30 * DAY


async def test_disable_version_makes_its_ciphertexts_undecryptable(adapter_env: Env) -> None:
    client, fake = adapter_env
    ref, name = await new_key(client)
    [first] = await client.list_versions(ref)
    sealed = await crypto(client, f"/keys/{name}/{first.version_id}/encrypt", {"value": b64url(b"secret")})
    second = await client.rotate(ref, from_version=first.version_id)
    opened = await crypto(client, f"/keys/{name}/{first.version_id}/decrypt", sealed)
    assert opened["value"] == b64url(b"secret")  # an older version still decrypts while enabled
    newer = await crypto(client, f"/keys/{name}//encrypt", {"value": b64url(b"new")})
    assert newer["kid"].endswith(second.version_id)  # new encryption uses the primary
    await client.disable_version(ref, first.version_id)
    await client.disable_version(ref, first.version_id)  # a repeat is harmless
    assert [v["enabled"] for v in await versions_in_state(client, name)] == [False, True]
    assert [v.enabled for v in await client.list_versions(ref)] == [False, True]
    with pytest.raises(Conflict) as refused:
        await crypto(client, f"/keys/{name}/{first.version_id}/decrypt", sealed)
    assert refused.value.provider_code == "Forbidden/KeyDisabled"
    with pytest.raises(Conflict, match="primary"):
        await client.disable_version(ref, second.version_id)
    assert fake.log.counts["UpdateKey"] == 2
    with pytest.raises(NotFound):
        await client.disable_version(ref, "0" * 32)
    with pytest.raises(InvalidRequest):
        await client.disable_version(ref, "../x")
    assert fake.log.counts["UpdateKey"] == 3


async def crypto(client: AzureKeyVaultClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    url = f"{client.endpoint}{path}?api-version=7.5"
    result = await client.transport.request(
        "POST", url, operation="crypto", idempotent=True, json={"alg": "A256GCM"} | body
    )
    return {k: v for k, v in result.json_object().items() if k in ("value", "iv", "tag", "kid")}


async def test_versions_of_a_missing_or_deleted_key_are_not_found(adapter_env: Env) -> None:
    client, _ = adapter_env
    with pytest.raises(NotFound):
        await client.list_versions(KeyRef(None, mk_id()))
    ref, _ = await new_key(client)
    await client.schedule_destruction(ref)
    with pytest.raises(NotFound, match="deleted"):
        await client.list_versions(ref)
    with pytest.raises(ProviderError):
        await client.rotate(ref, from_version="0" * 32)


async def test_a_versions_listing_that_repeats_a_version_is_malformed(adapter_env: Env) -> None:
    client, fake = adapter_env
    ref, name = await new_key(client)
    key = fake.vault.live[name.lower()]
    key.versions.append(key.versions[0])  # the vault now lists the same version twice
    with pytest.raises(MalformedResponse, match="repeats version"):
        await client.list_versions(ref)


async def test_a_truncated_versions_listing_is_retried_never_half_read(adapter_env: Env) -> None:
    client, fake = adapter_env
    ref, _ = await new_key(client)
    faults(fake, "ListKeyVersions", *["truncate"] * 4)
    with pytest.raises(ProviderError):
        await client.list_versions(ref)
    faults(fake, "ListKeyVersions", "truncate")
    assert len(await client.list_versions(ref)) == 1
