"""IBM Cloud IAM API-key exchange for the Key Protect adapter: an :class:`~keyorch.providers.http.AuthHook`.

``POST <iam_url>`` with the form ``grant_type=urn:ibm:params:oauth:grant-type:apikey&apikey=...``
answers ``{access_token, token_type: "Bearer", expires_in, expiration}`` (docs/providers.md §4.1). The token
is cached and fetched again once 80% of its life has passed (as IBM's own SDKs do), measured on this
host's monotonic clock from ``expires_in`` so a skewed clock on either side does not matter; only
when ``expires_in`` is missing is ``expiration`` (epoch seconds) used.

One fetch at a time: concurrent requests that find no usable token wait for the same fetch. A 401
makes the transport call :meth:`IamTokenAuth.invalidate`, which drops the cached token only if it is
the one that request sent (remembered per task in a context variable), so a burst of 401s after a
revocation costs one new token, not one per request.

The token endpoint is reached through its own :class:`~keyorch.providers.http.HttpTransport` (its
own small connection pool, so a token fetch never waits for a slot held by the requests that need
the token; the keystore's TLS settings, ``ca_pem`` and ``allow_insecure_http``, apply to it as well)
with no retries of its own: a failed fetch is reported as "not sent" for the Key
Protect request, whose retry policy then tries again. IAM's errors (``{errorCode, errorMessage}``)
map to :class:`AuthError` for 400/401/403 (a wrong or deleted API key is IAM's 400 ``BXNIM0415E``).

Neither the API key nor a token appears in any message or repr: the key is held as a ``SecretStr``
and scrubbed from IAM's error answers; the token is sent only in the ``Authorization`` header,
which the transport scrubs from errors.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from pydantic import SecretStr

from keyorch.providers.errors import AuthError, MalformedResponse, ProviderError, error_for_status, parse_json_lenient
from keyorch.providers.http import HttpResult, HttpTransport
from keyorch.urls import redact_url

APIKEY_GRANT = "urn:ibm:params:oauth:grant-type:apikey"
DEFAULT_IAM_URL = "https://iam.cloud.ibm.com/identity/token"
#: Fetch a new token once this share of its lifetime has passed.
REFRESH_AT = 0.8
#: Environment variables read when a keystore uses the environment instead of stored credentials.
APIKEY_ENV = ("IBMCLOUD_API_KEY", "IC_API_KEY")
IAM_ENDPOINT_ENV = "IBMCLOUD_IAM_API_ENDPOINT"


@dataclass(frozen=True, slots=True)
class _Token:
    header: str
    refresh_at: float

    def __repr__(self) -> str:
        return "_Token(***)"


#: The token the current task last sent (see :meth:`IamTokenAuth.invalidate`).
_SENT: contextvars.ContextVar[_Token | None] = contextvars.ContextVar("keyorch_ibm_iam_token", default=None)


def iam_url_from_environment(environ: Mapping[str, str]) -> str:
    """The token URL from ``IBMCLOUD_IAM_API_ENDPOINT`` (a base such as ``https://iam.cloud.ibm.com``)."""
    base = environ.get(IAM_ENDPOINT_ENV, "").strip().rstrip("/")
    if not base:
        return DEFAULT_IAM_URL
    return base if base.endswith("/identity/token") else base + "/identity/token"


def apikey_from_environment(environ: Mapping[str, str]) -> SecretStr | None:
    for name in APIKEY_ENV:
        value = environ.get(name, "").strip()
        if value:
            return SecretStr(value)
    return None


class IamTokenAuth:
    """Bearer tokens from IBM Cloud IAM for one keystore (an ``AuthHook``)."""

    def __init__(
        self,
        apikey: SecretStr | None,
        iam_url: str,
        transport: HttpTransport,
        *,
        origin: str,
        clock: Callable[[], float] = time.monotonic,
        missing: str = "no IBM Cloud API key was given",
    ) -> None:
        """``origin``: the Key Protect endpoint's, the only one its tokens are sent to."""
        self.origin = origin
        self._apikey = apikey
        self.iam_url = iam_url
        self._transport = transport
        self._clock = clock
        self._missing = missing
        self._token: _Token | None = None
        self._lock = asyncio.Lock()
        #: Tokens fetched so far (for tests and metrics).
        self.fetches = 0

    def __repr__(self) -> str:
        return f"IamTokenAuth(iam_url={redact_url(self.iam_url)!r})"

    async def apply(self, headers: dict[str, str], method: str, url: str, body: bytes | None) -> dict[str, str]:
        token = self._token
        if token is None or self._clock() >= token.refresh_at:
            token = await self._renew(token)
        headers["Authorization"] = token.header
        _SENT.set(token)
        return headers

    async def invalidate(self) -> None:
        sent = _SENT.get()
        if sent is None or sent is self._token:
            self._token = None

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def _renew(self, stale: _Token | None) -> _Token:
        async with self._lock:
            current = self._token
            if current is not None and current is not stale and self._clock() < current.refresh_at:
                return current  # another request fetched it while this one waited
            try:
                token = await self._fetch()
            except ProviderError as exc:
                exc.sent = False  # the Key Protect request itself was never sent
                raise
            self._token = token
            return token

    async def _fetch(self) -> _Token:
        if self._apikey is None:
            raise AuthError(self._missing, operation="IamToken", refresh=False, sent=False)
        started = self._clock()
        form = urlencode({"grant_type": APIKEY_GRANT, "apikey": self._apikey.get_secret_value()}).encode()
        result = await self._transport.request(
            "POST",
            self.iam_url,
            operation="IamToken",
            idempotent=True,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
            data=form,
            authenticate=False,
        )
        self.fetches += 1
        return _token_from(result, started)


def _token_from(result: HttpResult, started: float) -> _Token:
    """The token in IAM's answer; never quotes the body (it holds the token)."""

    def malformed(what: str) -> MalformedResponse:
        return MalformedResponse(
            f"the IAM token answer {what}", keystore=result.keystore, operation=result.operation, status=result.status
        )

    doc = result.json_body
    if not isinstance(doc, dict):
        raise malformed("is not a JSON object")
    access = doc.get("access_token")
    kind = doc.get("token_type", "Bearer")
    if not isinstance(access, str) or not access or any(c.isspace() for c in access):
        raise malformed("has no usable 'access_token'")
    if not isinstance(kind, str) or kind.lower() != "bearer":
        raise malformed("is not a Bearer token")
    expires_in = doc.get("expires_in")
    if type(expires_in) is not int and type(expires_in) is not float:
        expiration = doc.get("expiration")
        if type(expiration) is not int and type(expiration) is not float:
            raise malformed("has neither 'expires_in' nor 'expiration'")
        expires_in = expiration - time.time()
    if expires_in <= 0:
        raise malformed("holds a token that has already expired")
    return _Token(f"Bearer {access}", started + expires_in * REFRESH_AT)


def iam_error_mapper(apikey: SecretStr | None) -> Callable[[int, Mapping[str, str], bytes], ProviderError]:
    """The token endpoint's mapping point: IAM's ``{errorCode, errorMessage}`` onto the error tree."""
    secrets = [apikey.get_secret_value()] if apikey is not None else []

    def map_iam_error(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        doc = parse_json_lenient(body)
        code = doc.get("errorCode") if isinstance(doc, dict) else None
        message = doc.get("errorMessage") if isinstance(doc, dict) else None
        code = code if isinstance(code, str) else None
        message = message if isinstance(message, str) else None
        if status in (400, 401, 403):
            what = f"{code}: {message}" if code and message else (message or code or f"HTTP {status}")
            error: ProviderError = AuthError(
                f"IBM Cloud IAM refused the API key ({what})", status=status, provider_code=code, refresh=False
            )
        elif code or message:
            detail = f"IBM Cloud IAM: {code or ''}{': ' if code and message else ''}{message or ''}"
            error = error_for_status(status, headers, b"", provider_code=code, detail=detail)
        else:
            error = error_for_status(status, headers, body, detail=f"IBM Cloud IAM answered HTTP {status}")
        error.scrub(secrets)
        return error

    return map_iam_error
