"""The HTTP transport every adapter speaks through: one aiohttp session per keystore.

:class:`HttpTransport` owns, per keystore: the ``ClientSession`` (connect and read timeouts, a
connection pool sized to the concurrency limit, TLS verification always on, optionally against the
keystore's own CA certificate ``ca_pem``, plain ``http://`` only to a loopback address and only when
the keystore sets ``allow_insecure_http``), the :class:`~keyorch.providers.limits.KeystoreLimiter`,
the :class:`~keyorch.providers.retry.RetryPolicy` and the adapter's auth hook.

:meth:`HttpTransport.request` sends one logical request: it waits for the rate buckets, takes a
concurrency slot only while on the wire, signs or authenticates through the :class:`AuthHook`, reads
the body fully (up to ``max_body_bytes``), parses JSON defensively and turns every failure into the
error tree of :mod:`keyorch.providers.errors`: transport failures here, HTTP statuses through the
adapter's ``map_error(status, headers, body) -> ProviderError`` (one mapping point per adapter).
A refusable-by-refresh :class:`~keyorch.providers.errors.AuthError` (a 401 by default) makes the
transport call ``auth.invalidate()`` and send once more, exactly once per attempt; a 401 means the
request was not processed, so this replay applies to calls that are not idempotent too.

Transport failures map as follows (``sent`` false means safe to retry even a create):
TLS/certificate failures → :class:`TlsError` (a configuration problem, permanent, not sent);
connection refused, DNS failure → :class:`Unavailable` (not sent); no connection in time →
:class:`Timeout` (not sent); no answer in time → :class:`Timeout` (sent); server closed the
connection, reset, body shorter than announced → :class:`Unavailable` (sent); a reply that is not
HTTP → :class:`MalformedResponse`; a URL that cannot be used → :class:`KeystoreConfigurationError`.
"""

from __future__ import annotations

import json as _json
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import aiohttp

from keyorch import metrics
from keyorch.domain.errors import InvalidInput
from keyorch.domain.models import Keystore
from keyorch.domain.validation import is_loopback_host
from keyorch.providers.errors import (
    KeystoreConfigurationError,
    MalformedResponse,
    ProviderError,
    Timeout,
    TlsError,
    Unavailable,
    error_for_status,
    parse_retry_after,
    redact,
)
from keyorch.providers.limits import KeystoreLimiter, ProviderLimits, limits_for, number_setting
from keyorch.providers.retry import (
    RetryEvent,
    RetryHook,
    RetryPolicy,
    RetryStats,
    call_checked,
    call_with_retry,
    retry_policy_for,
)

#: Request headers whose values are credentials: never quoted, and scrubbed from error messages.
T = TypeVar("T")
D = TypeVar("D")

SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-amz-security-token", "x-api-key", "apikey", "cookie"}
)


class ErrorMapper(Protocol):
    """An adapter's one mapping point from a non-2xx answer to the error tree."""

    def __call__(self, status: int, headers: Mapping[str, str], body: bytes, /) -> ProviderError: ...


class AuthHook(Protocol):
    """How an adapter authenticates requests (SigV4 signing, a cached bearer token, ...).

    ``apply`` gets a fresh copy of the request headers for every send and returns the headers to
    send (it may add to and return the same dict). ``invalidate`` drops a cached token so the next
    ``apply`` fetches a new one; the transport calls it after an ``AuthError`` with ``refresh`` set.
    """

    async def apply(self, headers: dict[str, str], method: str, url: str, body: bytes | None) -> dict[str, str]: ...

    async def invalidate(self) -> None: ...


@dataclass(frozen=True)
class TransportSettings:
    """Connection settings of one keystore (from its settings record)."""

    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 30.0
    ca_pem: str | None = None
    allow_insecure_http: bool = False
    max_body_bytes: int = 8 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> TransportSettings:
        """Read ``connect_timeout_seconds``, ``read_timeout_seconds``, ``ca_pem``, ``allow_insecure_http``."""
        values: dict[str, Any] = {}
        for key in ("connect_timeout_seconds", "read_timeout_seconds"):
            if key in settings:
                values[key] = number_setting(settings, key, minimum=0.001, maximum=3600)
        ca_pem = settings.get("ca_pem")
        if ca_pem is not None:
            if not isinstance(ca_pem, str) or "-----BEGIN CERTIFICATE-----" not in ca_pem:
                raise InvalidInput("setting ca_pem must hold PEM CA certificates", target="ca_pem")
            values["ca_pem"] = ca_pem
        insecure = settings.get("allow_insecure_http", False)
        if not isinstance(insecure, bool):
            raise InvalidInput(
                f"setting allow_insecure_http must be true or false, not {insecure!r}", target="allow_insecure_http"
            )
        values["allow_insecure_http"] = insecure
        return cls(**values)

    def ssl_context(self) -> ssl.SSLContext | bool:
        """``True`` (aiohttp's verifying default) or a verifying context that trusts only ``ca_pem``."""
        if self.ca_pem is None:
            return True
        try:
            context = ssl.create_default_context(cadata=self.ca_pem)
        except (ssl.SSLError, ValueError) as exc:
            raise KeystoreConfigurationError(
                f"the keystore's CA certificate (ca_pem) cannot be loaded: {type(exc).__name__}", sent=False
            ) from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context


def check_transport_settings(keystore: Keystore) -> None:
    """Validate the transport and limit settings of a keystore (for a provider factory's check)."""
    TransportSettings.from_settings(keystore.settings).ssl_context()
    limits_for(keystore.type, keystore.settings)


@dataclass(frozen=True, slots=True)
class HttpResult:
    """A successful (2xx) answer: ``json_body`` is the parsed body, ``None`` when the body was empty."""

    status: int
    headers: Mapping[str, str]
    json_body: Any
    raw: bytes
    keystore: str = ""
    operation: str = ""

    def malformed(self, detail: str) -> MalformedResponse:
        """An error for a body that parsed but does not have the promised shape (for adapters)."""
        return MalformedResponse(
            detail, keystore=self.keystore, operation=self.operation, status=self.status, body=self.raw
        )

    def json_object(self) -> dict[str, Any]:
        """The body as a JSON object; :class:`MalformedResponse` when it is anything else."""
        if isinstance(self.json_body, dict):
            return self.json_body
        raise self.malformed(f"expected a JSON object, got {type(self.json_body).__name__}")


class HttpTransport:
    """One keystore's HTTP client. Use :meth:`request`; call :meth:`aclose` when done."""

    def __init__(
        self,
        keystore: str,
        *,
        limits: ProviderLimits,
        retry: RetryPolicy,
        map_error: ErrorMapper = error_for_status,
        auth: AuthHook | None = None,
        settings: TransportSettings | None = None,
        on_retry: RetryHook | None = None,
    ) -> None:
        self.keystore = keystore
        self.settings = settings or TransportSettings()
        self.retry = retry
        self.stats = RetryStats()
        self.auth_refreshes = 0
        self._map_error = map_error
        self._auth = auth
        self._on_retry = on_retry
        self._ssl = self.settings.ssl_context()
        self._limiter = KeystoreLimiter(limits, sleep=retry.sleep)
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=self.settings.connect_timeout_seconds,
            sock_connect=self.settings.connect_timeout_seconds,
            sock_read=self.settings.read_timeout_seconds,
        )
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._plain_hosts: dict[str, bool] = {}

    @classmethod
    def for_keystore(
        cls,
        keystore: Keystore,
        *,
        map_error: ErrorMapper = error_for_status,
        auth: AuthHook | None = None,
        retry: RetryPolicy | None = None,
        on_retry: RetryHook | None = None,
    ) -> HttpTransport:
        """A transport with the keystore type's default limits and retry policy and the keystore's overrides."""
        return cls(
            keystore.name,
            limits=limits_for(keystore.type, keystore.settings),
            retry=retry or retry_policy_for(keystore.type),
            map_error=map_error,
            auth=auth,
            settings=TransportSettings.from_settings(keystore.settings),
            on_retry=on_retry,
        )

    @property
    def limiter(self) -> KeystoreLimiter:
        return self._limiter

    def _session_or_open(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None:
            if self._closed:
                raise RuntimeError(f"the transport of keystore {self.keystore!r} is closed")
            connector = aiohttp.TCPConnector(
                limit=self._limiter.limits.max_concurrency, ssl=self._ssl, ttl_dns_cache=300
            )
            session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, trust_env=False)
            self._session = session
        return session

    async def aclose(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _check_url(self, url: str) -> None:
        if url.startswith("https://"):
            return
        netloc = url.split("/", 3)[2] if url.startswith("http://") and url.count("/") >= 2 else ""
        allowed = self._plain_hosts.get(netloc)
        if allowed is None:
            host = urlsplit(url).hostname if netloc else None
            allowed = bool(host) and self.settings.allow_insecure_http and is_loopback_host(host or "")
            self._plain_hosts[netloc] = allowed
        if allowed:
            return
        scheme = url.split(":", 1)[0][:10]
        if scheme == "http" and not self.settings.allow_insecure_http:
            why = "plain http:// is not allowed for this keystore (allow_insecure_http is off); use https://"
        elif scheme == "http":
            why = "plain http:// is allowed only to a loopback address; use https://"
        else:
            why = f"a {scheme!r} URL cannot be used; use https://"
        raise KeystoreConfigurationError(why, keystore=self.keystore, sent=False)

    async def request(
        self,
        method: str,
        url: str,
        *,
        operation: str,
        idempotent: bool,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        data: bytes | None = None,
        authenticate: bool = True,
    ) -> HttpResult:
        """Send one logical request under the limits and the retry policy; return its 2xx answer.

        ``idempotent`` says whether sending it twice is harmless (reads, PATCH to a state, a create
        with a caller-chosen name); a call that is not is retried only if it never left this host.
        ``authenticate=False`` skips the auth hook (for the token endpoint itself).
        """
        self._check_url(url)
        send_headers = dict(headers) if headers else {}
        body = data
        if json is not None:
            body = _json.dumps(json, separators=(",", ":")).encode()
            if "Content-Type" not in send_headers and "content-type" not in send_headers:
                send_headers["Content-Type"] = "application/json"

        async def attempt() -> HttpResult:
            return await self._attempt(method, url, operation, send_headers, body, authenticate)

        try:
            result = await call_with_retry(self.retry, attempt, idempotent=idempotent, on_retry=self._count_retry)
        except ProviderError as exc:
            metrics.record_provider_call(self.keystore or "", operation, str(exc.status or exc.code))
            raise
        metrics.record_provider_call(self.keystore or "", operation, str(result.status))
        return result

    async def request_checked(self, send: Callable[[], Awaitable[T]], done: Callable[[], Awaitable[D | None]]) -> T | D:
        """A call the provider refuses to repeat, under this keystore's retry policy
        (:func:`~keyorch.providers.retry.call_checked`); its resends are counted like any retry."""
        return await call_checked(self.retry, send, done, on_retry=self._count_retry)

    def _count_retry(self, event: RetryEvent) -> None:
        self.stats(event)
        metrics.record_retry(self.keystore or "", event.error.operation or "")
        if event.throttled:
            metrics.record_throttle(self.keystore or "")
        if self._on_retry is not None:
            self._on_retry(event)

    async def _attempt(
        self, method: str, url: str, operation: str, headers: dict[str, str], body: bytes | None, authenticate: bool
    ) -> HttpResult:
        limiter = self._limiter
        if limiter.limited:
            await limiter.acquire(operation)
        auth = self._auth if authenticate else None
        async with limiter.slots:
            replayed = False
            while True:
                sent = await auth.apply(dict(headers), method, url, body) if auth is not None else headers
                status, response_headers, raw = await self._send(method, url, sent, body, operation)
                if 200 <= status < 300:
                    return HttpResult(
                        status, response_headers, self._decode(raw, status, operation), raw, self.keystore, operation
                    )
                error = self._status_error(status, response_headers, raw, operation, sent)
                if auth is not None and not replayed and getattr(error, "refresh", False):
                    replayed = True
                    self.auth_refreshes += 1
                    await auth.invalidate()
                    continue
                raise error

    async def _send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None, operation: str
    ) -> tuple[int, Mapping[str, str], bytes]:
        session = self._session or self._session_or_open()
        try:
            async with session.request(method, url, headers=headers, data=body, allow_redirects=False) as response:
                raw = await self._read(response, operation)
                return response.status, response.headers, raw
        except ProviderError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = self._transport_error(exc)
        error.bind(keystore=self.keystore, operation=operation)
        raise error

    async def _read(self, response: aiohttp.ClientResponse, operation: str) -> bytes:
        cap = self.settings.max_body_bytes
        length = response.content_length
        if length is not None and length <= cap:
            return await response.read()
        size = 0
        chunks: list[bytes] = []
        if length is None:
            async for chunk in response.content.iter_any():
                size += len(chunk)
                if size > cap:
                    break
                chunks.append(chunk)
            else:
                return b"".join(chunks)
        response.close()
        raise MalformedResponse(
            f"the response body is larger than the {cap} bytes allowed",
            keystore=self.keystore,
            operation=operation,
            status=response.status,
        )

    def _decode(self, raw: bytes, status: int, operation: str) -> Any:
        if not raw or raw.isspace():
            return None
        try:
            return _json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            truncated = isinstance(exc, _json.JSONDecodeError) and (
                exc.msg.startswith("Unterminated string") or exc.pos >= len(exc.doc.rstrip())
            )
            raise MalformedResponse(
                "the response body is JSON cut short" if truncated else "the response body is not JSON",
                keystore=self.keystore,
                operation=operation,
                status=status,
                body=raw,
                transient=truncated,
            ) from None

    def _status_error(
        self, status: int, headers: Mapping[str, str], raw: bytes, operation: str, sent: Mapping[str, str]
    ) -> ProviderError:
        try:
            error = self._map_error(status, headers, raw)
        except Exception as exc:  # a mapper bug must not escape as an unhandled exception
            error = MalformedResponse(f"the error answer could not be read ({type(exc).__name__})", body=raw)
        error.bind(keystore=self.keystore, operation=operation, status=status)
        if error.retry_after is None and error.transient:
            error.retry_after = parse_retry_after(headers)
        secrets = [value for name, value in sent.items() if name.lower() in SENSITIVE_HEADERS]
        secrets += [value.split(None, 1)[1] for value in secrets if " " in value]
        error.scrub(secrets)
        return error

    def _transport_error(self, exc: BaseException) -> ProviderError:
        what = f"{type(exc).__name__}: {redact(str(exc))[:200]}"
        connect = self.settings.connect_timeout_seconds
        if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
            return TlsError(
                f"TLS with the keystore failed ({what}); check its endpoint and CA certificate (ca_pem)", sent=False
            )
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return Timeout(f"no connection within {connect:g} s", sent=False)
        if isinstance(exc, aiohttp.ClientConnectorError):
            return Unavailable(f"cannot connect ({what})", sent=False)
        if isinstance(exc, TimeoutError):
            return Timeout(f"no answer within {self.settings.read_timeout_seconds:g} s")
        if isinstance(exc, aiohttp.ClientPayloadError):
            return Unavailable(f"the response body was cut short ({what})")
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return Unavailable("the server closed the connection before answering")
        if isinstance(exc, aiohttp.InvalidURL):
            return KeystoreConfigurationError("the request URL is not valid", sent=False)
        if isinstance(exc, aiohttp.ClientResponseError):
            return MalformedResponse(f"the answer is not valid HTTP ({what})")
        return Unavailable(f"the connection failed ({what})")
