"""`keyorch audit …`."""

from __future__ import annotations

import click

from keyorch.cli.runtime import CliState, emit, make_table, with_service
from keyorch.service.context import ServiceContext
from keyorch.store import audit_chain
from keyorch.views import audit_json


@click.group(name="audit")
def audit() -> None:
    """The audit trail: who changed what, when, and whether it was accepted."""


@audit.command(name="list")
@click.option("--object", "object_id", help="Only records about this object id.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@with_service
async def list_(state: CliState, ctx: ServiceContext, object_id: str | None, limit: int) -> None:
    """List audit records, oldest first."""
    async with ctx.store.read() as tx:
        records = await tx.list_audit(object_id, limit)
    emit(
        state,
        [audit_json(r) for r in records],
        lambda: make_table(
            "audit",
            ["seq", "at", "user", "role", "source", "action", "object", "outcome", "detail"],
            [
                (r.seq, r.at.isoformat(), r.user, r.role, r.source, r.action, r.object_id, r.outcome, r.detail)
                for r in records
            ],
        ),
    )


@audit.command(name="verify")
@with_service
async def verify(state: CliState, ctx: ServiceContext) -> None:
    """Check the audit chain: exit 0 if every record is intact, 3 naming the first edited or missing one."""
    async with ctx.store.read() as tx:
        result = await audit_chain.verify(tx.conn, ctx.master_key)
    if state.output == "json":
        emit(state, result.as_json())
        return
    sealed = []
    if result.sealed_with_master_key:
        sealed.append(f"{result.sealed_with_master_key} sealed with the master key")
    if result.sealed_with_stored_key:
        sealed.append(f"{result.sealed_with_stored_key} with the stored chain key")
    click.echo(f"{result.records} records verified" + (f" ({', '.join(sealed)})" if sealed else ""))
