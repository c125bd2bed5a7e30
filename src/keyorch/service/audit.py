"""Reading the audit trail and verifying its chain (for `keyorch audit …` and the API alike)."""

from __future__ import annotations

from keyorch.audit import AuditRecord
from keyorch.service.context import ServiceContext
from keyorch.store import audit_chain


async def list_records(ctx: ServiceContext, object_id: str | None = None, limit: int = 1000) -> list[AuditRecord]:
    """The newest ``limit`` records (about one object, if given), oldest first."""
    async with ctx.store.read() as tx:
        return await tx.list_audit(object_id, limit)


async def verify_chain(ctx: ServiceContext) -> audit_chain.Verified:
    """Walk the whole chain; ``AuditChainBroken`` names the first edited or missing record."""
    async with ctx.store.read() as tx:
        return await audit_chain.verify(tx.conn, ctx.master_key)
