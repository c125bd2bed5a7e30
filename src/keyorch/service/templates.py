"""Key template operations."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from keyorch.domain.errors import Conflict, InvalidInput
from keyorch.domain.models import KeyTemplate
from keyorch.domain.validation import check_algorithm, check_name, check_naming_scheme, parse_initial_state
from keyorch.service.context import Change, ServiceContext
from keyorch.store.repository import Transaction


async def create_template(
    ctx: ServiceContext,
    *,
    vault: str,
    name: str,
    keystores: Sequence[str],
    algorithm: str = "aes",
    size: int = 256,
    naming_scheme: str = "{label}",
    state: str = "pre_active",
) -> KeyTemplate:
    check_name("template name", name)
    check_naming_scheme(naming_scheme)
    initial = parse_initial_state(state)
    if not keystores:
        raise InvalidInput("a template needs at least one --keystore", target="keystore")

    async def body(tx: Transaction) -> tuple[KeyTemplate, Change]:
        v = await tx.vault(vault)
        if await tx.template_name_taken(v.id, name):
            raise Conflict(f"vault {v.name} already has a template named {name!r}", target="name")
        resolved = []
        for ref in dict.fromkeys(keystores):
            ks = await tx.keystore(ref, within={v.id})  # a keystore of another vault is not found here
            if not ks.connected:
                raise InvalidInput(
                    f"keystore {ks.name} ({ks.id}) is not a connected keystore of vault {v.name}", target="keystore"
                )
            resolved.append(ks)
        algo, bits = check_algorithm(algorithm, size, {ks.name: ks.type for ks in resolved})
        now = ctx.clock.now()
        template = KeyTemplate(
            id=ctx.new_id(),
            vault_id=v.id,
            name=name,
            naming_scheme=naming_scheme,
            algorithm=algo,
            size=bits,
            keystore_ids=tuple(ks.id for ks in resolved),
            initial_state=initial,
            created_at=now,
            updated_at=now,
        )
        await tx.insert_template(template)
        return template, Change(template.id, after=template)

    return await ctx.change("template.create", "template", name, body, creates=True)


async def list_templates(ctx: ServiceContext, vault: str | None = None) -> list[KeyTemplate]:
    async with ctx.store.read() as tx:
        vault_id = (await tx.vault(vault)).id if vault else None
        return await tx.list_templates(vault_id)


async def get_template(ctx: ServiceContext, ref: str, within: Collection[str] | None = None) -> KeyTemplate:
    """By id or name; with ``within`` (vault ids), only a template of those vaults."""
    async with ctx.store.read() as tx:
        return await tx.template(ref, within)
