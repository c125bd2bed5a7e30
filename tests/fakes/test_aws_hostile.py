"""Hostile input against the AWS KMS fake: a few hundred bad requests, each answered with a 4xx in
AWS's JSON 1.1 error form (``__type`` + ``message``, ``X-Amzn-ErrorType``), and the fake still
serves a good request afterwards. Cases come from a seeded generator, so a failure repeats.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from keyorch.fakes.aws import AwsKmsFake
from keyorch.fakes.aws_auth import sign_request
from keyorch.fakes.base import MAX_BODY_BYTES, RunningFake, start_fake

JSON11 = "application/x-amz-json-1.1"
SEED = 20260328

#: operation -> member -> kind (s string, i integer, b boolean, l string list, m string map, t tags, x blob)
MEMBERS: dict[str, dict[str, str]] = {
    "CreateKey": {"Description": "s", "KeyUsage": "s", "KeySpec": "s", "Origin": "s", "Tags": "t", "MultiRegion": "b"},
    "DescribeKey": {"KeyId": "s", "GrantTokens": "l"},
    "ListKeys": {"Limit": "i", "Marker": "s"},
    "EnableKey": {"KeyId": "s"},
    "DisableKey": {"KeyId": "s"},
    "ScheduleKeyDeletion": {"KeyId": "s", "PendingWindowInDays": "i"},
    "CancelKeyDeletion": {"KeyId": "s"},
    "CreateAlias": {"AliasName": "s", "TargetKeyId": "s"},
    "DeleteAlias": {"AliasName": "s"},
    "ListAliases": {"KeyId": "s", "Limit": "i", "Marker": "s"},
    "TagResource": {"KeyId": "s", "Tags": "t"},
    "UntagResource": {"KeyId": "s", "TagKeys": "l"},
    "ListResourceTags": {"KeyId": "s", "Limit": "i", "Marker": "s"},
    "Encrypt": {"KeyId": "s", "Plaintext": "x", "EncryptionContext": "m"},
    "Decrypt": {"CiphertextBlob": "x", "KeyId": "s", "EncryptionContext": "m"},
}
#: operations refusing an empty body because a member is required
REQUIRES_MEMBERS = [op for op in MEMBERS if op not in ("CreateKey", "ListKeys", "ListAliases")]


@dataclass
class Case:
    label: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Cases:
    """Builds bad requests against one fake; ``signed`` uses the fake's own key pair."""

    def __init__(self, url: str, creds: dict[str, str], key_id: str) -> None:
        self.url = url
        self.creds = creds
        self.key_id = key_id
        self.rng = random.Random(SEED)

    def signed(self, target: str, body: bytes, extra: dict[str, str] | None = None) -> dict[str, str]:
        return sign_request(
            url=self.url + "/",
            body=body,
            headers={"Content-Type": JSON11, "X-Amz-Target": target, **(extra or {})},
            access_key=self.creds["access_key_id"],
            secret_key=self.creds["secret_access_key"],
        )

    def op_case(self, label: str, operation: str, body: bytes) -> Case:
        return Case(label, "POST", "/", self.signed(f"TrentService.{operation}", body), body)

    def text(self, n: int, alphabet: str = string.printable.strip()) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def wrong_value(self, kind: str) -> Any:
        choices: dict[str, list[Any]] = {
            "s": [5, 1.5, True, [], {}, ["x"], {"a": "b"}],
            "i": ["7", True, [], {}, 1.5, "NaN", [7]],
            "b": ["true", 1, 0, [], {}, "yes"],
            "l": ["x", 5, {"a": "b"}, [1, 2], [None, {}], [[]]],
            "m": ["x", 5, ["a"], {"a": 1}, {"a": None}, {"a": ["b"]}],
            "t": ["x", {"TagKey": "a"}, [1], [{"TagKey": 1, "TagValue": "v"}], [{"TagKey": "k"}], [["k", "v"]]],
            "x": [5, [], {}, "!!!", "a", "=" * 8, "\u00e9\u00e9\u00e9\u00e9"],
        }
        return self.rng.choice(choices[kind])

    def random_paths(self, n: int) -> Iterator[Case]:
        for i in range(n):
            path = "/" + self.text(self.rng.randint(1, 40), string.ascii_letters + string.digits + "-._~/")
            if path.startswith("/_fake") or path == "/":
                path = "/x" + path
            method = self.rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH"])
            body = b'{"KeyId": "x"}'
            headers = self.signed("TrentService.DescribeKey", body) if i % 2 else {}
            yield Case(f"path {method} {path}", method, path, headers, body)

    def wrong_methods(self) -> Iterator[Case]:
        for method in ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"] * 3:
            yield Case(f"method {method}", method, "/", self.signed("TrentService.ListKeys", b"{}"), b"{}")

    def unsigned(self, n: int) -> Iterator[Case]:
        for _ in range(n):
            target = f"TrentService.{self.rng.choice(list(MEMBERS))}"
            headers = {"Content-Type": JSON11, "X-Amz-Target": target}
            yield Case(f"unsigned {target}", "POST", "/", headers, b"{}")

    def garbled_auth(self, n: int) -> Iterator[Case]:
        for i in range(n):
            headers = self.signed("TrentService.ListKeys", b"{}")
            auth = headers["Authorization"]
            if i % 4 == 0:
                garbled = self.text(self.rng.randint(1, 300))
            elif i % 4 == 1:
                garbled = auth[: self.rng.randint(1, len(auth) - 1)]
            elif i % 4 == 2:
                signature = auth.rsplit("=", 1)[1]
                position = self.rng.randrange(len(signature))
                flipped = "0" if signature[position] != "0" else "1"
                garbled = (
                    auth[: len(auth) - len(signature)] + signature[:position] + flipped + signature[position + 1 :]
                )
            else:
                garbled = auth.replace(", ", self.rng.choice([" ", ";", ",,", ", , ", "=,"]), 1)
            yield Case(f"auth {garbled[:60]!r}", "POST", "/", {**headers, "Authorization": garbled}, b"{}")

    def malformed_json(self, n: int) -> Iterator[Case]:
        valid = json.dumps({"KeyId": self.key_id, "Limit": 5, "Tags": [{"TagKey": "a", "TagValue": "b"}]})
        fixed = [b"[", b"{", b"null", b"123", b'"KeyId"', b"[1,2]", b"{'KeyId': 1}", b"\xff\xfe\x00", b"{" * 60_000]
        fixed += [b"[" * 60_000 + b"]" * 60_000]
        for i in range(n):
            if i < len(fixed):
                body = fixed[i]
            elif i % 2:
                body = valid.encode()[: self.rng.randint(1, len(valid) - 1)]
            else:
                body = bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 200)))
            operation = self.rng.choice([*REQUIRES_MEMBERS, "ListKeys"])
            yield self.op_case(f"json {operation} {body[:30]!r}", operation, body)

    def wrong_types(self) -> Iterator[Case]:
        for operation, members in MEMBERS.items():
            for member, kind in members.items():
                for _ in range(2):
                    doc = {member: self.wrong_value(kind)}
                    yield self.op_case(
                        f"type {operation}.{member}={doc[member]!r}", operation, json.dumps(doc).encode()
                    )

    def missing_members(self) -> Iterator[Case]:
        for operation in REQUIRES_MEMBERS:
            yield self.op_case(f"missing {operation}", operation, b"{}")
            yield self.op_case(f"nulls {operation}", operation, json.dumps(dict.fromkeys(MEMBERS[operation])).encode())

    def out_of_range(self) -> Iterator[Case]:
        docs = [
            ("ListKeys", {"Limit": 0}),
            ("ListKeys", {"Limit": 10**400}),
            ("ListKeys", {"Limit": -1}),
            ("ListKeys", {"Marker": ""}),
            ("ListKeys", {"Marker": "\u0100" * 3}),
            ("ListKeys", {"Marker": "9" * 1024}),
            ("ListAliases", {"Marker": "a" * 1025}),
            ("DescribeKey", {"KeyId": "k" * 2049}),
            ("DescribeKey", {"KeyId": "arn:" + "x" * 500}),
            ("DescribeKey", {"KeyId": "\u0000"}),
            ("ScheduleKeyDeletion", {"KeyId": self.key_id, "PendingWindowInDays": 10**30}),
            ("ScheduleKeyDeletion", {"KeyId": self.key_id, "PendingWindowInDays": 6.5}),
            ("CreateKey", {"KeySpec": "X" * 5000}),
            ("CreateKey", {"Tags": [{"TagKey": "k" * 129, "TagValue": "v"}]}),
            ("CreateKey", {"Tags": [{"TagKey": "k", "TagValue": "v" * 257}]}),
            ("CreateKey", {"Tags": [{"TagKey": f"k{i}", "TagValue": "v"} for i in range(51)]}),
            ("CreateAlias", {"AliasName": "alias/" + "a" * 300, "TargetKeyId": self.key_id}),
            ("Encrypt", {"KeyId": self.key_id, "Plaintext": ""}),
            ("Decrypt", {"CiphertextBlob": "AAAA"}),
            ("Decrypt", {"CiphertextBlob": "AQ=="}),
            ("Decrypt", {"CiphertextBlob": "Af8="}),
            ("UntagResource", {"KeyId": self.key_id, "TagKeys": ["a"] * 51}),
            ("TagResource", {"KeyId": self.key_id, "Tags": [{"TagKey": "aws:reserved", "TagValue": "v"}]}),
        ]
        for operation, doc in docs:
            yield self.op_case(f"range {operation} {str(doc)[:60]}", operation, json.dumps(doc).encode())
        window = b'{"KeyId": "%s", "PendingWindowInDays": %s}'
        for number in [b"NaN", b"1e400", b"-Infinity", b"7.000001"]:
            yield self.op_case(f"number {number!r}", "ListKeys", b'{"Limit": %s}' % number)
            yield self.op_case(f"window {number!r}", "ScheduleKeyDeletion", window % (self.key_id.encode(), number))

    def unknown_targets(self) -> Iterator[Case]:
        targets = ["", "TrentService.", "TrentService.GenerateDataKey", "KMS.CreateKey", "TrentService.createkey"]
        targets += [self.text(30) for _ in range(5)]
        for target in targets:
            yield Case(f"target {target!r}", "POST", "/", self.signed(target, b"{}"), b"{}")
        no_target = {k: v for k, v in self.signed("TrentService.ListKeys", b"{}").items() if k != "X-Amz-Target"}
        yield Case("no target header", "POST", "/", no_target, b"{}")

    def oversized(self) -> Iterator[Case]:
        big = json.dumps({"KeyId": self.key_id, "Description": "x" * (MAX_BODY_BYTES + 10)}).encode()
        yield self.op_case("oversized signed", "CreateKey", big)
        yield Case("oversized unsigned", "POST", "/", {"X-Amz-Target": "TrentService.CreateKey"}, big)
        yield self.op_case("description too long", "CreateKey", json.dumps({"Description": "x" * 9000}).encode())

    def huge_headers(self) -> Iterator[Case]:
        yield Case("huge target", "POST", "/", self.signed("TrentService." + "A" * 7000, b"{}"), b"{}")
        headers = self.signed("TrentService.ListKeys", b"{}")
        yield Case("huge auth", "POST", "/", {**headers, "Authorization": headers["Authorization"] + "," * 7000}, b"{}")
        padded = self.signed("TrentService.ListKeys", b"{}", extra={"X-Padding": "p" * 7000})
        yield Case("huge signed header, bad body", "POST", "/", padded, b"{")
        many = {f"X-Junk-{i}": "j" * 60 for i in range(90)}
        yield Case("many headers unsigned", "POST", "/", {**many, "X-Amz-Target": "TrentService.ListKeys"}, b"{}")

    def all(self) -> list[Case]:
        return [
            *self.random_paths(40),
            *self.wrong_methods(),
            *self.unsigned(30),
            *self.garbled_auth(48),
            *self.malformed_json(50),
            *self.wrong_types(),
            *self.missing_members(),
            *self.out_of_range(),
            *self.unknown_targets(),
            *self.oversized(),
            *self.huge_headers(),
        ]


@pytest.fixture
async def running() -> AsyncIterator[RunningFake]:
    fake = await start_fake(AwsKmsFake())
    yield fake
    await fake.stop()


async def send(session: aiohttp.ClientSession, url: str, case: Case) -> tuple[int, dict[str, str], bytes]:
    async with session.request(case.method, url + case.path, headers=case.headers, data=case.body) as r:
        return r.status, dict(r.headers), await r.read()


def form_problem(status: int, headers: dict[str, str], raw: bytes) -> str | None:
    """What is wrong with an error answer, or None when it is a 4xx in AWS's JSON 1.1 form."""
    if not 400 <= status < 500:
        return f"status {status}"
    if not headers.get("Content-Type", "").startswith(JSON11):
        return f"content type {headers.get('Content-Type')}"
    try:
        doc = json.loads(raw)
    except ValueError:
        return f"body is not JSON: {raw[:80]!r}"
    if not isinstance(doc, dict) or not isinstance(doc.get("__type"), str) or not isinstance(doc.get("message"), str):
        return f"body lacks __type/message: {doc!r:.120}"
    if headers.get("X-Amzn-ErrorType") != doc["__type"] or not headers.get("x-amzn-RequestId"):
        return "X-Amzn-ErrorType / x-amzn-RequestId headers missing or wrong"
    return None


async def test_hostile_requests_get_aws_errors_and_fake_survives(running: RunningFake) -> None:
    fake = running.fake
    assert isinstance(fake, AwsKmsFake)
    creds = fake.credentials(running.url)
    async with aiohttp.ClientSession() as session:
        probe = Cases(running.url, creds, "")
        body = b'{"Description": "victim"}'
        async with session.post(
            running.url + "/", data=body, headers=probe.signed("TrentService.CreateKey", body)
        ) as r:
            key_id = json.loads(await r.read())["KeyMetadata"]["KeyId"]
        cases = Cases(running.url, creds, key_id).all()
        assert len(cases) >= 300
        problems: list[str] = []
        codes: set[str] = set()
        for case in cases:
            status, headers, raw = await send(session, running.url, case)
            problem = form_problem(status, headers, raw)
            if problem:
                problems.append(f"{case.label[:100]}: {problem}")
            else:
                codes.add(json.loads(raw)["__type"])
        assert problems == [], "\n".join(problems)
        expected_codes = {
            "UnknownOperationException",
            "MissingAuthenticationTokenException",
            "IncompleteSignatureException",
            "InvalidSignatureException",
            "SerializationException",
            "ValidationException",
            "RequestEntityTooLargeException",
            "InvalidMarkerException",
            "InvalidCiphertextException",
            "TagException",
        }
        assert expected_codes <= codes
        good = b'{"KeyId": "%s"}' % key_id.encode()
        async with session.post(
            running.url + "/", data=good, headers=probe.signed("TrentService.DescribeKey", good)
        ) as r:
            assert r.status == 200
            meta = json.loads(await r.read())["KeyMetadata"]
    assert meta["KeyState"] == "Enabled" and meta["Description"] == "victim"
    assert [k["KeyId"] for k in fake.state_snapshot()["keys"]] == [key_id]
    assert not any(entry.status is not None and entry.status >= 500 for entry in fake.log.entries)
