"""Entra ID (Azure AD v2.0) tokens for Key Vault, written on the shared transport's ``AuthHook``.

azure-identity is not a dependency: the client-credentials grant is one form POST, so keyorch does
it itself (``POST {authority_host}/{tenant_id}/oauth2/v2.0/token``, scope ``https://vault.azure.net/
.default`` or the Managed HSM / sovereign-cloud equivalent), caches the token and refreshes it before
it expires (when less than 300 s remain, as the Azure SDK does, or at half its lifetime for short
tokens). A 401 from the vault drops the token that request used, and only that one, so 64 requests
failing together fetch one new token, not 64.

Where the credentials come from:

* a stored credentials document (:class:`keyorch.credentials.AzureCredentials`): tenant, client id,
  client secret and authority host (the fakes' documents point the authority at the fake);
* ``credentials=None`` (``--credentials-from-environment``): the variables azure-identity reads, in
  the order ``DefaultAzureCredential`` tries them. ``EnvironmentCredential``: ``AZURE_TENANT_ID``,
  ``AZURE_CLIENT_ID``, ``AZURE_CLIENT_SECRET`` and optionally ``AZURE_AUTHORITY_HOST``; then
  ``WorkloadIdentityCredential`` (AKS workload identity): ``AZURE_TENANT_ID``, ``AZURE_CLIENT_ID`` and
  ``AZURE_FEDERATED_TOKEN_FILE``, whose content (re-read at every fetch, since the kubelet rotates it)
  is sent as a ``client_assertion``. Certificate credentials, user passwords, managed identity (IMDS)
  and developer-tool logins are not supported; with none of the above set, every request fails with
  a :class:`KeystoreConfigurationError` that says which variables to set.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from pydantic import ValidationError

from keyorch.credentials import AzureCredentials
from keyorch.providers.errors import KeystoreConfigurationError, MalformedResponse, ProviderError
from keyorch.providers.http import HttpTransport

DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Renew a token when less than this many seconds of it remain (azure-core's default).
REFRESH_MARGIN_SECONDS = 300.0
_TENANT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,99}")
ENV_HELP = (
    "set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or AZURE_FEDERATED_TOKEN_FILE for "
    "workload identity), or connect the keystore with a credentials file"
)

#: The token each task last sent, so ``invalidate`` drops only a token a request saw refused.
_SENT_TOKEN: contextvars.ContextVar[str | None] = contextvars.ContextVar("keyorch_azure_sent_token", default=None)


def scope_for(endpoint: str) -> str:
    """The token scope of a vault or Managed HSM endpoint (public and sovereign clouds).

    ``https://x.vault.azure.cn`` → ``https://vault.azure.cn/.default``, ``https://x.managedhsm.azure.net``
    → ``https://managedhsm.azure.net/.default``; any other host (a fake, a proxy) → the public vault scope.
    """
    host = (urlsplit(endpoint).hostname or "").lower()
    for service in ("vault", "managedhsm"):
        marker = f".{service}."
        if marker in host:
            return f"https://{service}.{host.split(marker, 1)[1]}/.default"
    return "https://vault.azure.net/.default"


@dataclass(frozen=True)
class ClientIdentity:
    """Who asks Entra ID for tokens: a client secret, or a federated token file (workload identity)."""

    tenant_id: str
    client_id: str
    authority_host: str = DEFAULT_AUTHORITY
    client_secret: str | None = None
    federated_token_file: str | None = None

    def __repr__(self) -> str:
        kind = "client secret" if self.client_secret else "federated token file"
        return f"ClientIdentity(tenant_id={self.tenant_id!r}, client_id={self.client_id!r}, {kind})"

    @property
    def token_url(self) -> str:
        return f"{self.authority_host.rstrip('/')}/{self.tenant_id}/oauth2/v2.0/token"

    def check(self) -> None:
        if not _TENANT_RE.fullmatch(self.tenant_id):
            raise KeystoreConfigurationError("the Azure tenant id is not valid (letters, digits, '.', '-')", sent=False)
        if not self.client_id:
            raise KeystoreConfigurationError("the Azure client id is empty", sent=False)
        if urlsplit(self.authority_host).scheme not in ("https", "http"):
            raise KeystoreConfigurationError("the Azure authority host must be an https:// URL", sent=False)

    async def form(self, scope: str) -> bytes:
        fields = {"grant_type": "client_credentials", "client_id": self.client_id, "scope": scope}
        if self.client_secret is not None:
            fields["client_secret"] = self.client_secret
        else:
            assert self.federated_token_file is not None
            fields["client_assertion"] = await asyncio.to_thread(_read_assertion, self.federated_token_file)
            fields["client_assertion_type"] = ASSERTION_TYPE
        return urlencode(fields).encode()


def _read_assertion(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise KeystoreConfigurationError(
            f"the federated token file (AZURE_FEDERATED_TOKEN_FILE) cannot be read: {type(exc).__name__}", sent=False
        ) from None
    if not text:
        raise KeystoreConfigurationError("the federated token file (AZURE_FEDERATED_TOKEN_FILE) is empty", sent=False)
    return text


def identity_from_document(doc: Mapping[str, Any]) -> ClientIdentity:
    """The identity in a stored credentials document; :class:`KeystoreConfigurationError` if it is not one."""
    try:
        creds = AzureCredentials.model_validate(doc)
    except ValidationError as exc:
        fields = ", ".join(sorted({str(err["loc"][0]) for err in exc.errors() if err["loc"]})) or "document"
        raise KeystoreConfigurationError(
            f"the Azure credentials document is not valid (check: {fields}); expected tenant_id, client_id, "
            "client_secret and optionally authority_host",
            sent=False,
        ) from None
    return ClientIdentity(
        creds.tenant_id, creds.client_id, creds.authority_host, creds.client_secret.get_secret_value()
    )


def identity_from_environment(environ: Mapping[str, str] | None = None) -> ClientIdentity:
    """The identity azure-identity's EnvironmentCredential or WorkloadIdentityCredential would use."""
    env = os.environ if environ is None else environ
    tenant, client = env.get("AZURE_TENANT_ID", ""), env.get("AZURE_CLIENT_ID", "")
    authority = env.get("AZURE_AUTHORITY_HOST") or DEFAULT_AUTHORITY
    if "://" not in authority:
        authority = f"https://{authority}"
    secret, token_file = env.get("AZURE_CLIENT_SECRET"), env.get("AZURE_FEDERATED_TOKEN_FILE")
    if tenant and client and secret:
        return ClientIdentity(tenant, client, authority, client_secret=secret)
    if tenant and client and token_file:
        return ClientIdentity(tenant, client, authority, federated_token_file=token_file)
    missing = [name for name, value in (("AZURE_TENANT_ID", tenant), ("AZURE_CLIENT_ID", client)) if not value]
    if not missing:
        missing = ["AZURE_CLIENT_SECRET or AZURE_FEDERATED_TOKEN_FILE"]
    raise KeystoreConfigurationError(
        f"no Azure credentials in the environment (missing {', '.join(missing)}): {ENV_HELP}", sent=False
    )


class EntraTokenAuth:
    """The transport's :class:`~keyorch.providers.http.AuthHook` for Key Vault: a cached bearer token."""

    def __init__(
        self,
        identity: ClientIdentity | KeystoreConfigurationError,
        scope: str,
        token_transport: HttpTransport,
        *,
        origin: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``origin``: the vault's, the only one its tokens are sent to."""
        #: a configuration problem found when the client was built is raised at the first request
        self.origin = origin
        self._identity = identity
        self._scope = scope
        self._transport = token_transport
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self.fetches = 0

    def __repr__(self) -> str:
        return f"EntraTokenAuth(scope={self._scope!r}, cached={self._token is not None})"

    async def apply(self, headers: dict[str, str], method: str, url: str, body: bytes | None) -> dict[str, str]:
        token = self._token
        if token is None or self._clock() >= self._refresh_at:
            token = await self._renew(token)
        _SENT_TOKEN.set(token)
        headers["Authorization"] = "Bearer " + token
        return headers

    async def invalidate(self) -> None:
        if self._token is not None and _SENT_TOKEN.get() == self._token:
            self._token = None

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def _renew(self, stale: str | None) -> str:
        async with self._lock:
            current = self._token
            if current is not None and current != stale and self._clock() < self._refresh_at:
                return current  # another task renewed it while this one waited
            try:
                token, lifetime = await self._fetch()
            except ProviderError as exc:
                exc.sent = False  # the vault request itself was never sent: safe to retry even a create
                raise
            self._token = token
            self._refresh_at = self._clock() + max(lifetime - REFRESH_MARGIN_SECONDS, lifetime / 2)
            return token

    async def _fetch(self) -> tuple[str, float]:
        identity = self._identity
        if isinstance(identity, KeystoreConfigurationError):
            raise KeystoreConfigurationError(identity.detail, sent=False)
        result = await self._transport.request(
            "POST",
            identity.token_url,
            operation="Token",
            idempotent=True,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
            data=await identity.form(self._scope),
            authenticate=False,
        )
        self.fetches += 1
        doc = result.json_object()
        token, token_type, expires_in = doc.get("access_token"), doc.get("token_type"), doc.get("expires_in")
        if isinstance(expires_in, str) and expires_in.isdigit():
            expires_in = int(expires_in)  # older endpoints send it as a string
        problem = None
        if not isinstance(token, str) or not token or any(c.isspace() for c in token):
            problem = "has no usable access_token"
        elif not isinstance(token_type, str) or token_type.lower() != "bearer":
            problem = "is not a Bearer token"
        elif type(expires_in) is not int or expires_in <= 0:
            problem = "has no positive expires_in"
        if problem is not None or not isinstance(token, str) or type(expires_in) is not int:
            # no body in the message: it may hold a token
            raise MalformedResponse(
                f"the token answer {problem}", keystore=result.keystore, operation="Token", status=result.status
            )
        return token, float(expires_in)
