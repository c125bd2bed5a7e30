"""The AWS KMS fake over its real wire protocol (JSON 1.1 over loopback, SigV4-signed).

The state table below is written from docs/providers.md §1.3 and AWS's key-state table
(awsdocs/aws-kms-developer-guide, doc_source/key-state.md), not from moto (§6.1).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from keyorch.fakes.aws import AwsKmsFake
from keyorch.fakes.aws_auth import sign_request
from keyorch.fakes.base import RunningFake, start_fake
from keyorch.fakes.faults import ProviderFaults

JSON11 = "application/x-amz-json-1.1"
DAY = 86400.0


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    raw: bytes

    @property
    def code(self) -> str | None:
        return self.body.get("__type") if self.status != 200 else None


class Kms:
    """A raw KMS client: signs like an SDK, returns status, JSON body and headers."""

    def __init__(self, running: RunningFake, session: aiohttp.ClientSession) -> None:
        self.running = running
        self.fake: AwsKmsFake = running.fake  # type: ignore[assignment]
        self.session = session
        creds = self.fake.credentials(running.url)
        self.access_key, self.secret_key = creds["access_key_id"], creds["secret_access_key"]

    def signed(self, action: str, body: bytes, secret: str | None = None, access: str | None = None) -> dict[str, str]:
        return sign_request(
            url=self.running.url + "/",
            body=body,
            headers={"Content-Type": JSON11, "X-Amz-Target": f"TrentService.{action}"},
            access_key=access or self.access_key,
            secret_key=secret or self.secret_key,
        )

    async def send(self, headers: dict[str, str], body: bytes, method: str = "POST", path: str = "/") -> Answer:
        async with self.session.request(method, self.running.url + path, data=body, headers=headers) as r:
            raw = await r.read()
            doc = json.loads(raw) if raw else {}
            return Answer(r.status, doc, dict(r.headers), raw)

    async def call(self, action: str, doc: dict[str, Any] | None = None) -> Answer:
        body = json.dumps(doc or {}).encode()
        return await self.send(self.signed(action, body), body)

    async def ok(self, action: str, doc: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = await self.call(action, doc)
        assert answer.status == 200, (action, answer.status, answer.body)
        return answer.body

    async def state(self, key_id: str) -> str | None:
        answer = await self.call("DescribeKey", {"KeyId": key_id})
        return answer.body["KeyMetadata"]["KeyState"] if answer.status == 200 else answer.code

    async def advance(self, seconds: float) -> None:
        async with self.session.post(self.running.url + "/_fake/clock", json={"advance_seconds": seconds}) as r:
            assert r.status == 200


@pytest.fixture
async def kms() -> AsyncIterator[Kms]:
    running = await start_fake(AwsKmsFake())
    async with aiohttp.ClientSession() as session:
        yield Kms(running, session)
    await running.stop()


# -- the state table -----------------------------------------------------------------------------

E, D, PI, PD = "Enabled", "Disabled", "PendingImport", "PendingDeletion"
KIS = "KMSInvalidStateException"

#: operation -> state -> ("ok", state after) or (error code, message fragment)
STATE_TABLE: dict[str, dict[str, tuple[str, str]]] = {
    "EnableKey": {E: ("ok", E), D: ("ok", E), PI: (KIS, "is pending import"), PD: (KIS, "is pending deletion")},
    "DisableKey": {E: ("ok", D), D: ("ok", D), PI: (KIS, "is pending import"), PD: (KIS, "is pending deletion")},
    "ScheduleKeyDeletion": {E: ("ok", PD), D: ("ok", PD), PI: ("ok", PD), PD: (KIS, "is pending deletion")},
    "CancelKeyDeletion": {
        E: (KIS, "is not pending deletion"),
        D: (KIS, "is not pending deletion"),
        PI: (KIS, "is not pending deletion"),
        PD: ("ok", D),
    },
    "DescribeKey": {E: ("ok", E), D: ("ok", D), PI: ("ok", PI), PD: ("ok", PD)},
    "Encrypt": {
        E: ("ok", E),
        D: ("DisabledException", "is disabled"),
        PI: (KIS, "is pending import"),
        PD: (KIS, "is pending deletion"),
    },
    "Decrypt": {
        E: ("ok", E),
        D: ("DisabledException", "is disabled"),
        PI: (KIS, "is pending import"),
        PD: (KIS, "is pending deletion"),
    },
    "CreateAlias": {E: ("ok", E), D: ("ok", D), PI: ("ok", PI), PD: (KIS, "is pending deletion")},
    "DeleteAlias": {E: ("ok", E), D: ("ok", D), PI: ("ok", PI), PD: ("ok", PD)},
    "TagResource": {E: ("ok", E), D: ("ok", D), PI: ("ok", PI), PD: (KIS, "is pending deletion")},
    "UntagResource": {E: ("ok", E), D: ("ok", D), PI: ("ok", PI), PD: (KIS, "is pending deletion")},
    "ListResourceTags": {E: ("ok", E), D: ("ok", D), PI: ("ok", PI), PD: ("ok", PD)},
    "ListAliases": {E: ("ok", E), D: ("ok", D), PI: ("ok", PI), PD: ("ok", PD)},
}
CELLS = [(op, state) for op, row in STATE_TABLE.items() for state in row]


def forged_blob(key_id: str) -> str:
    """A ciphertext naming ``key_id`` and its first key material (for keys that cannot encrypt: the
    state check comes first). Layout: blob version 2, key id length, key id, material index, nonce, sealed."""
    raw = key_id.encode()
    return base64.b64encode(bytes([2, len(raw)]) + raw + bytes(2) + os.urandom(48)).decode()


async def key_in_state(kms: Kms, state: str) -> tuple[str, str]:
    """A key in ``state`` (reached through the API only), with an alias and a ciphertext for it."""
    origin = "EXTERNAL" if state == PI else "AWS_KMS"
    created = await kms.ok("CreateKey", {"Origin": origin, "Tags": [{"TagKey": "t", "TagValue": "v"}]})
    key_id = created["KeyMetadata"]["KeyId"]
    await kms.ok("CreateAlias", {"AliasName": f"alias/k-{key_id}", "TargetKeyId": key_id})
    if state == PI:
        blob = forged_blob(key_id)
    else:
        blob = (await kms.ok("Encrypt", {"KeyId": key_id, "Plaintext": base64.b64encode(b"x").decode()}))[
            "CiphertextBlob"
        ]
    if state == D:
        await kms.ok("DisableKey", {"KeyId": key_id})
    if state == PD:
        await kms.ok("ScheduleKeyDeletion", {"KeyId": key_id, "PendingWindowInDays": 7})
    assert await kms.state(key_id) == state
    return key_id, blob


def request_for(operation: str, key_id: str, blob: str) -> dict[str, Any]:
    alias = f"alias/k-{key_id}"
    requests: dict[str, dict[str, Any]] = {
        "CreateAlias": {"AliasName": f"alias/new-{key_id}", "TargetKeyId": key_id},
        "DeleteAlias": {"AliasName": alias},
        "Encrypt": {"KeyId": key_id, "Plaintext": base64.b64encode(b"secret").decode()},
        "Decrypt": {"CiphertextBlob": blob},
        "TagResource": {"KeyId": key_id, "Tags": [{"TagKey": "u", "TagValue": "w"}]},
        "UntagResource": {"KeyId": key_id, "TagKeys": ["t"]},
    }
    return requests.get(operation, {"KeyId": key_id})


@pytest.mark.parametrize(("operation", "state"), CELLS, ids=[f"{o}-{s}" for o, s in CELLS])
async def test_state_table(kms: Kms, operation: str, state: str) -> None:
    key_id, blob = await key_in_state(kms, state)
    expected, detail = STATE_TABLE[operation][state]
    answer = await kms.call(operation, request_for(operation, key_id, blob))
    if expected == "ok":
        assert answer.status == 200, answer.body
        assert await kms.state(key_id) == detail
    else:
        assert (answer.status, answer.code) == (400, expected)
        assert detail in answer.body["message"]
        assert answer.headers["X-Amzn-ErrorType"] == expected
        assert await kms.state(key_id) == state  # a refused call changes nothing


async def test_cancel_on_imported_key_without_material_returns_to_pending_import(kms: Kms) -> None:
    key_id, _ = await key_in_state(kms, PI)
    await kms.ok("ScheduleKeyDeletion", {"KeyId": key_id})
    await kms.ok("CancelKeyDeletion", {"KeyId": key_id})
    assert await kms.state(key_id) == PI
    assert (await kms.call("EnableKey", {"KeyId": key_id})).code == KIS


# -- deletion windows on the fake clock ----------------------------------------------------------


@pytest.mark.parametrize("window", [0, 1, 6, 31, 365, 366, -3])
async def test_window_outside_7_to_30_is_validation_exception(kms: Kms, window: int) -> None:
    key_id = (await kms.ok("CreateKey"))["KeyMetadata"]["KeyId"]
    answer = await kms.call("ScheduleKeyDeletion", {"KeyId": key_id, "PendingWindowInDays": window})
    assert (answer.status, answer.code) == (400, "ValidationException")
    if 1 <= window <= 365:
        assert answer.body["message"] == "PendingWindowInDays must be between 7 and 30"
    assert await kms.state(key_id) == E


@pytest.mark.parametrize("window", [7, 30, None])
async def test_schedule_response_and_window(kms: Kms, window: int | None) -> None:
    key = (await kms.ok("CreateKey"))["KeyMetadata"]
    doc: dict[str, Any] = {"KeyId": key["KeyId"]}
    if window is not None:
        doc["PendingWindowInDays"] = window
    before = kms.fake.clock.now().timestamp()
    answer = await kms.call("ScheduleKeyDeletion", doc)
    days = window or 30
    assert answer.status == 200
    assert answer.body["KeyId"] == key["Arn"]
    assert answer.body["KeyState"] == PD and answer.body["PendingWindowInDays"] == days
    assert answer.body["DeletionDate"] - before == pytest.approx(days * DAY, abs=5)
    described = (await kms.ok("DescribeKey", {"KeyId": key["KeyId"]}))["KeyMetadata"]
    assert described["DeletionDate"] == answer.body["DeletionDate"] and described["Enabled"] is False


async def test_key_is_gone_once_deletion_date_passes(kms: Kms) -> None:
    key_id = (await kms.ok("CreateKey"))["KeyMetadata"]["KeyId"]
    keep = (await kms.ok("CreateKey"))["KeyMetadata"]["KeyId"]
    await kms.ok("CreateAlias", {"AliasName": "alias/doomed", "TargetKeyId": key_id})
    await kms.ok("ScheduleKeyDeletion", {"KeyId": key_id, "PendingWindowInDays": 7})
    await kms.advance(7 * DAY - 60)
    assert await kms.state(key_id) == PD
    assert [k["KeyId"] for k in (await kms.ok("ListKeys"))["Keys"]] == [key_id, keep]  # pending keys are listed
    await kms.advance(120)
    assert await kms.state(key_id) == "NotFoundException"
    for action, doc in [
        ("EnableKey", {"KeyId": key_id}),
        ("CancelKeyDeletion", {"KeyId": key_id}),
        ("DescribeKey", {"KeyId": "alias/doomed"}),
    ]:
        assert (await kms.call(action, doc)).code == "NotFoundException"
    listed = [k["KeyId"] for k in (await kms.ok("ListKeys"))["Keys"]]
    assert listed == [keep]
    assert (await kms.ok("ListAliases"))["Aliases"] == []
    assert [k["KeyId"] for k in kms.fake.state_snapshot()["keys"]] == [keep]


async def test_cancel_keeps_key_past_its_old_date(kms: Kms) -> None:
    key_id = (await kms.ok("CreateKey"))["KeyMetadata"]["KeyId"]
    await kms.ok("ScheduleKeyDeletion", {"KeyId": key_id, "PendingWindowInDays": 7})
    assert (await kms.ok("CancelKeyDeletion", {"KeyId": key_id}))["KeyId"].endswith(key_id)
    await kms.advance(31 * DAY)
    described = (await kms.ok("DescribeKey", {"KeyId": key_id}))["KeyMetadata"]
    assert described["KeyState"] == D and "DeletionDate" not in described
    await kms.ok("EnableKey", {"KeyId": key_id})
    assert await kms.state(key_id) == E


async def test_rescheduled_deletion_happens_at_the_new_date_only(kms: Kms) -> None:
    """A cancelled deletion's old date leaves nothing behind: the key goes at its new date, not before."""
    key_id = (await kms.ok("CreateKey"))["KeyMetadata"]["KeyId"]
    await kms.ok("ScheduleKeyDeletion", {"KeyId": key_id, "PendingWindowInDays": 7})
    await kms.ok("CancelKeyDeletion", {"KeyId": key_id})
    await kms.ok("ScheduleKeyDeletion", {"KeyId": key_id, "PendingWindowInDays": 30})
    await kms.advance(8 * DAY)
    assert await kms.state(key_id) == PD
    await kms.advance(22 * DAY + 60)
    assert await kms.state(key_id) == "NotFoundException"


# -- protocol details -----------------------------------------------------------------------------


async def test_create_key_metadata_and_headers(kms: Kms) -> None:
    doc = {"Description": "orders", "Tags": [{"TagKey": "keyorch:id", "TagValue": "mk-1"}]}
    answer = await kms.call("CreateKey", doc)
    meta = answer.body["KeyMetadata"]
    assert answer.headers["Content-Type"].startswith(JSON11) and answer.headers["x-amzn-RequestId"]
    assert meta["KeyState"] == E and meta["Enabled"] is True and meta["Origin"] == "AWS_KMS"
    assert meta["Arn"] == f"arn:aws:kms:us-east-1:111122223333:key/{meta['KeyId']}"
    assert meta["KeySpec"] == "SYMMETRIC_DEFAULT" and meta["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert meta["Description"] == "orders" and abs(meta["CreationDate"] - datetime.now(UTC).timestamp()) < 60
    tags = await kms.ok("ListResourceTags", {"KeyId": meta["KeyId"]})
    assert tags["Tags"] == doc["Tags"] and tags["Truncated"] is False
    external = (await kms.ok("CreateKey", {"Origin": "EXTERNAL"}))["KeyMetadata"]
    assert external["KeyState"] == PI and external["Enabled"] is False
    hmac_key = (await kms.ok("CreateKey", {"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}))["KeyMetadata"]
    assert hmac_key["MacAlgorithms"] == ["HMAC_SHA_256"]
    enable = await kms.call("EnableKey", {"KeyId": meta["KeyId"]})
    assert enable.status == 200 and enable.raw == b""


@pytest.mark.parametrize(
    ("doc", "code"),
    [
        ({"KeySpec": "HMAC_256"}, "ValidationException"),
        ({"KeyUsage": "SIGN_VERIFY"}, "ValidationException"),
        ({"KeySpec": "RSA_1024"}, "ValidationException"),
        (
            {"KeySpec": "RSA_2048", "CustomerMasterKeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY"},
            "ValidationException",
        ),
        ({"Origin": "AWS_CLOUDHSM"}, "CustomKeyStoreNotFoundException"),
        ({"Tags": [{"TagKey": "aws:x", "TagValue": "y"}]}, "TagException"),
        ({"Tags": [{"TagKey": "a", "TagValue": "1"}, {"TagKey": "a", "TagValue": "2"}]}, "TagException"),
        ({"Policy": "not json"}, "MalformedPolicyDocumentException"),
        ({"Description": "x" * 8193}, "ValidationException"),
        ({"Description": 5}, "SerializationException"),
        ({"MultiRegion": "yes"}, "SerializationException"),
    ],
)
async def test_create_key_refusals(kms: Kms, doc: dict[str, Any], code: str) -> None:
    answer = await kms.call("CreateKey", doc)
    assert (answer.status, answer.code) == (400, code)
    assert (await kms.ok("ListKeys"))["Keys"] == []


async def test_key_references(kms: Kms) -> None:
    meta = (await kms.ok("CreateKey"))["KeyMetadata"]
    await kms.ok("CreateAlias", {"AliasName": "alias/orders", "TargetKeyId": meta["Arn"]})
    alias_arn = "arn:aws:kms:us-east-1:111122223333:alias/orders"
    for ref in [meta["KeyId"], meta["Arn"], "alias/orders", alias_arn]:
        assert (await kms.ok("DescribeKey", {"KeyId": ref}))["KeyMetadata"]["KeyId"] == meta["KeyId"]
    refusals = [
        ("EnableKey", "alias/orders", "NotFoundException"),
        ("DisableKey", alias_arn, "NotFoundException"),
        ("DescribeKey", "alias/none", "NotFoundException"),
        ("DescribeKey", "not-a-key", "NotFoundException"),
        ("DescribeKey", "0b7e2f62-33a1-4a34-8a5e-2b64b0a6c2aa", "NotFoundException"),
        ("DescribeKey", meta["Arn"].replace("111122223333", "999999999999"), "NotFoundException"),
        ("DescribeKey", "arn:aws:kms:us-east-1:111122223333:nonsense", "InvalidArnException"),
        ("DescribeKey", "", "ValidationException"),
    ]
    for action, ref, code in refusals:
        assert (await kms.call(action, {"KeyId": ref})).code == code, (action, ref)
    missing = await kms.call("DescribeKey", {"KeyId": "0b7e2f62-33a1-4a34-8a5e-2b64b0a6c2aa"})
    assert missing.body["message"] == (
        "Key 'arn:aws:kms:us-east-1:111122223333:key/0b7e2f62-33a1-4a34-8a5e-2b64b0a6c2aa' does not exist"
    )


async def test_list_keys_pages_with_limit_and_marker(kms: Kms) -> None:
    created = [(await kms.ok("CreateKey"))["KeyMetadata"]["KeyId"] for _ in range(5)]
    seen: list[str] = []
    doc: dict[str, Any] = {"Limit": 2}
    pages = 0
    while True:
        page = await kms.ok("ListKeys", doc)
        pages += 1
        assert len(page["Keys"]) <= 2
        seen += [k["KeyId"] for k in page["Keys"]]
        if not page["Truncated"]:
            assert "NextMarker" not in page
            break
        doc["Marker"] = page["NextMarker"]
    assert seen == created and pages == 3
    for bad in [{"Marker": "bogus!"}, {"Marker": base64.urlsafe_b64encode(b"aliases:1").decode()}]:
        assert (await kms.call("ListKeys", bad)).code == "InvalidMarkerException"
    for limit in [0, 1001]:
        assert (await kms.call("ListKeys", {"Limit": limit})).code == "ValidationException"
    assert (await kms.call("ListKeys", {"Limit": "2"})).code == "SerializationException"


async def test_aliases_filter_page_and_delete(kms: Kms) -> None:
    first = (await kms.ok("CreateKey"))["KeyMetadata"]["KeyId"]
    second = (await kms.ok("CreateKey"))["KeyMetadata"]["KeyId"]
    for i in range(3):
        await kms.ok("CreateAlias", {"AliasName": f"alias/a{i}", "TargetKeyId": first})
    await kms.ok("CreateAlias", {"AliasName": "alias/b", "TargetKeyId": second})
    taken = await kms.call("CreateAlias", {"AliasName": "alias/b", "TargetKeyId": first})
    assert taken.code == "AlreadyExistsException"
    for name in ["orders", "alias/aws/s3", "alias/"]:
        refused = await kms.call("CreateAlias", {"AliasName": name, "TargetKeyId": first})
        assert refused.code == "InvalidAliasNameException", name
    assert (await kms.call("CreateAlias", {"AliasName": "alias/sp ace", "TargetKeyId": first})).code == (
        "ValidationException"
    )
    page = await kms.ok("ListAliases", {"KeyId": first, "Limit": 2})
    assert [a["AliasName"] for a in page["Aliases"]] == ["alias/a0", "alias/a1"] and page["Truncated"] is True
    rest = await kms.ok("ListAliases", {"KeyId": first, "Marker": page["NextMarker"]})
    assert [a["AliasName"] for a in rest["Aliases"]] == ["alias/a2"] and rest["Truncated"] is False
    entry = rest["Aliases"][0]
    assert entry["TargetKeyId"] == first and entry["AliasArn"].endswith(":alias/a2")
    await kms.ok("DeleteAlias", {"AliasName": "alias/a2"})
    assert (await kms.call("DeleteAlias", {"AliasName": "alias/a2"})).code == "NotFoundException"
    everything = await kms.ok("ListAliases")
    assert [a["AliasName"] for a in everything["Aliases"]] == ["alias/a0", "alias/a1", "alias/b"]
    assert (await kms.call("ListAliases", {"KeyId": "alias/b"})).code == "NotFoundException"


async def test_tags_merge_remove_and_limit(kms: Kms) -> None:
    key_id = (await kms.ok("CreateKey", {"Tags": [{"TagKey": "a", "TagValue": "1"}]}))["KeyMetadata"]["KeyId"]
    await kms.ok(
        "TagResource", {"KeyId": key_id, "Tags": [{"TagKey": "a", "TagValue": "2"}, {"TagKey": "b", "TagValue": ""}]}
    )
    await kms.ok("UntagResource", {"KeyId": key_id, "TagKeys": ["b", "never-there"]})
    assert (await kms.ok("ListResourceTags", {"KeyId": key_id}))["Tags"] == [{"TagKey": "a", "TagValue": "2"}]
    many = [{"TagKey": f"k{i}", "TagValue": "v"} for i in range(50)]
    assert (await kms.call("TagResource", {"KeyId": key_id, "Tags": many})).code == "LimitExceededException"
    await kms.ok("TagResource", {"KeyId": key_id, "Tags": many[:49]})
    page = await kms.ok("ListResourceTags", {"KeyId": key_id, "Limit": 30})
    rest = await kms.ok("ListResourceTags", {"KeyId": key_id, "Marker": page["NextMarker"]})
    assert len(page["Tags"]) == 30 and len(rest["Tags"]) == 20 and rest["Truncated"] is False
    assert (await kms.call("TagResource", {"KeyId": key_id})).code == "ValidationException"


async def test_encrypt_decrypt_round_trip(kms: Kms) -> None:
    key_id = (await kms.ok("CreateKey"))["KeyMetadata"]["KeyId"]
    other = (await kms.ok("CreateKey"))["KeyMetadata"]["KeyId"]
    await kms.ok("CreateAlias", {"AliasName": "alias/enc", "TargetKeyId": key_id})
    plaintext = os.urandom(4096)
    context = {"purpose": "test"}
    sealed = await kms.ok(
        "Encrypt",
        {"KeyId": "alias/enc", "Plaintext": base64.b64encode(plaintext).decode(), "EncryptionContext": context},
    )
    blob = sealed["CiphertextBlob"]
    assert sealed["KeyId"].endswith(key_id) and plaintext not in base64.b64decode(blob)
    opened = await kms.ok("Decrypt", {"CiphertextBlob": blob, "EncryptionContext": context})
    assert base64.b64decode(opened["Plaintext"]) == plaintext and opened["KeyId"].endswith(key_id)
    refusals = [
        ({"CiphertextBlob": blob}, "InvalidCiphertextException"),
        ({"CiphertextBlob": blob, "EncryptionContext": {"purpose": "other"}}, "InvalidCiphertextException"),
        ({"CiphertextBlob": blob, "EncryptionContext": context, "KeyId": other}, "IncorrectKeyException"),
        ({"CiphertextBlob": base64.b64encode(b"garbage" * 10).decode()}, "InvalidCiphertextException"),
        ({"CiphertextBlob": "!!not base64!!"}, "SerializationException"),
        ({"CiphertextBlob": forged_blob("00000000-0000-4000-8000-000000000000")}, "NotFoundException"),
    ]
    for doc, code in refusals:
        assert (await kms.call("Decrypt", doc)).code == code, doc
    too_big = base64.b64encode(b"x" * 4097).decode()
    assert (await kms.call("Encrypt", {"KeyId": key_id, "Plaintext": too_big})).code == "ValidationException"
    hmac_key = (await kms.ok("CreateKey", {"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}))["KeyMetadata"]
    refused = await kms.call("Encrypt", {"KeyId": hmac_key["KeyId"], "Plaintext": base64.b64encode(b"x").decode()})
    assert refused.code == "InvalidKeyUsageException"


# -- auth ----------------------------------------------------------------------------------------


async def test_missing_and_malformed_authorization(kms: Kms) -> None:
    body = b"{}"
    good = kms.signed("ListKeys", body)
    unsigned = {k: v for k, v in good.items() if k != "Authorization"}
    answer = await kms.send(unsigned, body)
    assert (answer.status, answer.code) == (400, "MissingAuthenticationTokenException")
    auth = good["Authorization"]
    garbled = [
        "Bearer abc",
        "AWS4-HMAC-SHA256",
        auth.replace("Credential=", "Cred="),
        auth.replace("/kms/", "/s3/"),
        auth.replace("aws4_request", "aws5_request"),
        auth.split(", Signature=")[0] + ", Signature=zz",
        auth.split("/")[0] + "/2001/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=" + "0" * 64,
        auth + "x" * 5000,
    ]
    for header in garbled:
        answer = await kms.send({**good, "Authorization": header}, body)
        assert (answer.status, answer.code) == (400, "IncompleteSignatureException"), header[:80]
    no_date = {k: v for k, v in good.items() if k != "X-Amz-Date"}
    assert (await kms.send(no_date, body)).code == "IncompleteSignatureException"


async def test_signature_is_verified_for_the_fakes_own_key(kms: Kms) -> None:
    body = b"{}"
    wrong = await kms.send(kms.signed("ListKeys", body, secret="not-the-secret"), body)
    assert (wrong.status, wrong.code) == (400, "InvalidSignatureException")
    tampered = await kms.send(kms.signed("ListKeys", body), b'{"Limit": 1}')
    assert tampered.code == "InvalidSignatureException"
    good = kms.signed("ListKeys", body)
    reordered = good["Authorization"].replace("SignedHeaders=", "SignedHeaders=x-amz-date;")
    assert (await kms.send({**good, "Authorization": reordered}, body)).code == "InvalidSignatureException"
    dummy = await kms.send(kms.signed("ListKeys", body, access="AKIDUMMY", secret="dummy"), body)
    assert dummy.status == 200
    kms.fake.strict = True
    refused = await kms.send(kms.signed("ListKeys", body, access="AKIDUMMY", secret="dummy"), body)
    assert (refused.status, refused.code) == (400, "UnrecognizedClientException")
    assert (await kms.call("ListKeys")).status == 200


# -- faults in AWS's own form ----------------------------------------------------------------------


async def test_faults_come_out_as_aws_errors(kms: Kms) -> None:
    plan = {"rules": [{"operation": "ListKeys", "sequence": ["throttle", "error_500", "error_503", "ok"]}]}
    kms.fake.faults.configure(ProviderFaults.model_validate(plan))
    answers = [await kms.call("ListKeys") for _ in range(4)]
    assert [(a.status, a.code) for a in answers] == [
        (400, "ThrottlingException"),
        (500, "KMSInternalException"),
        (503, "ServiceUnavailable"),
        (200, None),
    ]
    assert "Retry-After" not in answers[0].headers
    assert answers[0].body["message"].startswith("You have exceeded the rate")
    assert all(a.headers["Content-Type"].startswith(JSON11) for a in answers)
    assert kms.fake.log.counts["ListKeys"] == 4


async def test_operation_names_and_reset(kms: Kms) -> None:
    await kms.ok("CreateKey")
    await kms.call("GenerateDataKey")
    assert dict(kms.fake.log.counts) == {"CreateKey": 1, "unknown": 1}
    async with kms.session.post(kms.running.url + "/_fake/reset") as r:
        assert r.status == 200
    assert kms.fake.state_snapshot()["keys"] == [] and (await kms.ok("ListKeys"))["Keys"] == []
    async with kms.session.get(kms.running.url + "/_fake/credentials") as r:
        creds = await r.json()
    assert set(creds) == {"access_key_id", "secret_access_key"} and creds["access_key_id"].startswith("AKIA")
