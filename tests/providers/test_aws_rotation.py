"""AWS KMS adapter: key versions and rotation against the project's fake over loopback.

``list_versions`` (DescribeKey + ListKeyRotations pages), ``rotate`` (RotateKeyOnDemand, never
resent blindly), ``set_rotation_policy`` (EnableKeyRotation/DisableKeyRotation); each case checks
the fake's own state (``/_fake/state``) and request log. Retry waits are recorded, never slept.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from tests.providers.test_aws_adapter import AES, Waits, client_for

from keyorch.fakes import aws_ops
from keyorch.fakes.aws import AwsKmsFake
from keyorch.fakes.base import RunningFake, start_fake
from keyorch.fakes.faults import ProviderFaults
from keyorch.providers.aws import AwsKmsClient
from keyorch.providers.base import KeyRef
from keyorch.providers.errors import Conflict, InvalidRequest, MalformedResponse, NotFound, Unavailable

DAY = 86_400


@dataclass
class Env:
    client: AwsKmsClient
    fake: AwsKmsFake
    running: RunningFake
    waits: Waits

    def state(self, key_id: str) -> dict[str, Any]:
        return next(k for k in self.fake.state_snapshot()["keys"] if k["KeyId"] == key_id)

    def count(self, operation: str) -> int:
        return self.fake.log.counts[operation]

    def faults(self, *rules: dict[str, Any]) -> None:
        self.fake.faults.configure(ProviderFaults.model_validate({"rules": list(rules)}))


async def open_env(page_size: int = 100, **fake_options: Any) -> AsyncIterator[Env]:
    running = await start_fake(AwsKmsFake(**fake_options))
    fake = running.fake
    assert isinstance(fake, AwsKmsFake)
    waits = Waits()
    client = client_for(running.url, fake.credentials(running.url), waits, page_size=page_size)
    try:
        yield Env(client, fake, running, waits)
    finally:
        await client.aclose()
        await running.stop()


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async for made in open_env(page_size=2, max_on_demand_rotations=4):
        yield made


async def new_key(env: Env, managed: str = "mk-rot") -> KeyRef:
    return (await env.client.ensure_key(managed, AES)).ref


async def test_a_new_key_has_one_primary_original_version(env: Env) -> None:
    ref = await new_key(env)
    versions = await env.client.list_versions(ref)
    assert [(v.version_id, v.primary, v.enabled) for v in versions] == [("original", True, True)]
    assert versions[0].created_at is not None
    assert versions[0].created_at.isoformat() == env.state(str(ref.key_id_in_keystore))["CreationDate"]
    by_alias = await env.client.list_versions(KeyRef(None, "mk-rot"))  # the alias finds the key too
    assert by_alias == versions


async def test_rotate_makes_a_new_primary_in_the_keystore(env: Env) -> None:
    ref = await new_key(env)
    new = await env.client.rotate(ref, from_version="original")
    state = env.state(str(ref.key_id_in_keystore))
    assert [m["Current"] for m in state["KeyMaterials"]] == [False, True]
    assert new.primary and new.version_id == state["KeyMaterials"][1]["KeyMaterialId"]
    versions = await env.client.list_versions(ref)
    assert [v.version_id for v in versions] == ["original", new.version_id]
    assert [v.primary for v in versions] == [False, True]
    assert env.count("RotateKeyOnDemand") == 1


async def test_versions_are_listed_oldest_first_across_pages(env: Env) -> None:
    ref = await new_key(env)
    made = []
    for _ in range(3):
        before = made[-1].version_id if made else "original"
        made.append(await env.client.rotate(ref, from_version=before))
        env.fake.clock.advance(60)
    env.fake.log.clear()
    versions = await env.client.list_versions(ref)
    expected = [m["KeyMaterialId"] for m in env.state(str(ref.key_id_in_keystore))["KeyMaterials"][1:]]
    assert [v.version_id for v in versions] == ["original", *expected] == ["original", *(v.version_id for v in made)]
    assert [v.primary for v in versions] == [False, False, False, True]
    dates = [v.created_at for v in versions]
    assert dates == sorted(d for d in dates if d is not None)
    assert env.count("ListKeyRotations") == 2  # page size 2: three rotations on two pages


async def test_rotate_from_an_old_primary_sends_nothing(env: Env) -> None:
    ref = await new_key(env)
    first = await env.client.rotate(ref, from_version="original")
    again = await env.client.rotate(ref, from_version="original")  # an earlier rotation took effect
    assert again == first
    assert env.count("RotateKeyOnDemand") == 1
    assert len(env.state(str(ref.key_id_in_keystore))["KeyMaterials"]) == 2


@pytest.mark.parametrize("fault", ["truncate", "error_500_after", "error_500"])
async def test_a_rotation_whose_answer_is_lost_is_read_not_resent(env: Env, fault: str) -> None:
    ref = await new_key(env)
    env.faults({"operation": "RotateKeyOnDemand", "sequence": [fault]})
    new = await env.client.rotate(ref, from_version="original")
    materials = env.state(str(ref.key_id_in_keystore))["KeyMaterials"]
    assert len(materials) == 2 and new.version_id == materials[1]["KeyMaterialId"] and new.primary
    # error_500 is refused before the fake acts: then (and only then) it is sent a second time
    assert env.count("RotateKeyOnDemand") == (2 if fault == "error_500" else 1)


async def test_the_on_demand_quota_is_a_clear_permanent_error(env: Env) -> None:
    ref = await new_key(env)
    current = "original"
    for _ in range(4):  # the fixture's quota (AWS: 25)
        current = (await env.client.rotate(ref, from_version=current)).version_id
    with pytest.raises(InvalidRequest) as refused:
        await env.client.rotate(ref, from_version=current)
    assert not refused.value.transient and refused.value.provider_code == "LimitExceededException"
    assert "on-demand rotations per key are limited" in refused.value.message
    assert env.count("RotateKeyOnDemand") == 5  # not retried
    assert len(env.state(str(ref.key_id_in_keystore))["KeyMaterials"]) == 5


async def test_a_disabled_key_is_not_rotated(env: Env) -> None:
    ref = await new_key(env)
    await env.client.disable(ref)
    with pytest.raises(Conflict) as refused:
        await env.client.rotate(ref, from_version="original")
    assert refused.value.provider_code == "DisabledException"
    with pytest.raises(Conflict):
        await env.client.set_rotation_policy(ref, 90)


async def test_rotation_policy_is_set_in_the_keystore_and_rotates_on_its_clock(env: Env) -> None:
    ref = await new_key(env)
    for bad in (89, 2561, 0):
        with pytest.raises(InvalidRequest, match="every 90 to 2560 days") as refused:
            await env.client.set_rotation_policy(ref, bad)
        assert not refused.value.sent
    assert env.count("EnableKeyRotation") == 0
    await env.client.set_rotation_policy(ref, 90)
    state = env.state(str(ref.key_id_in_keystore))
    assert state["KeyRotationEnabled"] and state["RotationPeriodInDays"] == 90
    await env.client.set_rotation_policy(ref, 90)  # a repeat is fine

    env.fake.clock.advance(365 * DAY)  # the provider rotates by itself: keyorch observes it
    versions = await env.client.list_versions(ref)
    assert len(versions) == 5 and versions[-1].primary
    kinds = [m["RotationType"] for m in env.state(str(ref.key_id_in_keystore))["KeyMaterials"]]
    assert kinds == [None, "AUTOMATIC", "AUTOMATIC", "AUTOMATIC", "AUTOMATIC"]

    await env.client.set_rotation_policy(ref, None)
    assert not env.state(str(ref.key_id_in_keystore))["KeyRotationEnabled"]
    await env.client.set_rotation_policy(ref, None)
    assert env.count("DisableKeyRotation") == 2


@pytest.mark.parametrize(
    "answer",
    [
        {"Rotations": "nope"},
        {},
        {"Rotations": [1]},
        {"Rotations": [{"RotationDate": "yesterday"}]},
        {"Rotations": [{"RotationDate": 1.0, "KeyMaterialId": 7}]},
        {"Rotations": [], "Truncated": "yes"},
        {"Rotations": [], "Truncated": True},
        {"Rotations": [{"RotationDate": 1.0, "KeyMaterialId": "a"}, {"RotationDate": 2.0, "KeyMaterialId": "a"}]},
        {
            "Rotations": [
                {"RotationDate": 1.0, "KeyMaterialId": "a", "KeyMaterialState": "CURRENT"},
                {"RotationDate": 2.0, "KeyMaterialId": "b", "KeyMaterialState": "CURRENT"},
            ]
        },
    ],
)
async def test_malformed_rotation_listings_are_malformed_responses(
    env: Env, monkeypatch: pytest.MonkeyPatch, answer: dict[str, Any]
) -> None:
    ref = await new_key(env)
    monkeypatch.setitem(aws_ops.OPERATIONS, "ListKeyRotations", lambda store, m: answer)
    with pytest.raises(MalformedResponse):
        await env.client.list_versions(ref)
    with pytest.raises(MalformedResponse):
        await env.client.rotate(ref, from_version="original")
    assert env.count("RotateKeyOnDemand") == 0


async def test_a_repeated_marker_ends_the_listing(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = await new_key(env)
    page = {"Rotations": [], "Truncated": True, "NextMarker": "same"}
    monkeypatch.setitem(aws_ops.OPERATIONS, "ListKeyRotations", lambda store, m: page)
    with pytest.raises(MalformedResponse, match="repeats"):
        await env.client.list_versions(ref)


async def test_without_material_ids_the_rotation_date_names_the_version(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = await new_key(env)
    monkeypatch.setitem(
        aws_ops.OPERATIONS, "ListKeyRotations", lambda store, m: {"Rotations": [{"RotationDate": 1_700_000_000}]}
    )
    versions = await env.client.list_versions(ref)
    assert [(v.version_id, v.primary) for v in versions] == [("original", False), ("2023-11-14T22:13:20+00:00", True)]


async def test_a_truncated_listing_body_is_retried_and_then_read_whole(env: Env) -> None:
    ref = await new_key(env)
    await env.client.rotate(ref, from_version="original")
    env.faults({"operation": "ListKeyRotations", "sequence": ["truncate"]})
    versions = await env.client.list_versions(ref)
    assert len(versions) == 2 and env.fake.log.fault_counts["truncate"] == 1


async def test_unknown_key_is_not_found(env: Env) -> None:
    with pytest.raises(NotFound):
        await env.client.list_versions(KeyRef("00000000-0000-4000-8000-000000000000"))


async def test_a_rotation_still_in_progress_is_waited_for_not_sent_again() -> None:
    """KMS lists a rotation's material only once it completes; meanwhile GetKeyRotationStatus shows it."""
    async for env in open_env(on_demand_rotation_seconds=60):
        ref = await new_key(env)
        with pytest.raises(Unavailable, match="still in progress") as waiting:
            await env.client.rotate(ref, from_version="original")
        assert waiting.value.transient
        state = env.state(str(ref.key_id_in_keystore))
        assert state["OnDemandRotationStartDate"] and len(state["KeyMaterials"]) == 1
        with pytest.raises(Unavailable, match="still in progress"):  # a later call sends nothing either
            await env.client.rotate(ref, from_version="original")
        assert env.count("RotateKeyOnDemand") == 1
        env.fake.clock.advance(61)
        new = await env.client.rotate(ref, from_version="original")
        materials = env.state(str(ref.key_id_in_keystore))["KeyMaterials"]
        assert len(materials) == 2 and new.version_id == materials[1]["KeyMaterialId"] and new.primary
        assert env.count("RotateKeyOnDemand") == 1
