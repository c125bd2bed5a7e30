"""A fake AWS KMS speaking the real wire protocol (JSON 1.1, ``POST /``, ``X-Amz-Target``).

An unchanged boto3 ``kms`` client pointed at it with ``endpoint_url`` works, with the access key
pair from :meth:`AwsKmsFake.credentials` (or, unless ``strict``, any dummy pair).

Operations (``X-Amz-Target: TrentService.<name>``; these names label the request log and fault
rules): ``CreateKey``, ``DescribeKey``, ``ListKeys``, ``EnableKey``, ``DisableKey``,
``ScheduleKeyDeletion``, ``CancelKeyDeletion``, ``CreateAlias``, ``DeleteAlias``,
``ListAliases``, ``TagResource``, ``UntagResource``, ``ListResourceTags``, ``Encrypt``,
``Decrypt``, ``RotateKeyOnDemand``, ``ListKeyRotations``, ``GetKeyRotationStatus``,
``EnableKeyRotation``, ``DisableKeyRotation``. Anything else is logged as ``unknown`` and answered
``UnknownOperationException``.

Rotation (symmetric keys with KMS-made material only, else ``UnsupportedOperationException``): a key
holds a list of key materials; ``Encrypt`` uses the newest and ``Decrypt`` the one the ciphertext
names, so old ciphertexts still decrypt. ``RotateKeyOnDemand`` completes within the request (KMS
starts it and finishes shortly after), at most ``max_on_demand_rotations`` times per key (25, the API
reference's lifetime quota; ``LimitExceededException`` beyond), ``ConflictException`` while an
automatic rotation is due within 20 minutes. With ``on_demand_rotation_seconds`` a rotation runs that
long on the fake clock: ``GetKeyRotationStatus`` shows its ``OnDemandRotationStartDate`` and the new
material is listed only once it completes (another ``RotateKeyOnDemand`` meanwhile: ``ConflictException``,
the fake's choice). ``EnableKeyRotation`` takes ``RotationPeriodInDays``
90-2560 (default 365); the fake clock passing ``NextRotationDate`` adds an ``AUTOMATIC`` material
dated when it fell due (not while the key is disabled or pending deletion). ``ListKeyRotations``
pages with ``Limit``/``Marker`` and lists rotations only unless ``IncludeKeyMaterial=ALL_KEY_MATERIAL``.

Rules follow docs/providers.md §1.7 (not moto, see §6.1): the key-state table of §1.3, windows of
7-30 days (default 30) with ``ValidationException`` outside, the key ARN in the schedule and
cancel responses, ``CancelKeyDeletion`` leaving the key ``Disabled``, ``Origin=EXTERNAL`` keys
created ``PendingImport``, ``Limit``/``Marker`` paging, keys gone (``NotFoundException``) once
their ``DeletionDate`` passes on the fake clock, throttling as HTTP 400 ``ThrottlingException``.
Errors are ``{"__type", "message"}`` with an ``X-Amzn-ErrorType`` header; every response
carries ``x-amzn-RequestId`` and ``Content-Type: application/x-amz-json-1.1``.
"""

from __future__ import annotations

import json
import secrets
import string
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from aiohttp import web

from keyorch.fakes.aws_auth import SigV4Authorization, expected_signature, parse_authorization, signature_matches
from keyorch.fakes.aws_input import Members, serialization_error
from keyorch.fakes.aws_ops import OPERATIONS
from keyorch.fakes.aws_state import DEFAULT_ACCOUNT, DEFAULT_REGION, KmsStore
from keyorch.fakes.base import FakeError, ProviderFake
from keyorch.fakes.clock import FakeClock
from keyorch.fakes.faults import ProviderFaults
from keyorch.fakes.seed import SeedKey
from keyorch.fakes.seed_apply import seed_aws

CONTENT_TYPE = "application/x-amz-json-1.1"
TARGET_PREFIX = "TrentService"
THROTTLE_MESSAGE = "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls."
BAD_SIGNATURE_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)

#: generic codes the shared machinery passes to ``error_response`` -> (status, AWS error code)
_SHARED_CODES: dict[str, tuple[int | None, str]] = {
    "InternalError": (500, "KMSInternalException"),
    "ServiceUnavailable": (503, "ServiceUnavailable"),
    "BadRequest": (400, "SerializationException"),
    "NotFound": (None, "UnknownOperationException"),
    "MethodNotAllowed": (None, "UnknownOperationException"),
    "RequestEntityTooLarge": (None, "RequestEntityTooLargeException"),
    "GatewayTimeout": (None, "RequestTimeoutException"),
}


def _access_key_id() -> str:
    alphabet = string.ascii_uppercase + "234567"
    return "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16))


class AwsKmsFake(ProviderFake):
    """AWS KMS for one account in one region."""

    kind = "aws_kms"

    def __init__(
        self,
        clock: FakeClock | None = None,
        faults: ProviderFaults | None = None,
        *,
        region: str = DEFAULT_REGION,
        account: str = DEFAULT_ACCOUNT,
        strict: bool = False,
        max_on_demand_rotations: int | None = None,
        on_demand_rotation_seconds: float = 0.0,
    ) -> None:
        super().__init__(clock, faults)
        self.tokens.strict = strict
        self.store = KmsStore(self.clock, region, account)
        if max_on_demand_rotations is not None:
            self.store.max_on_demand_rotations = max_on_demand_rotations
        self.store.on_demand_duration = timedelta(seconds=on_demand_rotation_seconds)
        self.access_key_id = _access_key_id()
        self.secret_access_key = secrets.token_urlsafe(30)

    @property
    def strict(self) -> bool:
        """Refuse access keys this fake did not issue (shared with ``self.tokens.strict``)."""
        return self.tokens.strict

    @strict.setter
    def strict(self, value: bool) -> None:
        self.tokens.strict = value

    # -- ProviderFake ---------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/", self._serve)

    def operation_for(self, request: web.Request) -> str:
        if request.method != "POST" or request.path != "/":
            return "unknown"
        prefix, _, action = request.headers.get("X-Amz-Target", "").partition(".")
        return action if prefix == TARGET_PREFIX and action in OPERATIONS else "unknown"

    def error_response(self, status: int, code: str, message: str) -> web.Response:
        shared_status, aws_code = _SHARED_CODES.get(code, (status, code))
        status = shared_status or status
        body = json.dumps({"__type": aws_code, "message": message})
        response = web.Response(status=status, body=body.encode(), content_type=CONTENT_TYPE)
        response.headers["X-Amzn-ErrorType"] = aws_code
        response.headers["x-amzn-RequestId"] = str(uuid.uuid4())
        return response

    def throttle_response(self, retry_after_seconds: float) -> web.Response:
        # AWS throttles with HTTP 400 and no Retry-After; SDKs back off by themselves.
        return self.error_response(400, "ThrottlingException", THROTTLE_MESSAGE)

    def credentials(self, base_url: str) -> dict[str, Any]:
        return {"access_key_id": self.access_key_id, "secret_access_key": self.secret_access_key}

    def state_snapshot(self) -> dict[str, Any]:
        return self.store.snapshot()

    def reset(self) -> None:
        super().reset()
        self.store.clear()

    def seed(self, keys: Sequence[SeedKey], prefix: str = "keys") -> list[dict[str, Any]]:
        return seed_aws(self.store, keys, prefix)

    # -- the wire protocol ----------------------------------------------------------------------

    async def _serve(self, request: web.Request) -> web.Response:
        auth = parse_authorization(request.headers)
        body = await request.read()
        self._check_signer(request, auth, body)
        prefix, _, action = request.headers.get("X-Amz-Target", "").partition(".")
        operation = OPERATIONS.get(action) if prefix == TARGET_PREFIX else None
        if operation is None:
            raise FakeError(400, "UnknownOperationException", f"Operation '{action[:64]}' is not supported.")
        result = operation(self.store, Members(_json_object(body)))
        payload = b"" if result is None else json.dumps(result).encode()
        response = web.Response(status=200, body=payload, content_type=CONTENT_TYPE)
        response.headers["x-amzn-RequestId"] = str(uuid.uuid4())
        return response

    def _check_signer(self, request: web.Request, auth: SigV4Authorization, body: bytes) -> None:
        if auth.access_key != self.access_key_id:
            if self.strict:
                raise FakeError(
                    400, "UnrecognizedClientException", "The security token included in the request is invalid."
                )
            return
        try:
            expected = expected_signature(
                auth,
                self.secret_access_key,
                method=request.method,
                url=f"{request.scheme}://{request.host}{request.raw_path}",
                headers=request.headers.items(),
                body=body,
            )
        except ValueError:  # a Host or path no signer could have produced
            expected = ""
        if not expected or not signature_matches(auth, expected):
            raise FakeError(400, "InvalidSignatureException", BAD_SIGNATURE_MESSAGE)


def _json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise serialization_error("The request body is not valid JSON.") from exc
    if not isinstance(doc, dict):
        raise serialization_error("The request body must be a JSON object.")
    return doc
