"""`keyorch audit …`."""

from __future__ import annotations

import click

from keyorch.cli.backend import Backend
from keyorch.cli.runtime import CliState, emit, make_table, with_backend


@click.group(name="audit")
def audit() -> None:
    """The audit trail: who changed what, when, and whether it was accepted."""


@audit.command(name="list")
@click.option(
    "--object",
    "object_id",
    help="Only records about this object: an id, a vault, keystore or template name, or a key label.",
)
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@with_backend
async def list_(state: CliState, backend: Backend, object_id: str | None, limit: int) -> None:
    """List audit records, oldest first."""
    records = await backend.audit_records(object_id, limit)
    emit(
        state,
        records,
        lambda: make_table(
            "audit",
            ["seq", "at", "user", "role", "source", "action", "object", "outcome", "detail"],
            [
                (
                    r["seq"],
                    r["at"],
                    r["user"],
                    r["role"],
                    r["source"],
                    r["action"],
                    r["object_id"],
                    r["outcome"],
                    r["detail"],
                )
                for r in records
            ],
        ),
    )


@audit.command(name="verify")
@click.option(
    "--anchor",
    metavar="SEQ:HMAC",
    help="A head printed earlier by `keyorch audit anchor` (or logged as 'audit chain head'): the trail must still "
    "hold that record, unchanged.",
)
@with_backend
async def verify(state: CliState, backend: Backend, anchor: str | None) -> None:
    """Check the audit chain: exit 0 if every record is intact, 3 naming the first edited or missing one."""
    result = await backend.verify_audit(anchor)
    if state.output == "json":
        emit(state, result)
        return
    sealed = []
    if result["sealed_with_master_key"]:
        sealed.append(f"{result['sealed_with_master_key']} sealed with the master key")
    if result["sealed_with_stored_key"]:
        sealed.append(f"{result['sealed_with_stored_key']} with the stored chain key")
    line = f"{result['records_verified']} records verified" + (f" ({', '.join(sealed)})" if sealed else "")
    click.echo(line + (f"; the trail still holds the anchor {anchor.strip()}" if anchor else ""))


@audit.command(name="anchor")
@with_backend
async def anchor(state: CliState, backend: Backend) -> None:
    """Verify the chain and print its head as SEQ:HMAC, to keep where the database's writers cannot change it
    (then `audit verify --anchor SEQ:HMAC` proves the trail still holds it)."""
    result = await backend.verify_audit()
    doc = {"anchor": result.get("anchor"), "last_seq": result["last_seq"]}
    emit(state, doc, lambda: doc["anchor"] or "the audit trail is empty: there is no head to anchor yet")
