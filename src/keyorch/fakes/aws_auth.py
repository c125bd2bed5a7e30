"""SigV4 for the AWS KMS fake: the shape check AWS makes on every call, signature verification
with botocore's own signer, and :func:`sign_request` so tests can sign raw HTTP requests the way
an SDK does.

Refusals, all HTTP 400 in AWS's JSON 1.1 error form:

- no ``Authorization`` header: ``MissingAuthenticationTokenException``;
- an ``Authorization`` header that is not ``AWS4-HMAC-SHA256 Credential=AKID/yyyymmdd/region/kms/
  aws4_request, SignedHeaders=..., Signature=<64 hex>`` or lacks a matching ``X-Amz-Date``:
  ``IncompleteSignatureException``;
- the fake's own access key with a wrong signature: ``InvalidSignatureException``;
- an access key the fake did not issue, when ``strict``: ``UnrecognizedClientException``.

The request time is not compared with the clock: a fake clock moved days ahead must not make
every SDK request "expired".
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

from keyorch.fakes.base import FakeError

SERVICE = "kms"
ALGORITHM = "AWS4-HMAC-SHA256"
MAX_AUTH_HEADER = 4096

_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_HEADER_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
_ACCESS_KEY = re.compile(r"[A-Za-z0-9+/=_-]{1,128}")
_REGION = re.compile(r"[a-z0-9-]{1,64}")


@dataclass(frozen=True)
class SigV4Authorization:
    """The parts of a well-formed SigV4 ``Authorization`` header."""

    access_key: str
    date: str
    region: str
    signed_headers: tuple[str, ...]
    signature: str
    timestamp: str


def _incomplete(message: str) -> FakeError:
    return FakeError(400, "IncompleteSignatureException", message)


def _split_fields(rest: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or not name or name in fields:
            raise _incomplete(f"Authorization header has a malformed part: '{name[:40]}'.")
        fields[name] = value.strip()
    return fields


def _request_timestamp(headers: Mapping[str, str]) -> str:
    amz_date = headers.get("X-Amz-Date")
    if amz_date is not None:
        if not _AMZ_DATE.fullmatch(amz_date):
            raise _incomplete("X-Amz-Date must be in the ISO 8601 basic format YYYYMMDD'T'HHMMSS'Z'.")
        return amz_date
    raise _incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")


def parse_authorization(headers: Mapping[str, str]) -> SigV4Authorization:
    """Check the shape of a request's SigV4 authorization; raise the AWS error a service would."""
    header = headers.get("Authorization")
    if header is None or not header.strip():
        raise FakeError(400, "MissingAuthenticationTokenException", "Missing Authentication Token")
    if len(header) > MAX_AUTH_HEADER:
        raise _incomplete("Authorization header is too long.")
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _incomplete(f"Unsupported AWS 'algorithm': '{algorithm[:40]}'.")
    fields = _split_fields(rest)
    missing = [name for name in ("Credential", "Signature", "SignedHeaders") if name not in fields]
    if missing:
        raise _incomplete(" ".join(f"Authorization header requires '{name}' parameter." for name in missing))
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or not _ACCESS_KEY.fullmatch(scope[0]):
        raise _incomplete("Credential must have the form AKID/yyyymmdd/region/kms/aws4_request.")
    access_key, date, region, service, terminator = scope
    if service != SERVICE:
        raise _incomplete(f"Credential should be scoped to correct service: '{SERVICE}'.")
    if terminator != "aws4_request":
        raise _incomplete("Credential should be scoped with a valid terminator: 'aws4_request'.")
    if not _REGION.fullmatch(region):
        raise _incomplete("Credential should be scoped to a valid region.")
    signed = tuple(fields["SignedHeaders"].split(";"))
    if "host" not in signed or not all(_HEADER_NAME.fullmatch(name) for name in signed):
        raise _incomplete("SignedHeaders must be lower-case header names separated by ';' and include 'host'.")
    if not _SIGNATURE.fullmatch(fields["Signature"]):
        raise _incomplete("Signature must be 64 lower-case hex digits.")
    timestamp = _request_timestamp(headers)
    if timestamp[:8] != date:
        raise _incomplete("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP.")
    return SigV4Authorization(access_key, date, region, signed, fields["Signature"], timestamp)


class _ReceivedRequestSigner(SigV4Auth):  # type: ignore[misc]  # botocore is untyped
    """botocore's SigV4 signer limited to the headers the client said it signed."""

    def __init__(self, credentials: Any, region: str, signed_headers: Iterable[str]) -> None:
        super().__init__(credentials, SERVICE, region)
        self._signed = set(signed_headers)

    def headers_to_sign(self, request: Any) -> Any:
        chosen = HTTPHeaders()
        for name, value in request.headers.items():
            if name.lower() in self._signed:
                chosen[name.lower()] = value
        return chosen


def expected_signature(
    auth: SigV4Authorization,
    secret_key: str,
    *,
    method: str,
    url: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
) -> str:
    """The signature botocore computes for this request with ``secret_key``."""
    request = AWSRequest(method=method, url=url, data=body)
    for name, value in headers:
        request.headers[name] = value
    request.context["timestamp"] = auth.timestamp
    signer = _ReceivedRequestSigner(Credentials(auth.access_key, secret_key), auth.region, auth.signed_headers)
    canonical = signer.canonical_request(request)
    return str(signer.signature(signer.string_to_sign(request, canonical), request))


def signature_matches(auth: SigV4Authorization, expected: str) -> bool:
    """True when the client signed canonically (sorted, unique header names) and the signature agrees."""
    canonical_names = tuple(sorted(set(auth.signed_headers)))
    return auth.signed_headers == canonical_names and hmac.compare_digest(auth.signature.encode(), expected.encode())


def sign_request(
    *,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    access_key: str,
    secret_key: str,
    region: str = "us-east-1",
    when: datetime | None = None,
) -> dict[str, str]:
    """Sign a ``POST`` like an AWS SDK does; return the headers to send (with Authorization)."""
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    signer = SigV4Auth(Credentials(access_key, secret_key), SERVICE, region)
    moment = when or datetime.now(UTC)
    request.context["timestamp"] = moment.strftime("%Y%m%dT%H%M%SZ")
    request.headers["X-Amz-Date"] = request.context["timestamp"]
    canonical = signer.canonical_request(request)
    signature = signer.signature(signer.string_to_sign(request, canonical), request)
    signed = signer.signed_headers(signer.headers_to_sign(request))
    request.headers["Authorization"] = (
        f"{ALGORITHM} Credential={signer.scope(request)}, SignedHeaders={signed}, Signature={signature}"
    )
    return {name: str(value) for name, value in request.headers.items()}
