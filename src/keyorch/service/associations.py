"""The cloud resources a managed key protects (UKO's associated resources), read from its keystores.

Only Key Protect records them (its *registrations*, made by the IBM Cloud services that use a key); every
other keystore type has none, so its keys have none and it is not asked. The reads go through each
keystore's adapter (:meth:`keyorch.providers.base.KeystoreClient.registrations`), with its transport,
retries and error mapping: a keystore that cannot be reached or answers nonsense is a provider error
(502/503 in the API), never a partial list passed off as the whole.
"""

from __future__ import annotations

from dataclasses import dataclass

from keyorch.domain.models import Keystore, ManagedKey, TargetStatus
from keyorch.providers.base import REGISTERING_KINDS, KeyRef, Registration
from keyorch.service.context import ServiceContext
from keyorch.service.keystore_probe import keystore_client


@dataclass(frozen=True)
class Association:
    """One resource registered with a managed key's copy in one keystore."""

    key: ManagedKey
    keystore: Keystore
    registration: Registration


def _asks(keystore: Keystore) -> bool:
    return keystore.connected and keystore.type in REGISTERING_KINDS


async def _registrations(ctx: ServiceContext, keystore: Keystore, ref: KeyRef | None) -> list[Registration]:
    async with keystore_client(ctx, keystore, "its registrations") as client:
        return await client.registrations(ref)


async def key_associations(ctx: ServiceContext, key: ManagedKey) -> list[Association]:
    """The resources registered with the key in each keystore it is in (not unlinked from), keystore by keystore."""
    async with ctx.store.read() as tx:
        keystores = {k.id: k for k in await tx.list_keystores(include_disconnected=True)}
    found: list[Association] = []
    for target in key.targets:
        keystore = keystores.get(target.keystore_id)
        if keystore is None or target.status is TargetStatus.REMOVED or not _asks(keystore):
            continue
        ref = KeyRef(target.key_id_in_keystore, key.id, target.label_in_keystore)
        found.extend(Association(key, keystore, r) for r in await _registrations(ctx, keystore, ref))
    return found


async def keystore_associations(ctx: ServiceContext, keystore: Keystore) -> list[Association]:
    """The resources registered with the managed keys in the keystore, from one instance-wide listing; the
    registrations of keys keyorch does not manage there (or has not recorded the id of) are not shown."""
    if not _asks(keystore):
        return []
    async with ctx.store.read() as tx:
        keys = await tx.keys_targeting(keystore.id)
    by_id: dict[str, ManagedKey] = {}
    for key in keys:
        for t in key.targets:
            if t.keystore_id == keystore.id and t.status is not TargetStatus.REMOVED and t.key_id_in_keystore:
                by_id[t.key_id_in_keystore.lower()] = key
    registrations = await _registrations(ctx, keystore, None)
    return [
        Association(by_id[r.key_id_in_keystore.lower()], keystore, r)
        for r in registrations
        if r.key_id_in_keystore.lower() in by_id
    ]
