"""Trying a keystore's connection live: its adapter's health check (``KeystoreClient.validate``), now.

One check serves three callers: a connect with ``dry_run`` (nothing stored), a change of a keystore's
connection or credentials (tried before they are saved, so a refused change leaves the old ones in use),
and UKO's ``GET /keystores/{id}/status`` (:class:`StatusChecks`, cached for a few seconds per keystore).
The answer is UKO's ``KeystoreStatus``: ``ok``; ``not_responding`` where the keystore could not be reached
or did not answer in time (transient provider errors); ``configuration_error`` where it answered but
refused (credentials, permissions, an unknown key ring or vault) or keyorch cannot build a client for it
(:meth:`keyorch.providers.base.Health.from_error`). Messages are the adapters' own, which never carry a
secret.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from keyorch.domain.errors import ConfigurationError, InvalidInput, KeyorchError, KeystoreUnreachable
from keyorch.domain.models import Keystore
from keyorch.providers.base import Health, HealthStatus, KeystoreClient
from keyorch.providers.errors import ProviderError
from keyorch.service.context import ServiceContext

#: how long one check may take, all attempts included, unless the keystore sets its own call deadline
DEFAULT_CHECK_TIMEOUT_SECONDS = 15.0
#: how long a status check's answer is served again (setting api.keystore_status_cache_seconds)
DEFAULT_STATUS_CACHE_SECONDS = 5.0


class ConnectionTestFailed(InvalidInput):
    """The keystore answered but refused what it was given (credentials, permissions, a missing key ring)."""

    code = "keystore_configuration_error"


async def check_connection(
    keystore: Keystore, credentials: Mapping[str, Any] | None, timeout_seconds: float = DEFAULT_CHECK_TIMEOUT_SECONDS
) -> Health:
    """The adapter's health check of ``keystore`` with ``credentials`` (None: from keyorch's environment,
    already checked against the operator's rule by the caller). Never raises for what the keystore says."""
    from keyorch.reconcile.clients import default_builder

    if "call_timeout_seconds" not in keystore.settings:
        keystore = replace(keystore, settings={**keystore.settings, "call_timeout_seconds": timeout_seconds})
    try:
        client = default_builder(keystore, credentials)
    except (InvalidInput, ConfigurationError) as exc:
        return Health(HealthStatus.CONFIGURATION_ERROR, exc.message)
    except ProviderError as exc:
        return Health.from_error(exc)
    try:
        async with asyncio.timeout(timeout_seconds + 5):  # the call deadline ends it first; this is the backstop
            return await client.validate()
    except TimeoutError:
        return Health(HealthStatus.NOT_RESPONDING, f"no answer within {timeout_seconds:g} s")
    except ProviderError as exc:
        return Health.from_error(exc)
    except ConfigurationError as exc:
        return Health(HealthStatus.CONFIGURATION_ERROR, exc.message)
    finally:
        await client.aclose()


def refusal(keystore_name: str, health: Health) -> KeyorchError:
    """The error a failed connection test is answered with: 400 for a refusal, 503 for no answer."""
    if health.status is HealthStatus.NOT_RESPONDING:
        return KeystoreUnreachable(
            f"the connection test of keystore {keystore_name} failed: it is not responding ({health.message})",
            target="keystore",
        )
    return ConnectionTestFailed(
        f"the connection test of keystore {keystore_name} failed: {health.message}", target="credentials"
    )


def require_ok(keystore_name: str, health: Health) -> None:
    if not health.ok:
        raise refusal(keystore_name, health)


async def stored_connection(ctx: ServiceContext, keystore: Keystore) -> Mapping[str, Any] | None:
    """The credentials keyorch uses for ``keystore`` now (decrypted; None: from the environment, whose rule this
    checks), as the reconciler gets them (``ClientPool.credentials``)."""
    from keyorch.reconcile.clients import ClientPool

    pool = ClientPool(ctx.store, ctx.master_key, environment_endpoints=ctx.environment.endpoints)
    return await pool.credentials(keystore)


@asynccontextmanager
async def keystore_client(ctx: ServiceContext, keystore: Keystore, asked_for: str) -> AsyncIterator[KeystoreClient]:
    """A client of ``keystore`` with the credentials the reconciler uses, closed afterwards; a keystore keyorch
    cannot build one for (no credentials, no master key) is :class:`KeystoreUnreachable`, saying what it was to
    be ``asked_for``."""
    from keyorch.reconcile.clients import ClientPool

    pool = ClientPool(ctx.store, ctx.master_key, environment_endpoints=ctx.environment.endpoints)
    try:
        try:
            client = await pool.client(keystore)
        except ConfigurationError as exc:
            raise KeystoreUnreachable(
                f"keystore {keystore.name} cannot be asked for {asked_for}: {exc.message}", target="keystore"
            ) from None
        yield client
    finally:
        await pool.aclose()


@dataclass(frozen=True)
class Checked:
    """A status check's answer and when it was made."""

    health: Health
    at: datetime


@dataclass
class StatusChecks:
    """Live status checks, each kept ``cache_seconds`` (by the service's clock) per keystore record: callers
    within the window, or arriving while a check runs, share its answer; a changed keystore is checked anew."""

    cache_seconds: float = DEFAULT_STATUS_CACHE_SECONDS
    timeout_seconds: float = DEFAULT_CHECK_TIMEOUT_SECONDS
    _checked: dict[tuple[str, int], Checked] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    async def status(self, ctx: ServiceContext, keystore: Keystore) -> Checked:
        lock = self._locks.setdefault(keystore.id, asyncio.Lock())
        async with lock:
            cached = self._fresh(ctx, keystore)
            if cached is not None:
                return cached
            try:
                credentials = await stored_connection(ctx, keystore)
            except ConfigurationError as exc:
                health = Health(HealthStatus.CONFIGURATION_ERROR, exc.message)
            else:
                health = await check_connection(keystore, credentials, self.timeout_seconds)
            checked = Checked(health, ctx.clock.now())
            for key in [k for k in self._checked if k[0] == keystore.id]:
                del self._checked[key]
            self._checked[(keystore.id, keystore.version)] = checked
            return checked

    def _fresh(self, ctx: ServiceContext, keystore: Keystore) -> Checked | None:
        cached = self._checked.get((keystore.id, keystore.version))
        if cached is None or ctx.clock.now() - cached.at >= timedelta(seconds=self.cache_seconds):
            return None
        return cached
