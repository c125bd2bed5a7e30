"""The one error tree of the keystore adapters, and the helpers that keep secrets out of it.

Every failure a keystore call can end in is one of these classes, whichever provider it came from:

* transient (``transient`` is true; the retry policy may try again): :class:`Unavailable` (5xx, refused
  or dropped connections, a body cut short on the wire), :class:`Throttled` (with ``retry_after``),
  :class:`Timeout`;
* permanent: :class:`AuthError` (401/403 and the providers' auth codes), :class:`NotFound`,
  :class:`Conflict` (a conflict or an invalid state: AWS ``KMSInvalidStateException``, Google
  ``FAILED_PRECONDITION``, HTTP 409), :class:`InvalidRequest` (other 4xx, validation),
  :class:`MalformedResponse` (an HTML page, non-JSON, wrong types, missing fields, a 200 with an
  error body) and :class:`KeystoreConfigurationError` with its :class:`TlsError` (the keystore's own
  settings are wrong: certificate verification failed, plain HTTP not allowed, an unusable URL).

``MalformedResponse`` is permanent, with one exception decided here: a JSON body that ends before the
document does (truncated JSON) is marked transient, because it is almost always a connection cut
short by a proxy or a restart and the same request usually succeeds when sent again. A body shorter
than its ``Content-Length`` never gets this far: the transport reports it as :class:`Unavailable`.

Every error also records ``sent``: false only when the request certainly never reached the server
(the connection was never made). A call that is not idempotent is retried only then, or after a
:class:`Throttled` answer (the provider refused it unprocessed).

``retry_after`` is the provider's least wait before the call is sent again: ``Retry-After`` in
seconds or as an HTTP date, or Azure's ``retry-after-ms``, bounded to
:data:`MAX_RETRY_AFTER_SECONDS` so that a hostile or broken answer cannot park a call for days.
A call that did not complete within its total deadline (every attempt and wait included) is a
:class:`DeadlineExceeded`, a :class:`Timeout`.

For the CLI and the API every provider error exits with code 4; transient ones answer HTTP 503 (try
again later), permanent ones 502 (the keystore refused or answered nonsense).

Messages carry at most :data:`BODY_SNIPPET_CHARS` characters of a response body, pass through
:func:`redact` and are scrubbed of the exact credential values the transport sent, so neither
``str(exc)`` nor ``repr(exc)`` can show a token, a key or an ``Authorization`` header value.
"""

from __future__ import annotations

import html
import math
import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

from keyorch.domain.errors import KeyorchError
from keyorch.providers import bodies

BODY_SNIPPET_CHARS = 300
#: The longest wait a keystore's ``Retry-After`` can impose on one call (5 minutes).
MAX_RETRY_AFTER_SECONDS = 300.0
_DETAIL_CHARS = 400

_KEY_VALUE_SECRET = re.compile(
    r"""(?ix)
    (["']?\b(?:authorization|access[_-]?token|refresh[_-]?token|id[_-]?token|client[_-]?secret|client[_-]?assertion
       |assertion|api[_-]?key|password|secret[_-]?access[_-]?key|session[_-]?token|x-amz-security-token
       |private[_-]?key|token|signature|credential|secret)\b["']?\s*[:=]\s*)
    ("[^"]*"|'[^']*'|[^\s,&;}\]]+)
    """
)
_SCHEME_SECRET = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")
_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)", re.S)
_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)
_WHITESPACE = re.compile(r"\s+")
MASK = "***"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask what looks like a credential in ``text``, and every exact value in ``secrets``."""
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, MASK)
    text = _PEM.sub(MASK, text)
    text = _SCHEME_SECRET.sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = _KEY_VALUE_SECRET.sub(lambda m: m.group(1) + MASK, text)
    text = _JWT.sub(MASK, text)
    return _AWS_KEY_ID.sub(MASK, text)


def body_snippet(body: bytes | str | None, limit: int = BODY_SNIPPET_CHARS) -> str:
    """At most ``limit`` characters of a response body, on one line; an HTML page by its title."""
    if not body:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    head = text.lstrip()[:512].lower()
    if head.startswith(("<!doctype html", "<html")) or "<html" in head:
        title = _HTML_TITLE.search(text)
        name = _WHITESPACE.sub(" ", html.unescape(title.group(1))).strip() if title else ""
        text = f"an HTML page {name[:120]!r}" if name else "an HTML page"
    text = _WHITESPACE.sub(" ", text).strip()
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def parse_json_lenient(body: bytes | str | None) -> Any:
    """The JSON document in ``body``, or ``None`` when it is empty, not JSON or nested beyond
    :data:`~keyorch.providers.bodies.MAX_JSON_DEPTH` (for error mappers)."""
    if not body:
        return None
    try:
        return bodies.loads(body)
    except ValueError:  # UnicodeDecodeError and bodies.TooDeep are ValueErrors too
        return None


class ProviderError(KeyorchError):
    """A keystore call failed. Safe to show: carries no credential and at most a body snippet."""

    exit_code = 4
    http_status = 502
    code = "keystore_error"
    #: Whether sending the same request again may succeed (the retry policy asks here).
    transient = False

    def __init__(
        self,
        detail: str,
        *,
        keystore: str | None = None,
        operation: str | None = None,
        status: int | None = None,
        provider_code: str | None = None,
        body: bytes | str | None = None,
        retry_after: float | None = None,
        sent: bool = True,
        transient: bool | None = None,
    ) -> None:
        self.detail = redact(detail)[:_DETAIL_CHARS]
        self.keystore = keystore
        self.operation = operation
        self.status = status
        self.provider_code = redact(provider_code)[:120] if provider_code else None
        self.body_snippet = redact(body_snippet(body))
        self.retry_after = retry_after
        self.sent = sent
        if transient is not None:
            self.transient = transient
        super().__init__(self._compose(), target=keystore)

    def _compose(self) -> str:
        parts = []
        if self.keystore:
            parts.append(f"keystore {self.keystore!r}: ")
        if self.operation:
            parts.append(f"{self.operation}: ")
        parts.append(self.detail)
        if self.status is not None or self.provider_code:
            tags = [f"HTTP {self.status}" if self.status is not None else "", self.provider_code or ""]
            parts.append(f" [{' '.join(t for t in tags if t)}]")
        if self.body_snippet:
            parts.append(f"; response: {self.body_snippet}")
        return "".join(parts)

    def _refresh(self) -> None:
        self.message = self._compose()
        self.args = (self.message,)

    def bind(self, *, keystore: str | None = None, operation: str | None = None, status: int | None = None) -> None:
        """Fill in where the error happened, where the raiser did not know it (the transport calls this)."""
        self.keystore = self.keystore or keystore
        self.target = self.target or self.keystore
        self.operation = self.operation or operation
        self.status = self.status if self.status is not None else status
        self._refresh()

    def scrub(self, secrets: Iterable[str]) -> None:
        """Mask these exact values (the credentials just sent) wherever the error quotes them."""
        values = [s for s in secrets if len(s) >= 4]
        if not values:
            return
        self.detail = redact(self.detail, values)
        self.body_snippet = redact(self.body_snippet, values)
        if self.provider_code:
            self.provider_code = redact(self.provider_code, values)
        self._refresh()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class Unavailable(ProviderError):
    """5xx, a refused/reset/dropped connection, or a body cut short: try again later."""

    http_status = 503
    code = "keystore_unavailable"
    transient = True


class Throttled(ProviderError):
    """The provider's request quota is exhausted; ``retry_after`` (seconds) is its hint, if it gave one."""

    http_status = 503
    code = "keystore_throttled"
    transient = True


class Timeout(ProviderError):
    """No connection or no answer within the configured time."""

    http_status = 503
    code = "keystore_timeout"
    transient = True


class DeadlineExceeded(Timeout):
    """The call did not complete within its total deadline (``call_timeout_seconds``), every attempt
    and every wait between them included: the keystore answers too slowly, or not at all."""


class Fenced(ProviderError):
    """Not sent: the lease of the key the call acts for ran out before its bytes went on the wire
    (:mod:`keyorch.providers.fence`). Another actor may hold the key now; this one stays silent."""

    http_status = 503
    code = "lease_lost"
    transient = True

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("sent", False)
        super().__init__(
            "not sent: this actor's lease on the key ran out before the request went on the wire", **kwargs
        )


class AuthError(ProviderError):
    """The credentials were refused (401/403 or the provider's auth codes).

    ``refresh`` says whether fetching a new token and sending once more may help (a 401, an expired
    token); the transport does that exactly once per request.
    """

    code = "keystore_auth_failed"

    def __init__(self, detail: str, *, refresh: bool | None = None, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.refresh = refresh if refresh is not None else self.status == 401


class NotFound(ProviderError):
    code = "keystore_not_found"


class Conflict(ProviderError):
    """A conflict or a state that forbids the operation (409, KMSInvalidStateException, FAILED_PRECONDITION)."""

    code = "keystore_conflict"


class InvalidRequest(ProviderError):
    """The provider rejected the request as invalid (other 4xx, validation errors)."""

    code = "keystore_invalid_request"


class MalformedResponse(ProviderError):
    """The answer is not what the protocol promises: HTML, non-JSON, wrong types, missing fields."""

    code = "keystore_malformed_response"


class KeystoreConfigurationError(ProviderError):
    """The keystore's own settings are unusable (URL, plain HTTP not allowed, CA certificate)."""

    code = "keystore_configuration_error"


class TlsError(KeystoreConfigurationError):
    """TLS failed: the server certificate did not verify against the trusted CAs, or the handshake failed."""

    code = "keystore_tls_error"


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.transient


def bounded_retry_after(seconds: float | None) -> float | None:
    """A provider's wait hint within ``[0, MAX_RETRY_AFTER_SECONDS]``; ``None`` when it is none or not a number."""
    if seconds is None or math.isnan(seconds):
        return None
    return min(MAX_RETRY_AFTER_SECONDS, max(0.0, seconds))


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or an HTTP date) or Azure's ``*retry-after-ms``,
    bounded to :data:`MAX_RETRY_AFTER_SECONDS`; ``None`` when there is no usable hint."""
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        value = headers.get(name)
        if value:
            try:
                return bounded_retry_after(float(value) / 1000.0)
            except ValueError:
                pass
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return bounded_retry_after(float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    stamp = when.timestamp() if when.tzinfo is not None else when.replace(tzinfo=UTC).timestamp()
    return bounded_retry_after(stamp - time.time())


def error_for_status(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    provider_code: str | None = None,
    detail: str | None = None,
) -> ProviderError:
    """The generic status mapping, for what a provider's own mapper does not single out.

    401/403 auth, 404 not found, 408 timeout, 409 conflict, 429 throttled (with ``Retry-After``),
    5xx unavailable except 501 (not implemented: permanent), other 4xx invalid request, anything
    else (an unexpected redirect or 1xx) a malformed response.
    """
    text = detail or f"the keystore answered HTTP {status}"
    kwargs: dict[str, Any] = {"status": status, "provider_code": provider_code, "body": body}
    if status in (401, 403):
        return AuthError(text, **kwargs)
    if status == 404:
        return NotFound(text, **kwargs)
    if status == 408:
        return Timeout(text, **kwargs)
    if status == 409:
        return Conflict(text, **kwargs)
    if status == 429:
        return Throttled(text, retry_after=parse_retry_after(headers), **kwargs)
    if status == 501:
        return InvalidRequest(text, **kwargs)
    if status >= 500:
        return Unavailable(text, retry_after=parse_retry_after(headers), **kwargs)
    if status >= 400:
        return InvalidRequest(text, **kwargs)
    return MalformedResponse(f"unexpected HTTP {status} answer", **kwargs)
