"""Rotating managed keys (UKO's RotateManagedKey) and listing their versions, one audited transaction each.

The rotation is a change of desired state (domain/rotation.py); the reconciler makes it in every keystore.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from keyorch.domain import rotation
from keyorch.domain.models import KeyVersion, ManagedKey
from keyorch.service.context import Change, ServiceContext
from keyorch.service.versions import check_version
from keyorch.store.repository import Transaction


async def rotate_key(
    ctx: ServiceContext,
    ref: str,
    expected_version: int | None = None,
    *,
    min_interval: timedelta = rotation.DEFAULT_MIN_INTERVAL,
) -> ManagedKey:
    """Give an active key its next version; refused (naming the rule) when not active or rotated within
    ``min_interval``."""

    async def body(tx: Transaction) -> tuple[ManagedKey, Change]:
        key = await tx.key(ref)
        check_version(key.version, expected_version, "key", key.id)
        changed, version = rotation.rotate(key, ctx.clock.now(), ctx.actor.user, min_interval)
        after = await tx.update_key(changed, key.version)
        await tx.insert_key_version(key.id, version)
        return after, Change(key.id, before=key, after=after, detail=f"version {version.version}")

    return await ctx.change("key.rotate", "key", ref, body)


@dataclass(frozen=True)
class Versions:
    key: ManagedKey
    versions: list[KeyVersion]
    #: the provider's id of each version keyorch learned, by (keystore id, version)
    ids: dict[tuple[str, int], str] = field(default_factory=dict)


async def key_versions(ctx: ServiceContext, ref: str) -> Versions:
    """The key (with each keystore's version and the provider's id of its primary) and its versions."""
    async with ctx.store.read() as tx:
        key = await tx.key(ref)
        return Versions(key, await tx.key_versions(key.id), await tx.key_version_ids(key.id))
