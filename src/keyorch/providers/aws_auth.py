"""SigV4 for the AWS KMS adapter: botocore's credentials, and a signer for KMS's one request shape.

Credentials come from botocore (docs/providers.md §1.1): a credentials document (access key id,
secret access key, optional session token) gives static ``botocore.credentials.Credentials``;
``None`` uses botocore's default chain (environment, shared config and credentials files, web
identity, container and instance roles), resolved once in a worker thread (the chain may call the
instance metadata service) and kept; ``RefreshableCredentials`` from the chain refresh themselves
before they expire (botocore's advisory/mandatory windows), in a worker thread too. After a refusal
that new credentials could cure (a rotated role, an expired session token), :meth:`invalidate`
drops the resolved chain so the next request resolves it again; static credentials cannot change,
so for them the adapter does not ask for that replay at all.

Every KMS call is ``POST /`` with the same four signed headers (``content-type``, ``host``,
``x-amz-date``, ``x-amz-target``, plus ``x-amz-security-token`` with temporary credentials). botocore's
generic ``SigV4Auth.add_auth`` costs about 75 µs per request (an ``AWSRequest``, header maps, URL
parsing, four HMACs to derive the signing key), as much as the whole aiohttp request on loopback. So
:class:`KmsSigner` takes the two parts that depend on the endpoint (the ``host`` header value and the
canonical path) from botocore's ``SigV4Auth`` once, caches the derived signing key per credentials
and UTC day, and per request builds the canonical request from a fixed template: one SHA-256 of the
body, one of the canonical request and one HMAC. The tests check that its ``Authorization`` header
is byte for byte the one ``SigV4Auth`` produces for the same request and time, and the AWS fake
verifies every signature with botocore.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials, RefreshableCredentials
from botocore.exceptions import BotoCoreError

from keyorch.credentials import AwsCredentials, parse_credentials
from keyorch.domain.models import KeystoreType
from keyorch.providers.endpoints import origin_of
from keyorch.providers.errors import AuthError

SERVICE = "kms"
CONTENT_TYPE = "application/x-amz-json-1.1"
ALGORITHM = "AWS4-HMAC-SHA256"
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class CredentialSource:
    """The credentials to sign with: a fixed document, or botocore's default chain."""

    def __init__(self, document: Mapping[str, Any] | None) -> None:
        self._credentials: Credentials | None = None
        self._frozen: ReadOnlyCredentials | None = None
        self._lock = asyncio.Lock()
        #: Whether fetching the credentials again may give different ones (only the default chain).
        self.from_chain = document is None
        if document is not None:
            parsed = parse_credentials(KeystoreType.AWS_KMS, dict(document))
            assert isinstance(parsed, AwsCredentials)
            token = parsed.session_token.get_secret_value() if parsed.session_token is not None else None
            self._credentials = Credentials(parsed.access_key_id, parsed.secret_access_key.get_secret_value(), token)

    def __repr__(self) -> str:
        return f"CredentialSource(from_chain={self.from_chain})"

    async def current(self) -> ReadOnlyCredentials:
        """Frozen credentials to sign one request with (refreshed first when botocore says so)."""
        if self._frozen is not None:
            return self._frozen
        credentials = self._credentials
        if credentials is None:
            credentials = await self._resolve()
        frozen: ReadOnlyCredentials
        try:
            if isinstance(credentials, RefreshableCredentials) and credentials.refresh_needed():
                frozen = await asyncio.to_thread(credentials.get_frozen_credentials)
            else:
                frozen = credentials.get_frozen_credentials()
        except (BotoCoreError, OSError, ValueError) as exc:
            raise _chain_error(f"refreshing the AWS credentials failed ({type(exc).__name__})") from None
        if not frozen.access_key or not frozen.secret_key:
            raise _chain_error("the AWS credentials have no access key id or secret access key")
        if not isinstance(credentials, RefreshableCredentials):
            self._frozen = frozen  # static: the same on every request
        return frozen

    async def invalidate(self) -> None:
        """Forget credentials from the default chain so the next request resolves the chain again."""
        if self.from_chain:
            self._credentials = None
            self._frozen = None

    async def _resolve(self) -> Credentials:
        async with self._lock:
            if self._credentials is None:
                try:
                    found = await asyncio.to_thread(_default_chain_credentials)
                except (BotoCoreError, OSError, ValueError) as exc:
                    raise _chain_error(f"the AWS default credential chain failed ({type(exc).__name__})") from None
                if found is None:
                    raise _chain_error(
                        "no AWS credentials found in the default chain (environment, shared config, "
                        "container or instance role)"
                    )
                self._credentials = found
            return self._credentials


def _chain_error(detail: str) -> AuthError:
    return AuthError(detail, refresh=False, sent=False)


class KmsSigner:
    """The transport's auth hook for KMS: SigV4 for ``POST`` requests with a JSON 1.1 body."""

    def __init__(
        self, url: str, region: str, source: CredentialSource, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.region = region
        self.source = source
        self.origin = origin_of(url)
        self._clock = clock
        # The endpoint-dependent parts, exactly as botocore's signer derives them.
        sample = AWSRequest(method="POST", url=url, data=b"")
        reference = SigV4Auth(Credentials("A", "B"), SERVICE, region)
        self.host = str(reference.headers_to_sign(sample)["host"])
        self.path = str(reference.canonical_request(sample).split("\n", 2)[1])
        self._scope_tail = f"/{region}/{SERVICE}/aws4_request"
        self._derived_for: tuple[str, str, str] | None = None
        self._signing_key = b""
        self._second = -1
        self._stamp = ""

    def __repr__(self) -> str:
        return f"KmsSigner(host={self.host!r}, region={self.region!r})"

    def _key(self, secret_key: str, access_key: str, day: str) -> bytes:
        wanted = (access_key, secret_key, day)
        if self._derived_for != wanted:
            key = hmac.new(f"AWS4{secret_key}".encode(), day.encode(), hashlib.sha256).digest()
            for part in (self.region, SERVICE, "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._signing_key, self._derived_for = key, wanted
        return self._signing_key

    async def apply(self, headers: dict[str, str], method: str, url: str, body: bytes | None) -> dict[str, str]:
        credentials = await self.source.current()
        return self.sign(headers, method, body, credentials)

    def sign(
        self, headers: dict[str, str], method: str, body: bytes | None, credentials: ReadOnlyCredentials
    ) -> dict[str, str]:
        """Add ``Host``, ``X-Amz-Date``, ``X-Amz-Security-Token`` (if any) and ``Authorization``."""
        second = int(self._clock())
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
        stamp = self._stamp
        day = stamp[:8]
        token = credentials.token
        target = headers.get("X-Amz-Target", "")
        payload = hashlib.sha256(body).hexdigest() if body else _EMPTY_SHA256
        if token:
            signed = "content-type;host;x-amz-date;x-amz-security-token;x-amz-target"
            token_line = f"x-amz-security-token:{token}\n"
        else:
            signed = "content-type;host;x-amz-date;x-amz-target"
            token_line = ""
        canonical = (
            f"{method.upper()}\n{self.path}\n\ncontent-type:{CONTENT_TYPE}\nhost:{self.host}\nx-amz-date:{stamp}\n"
            f"{token_line}x-amz-target:{target}\n\n{signed}\n{payload}"
        )
        scope = day + self._scope_tail
        to_sign = f"{ALGORITHM}\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        key = self._key(credentials.secret_key, credentials.access_key, day)
        signature = hmac.digest(key, to_sign.encode(), "sha256").hex()
        headers["Content-Type"] = CONTENT_TYPE
        headers["Host"] = self.host
        headers["X-Amz-Date"] = stamp
        if token:
            headers["X-Amz-Security-Token"] = token
        headers["Authorization"] = (
            f"{ALGORITHM} Credential={credentials.access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
        )
        return headers

    async def invalidate(self) -> None:
        await self.source.invalidate()


def _default_chain_credentials() -> Credentials | None:
    """botocore's default credential chain (imported here: only keystores set to take keyorch's environment's
    credentials need it, and it costs one-shot commands ~20 ms to import)."""
    from botocore.session import Session

    found: Credentials | None = Session().get_credentials()
    return found
