"""AWS KMS adapter, wire level: the signer against botocore's, the error mapping, the state table,
settings, and response shapes the fake cannot make (served by a few-line aiohttp handler on a real
loopback socket): wrong types, missing fields, a 200 with an error body, Retry-After, echoed secrets.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, RefreshableCredentials
from tests.providers.test_aws_adapter import AES, Waits, client_for, keystore_record

from keyorch.domain.errors import InvalidInput
from keyorch.domain.models import Keystore, KeystoreType
from keyorch.domain.states import KeyState
from keyorch.providers import aws_wire
from keyorch.providers.aws import AwsKmsClient, AwsKmsFactory, default_endpoint
from keyorch.providers.aws_auth import CONTENT_TYPE, CredentialSource, KmsSigner
from keyorch.providers.base import KeyRef, factory_for
from keyorch.providers.errors import (
    AuthError,
    Conflict,
    InvalidRequest,
    MalformedResponse,
    NotFound,
    ProviderError,
    Throttled,
    Timeout,
    Unavailable,
)
from keyorch.providers.http import HttpResult

ACCESS = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
CREDENTIALS = {"access_key_id": ACCESS, "secret_access_key": SECRET}
KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"


# -- the signer ------------------------------------------------------------------------------------


def botocore_headers(url: str, body: bytes, target: str, credentials: Credentials, when: datetime) -> dict[str, str]:
    """What botocore's own SigV4Auth.add_auth sends for this request at this time."""
    request = AWSRequest(
        method="POST", url=url, data=body, headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": target}
    )
    signer = SigV4Auth(credentials, "kms", "eu-central-1")
    import botocore.auth

    original = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda: when.replace(tzinfo=None)
    try:
        signer.add_auth(request)
    finally:
        botocore.auth.get_current_datetime = original
    return {name: str(value) for name, value in request.headers.items()}


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:4566/",
        "https://kms.eu-central-1.amazonaws.com/",
        "https://KMS.example.com:443/",
        "http://localhost:80/",
        "https://[::1]:8443/",
        "https://proxy.example.com:9443/kms/v1/",
    ],
)
@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEPT//////////wEaDEXAMPLE+token=="])
@pytest.mark.parametrize(
    "body", [b"{}", b'{"KeyId":"' + KEY_ID.encode() + b'"}', b"", '{"Description":"\u00e9"}'.encode()]
)
async def test_signer_matches_botocore(url: str, token: str | None, body: bytes) -> None:
    when = datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC)
    document = {**CREDENTIALS, **({"session_token": token} if token else {})}
    signer = KmsSigner(url, "eu-central-1", CredentialSource(document), clock=when.timestamp)
    target = "TrentService.DescribeKey"
    ours = await signer.apply({"Content-Type": CONTENT_TYPE, "X-Amz-Target": target}, "POST", url, body)
    theirs = botocore_headers(url, body, target, Credentials(ACCESS, SECRET, token), when)
    for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
        assert ours.get(name) == theirs.get(name), name
    assert ours["Host"] == SigV4Auth(Credentials("a", "b"), "kms", "x").headers_to_sign(AWSRequest("POST", url))["host"]


async def test_signer_derives_a_new_key_for_a_new_day_and_new_credentials() -> None:
    url = "https://kms.eu-central-1.amazonaws.com/"
    moments = [datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC), datetime(2026, 3, 2, 0, 0, 1, tzinfo=UTC)]
    now = [moments[0]]
    signer = KmsSigner(url, "eu-central-1", CredentialSource(CREDENTIALS), clock=lambda: now[0].timestamp())
    for secret in (SECRET, "another-secret"):
        for moment in moments:
            now[0] = moment
            frozen = Credentials(ACCESS, secret).get_frozen_credentials()
            ours = signer.sign({"X-Amz-Target": "TrentService.ListKeys"}, "POST", b"{}", frozen)
            theirs = botocore_headers(url, b"{}", "TrentService.ListKeys", Credentials(ACCESS, secret), moment)
            assert ours["Authorization"] == theirs["Authorization"]


async def test_refreshable_credentials_are_refreshed_before_expiry() -> None:
    calls: list[int] = []

    def refresh() -> dict[str, str]:
        calls.append(1)
        expiry = datetime.now(UTC) + timedelta(hours=1)
        return {"access_key": "ASIANEW", "secret_key": "new", "token": "t2", "expiry_time": expiry.isoformat()}

    soon = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()  # inside botocore's mandatory window
    metadata = {"access_key": "ASIAOLD", "secret_key": "old", "token": "t1", "expiry_time": soon}
    source = CredentialSource(None)
    source._credentials = RefreshableCredentials.create_from_metadata(metadata, refresh, "test")
    first = await source.current()
    assert (first.access_key, first.token, len(calls)) == ("ASIANEW", "t2", 1)
    assert (await source.current()).access_key == "ASIANEW" and len(calls) == 1
    await source.invalidate()
    assert source._credentials is None


def test_reprs_hold_no_secret() -> None:
    source = CredentialSource({**CREDENTIALS, "session_token": "TOKEN-VALUE-123"})
    client = AwsKmsClient(keystore_record("http://127.0.0.1:9"), {**CREDENTIALS, "session_token": "TOKEN-VALUE-123"})
    shown = repr(source) + repr(client) + repr(client.signer) + repr(client.credentials) + str(vars(client))
    assert SECRET not in shown and "TOKEN-VALUE-123" not in shown


# -- the error mapping -----------------------------------------------------------------------------


def error_body(code: str, message: str = "went wrong", key: str = "message") -> bytes:
    return json.dumps({"__type": code, key: message}).encode()


@pytest.mark.parametrize(
    ("status", "code", "expected", "transient"),
    [
        (400, "ThrottlingException", Throttled, True),
        (400, "NotFoundException", NotFound, False),
        (400, "KMSInvalidStateException", Conflict, False),
        (400, "DisabledException", Conflict, False),
        (400, "AlreadyExistsException", Conflict, False),
        (400, "ValidationException", InvalidRequest, False),
        (400, "InvalidArnException", InvalidRequest, False),
        (400, "InvalidMarkerException", InvalidRequest, False),
        (400, "LimitExceededException", InvalidRequest, False),
        (400, "AccessDeniedException", AuthError, False),
        (400, "UnrecognizedClientException", AuthError, False),
        (403, "InvalidClientTokenId", AuthError, False),
        (400, "IncompleteSignatureException", AuthError, False),
        (500, "KMSInternalException", Unavailable, True),
        (500, "DependencyTimeoutException", Unavailable, True),
        (503, "ServiceUnavailable", Unavailable, True),
        (400, "RequestTimeoutException", Timeout, True),
        (400, "SomethingNewException", InvalidRequest, False),
        (500, "SomethingNewFault", Unavailable, True),
        (400, "com.amazonaws.kms#NotFoundException", NotFound, False),
    ],
)
def test_error_mapping(status: int, code: str, expected: type[ProviderError], transient: bool) -> None:
    error = aws_wire.map_error(status, {}, error_body(code))
    assert type(error) is expected and error.transient is transient
    assert error.provider_code == code.rpartition("#")[2]
    assert "went wrong" in error.message


def test_error_code_from_header_and_capitalised_message() -> None:
    error = aws_wire.map_error(400, {"X-Amzn-ErrorType": "NotFoundException:http://internal.amazon.com/"}, b"")
    assert isinstance(error, NotFound) and error.provider_code == "NotFoundException"
    error = aws_wire.map_error(400, {}, error_body("KMSInvalidStateException", "is pending deletion", "Message"))
    assert isinstance(error, Conflict) and "is pending deletion" in error.message
    assert isinstance(aws_wire.map_error(502, {}, b"<html><title>Bad Gateway</title></html>"), Unavailable)
    assert isinstance(aws_wire.map_error(400, {}, b"<html>oops</html>"), InvalidRequest)


@pytest.mark.parametrize("code", ["InvalidSignatureException", "ExpiredTokenException", "UnrecognizedClientException"])
def test_auth_refresh_only_where_credentials_can_change(code: str) -> None:
    chain = aws_wire.error_mapper(refresh_auth=True)(400, {}, error_body(code))
    static = aws_wire.error_mapper(refresh_auth=False)(400, {}, error_body(code))
    assert isinstance(chain, AuthError) and chain.refresh
    assert isinstance(static, AuthError) and not static.refresh
    denied = aws_wire.error_mapper(refresh_auth=True)(400, {}, error_body("AccessDeniedException"))
    assert isinstance(denied, AuthError) and not denied.refresh


# -- the state table -------------------------------------------------------------------------------


def result(body: Any) -> HttpResult:
    return HttpResult(200, {}, body, json.dumps(body).encode(), "ks", "DescribeKey")


@pytest.mark.parametrize(
    ("word", "enabled", "state", "pending"),
    [
        ("Enabled", True, KeyState.ACTIVE, False),
        ("Disabled", False, KeyState.DEACTIVATED, False),
        ("Unavailable", False, KeyState.DEACTIVATED, False),
        ("PendingDeletion", False, KeyState.DEACTIVATED, True),
        ("PendingReplicaDeletion", False, KeyState.DEACTIVATED, True),
        ("PendingImport", False, KeyState.PRE_ACTIVE, False),
        ("Creating", False, KeyState.PRE_ACTIVE, False),
        ("Updating", True, KeyState.ACTIVE, False),
        ("Updating", False, KeyState.DEACTIVATED, False),
        ("SomeFutureState", True, KeyState.ACTIVE, False),
    ],
)
def test_state_table(word: str, enabled: bool, state: KeyState, pending: bool) -> None:
    metadata: dict[str, Any] = {"KeyId": KEY_ID, "KeyState": word, "Enabled": enabled}
    if pending:
        metadata["DeletionDate"] = 1_800_000_000.5
    observed = aws_wire.key_observation(result({}), metadata, "mk")
    assert (observed.state, observed.destruction_pending, observed.raw_state) == (state, pending, word)
    assert observed.pending_until == (datetime.fromtimestamp(1_800_000_000.5, UTC) if pending else None)


@pytest.mark.parametrize(
    "metadata",
    [
        None,
        [],
        {"KeyState": "Enabled"},
        {"KeyId": "", "KeyState": "Enabled"},
        {"KeyId": 7, "KeyState": "Enabled"},
        {"KeyId": KEY_ID},
        {"KeyId": KEY_ID, "KeyState": 1},
        {"KeyId": KEY_ID, "KeyState": "SomeFutureState"},
        {"KeyId": KEY_ID, "KeyState": "PendingDeletion", "DeletionDate": "tomorrow"},
        {"KeyId": KEY_ID, "KeyState": "PendingDeletion", "DeletionDate": True},
        {"KeyId": KEY_ID, "KeyState": "PendingDeletion", "DeletionDate": 1e300},
    ],
)
def test_malformed_metadata(metadata: Any) -> None:
    with pytest.raises(MalformedResponse):
        aws_wire.key_observation(result({}), metadata, "mk")


# -- settings and registration ---------------------------------------------------------------------


def test_factory_is_registered_and_checks_settings() -> None:
    assert isinstance(factory_for(KeystoreType.AWS_KMS), AwsKmsFactory)
    factory = AwsKmsFactory()
    factory.validate_settings(keystore_record("http://127.0.0.1:9", pending_window_days=30, page_size=100))
    factory.validate_settings(keystore_record(None, region="eu-west-1", allow_insecure_http=False))
    bad_settings: list[dict[str, Any]] = [
        {"region": ""},
        {"region": "US_EAST"},
        {"region": None},
        {"pending_window_days": 6},
        {"pending_window_days": 31},
        {"pending_window_days": 7.5},
        {"page_size": 0},
        {"page_size": 101},
        {"endpoint": "http://kms.example.com"},
        {"endpoint": "ftp://127.0.0.1"},
        {"allow_insecure_http": False},
        {"max_concurrency": 0},
    ]
    for bad in bad_settings:
        record = keystore_record("http://127.0.0.1:9")
        broken = Keystore(**{**record.__dict__, "settings": {**record.settings, **bad}})
        with pytest.raises(InvalidInput):
            factory.validate_settings(broken)


def test_default_endpoints_and_malformed_credentials() -> None:
    assert default_endpoint("us-east-1") == "https://kms.us-east-1.amazonaws.com"
    assert default_endpoint("cn-north-1") == "https://kms.cn-north-1.amazonaws.com.cn"
    client = AwsKmsFactory().create(keystore_record(None, region="eu-west-3"), CREDENTIALS)
    assert isinstance(client, AwsKmsClient) and client.endpoint == "https://kms.eu-west-3.amazonaws.com"
    with pytest.raises(InvalidInput, match="credentials"):
        AwsKmsFactory().create(keystore_record(None), {"access_key_id": ACCESS})
    with pytest.raises(InvalidInput) as caught:
        AwsKmsFactory().create(keystore_record(None), {"access_key_id": ACCESS, "secret_access_key": 5})
    assert SECRET not in caught.value.message


# -- shapes the fake cannot make -------------------------------------------------------------------

Reply = tuple[int, dict[str, str], bytes]
#: A reply, or a function of the request's JSON document and headers that makes one.
Answer = Reply | Callable[[dict[str, Any], dict[str, str]], Reply]


@dataclass
class Script:
    """A loopback KMS that answers each operation from a list of answers (the last one repeats)."""

    replies: dict[str, list[Answer]] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    url: str = ""

    def on(self, operation: str, *replies: Answer) -> None:
        self.replies[operation] = list(replies)

    def count(self, operation: str) -> int:
        return self.seen.count(operation)

    async def handle(self, request: web.Request) -> web.Response:
        operation = request.headers.get("X-Amz-Target", "").partition(".")[2]
        self.seen.append(operation)
        self.headers.append(dict(request.headers))
        queue = self.replies[operation]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if callable(answer):
            answer = answer(json.loads(await request.read() or b"{}"), dict(request.headers))
        status, headers, body = answer
        return web.Response(status=status, body=body, headers={"Content-Type": CONTENT_TYPE, **headers})


@pytest.fixture
async def script() -> AsyncIterator[Script]:
    scripted = Script()
    app = web.Application()
    app.router.add_post("/", scripted.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        scripted.url = str(server.make_url("")).rstrip("/")
        yield scripted


def ok(doc: Any) -> Reply:
    return (200, {}, json.dumps(doc).encode())


def metadata(state: str = "Enabled", **extra: Any) -> dict[str, Any]:
    return {"KeyMetadata": {"KeyId": KEY_ID, "KeyState": state, "Enabled": state == "Enabled", **extra}}


@pytest.mark.parametrize(
    "reply",
    [
        ok({"KeyMetadata": {"KeyId": KEY_ID, "KeyState": 5}}),
        ok({}),
        ok([1, 2]),
        ok("Enabled"),
        ok({"__type": "NotFoundException", "message": "a 200 with an error body"}),
        (200, {}, b'{"KeyMetadata": {"KeyId": '),
        (200, {"Content-Type": "text/html"}, b"<html><title>Sign in</title></html>"),
    ],
)
async def test_malformed_describe_answers(script: Script, reply: Reply) -> None:
    script.on("DescribeKey", reply)
    waits = Waits()
    async with client_for(script.url, CREDENTIALS, waits) as client:
        with pytest.raises(MalformedResponse):
            await client.get_key(KeyRef(KEY_ID))
    # only JSON cut short is worth sending again
    assert script.count("DescribeKey") == (3 if reply[2] == b'{"KeyMetadata": {"KeyId": ' else 1)


@pytest.mark.parametrize(
    "page",
    [
        {},
        {"Aliases": {}},
        {"Aliases": ["alias/keyorch/x"]},
        {"Aliases": [{"TargetKeyId": KEY_ID}]},
        {"Aliases": [{"AliasName": "alias/keyorch/x", "TargetKeyId": 5}]},
        {"Aliases": [], "Truncated": "yes"},
        {"Aliases": [], "Truncated": True},
        {"Aliases": [], "Truncated": True, "NextMarker": 3},
    ],
)
async def test_malformed_alias_pages(script: Script, page: dict[str, Any]) -> None:
    script.on("ListAliases", ok(page))
    async with client_for(script.url, CREDENTIALS, Waits()) as client:
        with pytest.raises(MalformedResponse):
            _ = [o async for o in client.list_keys()]


async def test_alias_pages_that_repeat_a_marker_end_in_an_error(script: Script) -> None:
    script.on("ListAliases", ok({"Aliases": [], "Truncated": True, "NextMarker": "m1"}))
    async with client_for(script.url, CREDENTIALS, Waits()) as client:
        with pytest.raises(MalformedResponse, match="repeats"):
            _ = [o async for o in client.list_keys()]
    assert script.count("ListAliases") == 2


async def test_alias_without_target_and_key_gone_since_listing(script: Script) -> None:
    aliases = [
        {"AliasName": "alias/keyorch/unbound"},
        {"AliasName": "alias/keyorch/gone", "TargetKeyId": "k-gone"},
        {"AliasName": "alias/aws/ebs", "TargetKeyId": "k-aws"},
        {"AliasName": "alias/keyorch/live", "TargetKeyId": KEY_ID},
    ]
    script.on("ListAliases", ok({"Aliases": aliases, "Truncated": False}))

    def describe(doc: dict[str, Any], headers: dict[str, str]) -> Reply:
        return (400, {}, error_body("NotFoundException")) if doc["KeyId"] == "k-gone" else ok(metadata())

    script.on("DescribeKey", describe)
    async with client_for(script.url, CREDENTIALS, Waits()) as client:
        listed = [o async for o in client.list_keys()]
    assert [(o.managed_key_id, o.key_id_in_keystore) for o in listed] == [("live", KEY_ID)]
    assert script.count("DescribeKey") == 2  # not for the unbound alias nor for AWS's own


async def test_lifecycle_answers_must_be_empty_or_objects(script: Script) -> None:
    script.on("EnableKey", (200, {}, b"null"), (200, {}, b"{}"), (200, {}, b""), ok([]), ok({"__type": "Oops"}))
    async with client_for(script.url, CREDENTIALS, Waits()) as client:
        for _ in range(3):
            assert (await client.enable(KeyRef(KEY_ID))).state is KeyState.ACTIVE
        for _ in range(2):
            with pytest.raises(MalformedResponse):
                await client.enable(KeyRef(KEY_ID))


async def test_schedule_answers(script: Script) -> None:
    script.on(
        "ScheduleKeyDeletion",
        ok({"KeyId": KEY_ID, "DeletionDate": 1_800_000_000}),  # moto's shape: no KeyState
        ok({"KeyId": KEY_ID, "KeyState": "PendingReplicaDeletion", "PendingWindowInDays": 7}),  # no date
        ok({"KeyId": KEY_ID, "KeyState": "Enabled", "DeletionDate": 1_800_000_000}),
        ok({"KeyId": KEY_ID, "KeyState": "PendingDeletion", "DeletionDate": "soon"}),
    )
    async with client_for(script.url, CREDENTIALS, Waits()) as client:
        first = await client.schedule_destruction(KeyRef(KEY_ID, "mk"))
        assert first.pending_until == datetime.fromtimestamp(1_800_000_000, UTC) and first.destruction_pending
        replica = await client.schedule_destruction(KeyRef(KEY_ID, "mk"))
        assert replica.destruction_pending and replica.pending_until is None
        for _ in range(2):
            with pytest.raises(MalformedResponse):
                await client.schedule_destruction(KeyRef(KEY_ID, "mk"))


async def test_throttle_honours_retry_after(script: Script) -> None:
    throttled = (400, {"Retry-After": "7"}, error_body("ThrottlingException", "Rate exceeded"))
    script.on("DescribeKey", throttled, ok(metadata()))
    waits = Waits()
    async with client_for(script.url, CREDENTIALS, waits) as client:
        assert (await client.get_key(KeyRef(KEY_ID))) is not None
        assert client.transport.stats.throttles == 1
    assert waits.seconds == [7.0] and script.count("DescribeKey") == 2


async def test_a_retry_after_beyond_the_total_time_is_not_waited_for(script: Script) -> None:
    script.on("DescribeKey", (400, {"Retry-After": "100"}, error_body("ThrottlingException")), ok(metadata()))
    waits = Waits()
    async with client_for(script.url, CREDENTIALS, waits) as client:
        with pytest.raises(Throttled) as caught:
            await client.get_key(KeyRef(KEY_ID))
    assert caught.value.retry_after == 100.0
    assert waits.seconds == [] and script.count("DescribeKey") == 1


async def test_a_throttled_create_is_sent_again_after_a_wait(script: Script) -> None:
    # A throttled CreateKey was refused unprocessed: the transport sends it again (after a backoff,
    # floored by any Retry-After), and exactly one key is made.
    script.on("DescribeKey", (400, {}, error_body("NotFoundException")))
    script.on("CreateKey", (400, {"Retry-After": "2"}, error_body("ThrottlingException")), ok(metadata()))
    script.on("CreateAlias", ok({}))
    waits = Waits()
    async with client_for(script.url, CREDENTIALS, waits) as client:
        made = await client.ensure_key("mk-1", AES)
    assert made.key_id_in_keystore == KEY_ID
    assert script.count("CreateKey") == 2 and script.count("CreateAlias") == 1
    assert len(waits.seconds) == 1 and waits.seconds[0] >= 2.0


async def test_error_messages_never_quote_credentials(script: Script) -> None:
    token = "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN"

    def echo(doc: dict[str, Any], headers: dict[str, str]) -> Reply:
        text = f"bad request: {headers['Authorization']} token={headers['X-Amz-Security-Token']}"
        return (400, {}, error_body("InvalidSignatureException", f"{text} raw {headers['X-Amz-Security-Token']}"))

    script.on("DescribeKey", echo)
    async with client_for(script.url, {**CREDENTIALS, "session_token": token}, Waits()) as client:
        with pytest.raises(AuthError) as caught:
            await client.get_key(KeyRef(KEY_ID))
    signature = script.headers[0]["Authorization"].rpartition("Signature=")[2]
    shown = str(caught.value) + repr(caught.value)
    assert "bad request" in shown
    for secret in (token, SECRET, signature, ACCESS):
        assert secret not in shown


# -- the orphan search of an in-doubt create ------------------------------------------------------


def not_found_then(later: Reply) -> Answer:
    """DescribeKey: the alias names nothing until CreateAlias has been answered; key ids are found."""
    bound: list[bool] = []

    def answer(doc: dict[str, Any], headers: dict[str, str]) -> Reply:
        if doc["KeyId"].startswith("alias/") and not bound:
            bound.append(True)
            return (400, {}, error_body("NotFoundException"))
        return later

    return answer


async def test_orphan_search_follows_key_and_tag_pages(script: Script) -> None:
    aws_keys = [{"AliasName": "alias/aws/ebs", "TargetKeyId": "k-aws"}, {"AliasName": "alias/keyorch/other"}]
    script.on("ListAliases", ok({"Aliases": aws_keys, "Truncated": False}))
    script.on(
        "ListKeys",
        ok({"Keys": [{"KeyId": "k-aws"}, {"KeyId": "k-foreign"}], "Truncated": True, "NextMarker": "m1"}),
        ok({"Keys": [{"KeyId": KEY_ID}], "Truncated": False}),
    )
    filler = [{"TagKey": f"t{i}", "TagValue": "x"} for i in range(50)]

    def tags(doc: dict[str, Any], headers: dict[str, str]) -> Reply:
        assert doc["Limit"] == 50
        if doc["KeyId"] != KEY_ID:
            return ok({"Tags": filler[:3], "Truncated": False})
        if "Marker" not in doc:
            return ok({"Tags": filler, "Truncated": True, "NextMarker": "t1"})
        return ok({"Tags": [{"TagKey": aws_wire.MANAGED_KEY_TAG, "TagValue": "mk-1"}], "Truncated": False})

    script.on("ListResourceTags", tags)
    script.on("DescribeKey", not_found_then(ok(metadata())))
    script.on("CreateAlias", ok({}))
    async with client_for(script.url, CREDENTIALS, Waits()) as client:
        adopted = await client.ensure_key("mk-1", AES, in_doubt=True)
    assert (adopted.key_id_in_keystore, adopted.managed_key_id) == (KEY_ID, "mk-1")
    assert script.count("ListKeys") == 2 and script.count("CreateKey") == 0
    assert script.count("ListResourceTags") == 3  # k-foreign, then KEY_ID's two pages; never AWS's own key


@pytest.mark.parametrize(
    ("operation", "page"),
    [
        ("ListKeys", {"Keys": [], "Truncated": True, "NextMarker": "m1"}),
        ("ListKeys", {"Keys": [{"KeyArn": "arn"}]}),
        ("ListKeys", {"Keys": {}}),
        ("ListResourceTags", {"Tags": [], "Truncated": True, "NextMarker": "m1"}),
        ("ListResourceTags", {"Tags": "none"}),
    ],
)
async def test_orphan_search_refuses_malformed_pages(script: Script, operation: str, page: dict[str, Any]) -> None:
    """A listing that cannot be read ends the search in an error: no key is created without it."""
    script.on("ListAliases", ok({"Aliases": [], "Truncated": False}))
    script.on("ListKeys", ok({"Keys": [{"KeyId": KEY_ID}], "Truncated": False}))
    script.on("ListResourceTags", ok({"Tags": [], "Truncated": False}))
    script.on(operation, ok(page))
    script.on("DescribeKey", (400, {}, error_body("NotFoundException")))
    async with client_for(script.url, CREDENTIALS, Waits()) as client:
        with pytest.raises(MalformedResponse):
            await client.ensure_key("mk-1", AES, in_doubt=True)
    assert script.count("CreateKey") == 0


async def test_schedule_answered_with_an_unreadable_200_is_read_back(script: Script) -> None:
    """A 200 keyorch cannot read may still mean the key was scheduled: read it before anything else."""
    script.on("ScheduleKeyDeletion", (200, {"Content-Type": "text/html"}, b"<html><title>Proxy</title></html>"))
    script.on("DescribeKey", ok(metadata("PendingDeletion", DeletionDate=1_800_000_000)))
    async with client_for(script.url, CREDENTIALS, Waits()) as client:
        scheduled = await client.schedule_destruction(KeyRef(KEY_ID, "mk"))
    assert scheduled.destruction_pending and scheduled.pending_until == datetime.fromtimestamp(1_800_000_000, UTC)
    assert script.count("ScheduleKeyDeletion") == 1 and script.count("DescribeKey") == 1


async def test_schedule_refused_as_a_repeat_is_read_back(script: Script) -> None:
    script.on("ScheduleKeyDeletion", (400, {}, error_body("KMSInvalidStateException", "is pending deletion")))
    script.on("DescribeKey", ok(metadata("PendingDeletion", DeletionDate=1_800_000_000)), ok(metadata("Enabled")))
    async with client_for(script.url, CREDENTIALS, Waits()) as client:
        assert (await client.schedule_destruction(KeyRef(KEY_ID, "mk"))).destruction_pending
        with pytest.raises(Conflict):  # refused, and the key is not pending deletion: a real refusal
            await client.schedule_destruction(KeyRef(KEY_ID, "mk"))
    assert script.count("ScheduleKeyDeletion") == 2
