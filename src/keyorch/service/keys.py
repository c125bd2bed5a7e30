"""Managed key operations: create, the state actions, dual authorization, removal.

State actions change the desired state only; the reconciler brings keystores in line.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

from keyorch.domain import rules
from keyorch.domain.alignment import planned_dates
from keyorch.domain.errors import Conflict, InvalidInput
from keyorch.domain.models import Keystore, KeystoreType, KeyTemplate, ManagedKey, Tag, TargetStatus
from keyorch.domain.rotation import DEFAULT_MIN_INTERVAL
from keyorch.domain.states import ALLOWED_ACTIONS, KeyAction, KeyState
from keyorch.domain.uko import key_state
from keyorch.domain.validation import (
    check_description,
    check_key_dates,
    check_label,
    check_label_in_keystore,
    check_tags,
    labels_ignore_case,
    parse_initial_state,
    render_name,
)
from keyorch.service import templates
from keyorch.service.context import Change, ServiceContext
from keyorch.service.rotation import check_policy
from keyorch.service.versions import check_version
from keyorch.store.key_selection import RANGED, SORTABLE, Bound, KeySelection
from keyorch.store.repository import Transaction


def initial_state(template: KeyTemplate, requested: str | None) -> KeyState:
    """The state a new key starts in: the one requested, else the template's."""
    return parse_initial_state(requested) if requested is not None else template.initial_state


async def create_key(
    ctx: ServiceContext,
    *,
    template: str,
    label: str,
    state: str | None = None,
    description: str = "",
    tags: Sequence[tuple[str, str]] = (),
    vault: str | None = None,
    deactivate_on_rotation: bool | None = None,
    rotation_policy: str | None = None,
    min_interval: timedelta = DEFAULT_MIN_INTERVAL,
) -> ManagedKey:
    """A key made from a template (by id, or by name; ``vault`` (an id or name) narrows the template's lookup to
    that vault, as UKO's ``{template_name, vault: {id}}`` does). ``deactivate_on_rotation``: None takes the
    template's."""
    check_label(label)
    if state is not None:
        parse_initial_state(state)
    check_description("description", description)
    check_policy("rotation_policy", rotation_policy, min_interval)
    checked_tags = tuple(Tag(name, value) for name, value in check_tags(tags))

    async def body(tx: Transaction) -> tuple[ManagedKey, Change]:
        within = [(await tx.vault(vault)).id] if vault is not None else None
        tmpl = await tx.template(template, within)
        templates.check_makes_keys(tmpl)
        if await tx.label_taken(tmpl.vault_id, label):
            raise Conflict(f"vault already has a key labelled {label!r}", target="label")
        connected = await templates.distribution(tx, tmpl)
        if not connected:
            raise InvalidInput(
                f"template {tmpl.name} lists no connected keystore to distribute keys to", target="template"
            )
        now = ctx.clock.now()
        vault_name = (await tx.vault_by_id(tmpl.vault_id)).name
        planned = planned_dates(tmpl, now.date())
        name = render_name(tmpl.naming_scheme, label, made_at=now, template=tmpl.name, vault=vault_name)
        starts = initial_state(tmpl, state)
        key = ManagedKey(
            id=ctx.new_id(),
            label=label,
            name=name,
            vault_id=tmpl.vault_id,
            template_id=tmpl.id,
            algorithm=tmpl.algorithm,
            size=tmpl.size,
            state=starts,
            created_at=now,
            updated_at=now,
            targets=rules.new_targets(await _labels_in_keystores(tx, connected, name), now),
            activation_date=planned[0],
            expiration_date=planned[1],
            description=description,
            tags=checked_tags,
            created_by=ctx.actor.user,
            updated_by=ctx.actor.user,
            deactivate_on_rotation=(
                tmpl.deactivate_on_rotation if deactivate_on_rotation is None else deactivate_on_rotation
            ),
            rotation_policy=rotation_policy,
            activated_at=now if starts is KeyState.ACTIVE else None,
        )
        await tx.insert_key(key)
        return key, Change(key.id, after=key)

    return await ctx.change("key.create", "key", label, body, creates=True)


async def _labels_in_keystores(tx: Transaction, keystores: Sequence[Keystore], name: str) -> dict[str, str | None]:
    """What each keystore will call a new key named ``name`` (keystore id -> label), checked against the keystore
    type's naming rule and against the other keys keyorch keeps there (:func:`name_holder`)."""
    labels: dict[str, str | None] = {}
    for ks in keystores:
        label = check_label_in_keystore(ks.type, name, ks.name)
        holder = await name_holder(tx, ks, label)
        if holder is not None:
            raise Conflict(
                f"keystore {ks.name} ({ks.type}) already holds managed key {holder} as {label!r}; the key's name "
                f"{name!r} (its template's naming scheme applied to its label) must name one key there: choose "
                "another label",
                target="label",
            )
        labels[ks.id] = label
    return labels


async def name_holder(tx: Transaction, keystore: Keystore, label: str) -> str | None:
    """The managed key keyorch keeps in ``keystore`` as ``label`` already, if any: a name is refused rather than
    shared (the adapters would refuse to adopt the other key anyway). Key Protect names need not be unique (its
    keys are found by their ``keyorch-<id>`` alias), so none holds one there."""
    if keystore.type is KeystoreType.IBM_KEY_PROTECT:
        return None
    return await tx.key_named_in_keystore(keystore.id, label, ignore_case=labels_ignore_case(keystore.type))


@dataclass(frozen=True)
class KeyFilter:
    """Which keys a listing shows. ``vault`` and ``state`` as the CLI gives them (a vault by id or name; a state
    by UKO's or keyorch's name, or several comma-separated); the rest as UKO's query has them, already parsed."""

    vault: str | None = None
    state: str | None = None
    out_of_sync: bool = False
    pending_destruction: bool = False
    unaligned: bool = False
    include_destroyed: bool = False
    limit: int | None = None
    offset: int = 0
    #: only keys in these vaults (by id), e.g. those the API caller may read; None: every vault
    vault_ids: frozenset[str] | None = None
    label: str | None = None
    label_contains: str | None = None
    algorithms: tuple[str, ...] = ()
    template_ids: tuple[str, ...] = ()
    template_names: tuple[str, ...] = ()
    keystore_types: tuple[KeystoreType, ...] = ()
    keystore_names: tuple[str, ...] = ()
    #: only keys in these keystores (by id; not unlinked from them)
    keystore_ids: tuple[str, ...] = ()
    ranges: Mapping[str, tuple[Bound | None, Bound | None]] = field(default_factory=dict)
    sort: tuple[tuple[str, bool], ...] = ()

    def states(self) -> Sequence[KeyState] | None:
        if self.state is not None:
            return [key_state(name.strip()) for name in self.state.split(",")]
        if self.include_destroyed:
            return None
        return [s for s in KeyState if s in ALLOWED_ACTIONS[KeyAction.LIST]]


async def _selection(tx: Transaction, flt: KeyFilter) -> KeySelection:
    """The filter as the store's key selection (the vault named by reference resolved to its id)."""
    for name in flt.ranges:
        if name not in RANGED:
            raise InvalidInput(f"{name} cannot bound a key listing: use one of {', '.join(RANGED)}", target=name)
    for name, _ in flt.sort:
        if name not in SORTABLE:
            raise InvalidInput(f"sort {name!r} is not a key field: use one of {', '.join(SORTABLE)}", target="sort")
    return KeySelection(
        vault_id=(await tx.vault(flt.vault)).id if flt.vault else None,
        vault_ids=flt.vault_ids,
        states=flt.states(),
        out_of_sync=flt.out_of_sync,
        pending_destruction=flt.pending_destruction,
        unaligned=flt.unaligned,
        label=flt.label,
        label_contains=flt.label_contains,
        algorithms=tuple(a.lower() for a in flt.algorithms),
        template_ids=flt.template_ids,
        template_names=flt.template_names,
        keystore_types=tuple(k.value for k in flt.keystore_types),
        keystore_names=flt.keystore_names,
        keystore_ids=flt.keystore_ids,
        ranges=dict(flt.ranges),
        sort=flt.sort,
    )


async def list_keys(ctx: ServiceContext, flt: KeyFilter = KeyFilter()) -> list[ManagedKey]:
    """The keys the filter selects, by creation time unless sorted; filtered and paged in SQL."""
    async with ctx.store.read() as tx:
        return await tx.list_keys(await _selection(tx, flt), limit=flt.limit, offset=flt.offset)


async def page_keys(ctx: ServiceContext, flt: KeyFilter) -> tuple[int, list[ManagedKey]]:
    """How many keys the filter selects (ignoring its limit and offset) and its page of them, both from
    one read snapshot so that they agree; filtered, counted and sliced in SQL."""
    async with ctx.store.read() as tx:
        selection = await _selection(tx, flt)
        total = await tx.count_keys(selection)
        if flt.offset >= total:
            return total, []
        return total, await tx.list_keys(selection, limit=flt.limit, offset=flt.offset)


#: "leave it as it is" for update_key's optional dates (None there means: clear the date)
KEEP: Any = object()


async def update_key(
    ctx: ServiceContext,
    ref: str,
    expected_version: int | None = None,
    *,
    label: str | None = None,
    description: str | None = None,
    tags: Sequence[tuple[str, str]] | None = None,
    activation_date: date | None = KEEP,
    expiration_date: date | None = KEEP,
    deactivate_on_rotation: bool | None = None,
    rotation_policy: str | None = KEEP,
    min_interval: timedelta = DEFAULT_MIN_INTERVAL,
) -> ManagedKey:
    """Change what UKO lets one edit on a key: label, description, tags (replaced as a whole), the planned
    activation and expiration dates (None clears one) and ``deactivate_on_rotation`` (None: as it is); and
    keyorch's rotation policy of the key (None: its template's again); not its state or where it is. The
    provider-side name stays what it was made with (the keystores' copies are found by the key's id, never by its
    label). A changed ``deactivate_on_rotation`` is a change of desired state: every live target is pending until
    the reconciler has disabled (or enabled again) the older versions there."""
    if label is not None:
        check_label(label)
    if description is not None:
        check_description("description", description)
    new_tags = tuple(Tag(name, value) for name, value in check_tags(tags)) if tags is not None else None
    if rotation_policy is not KEEP:
        check_policy("rotation_policy", rotation_policy, min_interval)

    async def body(tx: Transaction) -> tuple[ManagedKey, Change]:
        before = await tx.key(ref)
        check_version(before.version, expected_version, "key", before.id)
        if label is not None and label != before.label and await tx.label_taken(before.vault_id, label):
            raise Conflict(f"vault already has a key labelled {label!r}", target="label")
        activation = before.activation_date if activation_date is KEEP else activation_date
        expiration = before.expiration_date if expiration_date is KEEP else expiration_date
        check_key_dates(activation, expiration)
        changed = replace(
            before,
            label=before.label if label is None else label,
            description=before.description if description is None else description,
            tags=before.tags if new_tags is None else new_tags,
            activation_date=activation,
            expiration_date=expiration,
            rotation_policy=before.rotation_policy if rotation_policy is KEEP else rotation_policy,
            updated_at=ctx.clock.now(),
            updated_by=ctx.actor.user,
        )
        if deactivate_on_rotation is not None and deactivate_on_rotation != before.deactivate_on_rotation:
            changed = replace(
                changed,
                deactivate_on_rotation=deactivate_on_rotation,
                targets=rules.pending_targets(changed, changed.updated_at),
                generation=before.generation + 1,
            )
        after = await tx.update_key(changed, before.version)
        return after, Change(after.id, before=before, after=after)

    return await ctx.change("key.update", "key", ref, body)


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


async def compromise_key(ctx: ServiceContext, ref: str, expected_version: int | None = None) -> ManagedKey:
    """Declare the key's material exposed: it is disabled in every keystore and never used again (from
    active or deactivated), or the destroyed key's record says so (from destroyed)."""
    return await _state_action(ctx, ref, KeyAction.COMPROMISE, expected_version)


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
