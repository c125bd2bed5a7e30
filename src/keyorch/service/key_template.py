"""A managed key and the template it was made from: what realigning it with the template would change
(``dry_run``), and realigning it (UKO's ``update_from_template``).

The change is one of the key's desired state: new targets for the keystores the template distributes to now,
which the reconciler provisions as for any new target; the key is written through the store's key update, in
one audited transaction, as every key change is.
"""

from __future__ import annotations

from dataclasses import replace

from keyorch.domain import alignment
from keyorch.domain.errors import InvalidInput
from keyorch.domain.models import Keystore, ManagedKey
from keyorch.domain.validation import check_label_in_keystore
from keyorch.service import templates
from keyorch.service.context import Change, ServiceContext
from keyorch.service.keys import name_holder
from keyorch.service.versions import check_version
from keyorch.store.repository import Transaction


async def _plan(tx: Transaction, ctx: ServiceContext, ref: str) -> tuple[ManagedKey, alignment.Realignment]:
    key = await tx.key(ref)
    if key.template_id is None:
        raise InvalidInput(f"key {key.label} ({key.id}) was not made from a template", target="template")
    template = await tx.template(key.template_id)
    distribution: list[Keystore] = await templates.distribution(tx, template)
    known = await tx.keystores_by_id({t.keystore_id for t in key.targets})
    holders: dict[str, str] = {}
    for ks in distribution:
        try:
            label = check_label_in_keystore(ks.type, key.name, ks.name)
        except InvalidInput:
            continue  # realign says why it cannot be added
        holder = await name_holder(tx, ks, label)
        if holder is not None and holder != key.id:
            holders[ks.id] = holder
    return key, alignment.realign(key, template, distribution, known, ctx.clock.now(), holders)


async def preview_update_from_template(ctx: ServiceContext, ref: str) -> tuple[ManagedKey, alignment.Realignment]:
    """What realigning the key would change (blocked changes included, with why); nothing is changed."""
    async with ctx.store.read() as tx:
        return await _plan(tx, ctx, ref)


async def update_from_template(
    ctx: ServiceContext, ref: str, expected_version: int | None = None
) -> tuple[ManagedKey, alignment.Realignment]:
    """Realign the key with its template: new targets where the template distributes to now, targets of keystores
    it no longer lists detached where the key is not installed; refused (naming the keystores) while a change is
    blocked. The key is aligned with its template afterwards."""

    async def body(tx: Transaction) -> tuple[tuple[ManagedKey, alignment.Realignment], Change]:
        key, plan = await _plan(tx, ctx, ref)
        check_version(key.version, expected_version, "key", key.id)
        alignment.check_realignment(key, plan)
        after = await tx.update_key(replace(plan.key, updated_by=ctx.actor.user), key.version)
        detail = "; ".join(c.describe() for c in plan.changes) or "no change to the distribution"
        return (after, plan), Change(key.id, before=key, after=after, detail=detail)

    return await ctx.change("key.update_from_template", "key", ref, body)
