"""Rotating managed keys (UKO's RotateManagedKey) and listing their versions, one audited transaction each.

The rotation is a change of desired state (domain/rotation.py); the reconciler makes it in every keystore.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from keyorch import metrics
from keyorch.domain import rotation
from keyorch.domain.errors import NotFound, RuleViolation, StaleVersion
from keyorch.domain.models import KeyVersion, ManagedKey
from keyorch.domain.states import KeyState
from keyorch.domain.validation import check_rotation_policy
from keyorch.service.context import Change, ServiceContext
from keyorch.service.versions import check_version
from keyorch.store.key_selection import KeySelection
from keyorch.store.repository import Transaction


def check_policy(field: str, value: str | None, min_interval: timedelta = rotation.DEFAULT_MIN_INTERVAL) -> str | None:
    """A template's or key's rotation policy as given (None: none), checked against the least time between two
    rotations of a key; the one check the CLI, the API and the service share."""
    return check_rotation_policy(field, value, min_interval) if value is not None else None


async def rotate_key(
    ctx: ServiceContext,
    ref: str,
    expected_version: int | None = None,
    *,
    min_interval: timedelta = rotation.DEFAULT_MIN_INTERVAL,
) -> ManagedKey:
    """Give an active key its next version; refused (naming the rule) when not active or rotated within
    ``min_interval``."""

    async def body(tx: Transaction) -> tuple[ManagedKey, Change]:
        key = await tx.key(ref)
        check_version(key.version, expected_version, "key", key.id)
        changed, version = rotation.rotate(key, ctx.clock.now(), ctx.actor.user, min_interval)
        after = await tx.update_key(changed, key.version)
        await tx.insert_key_version(key.id, version)
        return after, Change(key.id, before=key, after=after, detail=f"version {version.version}")

    return await ctx.change("key.rotate", "key", ref, body)


@dataclass(frozen=True)
class Versions:
    key: ManagedKey
    versions: list[KeyVersion]
    #: the provider's id of each version keyorch learned, by (keystore id, version)
    ids: dict[tuple[str, int], str] = field(default_factory=dict)


async def key_versions(ctx: ServiceContext, ref: str) -> Versions:
    """The key (with each keystore's version and the provider's id of its primary) and its versions."""
    async with ctx.store.read() as tx:
        key = await tx.key(ref)
        return Versions(key, await tx.key_versions(key.id), await tx.key_version_ids(key.id))


# --- schedules ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scheduled:
    """An active key on a rotation schedule, and when it rotates next (``due`` once that is not later than now)."""

    key: ManagedKey
    schedule: rotation.Schedule
    next_at: datetime
    due: bool


async def scheduled_rotations(
    ctx: ServiceContext, refs: Sequence[str] | None = None, within: Collection[str] | None = None
) -> list[Scheduled]:
    """Every active key on a schedule (or those of ``refs``), soonest first, read in one snapshot; ``within``
    (vault ids): only keys of those vaults."""
    now = ctx.clock.now()
    async with ctx.store.read() as tx:
        if refs:
            found = [await tx.key(ref, within) for ref in refs]
        else:
            vaults = frozenset(within) if within is not None else None
            found = await tx.list_keys(KeySelection(states=[KeyState.ACTIVE], vault_ids=vaults))
        policies = {t.id: t.rotation_policy for t in await tx.list_templates() if t.rotation_policy is not None}
    planned: list[Scheduled] = []
    for key in found:
        schedule = rotation.schedule_of(key, policies.get(key.template_id or ""))
        next_at = rotation.next_rotation_at(key, schedule)
        if schedule is not None and next_at is not None:
            planned.append(Scheduled(key, schedule, next_at, next_at <= now))
    return sorted(planned, key=lambda s: (s.next_at, s.key.id))


@dataclass(frozen=True)
class SchedulePass:
    """What one pass of the scheduler did: the keys it rotated, the due ones it left (another actor rotated or
    changed them first, or the rule refused), and how many are still overdue after it."""

    rotated: list[str]
    skipped: dict[str, str]
    overdue: int


async def rotate_due(
    ctx: ServiceContext,
    owns: Callable[[str], bool] = lambda _key_id: True,
    min_interval: timedelta = rotation.DEFAULT_MIN_INTERVAL,
) -> SchedulePass:
    """Rotate every active key whose scheduled rotation is due (and that ``owns`` says is this actor's), each with
    :func:`rotate_key`, the function an on-demand rotation uses: one audited transaction by ``ctx``'s actor, and
    only from the version of the key read here (its If-Match). Of several actors (replicas) seeing a key due at
    once, one rotates it: the others find another version (or the rule's hour not passed) and rotate nothing.
    A rotation moves the schedule on by a period from when it was made, so each due date rotates once."""
    rotated: list[str] = []
    skipped: dict[str, str] = {}
    for planned in await scheduled_rotations(ctx):
        if not planned.due or not owns(planned.key.id):
            continue
        try:
            # the rule first, on the key as read: a policy shorter than the limit set later waits for the limit
            # rather than leaving a refused rotation in the audit trail every pass
            rotation.check_rotation(planned.key, ctx.clock.now(), min_interval)
            await rotate_key(ctx, planned.key.id, planned.key.version, min_interval=min_interval)
        except (StaleVersion, RuleViolation, NotFound) as exc:
            skipped[planned.key.id] = exc.message
            continue
        rotated.append(planned.key.id)
    overdue = sum(1 for s in await scheduled_rotations(ctx) if s.due)
    metrics.set_keys_overdue_for_rotation(overdue)
    return SchedulePass(rotated, skipped, overdue)
