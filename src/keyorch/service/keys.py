"""Managed key operations: create, the state actions, dual authorization, removal.

State actions change the desired state only; the reconciler brings keystores in line.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from keyorch.domain import rules
from keyorch.domain.errors import Conflict, InvalidInput
from keyorch.domain.models import KeyTemplate, ManagedKey, TargetStatus
from keyorch.domain.states import KeyAction, KeyState
from keyorch.domain.validation import check_label, parse_initial_state, parse_state, render_name
from keyorch.service.context import Change, ServiceContext
from keyorch.service.versions import check_version
from keyorch.store.repository import Transaction


def initial_state(template: KeyTemplate, requested: str | None) -> KeyState:
    """The state a new key starts in: the one requested, else the template's."""
    return parse_initial_state(requested) if requested is not None else template.initial_state


async def create_key(ctx: ServiceContext, *, template: str, label: str, state: str | None = None) -> ManagedKey:
    check_label(label)
    if state is not None:
        parse_initial_state(state)

    async def body(tx: Transaction) -> tuple[ManagedKey, Change]:
        tmpl = await tx.template(template)
        if await tx.label_taken(tmpl.vault_id, label):
            raise Conflict(f"vault already has a key labelled {label!r}", target="label")
        connected = [k for k in tmpl.keystore_ids if (await tx.keystore(k)).connected]
        if not connected:
            raise InvalidInput(
                f"template {tmpl.name} lists no connected keystore to distribute keys to", target="template"
            )
        now = ctx.clock.now()
        key = ManagedKey(
            id=ctx.new_id(),
            label=label,
            name=render_name(tmpl.naming_scheme, label),
            vault_id=tmpl.vault_id,
            template_id=tmpl.id,
            algorithm=tmpl.algorithm,
            size=tmpl.size,
            state=initial_state(tmpl, state),
            created_at=now,
            updated_at=now,
            targets=rules.new_targets(connected, now),
        )
        await tx.insert_key(key)
        return key, Change(key.id, after=key)

    return await ctx.change("key.create", "key", label, body, creates=True)


@dataclass(frozen=True)
class KeyFilter:
    vault: str | None = None
    state: str | None = None
    out_of_sync: bool = False
    include_destroyed: bool = False
    limit: int | None = None
    offset: int = 0
    #: only keys in these vaults (by id), e.g. those the API caller may read; None: every vault
    vault_ids: frozenset[str] | None = None

    def states(self) -> Sequence[KeyState] | None:
        if self.state is not None:
            return [parse_state("state", self.state)]
        if self.include_destroyed:
            return None
        return [s for s in KeyState if s is not KeyState.DESTROYED]


async def _where(tx: Transaction, flt: KeyFilter) -> dict[str, Any]:
    """The filter as the store's key selection (the vault named by reference resolved to its id)."""
    vault_id = (await tx.vault(flt.vault)).id if flt.vault else None
    return {"vault_id": vault_id, "vault_ids": flt.vault_ids, "states": flt.states(), "out_of_sync": flt.out_of_sync}


async def list_keys(ctx: ServiceContext, flt: KeyFilter = KeyFilter()) -> list[ManagedKey]:
    """The keys the filter selects, by creation time; filtered and paged in SQL."""
    async with ctx.store.read() as tx:
        return await tx.list_keys(**await _where(tx, flt), limit=flt.limit, offset=flt.offset)


async def page_keys(ctx: ServiceContext, flt: KeyFilter) -> tuple[int, list[ManagedKey]]:
    """How many keys the filter selects (ignoring its limit and offset) and its page of them, both from
    one read snapshot so that they agree; filtered, counted and sliced in SQL."""
    async with ctx.store.read() as tx:
        where = await _where(tx, flt)
        total = await tx.count_keys(**where)
        if flt.offset >= total:
            return total, []
        return total, await tx.list_keys(**where, limit=flt.limit, offset=flt.offset)


async def get_key(ctx: ServiceContext, ref: str, within: Collection[str] | None = None) -> ManagedKey:
    """By id or label; with ``within`` (vault ids), only a key of those vaults."""
    async with ctx.store.read() as tx:
        return await tx.key(ref, within)


async def _state_action(
    ctx: ServiceContext, ref: str, action: KeyAction, expected_version: int | None, *, force: bool = False
) -> ManagedKey:
    async def body(tx: Transaction) -> tuple[ManagedKey, Change]:
        key = await tx.key(ref)
        check_version(key.version, expected_version, "key", key.id)
        now = ctx.clock.now()
        if action is KeyAction.DESTROY:
            vault = await tx.vault_by_id(key.vault_id)
            rules.check_authenticated_for_dual_auth(vault, ctx.actor.authenticated)
            changed = rules.destroy(vault, key, ctx.actor.user, now, force=force)
        else:
            changed = rules.apply_state_change(key, action, now)
        after = await tx.update_key(changed, key.version)
        return after, Change(key.id, before=key, after=after)

    return await ctx.change(f"key.{action}", "key", ref, body)


async def activate_key(ctx: ServiceContext, ref: str, expected_version: int | None = None) -> ManagedKey:
    return await _state_action(ctx, ref, KeyAction.ACTIVATE, expected_version)


async def deactivate_key(ctx: ServiceContext, ref: str, expected_version: int | None = None) -> ManagedKey:
    return await _state_action(ctx, ref, KeyAction.DEACTIVATE, expected_version)


async def reactivate_key(ctx: ServiceContext, ref: str, expected_version: int | None = None) -> ManagedKey:
    return await _state_action(ctx, ref, KeyAction.REACTIVATE, expected_version)


async def destroy_key(
    ctx: ServiceContext, ref: str, *, force: bool = False, expected_version: int | None = None
) -> ManagedKey:
    return await _state_action(ctx, ref, KeyAction.DESTROY, expected_version, force=force)


async def remove_key(ctx: ServiceContext, ref: str, expected_version: int | None = None) -> ManagedKey:
    async def body(tx: Transaction) -> tuple[ManagedKey, Change]:
        key = await tx.key(ref)
        check_version(key.version, expected_version, "key", key.id)
        names = {
            t.keystore_id: (await tx.keystore(t.keystore_id)).name
            for t in key.targets
            if t.status is not TargetStatus.REMOVED
        }
        in_flight = {str(i["keystore_id"]) for i in await tx.open_intents(key.id)}
        rules.check_remove(key, names, ctx.clock.now(), in_flight)
        await tx.delete_key(key)
        return key, Change(key.id, before=key)

    return await ctx.change("key.remove", "key", ref, body)


async def authorize_deletion(ctx: ServiceContext, ref: str, expected_version: int | None = None) -> ManagedKey:
    async def body(tx: Transaction) -> tuple[ManagedKey, Change]:
        key = await tx.key(ref)
        check_version(key.version, expected_version, "key", key.id)
        vault = await tx.vault_by_id(key.vault_id)
        rules.check_authenticated_for_dual_auth(vault, ctx.actor.authenticated)
        changed = rules.authorize_deletion(vault, key, ctx.actor.user, ctx.clock.now())
        after = await tx.update_key(changed, key.version)
        return after, Change(key.id, before=key, after=after)

    return await ctx.change("key.authorize_deletion", "key", ref, body)


async def withdraw_authorization(ctx: ServiceContext, ref: str, expected_version: int | None = None) -> ManagedKey:
    async def body(tx: Transaction) -> tuple[ManagedKey, Change]:
        key = await tx.key(ref)
        check_version(key.version, expected_version, "key", key.id)
        changed = rules.withdraw_authorization(key, ctx.clock.now())
        after = await tx.update_key(changed, key.version)
        return after, Change(key.id, before=key, after=after)

    return await ctx.change("key.withdraw_authorization", "key", ref, body)
