"""The official AWS SDK (boto3, unchanged) against the AWS KMS fake.

boto3 is synchronous: each call runs in a worker thread (``asyncio.to_thread``) while the fake
serves on the test's event loop over a real loopback socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from keyorch.fakes.aws import AwsKmsFake
from keyorch.fakes.base import RunningFake, start_fake
from keyorch.fakes.faults import ProviderFaults

NO_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 1})


class Sdk:
    """Makes boto3 KMS clients for one running fake and closes them all at the end."""

    def __init__(self, running: RunningFake) -> None:
        self.running = running
        self.fake: AwsKmsFake = running.fake  # type: ignore[assignment]
        self._clients: list[Any] = []

    def client(self, *, access: str | None = None, secret: str | None = None, config: Config = NO_RETRIES) -> Any:
        creds = self.fake.credentials(self.running.url)
        client = boto3.session.Session().client(
            "kms",
            endpoint_url=self.running.url,
            region_name="us-east-1",
            aws_access_key_id=access or creds["access_key_id"],
            aws_secret_access_key=secret or creds["secret_access_key"],
            config=config,
        )
        self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()


async def call(method: Callable[..., Any], **kwargs: Any) -> Any:
    return await asyncio.to_thread(method, **kwargs)


@pytest.fixture
async def sdk() -> AsyncIterator[Sdk]:
    running = await start_fake(AwsKmsFake())
    made = Sdk(running)
    yield made
    made.close()
    await running.stop()


@pytest.fixture
def kms(sdk: Sdk) -> Iterator[Any]:
    yield sdk.client()


async def test_lifecycle_with_boto3_unchanged(kms: Any) -> None:
    """Acceptance: create -> disable -> schedule -> describe (PendingDeletion) -> cancel, real exceptions."""
    meta = (await call(kms.create_key, Description="acceptance"))["KeyMetadata"]
    key_id, arn = meta["KeyId"], meta["Arn"]
    assert meta["KeyState"] == "Enabled" and isinstance(meta["CreationDate"], datetime)
    await call(kms.disable_key, KeyId=key_id)
    assert (await call(kms.describe_key, KeyId=key_id))["KeyMetadata"]["KeyState"] == "Disabled"

    with pytest.raises(ClientError) as invalid_window:
        await call(kms.schedule_key_deletion, KeyId=key_id, PendingWindowInDays=6)
    error = invalid_window.value.response
    assert error["Error"]["Code"] == "ValidationException"
    assert error["Error"]["Message"] == "PendingWindowInDays must be between 7 and 30"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400

    scheduled = await call(kms.schedule_key_deletion, KeyId=key_id, PendingWindowInDays=7)
    assert scheduled["KeyId"] == arn and scheduled["KeyState"] == "PendingDeletion"
    assert scheduled["PendingWindowInDays"] == 7
    assert scheduled["DeletionDate"] - datetime.now(UTC) == pytest.approx(timedelta(days=7), abs=timedelta(minutes=1))

    with pytest.raises(kms.exceptions.KMSInvalidStateException) as twice:
        await call(kms.schedule_key_deletion, KeyId=key_id, PendingWindowInDays=7)
    assert "is pending deletion" in twice.value.response["Error"]["Message"]

    described = (await call(kms.describe_key, KeyId=key_id))["KeyMetadata"]
    assert described["KeyState"] == "PendingDeletion" and described["Enabled"] is False
    assert described["DeletionDate"] == scheduled["DeletionDate"]

    cancelled = await call(kms.cancel_key_deletion, KeyId=key_id)
    assert cancelled["KeyId"] == arn
    after = (await call(kms.describe_key, KeyId=key_id))["KeyMetadata"]
    assert after["KeyState"] == "Disabled" and "DeletionDate" not in after
    with pytest.raises(kms.exceptions.KMSInvalidStateException):
        await call(kms.cancel_key_deletion, KeyId=key_id)


async def test_deleted_key_is_not_found_after_its_date(sdk: Sdk, kms: Any) -> None:
    key_id = (await call(kms.create_key))["KeyMetadata"]["KeyId"]
    await call(kms.create_alias, AliasName="alias/gone-soon", TargetKeyId=key_id)
    await call(kms.schedule_key_deletion, KeyId=key_id, PendingWindowInDays=30)
    sdk.fake.clock.advance(30 * 86400 + 1)
    with pytest.raises(kms.exceptions.NotFoundException):
        await call(kms.describe_key, KeyId=key_id)
    with pytest.raises(kms.exceptions.NotFoundException):
        await call(kms.describe_key, KeyId="alias/gone-soon")
    assert (await call(kms.list_keys))["Keys"] == []


async def test_paginators_walk_every_page(kms: Any) -> None:
    created = [(await call(kms.create_key))["KeyMetadata"]["KeyId"] for _ in range(5)]
    for i, key_id in enumerate(created):
        await call(kms.create_alias, AliasName=f"alias/p{i}", TargetKeyId=key_id)
    await call(kms.create_alias, AliasName="alias/p0-second", TargetKeyId=created[0])

    def walk(operation: str, field: str, **kwargs: Any) -> tuple[list[Any], int]:
        pages = list(kms.get_paginator(operation).paginate(PaginationConfig={"PageSize": 2}, **kwargs))
        return [item for page in pages for item in page[field]], len(pages)

    keys, key_pages = await asyncio.to_thread(walk, "list_keys", "Keys")
    assert [k["KeyId"] for k in keys] == created and key_pages == 3
    aliases, _ = await asyncio.to_thread(walk, "list_aliases", "Aliases")
    assert len(aliases) == 6
    mine, _ = await asyncio.to_thread(walk, "list_aliases", "Aliases", KeyId=created[0])
    assert [a["AliasName"] for a in mine] == ["alias/p0", "alias/p0-second"]


async def test_encrypt_decrypt_and_tags_with_boto3(kms: Any) -> None:
    tags = [{"TagKey": "keyorch:managed-key", "TagValue": "mk-7"}]
    key_id = (await call(kms.create_key, Tags=tags))["KeyMetadata"]["KeyId"]
    await call(kms.create_alias, AliasName="alias/data", TargetKeyId=key_id)
    sealed = await call(kms.encrypt, KeyId="alias/data", Plaintext=b"attack at dawn", EncryptionContext={"a": "1"})
    opened = await call(kms.decrypt, CiphertextBlob=sealed["CiphertextBlob"], EncryptionContext={"a": "1"})
    assert opened["Plaintext"] == b"attack at dawn" and opened["KeyId"].endswith(key_id)
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        await call(kms.decrypt, CiphertextBlob=sealed["CiphertextBlob"])
    await call(kms.disable_key, KeyId=key_id)
    with pytest.raises(kms.exceptions.DisabledException):
        await call(kms.encrypt, KeyId=key_id, Plaintext=b"x")
    assert (await call(kms.list_resource_tags, KeyId=key_id))["Tags"] == tags
    await call(kms.untag_resource, KeyId=key_id, TagKeys=["keyorch:managed-key"])
    assert (await call(kms.list_resource_tags, KeyId=key_id))["Tags"] == []


async def test_sdk_auth_refusals(sdk: Sdk) -> None:
    with pytest.raises(ClientError) as bad_secret:
        await call(sdk.client(secret="wrong-secret").list_keys)
    assert bad_secret.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert (await call(sdk.client(access="testing", secret="testing").list_keys))["Keys"] == []
    unsigned = sdk.client(config=NO_RETRIES.merge(Config(signature_version=UNSIGNED)))
    with pytest.raises(ClientError) as missing:
        await call(unsigned.list_keys)
    assert missing.value.response["Error"]["Code"] == "MissingAuthenticationTokenException"
    sdk.fake.strict = True
    with pytest.raises(ClientError) as unknown:
        await call(sdk.client(access="testing", secret="testing").list_keys)
    assert unknown.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert (await call(sdk.client().list_keys))["Keys"] == []


async def test_sdk_sees_aws_throttling_and_faults(sdk: Sdk) -> None:
    plan = {"rules": [{"operation": "ListKeys", "sequence": ["throttle", "ok", "throttle", "error_500", "error_503"]}]}
    sdk.fake.faults.configure(ProviderFaults.model_validate(plan))
    retrying = sdk.client(config=Config(retries={"mode": "standard", "total_max_attempts": 2}))
    answer = await call(retrying.list_keys)
    assert answer["ResponseMetadata"]["RetryAttempts"] == 1  # botocore took it as throttling and retried
    kms = sdk.client()
    with pytest.raises(ClientError) as throttled:
        await call(kms.list_keys)
    assert throttled.value.response["Error"]["Code"] == "ThrottlingException"
    assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(kms.exceptions.KMSInternalException):
        await call(kms.list_keys)
    with pytest.raises(ClientError) as unavailable:
        await call(kms.list_keys)
    assert unavailable.value.response["Error"]["Code"] == "ServiceUnavailable"
    assert unavailable.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
