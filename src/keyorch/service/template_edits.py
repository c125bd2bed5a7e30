"""Changing a key template after it was made (UKO's UpdateKeyTemplate, DeleteKeyTemplate, ArchiveKeyTemplate,
UnarchiveKeyTemplate), each one audited transaction.

What a key got from its template at creation (algorithm, size, name) never changes afterwards; what a template
can still give its keys (where they are distributed, their planned dates) is applied to a key only when someone
realigns it (service.key_template.update_from_template). Until then a changed template's keys are flagged
unaligned, as UKO flags them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from keyorch.domain.errors import Conflict, InvalidInput, RuleViolation
from keyorch.domain.models import KeyTemplate, TemplateState
from keyorch.domain.rotation import DEFAULT_MIN_INTERVAL
from keyorch.domain.validation import check_description, check_name
from keyorch.service import templates as made
from keyorch.service.context import Change, ServiceContext
from keyorch.service.rotation import check_policy
from keyorch.service.versions import check_version
from keyorch.store.repository import Transaction

#: "leave it as it is" for an optional field of an edit (None there means: clear it)
KEEP: Any = object()


@dataclass(frozen=True)
class TemplateEdit:
    """What to change (``None``/``KEEP``: leave as it is). ``keystores`` and ``groups`` replace the distribution
    as a whole (both given as the one new list; either alone replaces its part)."""

    name: str | None = None
    description: str | None = None
    keystores: Sequence[str] | None = None
    groups: Sequence[tuple[str, str]] | None = None
    activation_date: str | None = KEEP
    expiration_date: str | None = KEEP
    #: what keys made from now on get; keys made before keep theirs (changed per key: ``key update``)
    deactivate_on_rotation: bool | None = None
    #: how often its keys rotate (None: on no schedule); keys follow it without realignment (docs/rotation.md)
    rotation_policy: str | None = KEEP

    def touches_keys(self, before: KeyTemplate, after: KeyTemplate) -> bool:
        """Whether the edit changes what the template gives its keys (so they are no longer aligned)."""
        return (before.keystore_ids, before.groups, before.activation_date, before.expiration_date) != (
            after.keystore_ids,
            after.groups,
            after.activation_date,
            after.expiration_date,
        )


def _check(edit: TemplateEdit, min_interval: timedelta) -> None:
    if edit.name is not None:
        check_name("template name", edit.name)
    if edit.description is not None:
        check_description("description", edit.description)
    made.check_planned_dates(
        edit.activation_date if edit.activation_date is not KEEP else None,
        edit.expiration_date if edit.expiration_date is not KEEP else None,
    )
    check_policy(
        "key.rotation_policy", edit.rotation_policy if edit.rotation_policy is not KEEP else None, min_interval
    )


async def _edited(tx: Transaction, before: KeyTemplate, edit: TemplateEdit, ctx: ServiceContext) -> KeyTemplate:
    vault = await tx.vault_by_id(before.vault_id)
    if edit.name is not None and edit.name != before.name and await tx.template_name_taken(vault.id, edit.name):
        raise Conflict(f"vault {vault.name} already has a template named {edit.name!r}", target="name")
    keystore_ids = before.keystore_ids
    groups = before.groups
    if edit.keystores is not None:
        explicit = await made.explicit_keystores(tx, vault.id, vault.name, edit.keystores)
        made.check_key_material(before.algorithm, before.size, explicit, groups)
        keystore_ids = tuple(ks.id for ks in explicit)
    if edit.groups is not None:
        groups = made.group_entries(edit.groups)
        made.check_key_material(before.algorithm, before.size, [], groups)
    if not keystore_ids and not groups:
        raise InvalidInput(
            "a template needs at least one keystore or keystore group entry ({group, type}); to stop it making "
            "keys, archive it",
            target="keystores",
        )
    return replace(
        before,
        name=edit.name if edit.name is not None else before.name,
        description=edit.description if edit.description is not None else before.description,
        keystore_ids=keystore_ids,
        groups=groups,
        activation_date=before.activation_date if edit.activation_date is KEEP else edit.activation_date,
        expiration_date=before.expiration_date if edit.expiration_date is KEEP else edit.expiration_date,
        deactivate_on_rotation=(
            before.deactivate_on_rotation if edit.deactivate_on_rotation is None else edit.deactivate_on_rotation
        ),
        rotation_policy=before.rotation_policy if edit.rotation_policy is KEEP else edit.rotation_policy,
        updated_at=ctx.clock.now(),
        updated_by=ctx.actor.user,
    )


async def update_template(
    ctx: ServiceContext,
    ref: str,
    edit: TemplateEdit,
    expected_version: int | None = None,
    *,
    min_interval: timedelta = DEFAULT_MIN_INTERVAL,
) -> KeyTemplate:
    """Change the template; where the change is one of what it gives keys (distribution, planned dates), every
    key made from it is flagged unaligned (the audit record says how many)."""
    _check(edit, min_interval)

    async def body(tx: Transaction) -> tuple[KeyTemplate, Change]:
        before = await tx.template(ref)
        check_version(before.version, expected_version, "template", before.id)
        changed = await _edited(tx, before, edit, ctx)
        after = await tx.update_template(changed, before.version)
        detail = None
        if edit.touches_keys(before, after):
            unaligned = await tx.mark_template_keys_unaligned(after.id, changed.updated_at)
            detail = f"{unaligned} key(s) made from it are no longer aligned with it"
        return after, Change(after.id, before=before, after=after, detail=detail)

    return await ctx.change("template.update", "template", ref, body)


async def delete_template(ctx: ServiceContext, ref: str, expected_version: int | None = None) -> KeyTemplate:
    """Delete a template no key uses any more (keys it made, destroyed ones too until they are removed)."""

    async def body(tx: Transaction) -> tuple[KeyTemplate, Change]:
        template = await tx.template(ref)
        check_version(template.version, expected_version, "template", template.id)
        used = (await tx.template_key_counts([template.id]))[template.id]
        if used:
            raise RuleViolation(
                f"cannot delete template {template.name} ({template.id}): {used} managed key(s) were made from it "
                "and still exist; remove them first (or archive the template so it makes no more)",
                target="template",
            )
        await tx.delete_template(template)
        return template, Change(template.id, before=template)

    return await ctx.change("template.delete", "template", ref, body)


async def set_archived(
    ctx: ServiceContext, ref: str, archived: bool, expected_version: int | None = None
) -> KeyTemplate:
    """Archive (it makes no new keys; its keys keep working) or unarchive a template; idempotent."""
    wanted = TemplateState.ARCHIVED if archived else TemplateState.UNARCHIVED

    async def body(tx: Transaction) -> tuple[KeyTemplate, Change]:
        before = await tx.template(ref)
        check_version(before.version, expected_version, "template", before.id)
        if before.state is wanted:
            return before, Change(before.id, before=before, after=before, detail=f"already {wanted}")
        changed = replace(before, state=wanted, updated_at=ctx.clock.now(), updated_by=ctx.actor.user)
        after = await tx.update_template(changed, before.version)
        return after, Change(after.id, before=before, after=after)

    return await ctx.change("template.archive" if archived else "template.unarchive", "template", ref, body)
