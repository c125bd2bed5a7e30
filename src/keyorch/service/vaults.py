"""Vault operations."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

from keyorch.domain import rules
from keyorch.domain.errors import Conflict
from keyorch.domain.models import Vault, VaultCounts
from keyorch.domain.validation import check_description, check_label, check_name
from keyorch.service.context import Change, ServiceContext
from keyorch.service.versions import check_version
from keyorch.store.repository import Transaction


def _check_fields(name: str | None, description: str | None, recovery_key_label: str | None) -> None:
    if name is not None:
        check_name("vault name", name)
    if description is not None:
        check_description("description", description)
    if recovery_key_label is not None:
        check_label(recovery_key_label, "recovery_key_label")


async def create_vault(
    ctx: ServiceContext,
    name: str,
    dual_auth: bool = False,
    description: str = "",
    recovery_key_label: str | None = None,
) -> Vault:
    _check_fields(name, description, recovery_key_label)

    async def body(tx: Transaction) -> tuple[Vault, Change]:
        if await tx.vault_name_taken(name):
            raise Conflict(f"a vault named {name!r} already exists", target="name")
        now = ctx.clock.now()
        vault = Vault(
            id=ctx.new_id(),
            name=name,
            dual_auth=dual_auth,
            created_at=now,
            updated_at=now,
            description=description,
            recovery_key_label=recovery_key_label,
            created_by=ctx.actor.user,
            updated_by=ctx.actor.user,
        )
        await tx.insert_vault(vault)
        return vault, Change(vault.id, after=vault)

    return await ctx.change("vault.create", "vault", name, body, creates=True)


async def update_vault(
    ctx: ServiceContext,
    ref: str,
    expected_version: int | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    recovery_key_label: str | None = None,
) -> Vault:
    """Change a vault's name, description or recovery key label (None: leave it as it is)."""
    _check_fields(name, description, recovery_key_label)

    async def body(tx: Transaction) -> tuple[Vault, Change]:
        before = await tx.vault(ref)
        check_version(before.version, expected_version, "vault", before.id)
        if name is not None and name != before.name and await tx.vault_name_taken(name):
            raise Conflict(f"a vault named {name!r} already exists", target="name")
        changed = replace(
            before,
            name=before.name if name is None else name,
            description=before.description if description is None else description,
            recovery_key_label=before.recovery_key_label if recovery_key_label is None else recovery_key_label,
            updated_at=ctx.clock.now(),
            updated_by=ctx.actor.user,
        )
        after = await tx.update_vault(changed, before.version)
        return after, Change(after.id, before=before, after=after)

    return await ctx.change("vault.update", "vault", ref, body)


async def vault_counts(ctx: ServiceContext, vault_ids: Collection[str]) -> dict[str, VaultCounts]:
    """The keys, key templates and connected keystores of each of these vaults."""
    async with ctx.store.read() as tx:
        return await tx.vault_counts(vault_ids)


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
