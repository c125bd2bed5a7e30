"""Key template operations."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from keyorch.domain import uko
from keyorch.domain.errors import Conflict, InvalidInput, RuleViolation
from keyorch.domain.models import (
    USER_DEFINED,
    GroupEntry,
    Keystore,
    KeystoreType,
    KeyTemplate,
    TemplateFacts,
    TemplateState,
)
from keyorch.domain.rotation import DEFAULT_MIN_INTERVAL
from keyorch.domain.validation import (
    check_algorithm,
    check_description,
    check_groups,
    check_key_date,
    check_name,
    check_naming_scheme,
    parse_initial_state,
    shown,
)
from keyorch.service.context import Change, ServiceContext
from keyorch.service.rotation import check_policy
from keyorch.store.repository import Transaction

#: the template types a user may give (UKO makes ``shadow`` and ``system`` templates itself)
TEMPLATE_TYPES = (USER_DEFINED,)


def group_entries(entries: Sequence[tuple[str, str]]) -> tuple[GroupEntry, ...]:
    """UKO's distribution entries ``(group, type)``: a group name and a keystore type (UKO's name or keyorch's)."""
    found: list[GroupEntry] = []
    for group, kind in entries:
        check_groups([group], "keystores[].group")
        entry = GroupEntry(group, uko.keystore_type(kind, "keystores[].type"))
        if entry in found:
            raise InvalidInput(
                f"keystores lists group {group!r} of type {kind!r} twice; give each entry once", target="keystores"
            )
        found.append(entry)
    return tuple(found)


def _check_types(types: Sequence[str]) -> tuple[str, ...]:
    for value in types:
        if value not in TEMPLATE_TYPES:
            raise InvalidInput(
                f"type {shown(value)} is not a template type a user can give; use {', '.join(TEMPLATE_TYPES)}",
                target="type",
            )
    return tuple(dict.fromkeys(types)) or (USER_DEFINED,)


def check_planned_dates(activation_date: str | None, expiration_date: str | None) -> None:
    if activation_date is not None:
        check_key_date("key.activation_date", activation_date)
    if expiration_date is not None:
        check_key_date("key.expiration_date", expiration_date)


async def explicit_keystores(tx: Transaction, vault_id: str, vault_name: str, refs: Sequence[str]) -> list[Keystore]:
    resolved = []
    for ref in dict.fromkeys(refs):
        ks = await tx.keystore(ref, within={vault_id})  # a keystore of another vault is not found here
        if not ks.connected:
            raise InvalidInput(
                f"keystore {ks.name} ({ks.id}) is not a connected keystore of vault {vault_name}", target="keystore"
            )
        resolved.append(ks)
    return resolved


def check_key_material(
    algorithm: str, size: int, explicit: Sequence[Keystore], groups: Sequence[GroupEntry]
) -> tuple[str, int]:
    """The algorithm and size, which every keystore named and every group entry's type must support."""
    kinds: dict[str, KeystoreType] = {ks.name: ks.type for ks in explicit}
    kinds.update({f"group {g.group!r}": g.type for g in groups})
    return check_algorithm(algorithm, size, kinds)


async def create_template(
    ctx: ServiceContext,
    *,
    vault: str,
    name: str,
    keystores: Sequence[str] = (),
    groups: Sequence[tuple[str, str]] = (),
    algorithm: str = "aes",
    size: int = 256,
    naming_scheme: str = "{label}",
    state: str = "pre_active",
    description: str = "",
    activation_date: str | None = None,
    expiration_date: str | None = None,
    types: Sequence[str] = (USER_DEFINED,),
    archived: bool = False,
    deactivate_on_rotation: bool = False,
    rotation_policy: str | None = None,
    min_interval: timedelta = DEFAULT_MIN_INTERVAL,
) -> KeyTemplate:
    """A template distributing keys to the keystores named (``keystores``, ids or names) and to every connected
    keystore of the vault in a group entry (``groups``: UKO's ``keystores[{group, type}]``)."""
    check_name("template name", name)
    check_naming_scheme(naming_scheme)
    check_description("description", description)
    check_planned_dates(activation_date, expiration_date)
    check_policy("key.rotation_policy", rotation_policy, min_interval)
    initial = parse_initial_state(state)
    kinds = _check_types(types)
    entries = group_entries(groups)
    if not keystores and not entries:
        raise InvalidInput(
            "a template needs at least one keystore (--keystore) or keystore group entry ({group, type})",
            target="keystores",
        )

    async def body(tx: Transaction) -> tuple[KeyTemplate, Change]:
        v = await tx.vault(vault)
        if await tx.template_name_taken(v.id, name):
            raise Conflict(f"vault {v.name} already has a template named {name!r}", target="name")
        explicit = await explicit_keystores(tx, v.id, v.name, keystores)
        algo, bits = check_key_material(algorithm, size, explicit, entries)
        now = ctx.clock.now()
        template = KeyTemplate(
            id=ctx.new_id(),
            vault_id=v.id,
            name=name,
            naming_scheme=naming_scheme,
            algorithm=algo,
            size=bits,
            keystore_ids=tuple(ks.id for ks in explicit),
            initial_state=initial,
            created_at=now,
            updated_at=now,
            description=description,
            types=kinds,
            state=TemplateState.ARCHIVED if archived else TemplateState.UNARCHIVED,
            activation_date=activation_date,
            expiration_date=expiration_date,
            groups=entries,
            created_by=ctx.actor.user,
            updated_by=ctx.actor.user,
            deactivate_on_rotation=deactivate_on_rotation,
            rotation_policy=rotation_policy,
        )
        await tx.insert_template(template)
        return template, Change(template.id, after=template)

    return await ctx.change("template.create", "template", name, body, creates=True)


def check_makes_keys(template: KeyTemplate) -> None:
    """An archived template makes no new keys (UKO); unarchive it first."""
    if template.archived:
        raise RuleViolation(
            f"template {template.name} ({template.id}) is archived and makes no new keys; unarchive it first",
            target="template",
        )


def in_distribution(template: KeyTemplate, keystore: Keystore) -> bool:
    """Whether a key made from the template goes to this keystore: one it names, or a connected keystore of its
    vault in one of its group entries (the entry's group among the keystore's groups, and the same type)."""
    if keystore.id in template.keystore_ids:
        return True
    return keystore.vault_id == template.vault_id and any(
        g.type is keystore.type and g.group in keystore.groups for g in template.groups
    )


async def distribution(tx: Transaction, template: KeyTemplate) -> list[Keystore]:
    """The connected keystores a key made from the template now goes to (the ones it names first, in its order,
    then those of its group entries, by when they were connected)."""
    named = await tx.keystores_by_id(template.keystore_ids)
    found = [named[k] for k in template.keystore_ids if named[k].connected]
    if template.groups:
        found += [
            k for k in await tx.list_keystores(template.vault_id) if k not in found and in_distribution(template, k)
        ]
    return found


# --- listing ----------------------------------------------------------------------------------------------------

#: what a template list can be sorted by (UKO's ``sort``; ``-`` before one sorts descending)
SORT_FIELDS = ("name", "naming_scheme", "state", "key.algorithm", "key.size", "vault.id", "created_at", "updated_at")


def _sort_value(t: KeyTemplate, field: str) -> Any:
    return {
        "name": t.name,
        "naming_scheme": t.naming_scheme,
        "state": t.state.value,
        "key.algorithm": t.algorithm,
        "key.size": t.size,
        "vault.id": t.vault_id,
        "created_at": t.created_at,
        "updated_at": t.updated_at,
    }[field]


def parse_sort(value: str | None) -> tuple[str, ...]:
    """UKO's ``sort``: fields separated by commas, each optionally preceded by ``-`` (descending)."""
    if value is None:
        return ()
    fields = tuple(f.strip() for f in value.split(","))
    for f in fields:
        if f.removeprefix("-") not in SORT_FIELDS:
            raise InvalidInput(
                f"sort {shown(f)} is not a field templates can be sorted by; use one of {', '.join(SORT_FIELDS)} "
                "(with - before it for descending)",
                target="sort",
                target_type="parameter",
            )
    return fields


@dataclass(frozen=True)
class TemplateFilter:
    """Which templates a list shows (UKO's ListKeyTemplates parameters); None: no condition."""

    vault_ids: frozenset[str] | None = None
    name: str | None = None
    naming_scheme: str | None = None
    algorithms: frozenset[str] | None = None
    size: int | None = None
    size_min: int | None = None
    size_max: int | None = None
    #: the template distributes to a keystore of one of these types (a keystore named or a group entry)
    keystore_types: frozenset[KeystoreType] | None = None
    #: the template has a group entry of one of these groups
    keystore_groups: frozenset[str] | None = None
    types: frozenset[str] | None = None
    states: frozenset[TemplateState] | None = None
    sort: tuple[str, ...] = ()

    def matches(self, t: KeyTemplate, keystores: dict[str, Keystore]) -> bool:
        distributed = {g.type for g in t.groups} | {keystores[k].type for k in t.keystore_ids if k in keystores}
        checks = (
            self.vault_ids is None or t.vault_id in self.vault_ids,
            self.name is None or t.name == self.name,
            self.naming_scheme is None or t.naming_scheme == self.naming_scheme,
            self.algorithms is None or t.algorithm in self.algorithms,
            self.size is None or t.size == self.size,
            self.size_min is None or t.size >= self.size_min,
            self.size_max is None or t.size <= self.size_max,
            self.keystore_types is None or bool(distributed & self.keystore_types),
            self.keystore_groups is None or any(g.group in self.keystore_groups for g in t.groups),
            self.types is None or bool(set(t.types) & self.types),
            self.states is None or t.state in self.states,
        )
        return all(checks)


def sort_templates(found: list[KeyTemplate], fields: Sequence[str]) -> list[KeyTemplate]:
    """By creation (then id), then by each sort field, the first one deciding first."""
    ordered = sorted(found, key=lambda t: (t.created_at, t.id))
    for f in reversed(fields):
        ordered.sort(key=lambda t, f=f: _sort_value(t, f.removeprefix("-")), reverse=f.startswith("-"))  # type: ignore[misc]
    return ordered


async def list_templates(ctx: ServiceContext, vault: str | None = None) -> list[KeyTemplate]:
    async with ctx.store.read() as tx:
        vault_id = (await tx.vault(vault)).id if vault else None
        return await tx.list_templates(vault_id)


async def find_templates(ctx: ServiceContext, flt: TemplateFilter) -> tuple[list[KeyTemplate], TemplateFacts]:
    """The templates the filter selects, sorted, with what their answers show; from one read snapshot."""
    async with ctx.store.read() as tx:
        keystores = {k.id: k for k in await tx.list_keystores(include_disconnected=True)}
        found = [t for t in await tx.list_templates() if flt.matches(t, keystores)]
        return sort_templates(found, flt.sort), await _facts(tx, found, keystores)


async def _facts(tx: Transaction, found: Sequence[KeyTemplate], keystores: dict[str, Keystore]) -> TemplateFacts:
    vault_names = {v.id: v.name for v in await tx.list_vaults()}
    counts = await tx.template_key_counts({t.id for t in found})
    return TemplateFacts(vault_names=vault_names, keys_counts=counts, keystores=keystores)


async def template_facts(ctx: ServiceContext, found: Collection[KeyTemplate]) -> TemplateFacts:
    """What the answers of these templates show beside their records (vault names, keys made, keystores)."""
    async with ctx.store.read() as tx:
        keystores = {k.id: k for k in await tx.list_keystores(include_disconnected=True)}
        return await _facts(tx, list(found), keystores)


async def get_template(ctx: ServiceContext, ref: str, within: Collection[str] | None = None) -> KeyTemplate:
    """By id or name; with ``within`` (vault ids), only a template of those vaults."""
    async with ctx.store.read() as tx:
        return await tx.template(ref, within)
