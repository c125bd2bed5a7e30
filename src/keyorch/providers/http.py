"""The HTTP transport every adapter speaks through: one aiohttp session per keystore.

:class:`HttpTransport` owns, per keystore: the ``ClientSession`` (connect and read timeouts, a
connection pool sized to the concurrency limit, TLS verification always on, optionally against the
keystore's own CA certificate ``ca_pem``, plain ``http://`` only to a loopback address and only when
the keystore sets ``allow_insecure_http``), the :class:`~keyorch.providers.limits.KeystoreLimiter`,
the :class:`~keyorch.providers.retry.RetryPolicy` and the adapter's auth hook.

:meth:`HttpTransport.request` sends one logical request under its total deadline
(``call_timeout_seconds``, :mod:`keyorch.providers.deadlines`): it waits out a ``Retry-After`` the
keystore gave for this call, waits for the rate buckets, takes a concurrency slot only while on the
wire, signs or authenticates through the :class:`AuthHook`, reads the body fully (up to
``max_body_bytes``), parses JSON defensively (nesting bounded, :mod:`keyorch.providers.bodies`) and
turns every failure into the error tree of :mod:`keyorch.providers.errors`: transport failures
here, HTTP statuses through the adapter's ``map_error(status, headers, body) -> ProviderError`` (one
mapping point per adapter).
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

import asyncio
import json as _json
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import aiohttp

from keyorch import metrics
from keyorch.domain.models import Keystore
from keyorch.domain.validation import is_loopback_host
from keyorch.providers import bodies, deadlines, fence, mutations
from keyorch.providers.endpoints import origin_of
from keyorch.providers.errors import (
    KeystoreConfigurationError,
    MalformedResponse,
    ProviderError,
    Timeout,
    TlsError,
    Unavailable,
    bounded_retry_after,
    error_for_status,
    parse_retry_after,
    redact,
)
from keyorch.providers.limits import KeystoreLimiter, ProviderLimits, limits_for
from keyorch.providers.retry import (
    RetryEvent,
    RetryHook,
    RetryPolicy,
    RetryStats,
    call_checked,
    call_with_retry,
    retry_policy_for,
)
from keyorch.providers.transport_settings import TransportSettings, check_transport_settings

__all__ = ["AuthHook", "ErrorMapper", "HttpResult", "HttpTransport", "TransportSettings", "check_transport_settings"]

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

    ``origin`` is the ``scheme://host:port`` (:func:`~keyorch.providers.endpoints.origin_of`) the
    credentials were issued for, the keystore's endpoint: the transport never applies the hook to a
    request for any other origin, so a token or signature cannot reach a host it was not meant for.

    ``apply`` gets a fresh copy of the request headers for every send and returns the headers to
    send (it may add to and return the same dict). ``invalidate`` drops a cached token so the next
    ``apply`` fetches a new one; the transport calls it after an ``AuthError`` with ``refresh`` set.
    """

    origin: str

    async def apply(self, headers: dict[str, str], method: str, url: str, body: bytes | None) -> dict[str, str]: ...

    async def invalidate(self) -> None: ...


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
        self._gate = deadlines.ResendGate(retry.clock, retry.sleep)
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
            session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, trust_env=False, trace_configs=[fence.trace_config()]
            )
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

        request = object()  # this request, as the resend gate knows it

        async def attempt() -> HttpResult:
            return await self._attempt(request, method, url, operation, send_headers, body, authenticate)

        async def attempts() -> HttpResult:
            return await call_with_retry(self.retry, attempt, idempotent=idempotent, on_retry=self._count_retry)

        try:
            result = await self._within_deadline(attempts, operation)
        except ProviderError as exc:
            metrics.record_provider_call(self.keystore or "", operation, str(exc.status or exc.code))
            if not idempotent and exc.sent:
                mutations.note(operation)
            raise
        except asyncio.CancelledError:  # cut off (a deadline, a shutdown): it may have been sent
            if not idempotent:
                mutations.note(operation)
            raise
        metrics.record_provider_call(self.keystore or "", operation, str(result.status))
        if not idempotent:
            mutations.note(operation)
        return result

    async def request_checked(self, send: Callable[[], Awaitable[T]], done: Callable[[], Awaitable[D | None]]) -> T | D:
        """A call the provider refuses to repeat, under this keystore's retry policy
        (:func:`~keyorch.providers.retry.call_checked`) and one deadline for all of it (each request it
        makes has its own too); its resends are counted like any retry."""

        async def checked() -> T | D:
            return await call_checked(self.retry, send, done, on_retry=self._count_retry)

        return await self._within_deadline(checked, "")

    async def _within_deadline(self, call: Callable[[], Awaitable[T]], operation: str) -> T:
        return await deadlines.within_deadline(
            self.settings.call_timeout_seconds,
            call,
            keystore=self.keystore,
            operation=operation,
            setting="call_timeout_seconds",
        )

    def _count_retry(self, event: RetryEvent) -> None:
        self.stats(event)
        metrics.record_retry(self.keystore or "", event.error.operation or "")
        if event.throttled:
            metrics.record_throttle(self.keystore or "")
        if self._on_retry is not None:
            self._on_retry(event)

    async def _attempt(
        self,
        request: object,
        method: str,
        url: str,
        operation: str,
        headers: dict[str, str],
        body: bytes | None,
        authenticate: bool,
    ) -> HttpResult:
        limiter = self._limiter
        call = (operation, url)
        await self._gate.wait(call, request)
        if limiter.limited:  # keyorch's own pacing is not the keystore's time: it does not count
            await limiter.acquire(operation, before_wait=deadlines.pause)
        auth = self._auth if authenticate else None
        if auth is not None and origin_of(url) != auth.origin:
            raise KeystoreConfigurationError(
                f"refusing to send this keystore's credentials to {origin_of(url)}: they are for {auth.origin}",
                keystore=self.keystore,
                operation=operation,
                sent=False,
            )
        async with limiter.slots:
            replayed = False
            while True:
                sent = await auth.apply(dict(headers), method, url, body) if auth is not None else headers
                deadlines.mark_sent()
                status, response_headers, raw = await self._send(method, url, sent, body, operation)
                if 200 <= status < 300:
                    return HttpResult(
                        status, response_headers, self._decode(raw, status, operation), raw, self.keystore, operation
                    )
                error = self._status_error(status, response_headers, raw, operation, sent)
                if error.retry_after and error.transient:
                    self._gate.hold(call, error.retry_after, request)
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
        data: bytes | fence.FencedBody | None = body
        if body is not None and fence.fenced():
            data = fence.FencedBody(body)
        try:
            async with session.request(method, url, headers=headers, data=data, allow_redirects=False) as response:
                raw = await self._read(response, operation)
                return response.status, response.headers, raw
        except ProviderError as exc:
            exc.bind(keystore=self.keystore, operation=operation)
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            fenced = fence.fenced_cause(exc)
            error = fenced if fenced is not None else self._transport_error(exc)
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
            return bodies.loads(raw)
        except bodies.TooDeep as exc:
            raise MalformedResponse(
                f"the response body is refused: {exc}",
                keystore=self.keystore,
                operation=operation,
                status=status,
            ) from None
        except ValueError as exc:  # UnicodeDecodeError is one too
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
        error.retry_after = bounded_retry_after(error.retry_after)  # whichever mapper read it, and from where
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
