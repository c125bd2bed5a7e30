"""A small raw-HTTP client for the Azure Key Vault fake tests (no tests here).

It talks to a real loopback socket with aiohttp and gets its bearer token from the fake's own
Entra endpoint with the credentials document the fake publishes at ``/_fake/credentials``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from yarl import URL

from keyorch.fakes.azure import AzureKeyVaultFake
from keyorch.fakes.azure_crypto import b64url, unb64url
from keyorch.fakes.base import RunningFake, start_fake

API = "7.5"
VAULT_SCOPE = "https://vault.azure.net/.default"


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def codes(self) -> tuple[str, str | None]:
        """(error.code, error.innererror.code) of a Key Vault error body."""
        error = self.body["error"]
        return error["code"], (error.get("innererror") or {}).get("code")


@dataclass
class VaultClient:
    session: aiohttp.ClientSession
    running: RunningFake
    token: str = "not-issued"

    @property
    def url(self) -> str:
        return self.running.url

    @property
    def fake(self) -> AzureKeyVaultFake:
        fake = self.running.fake
        assert isinstance(fake, AzureKeyVaultFake)
        return fake

    async def raw(self, method: str, url: str | URL, **kwargs: Any) -> Reply:
        async with self.session.request(method, url, **kwargs) as response:
            raw = await response.read()
            try:
                body: Any = await response.json(content_type=None) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            return Reply(response.status, body, dict(response.headers))

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        api_version: str | None = API,
        auth: bool = True,
        query: dict[str, str] | None = None,
        **params: str,
    ) -> Reply:
        query = (query or {}) | params
        if api_version is not None:
            query["api-version"] = api_version
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        return await self.raw(method, self.url + path, params=query, json=body, headers=headers)

    async def credentials(self) -> dict[str, str]:
        reply = await self.raw("GET", self.url + "/_fake/credentials")
        assert reply.status == 200
        doc: dict[str, str] = reply.body
        return doc

    async def request_token(self, **overrides: str) -> Reply:
        creds = await self.credentials()
        form = {
            "grant_type": "client_credentials",
            "client_id": creds["client_id"],
            "client_secret": creds["client_secret"],
            "scope": VAULT_SCOPE,
        }
        tenant = overrides.pop("tenant", creds["tenant_id"])
        form.update(overrides)
        return await self.raw("POST", f"{creds['authority_host']}/{tenant}/oauth2/v2.0/token", data=form)

    async def login(self) -> str:
        reply = await self.request_token()
        assert reply.status == 200, reply.body
        self.token = reply.body["access_token"]
        return self.token

    async def create(self, name: str, kty: str = "EC", **fields: Any) -> dict[str, Any]:
        reply = await self.call("POST", f"/keys/{name}/create", {"kty": kty, **fields})
        assert reply.status == 200, reply.body
        bundle: dict[str, Any] = reply.body
        return bundle

    async def advance(self, seconds: float, *, relogin: bool = True) -> None:
        """Move the fake's clock; by default get a fresh token, since the old one may have expired."""
        reply = await self.raw("POST", self.url + "/_fake/clock", json={"advance_seconds": seconds})
        assert reply.status == 200
        if relogin and self.token != "not-issued":
            await self.login()


def version_of(bundle: dict[str, Any]) -> str:
    kid: str = bundle["key"]["kid"]
    return kid.rsplit("/", 1)[1]


def rsa_public(bundle: dict[str, Any]) -> rsa.RSAPublicKey:
    """The RSA public key of a KeyBundle's JWK, rebuilt locally."""
    n = int.from_bytes(unb64url(bundle["key"]["n"], "n"), "big")
    e = int.from_bytes(unb64url(bundle["key"]["e"], "e"), "big")
    return rsa.RSAPublicNumbers(e, n).public_key()


def oaep256_encrypt(bundle: dict[str, Any], plaintext: bytes) -> str:
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    return b64url(rsa_public(bundle).encrypt(plaintext, oaep))


@asynccontextmanager
async def open_vault(*, login: bool = True, **options: Any) -> AsyncIterator[VaultClient]:
    """Start a fake vault on loopback (``options`` go to the constructor) and a logged-in client."""
    running = await start_fake(AzureKeyVaultFake(**options))
    try:
        async with aiohttp.ClientSession() as session:
            client = VaultClient(session, running)
            if login:
                await client.login()
            yield client
    finally:
        await running.stop()
