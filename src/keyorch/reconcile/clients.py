"""One client per keystore, built on demand, plus the floodgate: keystores known to be down.

A keystore that fails its health check is skipped (its keys flagged ``connection_error``) without
stalling the other keystores; the next pass checks it again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from keyorch.crypto import MasterKey
from keyorch.domain.errors import ConfigurationError, Forbidden
from keyorch.domain.models import CredentialsMode, Keystore
from keyorch.providers.base import Health, HealthStatus, KeystoreClient, factory_for
from keyorch.providers.errors import ProviderError
from keyorch.service.environment import check_endpoint
from keyorch.store.repository import Store

ClientBuilder = Callable[[Keystore, Mapping[str, Any] | None], KeystoreClient]


def default_builder(keystore: Keystore, credentials: Mapping[str, Any] | None) -> KeystoreClient:
    import keyorch.providers.adapters  # noqa: F401 - registers the four adapters

    factory = factory_for(keystore.type)
    factory.validate_settings(keystore)
    return factory.create(keystore, credentials)


class ClientPool:
    def __init__(
        self,
        store: Store,
        master_key: MasterKey | None,
        builder: ClientBuilder = default_builder,
        *,
        call_timeout_seconds: float | None = None,
        environment_endpoints: tuple[str, ...] = (),
    ) -> None:
        """``call_timeout_seconds``: the total deadline of every call to a keystore that sets none of its own;
        ``environment_endpoints``: the operator's endpoints beyond the official ones that credentials from
        keyorch's environment may go to (setting ``environment_credentials.endpoints``)."""
        self.store = store
        self.master_key = master_key
        self.builder = builder
        self.call_timeout_seconds = call_timeout_seconds
        self.environment_endpoints = environment_endpoints
        self._clients: dict[str, KeystoreClient] = {}
        self._versions: dict[str, int] = {}  # the keystore record each client was built from
        self._retired: list[KeystoreClient] = []
        self._down: dict[str, str] = {}

    async def credentials(self, keystore: Keystore) -> Mapping[str, Any] | None:
        if keystore.credentials_mode is CredentialsMode.ENVIRONMENT:
            try:  # checked again here, whoever made the record: this process's credentials go nowhere else
                check_endpoint(keystore.type, keystore.settings, self.environment_endpoints)
            except Forbidden as exc:
                raise ConfigurationError(f"keystore {keystore.name}: {exc.message}") from None
            return None
        async with self.store.read() as tx:
            blob = await tx.keystore_credentials(keystore.id)
        if blob is None:
            raise ConfigurationError(f"keystore {keystore.name} has no stored credentials")
        if self.master_key is None:
            raise ConfigurationError(
                f"keystore {keystore.name} has stored credentials but no master key is configured "
                "(KEYORCH_MASTER_KEY or KEYORCH_MASTER_KEY_FILE)"
            )
        doc = json.loads(self.master_key.decrypt(blob, keystore.id))
        if not isinstance(doc, dict):
            raise ConfigurationError(f"keystore {keystore.name}'s stored credentials are not a document")
        return doc

    async def client(self, keystore: Keystore) -> KeystoreClient:
        """The keystore's client; built again when its record changed (endpoint, credentials: `keystore update`)."""
        existing = self._clients.get(keystore.id)
        if existing is not None and keystore.version <= self._versions.get(keystore.id, 0):
            return existing  # built from this record, or a newer one than the caller read
        if existing is not None:
            self._retired.append(existing)  # requests in flight may still use it; closed with the pool
        deadline = self.call_timeout_seconds
        if deadline is not None and "call_timeout_seconds" not in keystore.settings:
            keystore = replace(keystore, settings={**keystore.settings, "call_timeout_seconds": deadline})
        client = self.builder(keystore, await self.credentials(keystore))
        self._clients[keystore.id] = client
        self._versions[keystore.id] = keystore.version
        return client

    async def check(self, keystore: Keystore) -> Health:
        """Health-check one keystore and open or close its floodgate."""
        try:
            health = await (await self.client(keystore)).validate()
        except ConfigurationError as exc:
            health = Health(HealthStatus.CONFIGURATION_ERROR, exc.message)
        except ProviderError as exc:
            health = Health.from_error(exc)
        if health.ok:
            self._down.pop(keystore.id, None)
        else:
            self._down[keystore.id] = f"keystore {keystore.name} {health.status.value}: {health.message}"[:500]
        return health

    def down_reason(self, keystore_id: str) -> str | None:
        return self._down.get(keystore_id)

    def mark_down(self, keystore_id: str, reason: str) -> None:
        self._down[keystore_id] = reason[:500]

    async def aclose(self) -> None:
        clients, self._clients = [*self._clients.values(), *self._retired], {}
        self._retired = []
        for client in clients:
            await client.aclose()
