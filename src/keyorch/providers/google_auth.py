"""Google OAuth 2 access tokens for Cloud KMS, written on the shared transport's ``AuthHook``.

google-auth is not a dependency; the service-account flow is one signed JWT and one form POST, so
keyorch does it itself: an RS256 JWT (signed with ``cryptography``; header ``kid`` = the key id;
claims ``iss`` = the client email, ``scope`` = ``https://www.googleapis.com/auth/cloudkms``, ``aud`` =
the document's ``token_uri``, ``iat`` now and ``exp`` one hour later) is exchanged at ``token_uri``
(``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``) for an access token. The token is cached
and fetched again before it expires (when less than 300 s remain, or a quarter of its lifetime for
short tokens); a 401 drops the token that request sent, and only that one, so many requests refused
together fetch one new token.

Where the credentials come from:

* a stored credentials document (a service-account JSON key, :class:`keyorch.credentials.GoogleServiceAccount`);
* ``credentials=None`` (``--credentials-from-environment``), in the order google-auth's default chain
  tries them: the service-account JSON file named by ``GOOGLE_APPLICATION_CREDENTIALS``; failing that,
  the GCE/GKE metadata server's token endpoint (``http://metadata.google.internal/computeMetadata/v1/
  instance/service-accounts/default/token`` with ``Metadata-Flavor: Google``; the host can be changed
  with ``GCE_METADATA_HOST`` as with google-auth). The metadata server is link-local and plain HTTP
  by design, so it is called outside the keystore's transport. User credentials
  (``authorized_user``), workload identity federation files (``external_account``) and gcloud's own
  login are not supported; such a file makes every request fail with a configuration error.

Every problem with the credentials themselves (a document that is not a service-account key, a key
that does not load) surfaces as a :class:`KeystoreConfigurationError` at the first request, so a
keystore's health check reports ``configuration_error`` instead of the client failing to build.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import ValidationError

from keyorch.credentials import GoogleServiceAccount
from keyorch.providers import bodies
from keyorch.providers.errors import KeystoreConfigurationError, MalformedResponse, ProviderError, Unavailable
from keyorch.providers.http import HttpTransport

KMS_SCOPE = "https://www.googleapis.com/auth/cloudkms"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME_SECONDS = 3600
REFRESH_MARGIN_SECONDS = 300.0
#: A token is fetched again after a day at the latest, whatever lifetime it claims.
MAX_TOKEN_LIFETIME_SECONDS = 86_400.0
METADATA_HOST = "metadata.google.internal"
METADATA_TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"  # noqa: S105 - a URL path
MAX_CREDENTIALS_FILE_BYTES = 64 * 1024
_METADATA_TIMEOUT = aiohttp.ClientTimeout(total=10, connect=3)

#: The token each task last sent, so ``invalidate`` drops only a token a request saw refused.
_SENT_TOKEN: contextvars.ContextVar[str | None] = contextvars.ContextVar("keyorch_google_sent_token", default=None)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class ServiceAccountSigner:
    """Signs the JWT-bearer assertions of one service account. Its repr shows no key."""

    client_email: str
    token_uri: str
    key: rsa.RSAPrivateKey
    header: str

    @classmethod
    def from_document(cls, doc: Mapping[str, Any], *, origin: str) -> ServiceAccountSigner:
        """Load a service-account JSON key; ``KeystoreConfigurationError`` (naming no secret) if unusable."""
        kind = doc.get("type", "service_account")
        if kind != "service_account":
            raise KeystoreConfigurationError(
                f"{origin} holds Google credentials of type {str(kind)[:40]!r}; only service-account keys "
                "(type service_account) are supported",
                sent=False,
            )
        try:
            account = GoogleServiceAccount.model_validate(doc)
        except ValidationError as exc:
            fields = ", ".join(sorted({".".join(str(p) for p in err["loc"]) for err in exc.errors()}))[:200]
            raise KeystoreConfigurationError(
                f"{origin} is not a usable service-account key (problem with: {fields})", sent=False
            ) from None
        try:
            key = serialization.load_pem_private_key(account.private_key.get_secret_value().encode(), password=None)
        except (ValueError, TypeError):
            key = None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise KeystoreConfigurationError(
                f"{origin}: the service account's private_key is not a PEM RSA private key", sent=False
            )
        token_uri = account.token_uri
        if urlsplit(token_uri).scheme not in ("http", "https"):
            raise KeystoreConfigurationError(f"{origin}: token_uri is not an http(s) URL", sent=False)
        header = {"alg": "RS256", "typ": "JWT", "kid": account.private_key_id}
        encoded = _b64url(json.dumps(header, separators=(",", ":")).encode())
        return cls(account.client_email, token_uri, key, encoded)

    def assertion(self, now: float) -> str:
        issued = int(now)
        claims = {
            "iss": self.client_email,
            "scope": KMS_SCOPE,
            "aud": self.token_uri,
            "iat": issued,
            "exp": issued + ASSERTION_LIFETIME_SECONDS,
        }
        signing_input = f"{self.header}.{_b64url(json.dumps(claims, separators=(',', ':')).encode())}"
        signature = self.key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"

    def __repr__(self) -> str:
        return f"ServiceAccountSigner(client_email={self.client_email!r}, token_uri={self.token_uri!r})"


@dataclass(frozen=True, slots=True)
class MetadataServer:
    """The GCE/GKE metadata server's token endpoint (credentials from the environment)."""

    url: str


CredentialSource = ServiceAccountSigner | MetadataServer | KeystoreConfigurationError


def credential_source(credentials: Mapping[str, Any] | None) -> CredentialSource:
    """Where tokens come from: the stored document, ``GOOGLE_APPLICATION_CREDENTIALS``, or the metadata server.

    A problem is returned (not raised) so that it surfaces at the first request, as a health check expects.
    """
    try:
        if credentials is not None:
            return ServiceAccountSigner.from_document(credentials, origin="the keystore's credentials")
        path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        if path:
            return ServiceAccountSigner.from_document(_read_json(path), origin="GOOGLE_APPLICATION_CREDENTIALS")
    except KeystoreConfigurationError as exc:
        return exc
    host = os.environ.get("GCE_METADATA_HOST") or METADATA_HOST
    return MetadataServer(f"http://{host}{METADATA_TOKEN_PATH}?{urlencode({'scopes': KMS_SCOPE})}")


def _read_json(path: str) -> dict[str, Any]:
    problem = "cannot be read"
    try:
        raw = Path(path).read_bytes()[: MAX_CREDENTIALS_FILE_BYTES + 1]
        problem = "is larger than 64 KiB" if len(raw) > MAX_CREDENTIALS_FILE_BYTES else "is not a JSON object"
        doc = json.loads(raw) if len(raw) <= MAX_CREDENTIALS_FILE_BYTES else None
    except (OSError, ValueError):
        doc = None
    if not isinstance(doc, dict):
        raise KeystoreConfigurationError(
            f"the file named by GOOGLE_APPLICATION_CREDENTIALS ({path[:200]!r}) {problem}", sent=False
        )
    return doc


class GoogleAuth:
    """The ``AuthHook`` of a Cloud KMS keystore: a cached bearer token, refreshed before it expires."""

    def __init__(self, source: CredentialSource, token_transport: HttpTransport, *, origin: str) -> None:
        """``origin``: the Cloud KMS endpoint's, the only one its tokens are sent to."""
        self.origin = origin
        self._source = source
        self._transport = token_transport
        self._token: str | None = None
        self._refresh_at = 0.0
        self._lock = asyncio.Lock()
        #: Tokens fetched so far (for tests and metrics).
        self.fetches = 0

    def __repr__(self) -> str:
        return f"GoogleAuth(source={type(self._source).__name__}, has_token={self._token is not None})"

    async def apply(self, headers: dict[str, str], method: str, url: str, body: bytes | None) -> dict[str, str]:
        token = self._token
        if token is None or time.monotonic() >= self._refresh_at:
            token = await self._refresh()
        _SENT_TOKEN.set(token)
        headers["Authorization"] = "Bearer " + token
        return headers

    async def invalidate(self) -> None:
        sent = _SENT_TOKEN.get()
        if sent is None or sent == self._token:
            self._token = None

    async def token(self) -> str:
        """The current access token, fetched if needed."""
        return self._token if self._token is not None and time.monotonic() < self._refresh_at else await self._refresh()

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def _refresh(self) -> str:
        async with self._lock:
            if self._token is not None and time.monotonic() < self._refresh_at:
                return self._token  # another task fetched it while this one waited
            started = time.monotonic()
            token, lifetime = await self._fetch()
            self.fetches += 1
            margin = min(REFRESH_MARGIN_SECONDS, lifetime / 4)
            self._token, self._refresh_at = token, started + max(0.0, lifetime - margin)
            return token

    async def _fetch(self) -> tuple[str, float]:
        source = self._source
        if isinstance(source, KeystoreConfigurationError):
            raise KeystoreConfigurationError(source.detail, keystore=self._transport.keystore, sent=False)
        if isinstance(source, MetadataServer):
            return await self._fetch_metadata(source)
        form = urlencode({"grant_type": JWT_BEARER, "assertion": source.assertion(time.time())}).encode()
        result = await self._transport.request(
            "POST",
            source.token_uri,
            operation="oauth2.token",
            idempotent=True,
            data=form,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            authenticate=False,
        )
        try:
            return _token_answer(result.json_body)
        except ValueError as exc:
            raise result.malformed(f"the token endpoint's answer is unusable: {exc}") from None

    async def _fetch_metadata(self, source: MetadataServer) -> tuple[str, float]:
        keystore = self._transport.keystore
        operation = "metadata.token"
        try:
            async with (
                aiohttp.ClientSession(timeout=_METADATA_TIMEOUT, trust_env=False) as session,
                session.get(source.url, headers={"Metadata-Flavor": "Google"}, allow_redirects=False) as response,
            ):
                raw = await response.content.read(MAX_CREDENTIALS_FILE_BYTES)
                status = response.status
        except aiohttp.ClientConnectorError:
            raise KeystoreConfigurationError(
                "no Google credentials: the keystore has none stored, GOOGLE_APPLICATION_CREDENTIALS is not set "
                "and the GCE/GKE metadata server cannot be reached",
                keystore=keystore,
                operation=operation,
                sent=False,
            ) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Unavailable(
                f"the metadata server did not answer ({type(exc).__name__})", keystore=keystore, operation=operation
            ) from None
        if status != 200:
            error: ProviderError = (
                Unavailable("the metadata server failed", status=status, body=raw)
                if status >= 500 or status == 429
                else KeystoreConfigurationError("the metadata server refused a token", status=status, body=raw)
            )
            error.bind(keystore=keystore, operation=operation)
            raise error
        try:
            return _token_answer(bodies.loads(raw))
        except ValueError as exc:  # not JSON, nested too deep (bodies.TooDeep), or not a token answer
            raise MalformedResponse(
                f"the metadata server's token answer is unusable: {exc}", keystore=keystore, operation=operation
            ) from None


def _token_answer(doc: Any) -> tuple[str, float]:
    """``access_token`` and ``expires_in`` (seconds) of a token answer; ``ValueError`` naming what is wrong."""
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    token = doc.get("access_token")
    if not isinstance(token, str) or not token or not token.isascii() or not token.isprintable() or " " in token:
        raise ValueError("access_token is missing or not a token")
    token_type = doc.get("token_type", "Bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise ValueError("token_type is not Bearer")
    lifetime = doc.get("expires_in", 3600)
    if isinstance(lifetime, str) and lifetime.isascii() and lifetime.isdigit():
        lifetime = int(lifetime)
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or not 0 < lifetime < 10**12:
        raise ValueError("expires_in is not a number of seconds")
    return token, min(float(lifetime), MAX_TOKEN_LIFETIME_SECONDS)
