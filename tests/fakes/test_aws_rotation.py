"""Key rotation in the AWS KMS fake, driven by the unchanged boto3 SDK over loopback.

RotateKeyOnDemand, ListKeyRotations, GetKeyRotationStatus, EnableKeyRotation and DisableKeyRotation
as the KMS API reference describes them; the fake's state (``/_fake/state``) is checked after each.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from tests.fakes.test_aws_sdk import Sdk, call

from keyorch.fakes.aws import AwsKmsFake
from keyorch.fakes.base import start_fake
from keyorch.fakes.faults import ProviderFaults

DAY = 86_400


@pytest.fixture
async def sdk() -> AsyncIterator[Sdk]:
    running = await start_fake(AwsKmsFake(max_on_demand_rotations=3))
    made = Sdk(running)
    yield made
    made.close()
    await running.stop()


@pytest.fixture
def kms(sdk: Sdk) -> Any:
    return sdk.client()


async def state_of(sdk: Sdk, key_id: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(sdk.running.url + "/_fake/state") as response:
        doc = await response.json()
    return next(k for k in doc["keys"] if k["KeyId"] == key_id)


async def new_key(kms: Any) -> str:
    return str((await call(kms.create_key, Description="rot"))["KeyMetadata"]["KeyId"])


def code_of(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


async def test_on_demand_rotation_makes_a_new_current_material(sdk: Sdk, kms: Any) -> None:
    key_id = await new_key(kms)
    before = await state_of(sdk, key_id)
    assert [m["RotationType"] for m in before["KeyMaterials"]] == [None] and before["KeyMaterials"][0]["Current"]
    assert (await call(kms.list_key_rotations, KeyId=key_id))["Rotations"] == []

    answer = await call(kms.rotate_key_on_demand, KeyId=key_id)
    assert answer["KeyId"] == key_id

    after = await state_of(sdk, key_id)
    assert [m["RotationType"] for m in after["KeyMaterials"]] == [None, "ON_DEMAND"]
    assert [m["Current"] for m in after["KeyMaterials"]] == [False, True]
    assert after["OnDemandRotations"] == 1
    rotations = (await call(kms.list_key_rotations, KeyId=key_id))["Rotations"]
    assert len(rotations) == 1 and rotations[0]["RotationType"] == "ON_DEMAND"
    assert rotations[0]["KeyMaterialId"] == after["KeyMaterials"][1]["KeyMaterialId"]
    assert isinstance(rotations[0]["RotationDate"], datetime)
    meta = (await call(kms.describe_key, KeyId=key_id))["KeyMetadata"]
    assert meta["CurrentKeyMaterialId"] == after["KeyMaterials"][1]["KeyMaterialId"]
    everything = (await call(kms.list_key_rotations, KeyId=key_id, IncludeKeyMaterial="ALL_KEY_MATERIAL"))["Rotations"]
    assert [r["KeyMaterialState"] for r in everything] == ["NON_CURRENT", "CURRENT"]
    assert "RotationDate" not in everything[0]


async def test_old_ciphertexts_decrypt_after_rotation_and_new_ones_use_the_new_material(kms: Any) -> None:
    key_id = await new_key(kms)
    old = (await call(kms.encrypt, KeyId=key_id, Plaintext=b"before"))["CiphertextBlob"]
    await call(kms.rotate_key_on_demand, KeyId=key_id)
    new = (await call(kms.encrypt, KeyId=key_id, Plaintext=b"after"))["CiphertextBlob"]
    assert (await call(kms.decrypt, CiphertextBlob=old))["Plaintext"] == b"before"
    assert (await call(kms.decrypt, CiphertextBlob=new))["Plaintext"] == b"after"
    assert old[1 + 1 + old[1] : 1 + 1 + old[1] + 2] != new[1 + 1 + new[1] : 1 + 1 + new[1] + 2]  # other material


async def test_on_demand_rotations_are_limited_per_key(sdk: Sdk, kms: Any) -> None:
    key_id = await new_key(kms)
    for _ in range(3):  # the fixture's quota; AWS's is 25 (AwsKmsFake's default)
        await call(kms.rotate_key_on_demand, KeyId=key_id)
    with pytest.raises(ClientError) as refused:
        await call(kms.rotate_key_on_demand, KeyId=key_id)
    assert code_of(refused) == "LimitExceededException"
    assert len((await state_of(sdk, key_id))["KeyMaterials"]) == 4
    assert AwsKmsFake().store.max_on_demand_rotations == 25


async def test_rotation_needs_an_enabled_symmetric_key(kms: Any) -> None:
    key_id = await new_key(kms)
    await call(kms.disable_key, KeyId=key_id)
    with pytest.raises(ClientError) as disabled:
        await call(kms.rotate_key_on_demand, KeyId=key_id)
    assert code_of(disabled) == "DisabledException"
    with pytest.raises(ClientError) as disabled_enable:
        await call(kms.enable_key_rotation, KeyId=key_id)
    assert code_of(disabled_enable) == "DisabledException"
    assert (await call(kms.list_key_rotations, KeyId=key_id))["Rotations"] == []  # reads still work
    await call(kms.schedule_key_deletion, KeyId=key_id, PendingWindowInDays=7)
    with pytest.raises(ClientError) as pending:
        await call(kms.rotate_key_on_demand, KeyId=key_id)
    assert code_of(pending) == "KMSInvalidStateException"
    rsa = (await call(kms.create_key, KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT"))["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as asymmetric:
        await call(kms.rotate_key_on_demand, KeyId=rsa)
    assert code_of(asymmetric) == "UnsupportedOperationException"


async def test_automatic_rotation_follows_the_fake_clock(sdk: Sdk, kms: Any) -> None:
    key_id = await new_key(kms)
    unchecked = sdk.client(config=Config(parameter_validation=False, retries={"total_max_attempts": 1}))
    for days in (89, 2561):  # boto3 itself refuses these unless told not to check
        with pytest.raises(ClientError) as out_of_range:
            await call(unchecked.enable_key_rotation, KeyId=key_id, RotationPeriodInDays=days)
        assert code_of(out_of_range) == "ValidationException"
    status = await call(kms.get_key_rotation_status, KeyId=key_id)
    assert status["KeyRotationEnabled"] is False and "NextRotationDate" not in status

    await call(kms.enable_key_rotation, KeyId=key_id, RotationPeriodInDays=90)
    status = await call(kms.get_key_rotation_status, KeyId=key_id)
    assert status["KeyRotationEnabled"] is True and status["RotationPeriodInDays"] == 90
    state = await state_of(sdk, key_id)
    assert state["KeyRotationEnabled"] and state["RotationPeriodInDays"] == 90

    sdk.fake.clock.advance(365 * DAY)
    state = await state_of(sdk, key_id)
    assert [m["RotationType"] for m in state["KeyMaterials"]] == [None] + ["AUTOMATIC"] * 4
    dates = [datetime.fromisoformat(m["CreationDate"]) for m in state["KeyMaterials"]]
    assert [round((b - a).total_seconds() / DAY) for a, b in itertools.pairwise(dates[1:])] == [90, 90, 90]
    rotations = (await call(kms.list_key_rotations, KeyId=key_id))["Rotations"]
    assert [r["RotationType"] for r in rotations] == ["AUTOMATIC"] * 4

    await call(kms.disable_key_rotation, KeyId=key_id)
    sdk.fake.clock.advance(365 * DAY)
    state = await state_of(sdk, key_id)
    assert len(state["KeyMaterials"]) == 5 and not state["KeyRotationEnabled"] and state["NextRotationDate"] is None


async def test_on_demand_rotation_conflicts_with_an_imminent_automatic_one(sdk: Sdk, kms: Any) -> None:
    key_id = await new_key(kms)
    await call(kms.enable_key_rotation, KeyId=key_id, RotationPeriodInDays=90)
    sdk.fake.clock.advance(90 * DAY - 600)  # ten minutes before it is due
    with pytest.raises(ClientError) as conflict:
        await call(kms.rotate_key_on_demand, KeyId=key_id)
    assert code_of(conflict) == "ConflictException"


async def test_list_key_rotations_pages(sdk: Sdk, kms: Any) -> None:
    key_id = await new_key(kms)
    for _ in range(3):
        await call(kms.rotate_key_on_demand, KeyId=key_id)
    first = await call(kms.list_key_rotations, KeyId=key_id, Limit=2)
    assert len(first["Rotations"]) == 2 and first["Truncated"] is True
    rest = await call(kms.list_key_rotations, KeyId=key_id, Limit=2, Marker=first["NextMarker"])
    assert len(rest["Rotations"]) == 1 and rest["Truncated"] is False
    paged = [r["KeyMaterialId"] for r in first["Rotations"] + rest["Rotations"]]
    assert paged == [m["KeyMaterialId"] for m in (await state_of(sdk, key_id))["KeyMaterials"][1:]]
    pages = kms.get_paginator("list_key_rotations").paginate(KeyId=key_id, PaginationConfig={"PageSize": 1})
    walked = await asyncio.to_thread(lambda: [r["KeyMaterialId"] for page in pages for r in page["Rotations"]])
    assert walked == paged  # boto3's own paginator follows the fake's markers


async def test_error_500_after_fault_applies_the_rotation(sdk: Sdk, kms: Any) -> None:
    key_id = await new_key(kms)
    sdk.fake.faults.configure(
        ProviderFaults.model_validate({"rules": [{"operation": "RotateKeyOnDemand", "sequence": ["error_500_after"]}]})
    )
    with pytest.raises(ClientError) as failed:
        await call(kms.rotate_key_on_demand, KeyId=key_id)
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert len((await state_of(sdk, key_id))["KeyMaterials"]) == 2  # done, although the answer said otherwise
    assert sdk.fake.log.fault_counts["error_500_after"] == 1
    entry = next(e for e in sdk.fake.log.entries if e.operation == "RotateKeyOnDemand")
    assert (entry.status, entry.fault) == (200, "error_500_after")  # what the fake did, and what it served


async def test_an_on_demand_rotation_can_take_time_on_the_fake_clock() -> None:
    running = await start_fake(AwsKmsFake(on_demand_rotation_seconds=60))
    made = Sdk(running)
    try:
        kms = made.client()
        key_id = await new_key(kms)
        await call(kms.rotate_key_on_demand, KeyId=key_id)
        status = await call(kms.get_key_rotation_status, KeyId=key_id)
        assert isinstance(status["OnDemandRotationStartDate"], datetime)
        assert (await call(kms.list_key_rotations, KeyId=key_id))["Rotations"] == []
        with pytest.raises(ClientError) as busy:
            await call(kms.rotate_key_on_demand, KeyId=key_id)
        assert code_of(busy) == "ConflictException"
        made.fake.clock.advance(61)
        rotations = (await call(kms.list_key_rotations, KeyId=key_id))["Rotations"]
        assert [r["RotationType"] for r in rotations] == ["ON_DEMAND"]
        assert "OnDemandRotationStartDate" not in await call(kms.get_key_rotation_status, KeyId=key_id)
        assert (await state_of(made, key_id))["OnDemandRotations"] == 1
    finally:
        made.close()
        await running.stop()
