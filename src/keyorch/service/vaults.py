"""Vault operations."""

from __future__ import annotations

from collections.abc import Collection

from keyorch.domain import rules
from keyorch.domain.errors import Conflict
from keyorch.domain.models import Vault
from keyorch.domain.validation import check_name
from keyorch.service.context import Change, ServiceContext
from keyorch.service.versions import check_version
from keyorch.store.repository import Transaction


async def create_vault(ctx: ServiceContext, name: str, dual_auth: bool = False) -> Vault:
    check_name("vault name", name)

    async def body(tx: Transaction) -> tuple[Vault, Change]:
        if await tx.vault_name_taken(name):
            raise Conflict(f"a vault named {name!r} already exists", target="name")
        now = ctx.clock.now()
        vault = Vault(id=ctx.new_id(), name=name, dual_auth=dual_auth, created_at=now, updated_at=now)
        await tx.insert_vault(vault)
        return vault, Change(vault.id, after=vault)

    return await ctx.change("vault.create", "vault", name, body, creates=True)


async def delete_vault(ctx: ServiceContext, ref: str, expected_version: int | None = None) -> Vault:
    async def body(tx: Transaction) -> tuple[Vault, Change]:
        vault = await tx.vault(ref)
        check_version(vault.version, expected_version, "vault", vault.id)
        rules.check_vault_empty(vault, *(await tx.vault_contents(vault.id)))
        await tx.delete_vault(vault)
        return vault, Change(vault.id, before=vault)

    return await ctx.change("vault.delete", "vault", ref, body)


async def list_vaults(ctx: ServiceContext) -> list[Vault]:
    async with ctx.store.read() as tx:
        return await tx.list_vaults()


async def get_vault(ctx: ServiceContext, ref: str, within: Collection[str] | None = None) -> Vault:
    """By id or name; with ``within`` (vault ids, e.g. those an API caller may read), only among those."""
    async with ctx.store.read() as tx:
        return await tx.vault(ref, within)
