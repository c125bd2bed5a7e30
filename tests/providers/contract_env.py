"""Per-provider setup of the contract suite (``test_contract.py``): one table row per keystore type.

Everything the four providers share is written once in :class:`ContractEnv`: start the provider's
fake on a loopback socket, build the keystore record and credentials (``fake.credentials(url)``),
make the client through the registered factory (``keyorch.providers.base.factory_for``), with small
pages and without rate limits, and give it a retry policy that records its waits (and moves the
fake's clock by them) instead of sleeping. What truly differs between providers is data in
:class:`Provider`: settings, operation names in the fake's request log, how to count a managed key's
keys in the fake, the pending-destruction window, the pause Key Protect wants between actions, and
the outcomes where the providers' documented behaviour differs.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from tests.providers.test_http import keystore as keystore_record

import keyorch.providers.adapters  # noqa: F401  (registers the four factories)
from keyorch.domain.models import Keystore, KeystoreType
from keyorch.fakes.aws import AwsKmsFake
from keyorch.fakes.azure import AzureKeyVaultFake
from keyorch.fakes.base import ProviderFake, start_fake
from keyorch.fakes.faults import ProviderFaults
from keyorch.fakes.gcp import GoogleKmsFake
from keyorch.fakes.ibm import KeyProtectFake
from keyorch.providers.aws_wire import MANAGED_KEY_TAG as AWS_MANAGED_KEY_TAG
from keyorch.providers.azure_wire import key_name_for as azure_key_name
from keyorch.providers.base import KeystoreClient, factory_for
from keyorch.providers.http import HttpTransport

PAGE_SIZE = 2


# -- counting a managed key's keys in each fake --------------------------------------------------


def _aws_keys(fake: ProviderFake, managed_key_id: str) -> int:
    keys = fake.state_snapshot()["keys"]
    return sum(1 for k in keys if {"TagKey": AWS_MANAGED_KEY_TAG, "TagValue": managed_key_id} in k["Tags"])


def _azure_keys(fake: ProviderFake, managed_key_id: str) -> int:
    snapshot = fake.state_snapshot()
    name = azure_key_name(managed_key_id).lower()
    return sum(1 for k in snapshot["keys"] + snapshot["deleted_keys"] if k["name"].lower() == name)


def _google_keys(fake: ProviderFake, managed_key_id: str) -> int:
    rings = fake.state_snapshot()["keyRings"]
    suffix = f"/cryptoKeys/keyorch-{managed_key_id}"
    return sum(1 for ring in rings for k in ring["cryptoKeys"] if k["name"].endswith(suffix))


def _ibm_keys(fake: ProviderFake, managed_key_id: str) -> int:
    keys = fake.state_snapshot()["keys"]
    return sum(1 for k in keys if f"keyorch-{managed_key_id}" in k.get("aliases", []))


# -- fakes and settings ---------------------------------------------------------------------------

_GOOGLE_ACCOUNT_KEY: list[rsa.RSAPrivateKey] = []


def _google_fake() -> ProviderFake:
    """A Google fake whose service account reuses one RSA key (making one costs 0.1-0.4 s of CPU)."""
    fake = GoogleKmsFake(project_id="keyorch-contract")
    if not _GOOGLE_ACCOUNT_KEY:
        _GOOGLE_ACCOUNT_KEY.append(fake.account.key)
    fake.account._key = _GOOGLE_ACCOUNT_KEY[0]
    return fake


def _other_google_key(credentials: dict[str, Any]) -> dict[str, Any]:
    """The service account's document signed with a key the fake does not know (made once)."""
    if len(_GOOGLE_ACCOUNT_KEY) < 2:
        _GOOGLE_ACCOUNT_KEY.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    pem = _GOOGLE_ACCOUNT_KEY[1].private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return {**credentials, "private_key": pem.decode("ascii")}


def _changed(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Credentials whose secret ``name`` the provider will refuse (same length, other characters)."""

    def wrong(credentials: dict[str, Any]) -> dict[str, Any]:
        secret = str(credentials[name])
        return {**credentials, name: secret[:-8] + ("A" * 8 if not secret.endswith("A" * 8) else "B" * 8)}

    return wrong


def _ibm_settings(fake: ProviderFake) -> dict[str, Any]:
    assert isinstance(fake, KeyProtectFake)
    return {"instance_id": fake.instance_id}


@dataclass(frozen=True)
class Provider:
    """How one keystore type differs, as data (ids, operation names, windows, outcomes)."""

    kind: KeystoreType
    make_fake: Callable[[], ProviderFake]
    keys_for: Callable[[ProviderFake, str], int]
    #: the client attribute holding its keystore :class:`HttpTransport`
    transport_attr: str
    #: operation names in the fake's request log
    create_operation: str
    get_operation: str
    list_operation: str
    #: a well-formed key id in the keystore that names no key
    unknown_key_id: Callable[[], str]
    #: days a scheduled destruction stays pending (the keystore's setting or the provider default)
    pending_days: int
    #: the name of the secret in the credentials document, and credentials the provider refuses
    secret: str
    wrong_credentials: Callable[[dict[str, Any]], dict[str, Any]]
    settings: Callable[[ProviderFake], dict[str, Any]] = lambda _: {}
    #: seconds the provider wants between two state actions on one key (Key Protect: 30 s)
    action_gap_seconds: float = 0.0
    #: a bearer-token provider whose tokens the fake can revoke (AWS SigV4 signs each request instead)
    bearer_tokens: bool = True
    #: what ``schedule_destruction`` of a key the keystore never had gives: "not_found" or "destroyed"
    schedule_unknown: str = "not_found"

    @property
    def name(self) -> str:
        return self.kind.value


PROVIDERS: tuple[Provider, ...] = (
    Provider(
        kind=KeystoreType.AWS_KMS,
        make_fake=lambda: AwsKmsFake(strict=True),
        keys_for=_aws_keys,
        transport_attr="transport",
        create_operation="CreateKey",
        get_operation="DescribeKey",
        list_operation="ListAliases",
        unknown_key_id=lambda: str(uuid.uuid4()),
        pending_days=7,
        secret="secret_access_key",
        wrong_credentials=_changed("secret_access_key"),
        settings=lambda _: {"region": "us-east-1", "pending_window_days": 7},
        bearer_tokens=False,
    ),
    Provider(
        kind=KeystoreType.AZURE_KEY_VAULT,
        make_fake=lambda: AzureKeyVaultFake(managed_hsm=True, strict_tokens=True),
        keys_for=_azure_keys,
        transport_attr="transport",
        create_operation="CreateKey",
        get_operation="GetKey",
        list_operation="ListKeys",
        unknown_key_id=lambda: f"keyorch-{uuid.uuid4()}",
        pending_days=90,
        secret="client_secret",
        wrong_credentials=_changed("client_secret"),
        schedule_unknown="destroyed",
    ),
    Provider(
        kind=KeystoreType.GOOGLE_KMS,
        make_fake=_google_fake,
        keys_for=_google_keys,
        transport_attr="http",
        create_operation="CreateCryptoKey",
        get_operation="GetCryptoKey",
        list_operation="ListCryptoKeys",
        unknown_key_id=lambda: f"keyorch-{uuid.uuid4().hex[:12]}",
        pending_days=30,
        secret="private_key",
        wrong_credentials=_other_google_key,
        settings=lambda _: {"project": "keyorch-contract", "location": "us-east1", "key_ring": "contract"},
    ),
    Provider(
        kind=KeystoreType.IBM_KEY_PROTECT,
        make_fake=KeyProtectFake,
        keys_for=_ibm_keys,
        transport_attr="transport",
        create_operation="CreateKey",
        get_operation="GetKeyMetadata",
        list_operation="ListKeys",
        unknown_key_id=lambda: str(uuid.uuid4()),
        pending_days=30,
        secret="apikey",
        wrong_credentials=_changed("apikey"),
        settings=_ibm_settings,
        action_gap_seconds=31.0,
        schedule_unknown="destroyed",
    ),
)


@dataclass
class Waits:
    """The retry policy's sleep: records each wait and moves the fake's clock by it."""

    fake: ProviderFake
    seconds: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)
        self.fake.clock.advance(seconds)


@dataclass
class ContractEnv:
    """One adapter client against its provider's fake on loopback."""

    provider: Provider
    fake: ProviderFake
    url: str
    keystore: Keystore
    credentials: dict[str, Any]
    client: KeystoreClient
    waits: Waits

    @property
    def transport(self) -> HttpTransport:
        transport = getattr(self.client, self.provider.transport_attr)
        assert isinstance(transport, HttpTransport)
        return transport

    def keys_for(self, managed_key_id: str) -> int:
        """How many keys the fake holds for ``managed_key_id`` (live or pending destruction)."""
        return self.provider.keys_for(self.fake, managed_key_id)

    def count(self, operation: str) -> int:
        return self.fake.log.counts[operation]

    def statuses(self, operation: str) -> list[int | None]:
        return [e.status for e in self.fake.log.entries if e.operation == operation]

    def faults(self, operation: str, *sequence: Any) -> None:
        rules = {"rules": [{"operation": operation, "sequence": list(sequence)}]}
        self.fake.faults.configure(ProviderFaults.model_validate(rules))

    def between_actions(self) -> None:
        """Let the provider's minimum pause between two state actions on one key pass (fake time)."""
        if self.provider.action_gap_seconds:
            self.fake.clock.advance(self.provider.action_gap_seconds)

    def pending_deadline(self) -> datetime:
        return self.fake.clock.now() + timedelta(days=self.provider.pending_days)

    def client_with(self, credentials: dict[str, Any]) -> KeystoreClient:
        """Another client for the same keystore with other credentials (the caller closes it)."""
        return factory_for(self.provider.kind).create(self.keystore, credentials)


@asynccontextmanager
async def contract_env(provider: Provider) -> AsyncIterator[ContractEnv]:
    """Start ``provider``'s fake on loopback and connect a client to it through the registered factory."""
    fake = provider.make_fake()
    running = await start_fake(fake)
    try:
        settings = {
            "endpoint": running.url,
            "allow_insecure_http": True,
            "provider_quotas": False,
            "rate_per_second": 0,
            "page_size": PAGE_SIZE,
            **provider.settings(fake),
        }
        keystore = keystore_record(provider.kind, settings)
        factory = factory_for(provider.kind)
        factory.validate_settings(keystore)
        credentials = fake.credentials(running.url)
        client = factory.create(keystore, credentials)
        waits = Waits(fake)
        transport = getattr(client, provider.transport_attr)
        assert isinstance(transport, HttpTransport)
        transport.retry = replace(transport.retry, sleep=waits, random=lambda: 0.5)
        try:
            yield ContractEnv(provider, fake, running.url, keystore, credentials, client, waits)
        finally:
            await client.aclose()
    finally:
        await running.stop()
