"""The master key's lifecycle beyond encrypting credentials: recording it (``keyorch init``) and rotating it."""

from __future__ import annotations

from dataclasses import dataclass

from keyorch.audit import AuditRecord
from keyorch.crypto import MasterKey
from keyorch.domain.errors import ConfigurationError
from keyorch.service.context import ServiceContext
from keyorch.store import audit_chain, key_rotation, rows


@dataclass(frozen=True)
class Rotated:
    credentials_reencrypted: int
    seq: int


async def record_master_key(ctx: ServiceContext) -> bool:
    """Record the configured master key's check value (refusing a key that is not the database's); True if
    recorded now. Without a master key, nothing."""
    if ctx.master_key is None:
        return False
    async with ctx.store.transaction() as tx:
        return await audit_chain.adopt_master_key(tx.conn, ctx.master_key)


async def rotate_master_key(ctx: ServiceContext, new: MasterKey) -> Rotated:
    """Re-encrypt stored credentials under ``new`` and continue the audit chain with it, in one transaction."""
    if ctx.master_key is None:
        raise ConfigurationError(
            "rotating needs the current master key: set KEYORCH_MASTER_KEY_FILE (or KEYORCH_MASTER_KEY) to it"
        )
    record = AuditRecord(
        at=ctx.clock.now(),
        user=ctx.actor.user,
        role=ctx.actor.role,
        source=ctx.actor.source,
        action="master_key.rotate",
        object_type="master_key",
        object_id=None,
        outcome="accepted",
    )
    async with ctx.store.transaction() as tx:
        count, head = await key_rotation.rotate(tx.conn, ctx.master_key, new, rows.audit_to_row(record))
        tx.sealed_heads.append(head)
    return Rotated(count, head.seq)
