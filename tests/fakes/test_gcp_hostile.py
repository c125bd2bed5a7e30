"""The Google Cloud KMS fake under hostile input: hundreds of bad requests, each a 4xx in Google's form."""

from __future__ import annotations

import json
import random
import string
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from keyorch.fakes.base import RunningFake, start_fake
from keyorch.fakes.gcp import GoogleKmsFake
from keyorch.fakes.gcp_model import GoogleError, check_labels, decode_bytes, parse_duration, parse_enum
from keyorch.fakes.gcp_request import message, parse_filter

PARENT = "projects/p/locations/global"
RING = f"{PARENT}/keyRings/r"
KEY = f"{RING}/cryptoKeys/k"
VERSION = f"{KEY}/cryptoKeyVersions/1"
CANONICAL = set(GoogleError.HTTP)
METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE", "OPTIONS")
VALID = {
    ("POST", f"{PARENT}/keyRings"),
    ("GET", f"{PARENT}/keyRings"),
    ("GET", RING),
    ("POST", f"{RING}/cryptoKeys"),
    ("GET", f"{RING}/cryptoKeys"),
    ("GET", KEY),
    ("PATCH", KEY),
    ("POST", f"{KEY}/cryptoKeyVersions"),
    ("GET", f"{KEY}/cryptoKeyVersions"),
    ("GET", VERSION),
    ("PATCH", VERSION),
}


@dataclass
class Bad:
    method: str
    path: str  # already percent-encoded, may carry a query
    body: bytes | None = None
    headers: dict[str, str] | None = None
    oauth: bool = False  # the token endpoint answers in OAuth form


def _junk(rng: random.Random, size: int) -> str:
    alphabet = string.ascii_letters + string.digits + "-_.~:@!$&'()*+,;= %\"<>\\^`{|}é☃\x00"
    return "".join(rng.choice(alphabet) for _ in range(size))


def _values(*values: Any) -> tuple[Any, ...]:
    return values


def _json(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def random_paths(rng: random.Random, count: int) -> list[Bad]:
    out = []
    for _ in range(count):
        segments = [quote(_junk(rng, rng.randint(1, 12)), safe="") for _ in range(rng.randint(1, 8))]
        prefix = rng.choice(["/v1/", "/", "/v2/", "/v1/projects/", f"/v1/{RING}/", f"/v1/{VERSION}:"])
        out.append(Bad(rng.choice(METHODS), prefix + "/".join(segments), _json({})))
    return out


def wrong_methods() -> list[Bad]:
    paths = sorted({path for _, path in VALID} | {f"{VERSION}:destroy", f"{VERSION}:restore", f"{KEY}:encrypt"})
    return [Bad(m, f"/v1/{p}", _json({})) for p in paths for m in METHODS if (m, p) not in VALID and m != "POST"]


MALFORMED = [
    b"{",
    b'{"purpose":',
    b'{"purpose": "ENCRYPT_DECRYPT"',
    b"[1, 2]",
    b"null",
    b"42",
    b'"text"',
    b"\xff\xfe\x00{",
    b"{'single': 'quotes'}",
    b'{"a": NaN',
    b"[" * 50_000,
    b'{"a":' * 20_000,
]
POSTS = [
    f"{PARENT}/keyRings?keyRingId=new",
    f"{RING}/cryptoKeys?cryptoKeyId=new",
    f"{KEY}:encrypt",
    f"{KEY}:decrypt",
    f"{KEY}:updatePrimaryVersion",
    f"{VERSION}:destroy",
    f"{VERSION}:restore",
    f"{KEY}/cryptoKeyVersions",
]


def malformed_bodies() -> list[Bad]:
    out = [Bad("POST", f"/v1/{path}", body) for path in POSTS for body in MALFORMED]
    out += [Bad("PATCH", f"/v1/{VERSION}?updateMask=state", body) for body in MALFORMED]
    return out


WRONG_KEY_BODIES: list[dict[str, Any]] = [
    {"purpose": value} for value in _values(5.5, [], {}, True, None, "FOO", 99, -1, "encrypt_decrypt", "", 0)
] + [
    {"purpose": "ENCRYPT_DECRYPT", "labels": value} for value in _values("x", [], {"A": "b"}, {"a": 1}, {"a": None})
] + [
    {"purpose": "ENCRYPT_DECRYPT", "versionTemplate": value}
    for value in _values("x", [], 5, {"protectionLevel": "GOLD"}, {"algorithm": 3.5}, {"x": 1}, {"protectionLevel": 3})
] + [
    {"purpose": "ENCRYPT_DECRYPT", "destroyScheduledDuration": value}
    for value in _values(5, "5", "-1s", "1e9s", "86400", "s", "3600s", {}, "99999999999999s")
] + [
    {"purpose": "ENCRYPT_DECRYPT", "rotationPeriod": value} for value in _values("60s", 7, "x")
] + [
    {"purpose": "ENCRYPT_DECRYPT", "nextRotationTime": value} for value in _values("yesterday", "2030-01-01T00:00:00")
] + [
    {"purpose": "ENCRYPT_DECRYPT", "importOnly": True},
    {"purpose": "ENCRYPT_DECRYPT", "noSuchField": 1},
    {"purpose": "ENCRYPT_DECRYPT", "versionTemplate": {"algorithm": "EC_SIGN_P256_SHA256"}},
]  # fmt: skip
WRONG_CRYPTO: list[tuple[str, dict[str, Any]]] = [
    (f"{KEY}:encrypt", {"plaintext": value})
    for value in _values(123, None, [], "!!!", "a", "====", "YQ===", "", {"b": 1}, True)
] + [
    (f"{KEY}:encrypt", {"plaintext": "YWJj", "additionalAuthenticatedData": 5}),
    (f"{KEY}:encrypt", {"plaintext": "YWJj", "plaintextCrc32c": "-5"}),
    (f"{KEY}:encrypt", {"plaintext": "YWJj", "plaintextCrc32c": True}),
    (f"{KEY}:encrypt", {"plaintext": "YWJj", "plaintextCrc32c": "1"}),
    (f"{KEY}:encrypt", {"plaintext": "YWJj", "extra": "x"}),
] + [
    (f"{KEY}:decrypt", {"ciphertext": value})
    for value in _values(5, None, "", "AAAA", "AAAAAQ" + "A" * 60, "%%%", [])
] + [
    (f"{KEY}:updatePrimaryVersion", {"cryptoKeyVersionId": value}) for value in _values(2, None, "", "99", "abc", [])
]  # fmt: skip


def wrong_types() -> list[Bad]:
    out = [Bad("POST", f"/v1/{RING}/cryptoKeys?cryptoKeyId=new", _json(body)) for body in WRONG_KEY_BODIES]
    out += [Bad("POST", f"/v1/{path}", _json(body)) for path, body in WRONG_CRYPTO]
    for state in _values(None, 1.5, "DESTROYED", "DESTROY_SCHEDULED", "", [], {}, True, 3, 99, "enabled"):
        out.append(Bad("PATCH", f"/v1/{VERSION}?updateMask=state", _json({"state": state})))
    for body in ({"labels": "x"}, {"labels": {"BAD": "x"}}, {"rotationPeriod": "1s"}):
        out.append(Bad("PATCH", f"/v1/{KEY}?updateMask=labels,rotationPeriod", _json(body)))
    return out


def missing_and_query() -> list[Bad]:
    out = [
        Bad("POST", f"/v1/{PARENT}/keyRings", _json({})),
        Bad("POST", f"/v1/{RING}/cryptoKeys", _json({"purpose": "ENCRYPT_DECRYPT"})),
        Bad("POST", f"/v1/{RING}/cryptoKeys?cryptoKeyId=new", _json({})),
        Bad("POST", f"/v1/{RING}/cryptoKeys?cryptoKeyId=new", b""),
        Bad("PATCH", f"/v1/{VERSION}", _json({"state": "DISABLED"})),
        Bad("PATCH", f"/v1/{VERSION}?updateMask=state", _json({})),
        Bad("PATCH", f"/v1/{KEY}", _json({"labels": {}})),
        Bad("POST", f"/v1/{KEY}:encrypt", _json({})),
        Bad("POST", f"/v1/{KEY}:decrypt", b""),
        Bad("POST", f"/v1/{KEY}:updatePrimaryVersion", b""),
        Bad("POST", f"/v1/{PARENT}/keyRings?keyRingId=r", _json({})),  # exists
        Bad("POST", f"/v1/{RING}/cryptoKeys?cryptoKeyId=k", _json({"purpose": "ENCRYPT_DECRYPT"})),  # exists
        Bad("GET", f"/v1/{KEY}/cryptoKeyVersions/0"),
        Bad("GET", f"/v1/{KEY}/cryptoKeyVersions/x"),
        Bad("GET", f"/v1/{KEY}/cryptoKeyVersions/99999999999999999999"),
        Bad("GET", f"/v1/{KEY}/cryptoKeyVersions/%D9%A1"),  # a non-ASCII digit one
        Bad("POST", f"/v1/{KEY}:updatePrimaryVersion", _json({"cryptoKeyVersionId": "\u0661"})),
        Bad("GET", f"/v1/{RING}/cryptoKeys/missing"),
    ]
    queries = [
        "pageSize=-1", "pageSize=abc", "pageSize=1e3", "pageToken=zzz", "pageToken=%00", "filter=%3D%3D",
        "filter=state%3D", "filter=" + "a%3Db%20AND%20" * 200 + "c%3Dd", "orderBy=createTime", "orderBy=name%20up",
        "$alt=xml", "alt=proto", "$alt=json;enum-encoding=roman", "unknown=1", "view=EVERYTHING", "versionView=9",
        "pageSize=99999999999999999999", "pageSize=%EF%BC%91", "pageToken=%FF", "%FF=1", "filter=%FF",
    ]  # fmt: skip
    for query in queries:
        out.append(Bad("GET", f"/v1/{KEY}/cryptoKeyVersions?{query}"))
        out.append(Bad("GET", f"/v1/{RING}/cryptoKeys?{query}"))
    for query in ("keyRingId=", "keyRingId=a%2Fb", "keyRingId=" + "x" * 64):
        out.append(Bad("POST", f"/v1/{PARENT}/keyRings?{query}", _json({})))
    for query in ("cryptoKeyId=new&skipInitialVersionCreation=maybe", "cryptoKeyId=n%20w", "cryptoKeyId=new&x=1"):
        out.append(Bad("POST", f"/v1/{RING}/cryptoKeys?{query}", _json({"purpose": "ENCRYPT_DECRYPT"})))
    for mask in ("", "labels", "state,labels", "name", "%2C%2C", "destroyTime"):
        out.append(Bad("PATCH", f"/v1/{VERSION}?updateMask={mask}", _json({"state": "DISABLED"})))
    return out


def oversized() -> list[Bad]:
    big = _json({"purpose": "ENCRYPT_DECRYPT", "labels": {"a": "x" * 400_000}})
    return [
        Bad("POST", f"/v1/{RING}/cryptoKeys?cryptoKeyId=big", big),
        Bad("POST", f"/v1/{KEY}:encrypt", _json({"plaintext": "QUFB" * 100_000})),
        Bad("PATCH", f"/v1/{VERSION}?updateMask=state", b" " * 300_000),
        Bad("POST", f"/v1/{VERSION}:destroy", b"{" + b'"a":1,' * 60_000),
        Bad("POST", "/token", b"grant_type=" + b"x" * 300_000, oauth=True),
    ]


def bad_auth() -> list[Bad]:
    headers = [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "bearer two tokens"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer not-issued-here"},
        {"Authorization": "Bearer " + "x" * 8000},
        {"Authorization": "Bearer a.b.c"},
        {"Authorization": "Bearer eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln"},
        {"Authorization": "Negotiate abc"},
        {"Authorization": "Bearer \tx"},
    ]
    paths = [("GET", f"/v1/{KEY}"), ("POST", f"/v1/{KEY}:encrypt"), ("PATCH", f"/v1/{VERSION}?updateMask=state")]
    return [
        Bad(method, path, _json({"state": "DISABLED"}), {"Authorization": "", **h})
        for h in headers
        for method, path in paths
    ]


def huge_headers(rng: random.Random) -> list[Bad]:
    out = []
    for _ in range(6):
        many = {
            f"X-Junk-{i}": _junk(rng, 60).encode("ascii", "replace").decode().replace("\x00", "") for i in range(60)
        }
        many = {k: "".join(c for c in v if 32 <= ord(c) < 127) for k, v in many.items()}
        out.append(Bad("GET", f"/v1/{KEY}/cryptoKeyVersions?pageSize=-5", None, many))
    out.append(Bad("GET", f"/v1/{KEY}:nothing", None, {"X-Big": "y" * 8000}))
    out.append(Bad("POST", f"/v1/{KEY}:encrypt", _json({}), {"Content-Type": "text/plain", "X-Big": "z" * 7000}))
    out.append(Bad("POST", f"/v1/{KEY}:encrypt", b"{}", {"Content-Type": "application/x-www-form-urlencoded"}))
    return out


def token_junk(rng: random.Random) -> list[Bad]:
    bodies = [
        b"",
        b"grant_type=password&username=a&password=b",
        b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer",
        b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=",
        b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b.c",
        b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=%FF%FE",
        b"\xff\xfe\xfd",
        b"&".join(b"f%d=1" % i for i in range(80)),
        b'{"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer"}',
    ]
    out = [Bad("POST", "/token", body, oauth=True) for body in bodies]
    for _ in range(20):
        raw = bytes(rng.randrange(256) for _ in range(rng.randint(1, 400)))
        out.append(Bad("POST", "/token", raw, oauth=True))
    out += [Bad(method, "/token", None, oauth=True) for method in ("GET", "PUT", "DELETE", "PATCH")]
    return out


def all_bad_requests() -> list[Bad]:
    rng = random.Random(20260401)
    return (
        random_paths(rng, 80)
        + wrong_methods()
        + malformed_bodies()
        + wrong_types()
        + missing_and_query()
        + oversized()
        + bad_auth()
        + huge_headers(rng)
        + token_junk(rng)
    )


@pytest.fixture
async def served() -> AsyncIterator[tuple[RunningFake, aiohttp.ClientSession, str]]:
    fake = GoogleKmsFake()
    fake.tokens.strict = True
    token, _ = fake.tokens.issue("ya29")
    running = await start_fake(fake)
    async with aiohttp.ClientSession() as session:
        yield running, session, token
    await running.stop()


def check_answer(bad: Bad, status: int, raw: bytes) -> None:
    where = f"{bad.method} {bad.path[:120]} -> {status} {raw[:200]!r}"
    assert 400 <= status < 500, where
    doc = json.loads(raw)
    if bad.oauth:
        assert set(doc) == {"error", "error_description"}, where
        assert doc["error"] in {"invalid_request", "invalid_grant", "unsupported_grant_type", "invalid_scope"}, where
        return
    assert set(doc) == {"error"}, where
    error = doc["error"]
    assert set(error) == {"code", "message", "status", "details"}, where
    assert error["code"] == status and error["status"] in CANONICAL, where
    assert GoogleError.HTTP[error["status"]] == status, where
    assert isinstance(error["message"], str) and error["message"], where
    assert isinstance(error["details"], list), where


async def test_hundreds_of_bad_requests_get_google_errors_and_the_fake_survives(
    served: tuple[RunningFake, aiohttp.ClientSession, str],
) -> None:
    running, session, token = served
    auth = {"Authorization": f"Bearer {token}"}

    async def send(method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
        url = URL(running.url + path, encoded=True)
        async with session.request(method, url, data=body, headers=headers) as response:
            return response.status, await response.read()

    setup = [
        ("POST", f"/v1/{PARENT}/keyRings?keyRingId=r", b"{}"),
        ("POST", f"/v1/{RING}/cryptoKeys?cryptoKeyId=k", b'{"purpose": "ENCRYPT_DECRYPT"}'),
    ]
    for method, path, body in setup:
        assert (await send(method, path, body, auth))[0] == 200
    before = running.fake.state_snapshot()["keyRings"]

    requests = all_bad_requests()
    assert len(requests) >= 300
    for bad in requests:
        headers = {**auth, "Content-Type": "application/json", **(bad.headers or {})}
        headers = {k: v for k, v in headers.items() if v or k != "Authorization"}
        status, raw = await send(bad.method, bad.path, bad.body, headers)
        check_answer(bad, status, raw)

    assert running.fake.state_snapshot()["keyRings"] == before  # nothing half-made by a refused request
    status, raw = await send("POST", f"/v1/{KEY}:encrypt", b'{"plaintext": "aGVsbG8="}', auth)
    assert status == 200, raw
    ciphertext = json.loads(raw)["ciphertext"]
    status, raw = await send("POST", f"/v1/{KEY}:decrypt", json.dumps({"ciphertext": ciphertext}).encode(), auth)
    assert status == 200 and json.loads(raw)["plaintext"] == "aGVsbG8="
    log = running.fake.log.as_json(include_entries=False)
    assert log["total"] == len(requests) + 4


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(value=JSON_VALUES, text=st.text(max_size=60))
def test_parsers_refuse_any_json_only_with_google_errors(value: Any, text: str) -> None:
    parsers: list[Callable[[], object]] = [
        lambda: parse_enum("state", value, "state"),
        lambda: parse_enum("purpose", value, "purpose"),
        lambda: decode_bytes(value, "plaintext"),
        lambda: decode_bytes(text, "plaintext"),
        lambda: parse_duration(value, "d"),
        lambda: parse_duration(text, "d"),
        lambda: check_labels(value, "labels"),
        lambda: message(value, "crypto_key", ("purpose", "labels")),
        lambda: parse_filter(text),
    ]
    for parse in parsers:
        try:
            parse()
        except GoogleError as error:
            assert error.status == 400 and error.code == "INVALID_ARGUMENT"
