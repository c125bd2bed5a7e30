"""Fake Google Cloud KMS v1 (REST, ``/v1/...``) for the key-lifecycle subset.

Routes (all answers 200 on success, errors in Google's ``{"error": {code, message, status,
details}}`` form; ``$alt=json;enum-encoding=int`` switches enums to integers both ways):

- ``POST /token`` -- OAuth2 JWT-bearer grant for the generated service account (``Token``)
- ``POST|GET /v1/projects/{p}/locations/{l}/keyRings`` (``CreateKeyRing`` / ``ListKeyRings``),
  ``GET .../keyRings/{r}`` (``GetKeyRing``)
- ``POST|GET .../keyRings/{r}/cryptoKeys`` (``CreateCryptoKey`` / ``ListCryptoKeys``),
  ``GET|PATCH .../cryptoKeys/{k}`` (``GetCryptoKey`` / ``UpdateCryptoKey``),
  ``POST .../cryptoKeys/{k}:updatePrimaryVersion`` (``UpdateCryptoKeyPrimaryVersion``),
  ``POST .../cryptoKeys/{k}:encrypt`` (``Encrypt``), ``POST .../cryptoKeys/{k}:decrypt`` (``Decrypt``)
- ``POST|GET .../cryptoKeys/{k}/cryptoKeyVersions`` (``CreateCryptoKeyVersion`` /
  ``ListCryptoKeyVersions``), ``GET|PATCH .../cryptoKeyVersions/{v}`` (``GetCryptoKeyVersion`` /
  ``UpdateCryptoKeyVersion``), ``POST .../cryptoKeyVersions/{v}:destroy``
  (``DestroyCryptoKeyVersion``), ``POST .../cryptoKeyVersions/{v}:restore``
  (``RestoreCryptoKeyVersion``), ``POST .../cryptoKeyVersions/{v}:encrypt`` (``Encrypt``)

Operation names (for the request log and fault rules) are Google's RPC method names listed
above. Only purpose ``ENCRYPT_DECRYPT`` (``GOOGLE_SYMMETRIC_ENCRYPTION``, SOFTWARE or HSM) is
served; versions are usable at once (no ``PENDING_GENERATION``). Scheduled destructions and
automatic rotations (``rotationPeriod`` + ``nextRotationTime``: a new primary version at each rotation
time the clock passes) complete lazily against the fake clock whenever a key is read. In
``/_fake/state`` each version carries ``primary``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from keyorch.fakes.base import MAX_BODY_BYTES, ProviderFake
from keyorch.fakes.clock import FakeClock
from keyorch.fakes.faults import ProviderFaults
from keyorch.fakes.gcp_auth import JWT_BEARER, KMS_SCOPES, OAuthError, ServiceAccount
from keyorch.fakes.gcp_model import GoogleError, invalid, rfc3339
from keyorch.fakes.gcp_ops import KmsService
from keyorch.fakes.gcp_request import LIST_PARAMS, Call, check_query, enum_encoding_ints
from keyorch.fakes.registry import GOOGLE_KEY_RING, GOOGLE_LOCATION
from keyorch.fakes.seed import SeedKey
from keyorch.fakes.seed_apply import seed_google

_P = r"projects/[^/]+/locations/[^/:]+"
_RING = _P + r"/keyRings/[^/:]+"
_KEY = _RING + r"/cryptoKeys/[^/:]+"
_VER = _KEY + r"/cryptoKeyVersions/[^/:]+"
_NONE: frozenset[str] = frozenset()
#: (method, path pattern below /v1/, operation, bindable query parameters)
ROUTES: tuple[tuple[str, re.Pattern[str], str, frozenset[str]], ...] = tuple(
    (method, re.compile(pattern), operation, params)
    for method, pattern, operation, params in (
        ("POST", rf"(?P<parent>{_P})/keyRings", "CreateKeyRing", frozenset({"keyRingId"})),
        ("GET", rf"(?P<parent>{_P})/keyRings", "ListKeyRings", LIST_PARAMS),
        ("GET", rf"(?P<name>{_RING})", "GetKeyRing", _NONE),
        (
            "POST",
            rf"(?P<parent>{_RING})/cryptoKeys",
            "CreateCryptoKey",
            frozenset({"cryptoKeyId", "skipInitialVersionCreation"}),
        ),
        ("GET", rf"(?P<parent>{_RING})/cryptoKeys", "ListCryptoKeys", LIST_PARAMS | {"versionView"}),
        ("GET", rf"(?P<name>{_KEY})", "GetCryptoKey", _NONE),
        ("PATCH", rf"(?P<name>{_KEY})", "UpdateCryptoKey", frozenset({"updateMask"})),
        ("POST", rf"(?P<name>{_KEY}):updatePrimaryVersion", "UpdateCryptoKeyPrimaryVersion", _NONE),
        ("POST", rf"(?P<name>{_KEY}):encrypt", "Encrypt", _NONE),
        ("POST", rf"(?P<name>{_KEY}):decrypt", "Decrypt", _NONE),
        ("POST", rf"(?P<parent>{_KEY})/cryptoKeyVersions", "CreateCryptoKeyVersion", _NONE),
        ("GET", rf"(?P<parent>{_KEY})/cryptoKeyVersions", "ListCryptoKeyVersions", LIST_PARAMS | {"view"}),
        ("GET", rf"(?P<name>{_VER})", "GetCryptoKeyVersion", _NONE),
        ("PATCH", rf"(?P<name>{_VER})", "UpdateCryptoKeyVersion", frozenset({"updateMask"})),
        ("POST", rf"(?P<name>{_VER}):destroy", "DestroyCryptoKeyVersion", _NONE),
        ("POST", rf"(?P<name>{_VER}):restore", "RestoreCryptoKeyVersion", _NONE),
        ("POST", rf"(?P<name>{_VER}):encrypt", "Encrypt", _NONE),
    )
)
AUTH_HELP = (
    "Expected OAuth 2 access token, login cookie or other valid authentication credential. "
    "See https://developers.google.com/identity/sign-in/web/devconsole-project."
)


def _error_info(reason: str, operation: str, **extra: str) -> dict[str, Any]:
    metadata = {"service": "cloudkms.googleapis.com", "method": f"google.cloud.kms.v1.KeyManagementService.{operation}"}
    return {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": "googleapis.com",
        "metadata": {**metadata, **extra},
    }


class GoogleKmsFake(ProviderFake):
    """Google Cloud KMS v1 over REST, with its OAuth2 token endpoint."""

    kind = "google_kms"

    def __init__(
        self, clock: FakeClock | None = None, faults: ProviderFaults | None = None, project_id: str = "keyorch-fake"
    ) -> None:
        super().__init__(clock, faults)
        self.account = ServiceAccount(project_id)
        self.service = KmsService(self.clock)
        self._token_scopes: dict[str, frozenset[str]] = {}
        self._handlers = self.service.handlers()

    # -- ProviderFake -------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/token", self._token)
        app.router.add_route("*", "/v1/{tail:.*}", self._dispatch)

    def operation_for(self, request: web.Request) -> str:
        if request.path == "/token":
            return "Token"
        route = self._route(request.method, request.path)
        return route[0] if route is not None else "unknown"

    def error_response(self, status: int, code: str, message: str) -> web.Response:
        if code in GoogleError.HTTP:
            return self._render(GoogleError(code, message))
        if code == "RequestEntityTooLarge":
            return self._render(invalid(f"Request payload size exceeds the limit: {MAX_BODY_BYTES} bytes."))
        if code == "MethodNotAllowed" or status == 404:
            return self._render(GoogleError("NOT_FOUND", "The requested URL was not found on this server."))
        fallback = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED"}
        by_status = {500: "INTERNAL", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED", **fallback}
        canonical = by_status.get(status, "INVALID_ARGUMENT" if status < 500 else "INTERNAL")
        return self._render(GoogleError(canonical, message))

    def throttle_response(self, retry_after_seconds: float) -> web.Response:
        project = self.account.project_id
        error = GoogleError(
            "RESOURCE_EXHAUSTED",
            "Quota exceeded for quota metric 'Requests' and limit 'Requests per minute' of service "
            f"'cloudkms.googleapis.com' for consumer 'project:{project}'.",
            [_error_info("RATE_LIMIT_EXCEEDED", "*", consumer=f"projects/{project}", quota_limit="RequestsPerMinute")],
            {"Retry-After": str(max(1, round(retry_after_seconds)))},
        )
        return self._render(error)

    def credentials(self, base_url: str) -> dict[str, Any]:
        return self.account.document(base_url)

    def state_snapshot(self) -> dict[str, Any]:
        now = self.clock.now()
        rings = []
        for ring in self.service.rings.values():
            keys = []
            for key in ring.keys.values():
                key.settle(now)
                versions = [v.to_json(False) | {"primary": v.number == key.primary} for v in key.versions]
                keys.append({**key.to_json(False), "cryptoKeyVersions": versions})
            rings.append({**ring.to_json(), "cryptoKeys": keys})
        return {"kind": self.kind, "now": rfc3339(now), "keyRings": rings}

    def reset(self) -> None:
        super().reset()
        self.service.rings.clear()
        self._token_scopes.clear()

    def seed(self, keys: Sequence[SeedKey], prefix: str = "keys") -> list[dict[str, Any]]:
        """Keys in their ``key_ring`` (default: the ring ``fakes serve`` makes), made with their ring if missing."""
        ring = f"projects/{self.account.project_id}/locations/{GOOGLE_LOCATION}/keyRings/{GOOGLE_KEY_RING}"
        return seed_google(self.service.rings, keys, ring, prefix, now=self.clock.now())

    # -- plumbing -----------------------------------------------------------------------------

    @staticmethod
    def _route(method: str, path: str) -> tuple[str, dict[str, str], frozenset[str]] | None:
        if not path.startswith("/v1/"):
            return None
        tail = path[4:]
        for route_method, pattern, operation, params in ROUTES:
            match = pattern.fullmatch(tail)
            if match is not None and route_method == method:
                return operation, match.groupdict(), params
        return None

    @staticmethod
    def _render(error: GoogleError) -> web.Response:
        body = {
            "error": {"code": error.status, "message": error.message, "status": error.code, "details": error.details}
        }
        return web.json_response(body, status=error.status, headers=error.headers)

    async def _dispatch(self, request: web.Request) -> web.Response:
        try:
            route = self._route(request.method, request.path)
            if route is None:
                raise GoogleError("NOT_FOUND", "The requested URL was not found on this server.")
            operation, groups, params = route
            self._authenticate(request, operation)
            check_query(request, params)
            call = Call(request, operation, groups, enum_encoding_ints(request))
            return web.json_response(await self._handlers[operation](call))
        except GoogleError as error:
            return self._render(error)

    def _authenticate(self, request: web.Request, operation: str) -> None:
        header = request.headers.get("Authorization")
        verdict = self.tokens.check_header(header)
        token = (header or "").partition(" ")[2].strip()
        if verdict == "unknown" and self.account.self_signed_valid(token, self.clock.now()):
            verdict = "ok"
        if verdict == "missing":
            raise GoogleError(
                "UNAUTHENTICATED",
                f"Request is missing required authentication credential. {AUTH_HELP}",
                [_error_info("CREDENTIALS_MISSING", operation)],
                {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
            )
        if verdict != "ok":
            reason = "ACCESS_TOKEN_EXPIRED" if verdict in ("expired", "revoked") else "ACCESS_TOKEN_TYPE_UNSUPPORTED"
            raise GoogleError(
                "UNAUTHENTICATED",
                f"Request had invalid authentication credentials. {AUTH_HELP}",
                [_error_info(reason, operation)],
                {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'},
            )
        scopes = self._token_scopes.get(token)
        if scopes is not None and not scopes & KMS_SCOPES:
            raise GoogleError(
                "PERMISSION_DENIED",
                "Request had insufficient authentication scopes.",
                [_error_info("ACCESS_TOKEN_SCOPE_INSUFFICIENT", operation)],
                {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="insufficient_scope"'},
            )

    async def _token(self, request: web.Request) -> web.Response:
        try:
            if request.method != "POST":
                raise OAuthError("invalid_request", f"Method {request.method[:20]} is not supported.", 405)
            try:
                raw = await request.read()
                form = parse_qs(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
            except (web.HTTPRequestEntityTooLarge, ValueError) as exc:
                raise OAuthError("invalid_request", "The request body could not be parsed.") from exc
            grant_type = form.get("grant_type", [""])[0]
            if grant_type != JWT_BEARER:
                raise OAuthError("unsupported_grant_type", f"Invalid grant_type: {grant_type[:100]}")
            assertion = form.get("assertion", [""])[0]
            if not assertion:
                raise OAuthError("invalid_request", "Missing required parameter: assertion")
            own = f"{request.scheme}://{request.host}/token"
            claims = self.account.verify(assertion, {own}, self.clock.now())
        except OAuthError as error:
            return web.json_response(error.body(), status=error.status)
        token, ttl = self.tokens.issue("ya29")
        self._token_scopes[token] = frozenset(str(claims["scope"]).split())
        return web.json_response({"access_token": token, "expires_in": ttl - 1, "token_type": "Bearer"})
