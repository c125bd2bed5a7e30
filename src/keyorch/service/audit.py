"""Reading the audit trail and verifying its chain (for `keyorch audit …` and the API alike)."""

from __future__ import annotations

from keyorch.audit import AuditRecord
from keyorch.domain.errors import InvalidInput, NotFound
from keyorch.service.context import ServiceContext
from keyorch.store import audit_chain
from keyorch.store.repository import Transaction


async def list_records(ctx: ServiceContext, object_ref: str | None = None, limit: int = 1000) -> list[AuditRecord]:
    """The newest ``limit`` records (about one object, if given), oldest first.

    ``object_ref`` is an object's id or its unique name (a key's label), like everywhere else. The id of
    an object that no longer exists still finds its records; a name only finds an object that exists."""
    async with ctx.store.read() as tx:
        if object_ref is None:
            return await tx.list_audit(limit=limit)
        return await tx.list_audit(limit=limit, object_ids=await _object_ids(tx, object_ref))


#: The kinds of object an audit record can be about, by the id or name a user gives.
OBJECT_KINDS = ("vault", "keystore", "template", "key")


async def _object_ids(tx: Transaction, ref: str) -> set[str]:
    """The ids the records about ``ref`` are filed under: the object it names, and ``ref`` itself (a
    removed object's id, or what a refused create was to be named)."""
    found = [(kind, object_id) for kind in OBJECT_KINDS if (object_id := await tx.object_id(kind, ref)) is not None]
    if len({object_id for _, object_id in found}) > 1:
        named = ", ".join(f"{kind} {object_id}" for kind, object_id in found)
        raise InvalidInput(f"object {ref!r} names {len(found)} objects ({named}); give the id", target="object")
    if not found and not await tx.list_audit(ref, 1):
        raise NotFound(
            f"object {ref!r} is neither the id or name of a vault, keystore, template or key (label) nor the "
            "object of any audit record",
            target="object",
        )
    return {ref, *(object_id for _, object_id in found)}


async def verify_chain(ctx: ServiceContext, anchor: audit_chain.Anchor | None = None) -> audit_chain.Verified:
    """Walk the whole chain; ``AuditChainBroken`` names the first edited or missing record (or, with ``anchor``,
    a trail that no longer holds that head)."""
    async with ctx.store.read() as tx:
        return await audit_chain.verify(tx.conn, ctx.master_key, anchor)
