"""A managed key and its template: what the template gives keys now, what realigning a key with it would
change, and which of those changes keyorch refuses to make (UKO's ``update_from_template``). Pure: callers
pass in the records and the time.

What a template gives a key, beside what is fixed at its creation (algorithm, size, name):

* its distribution: the keystores the key is to be in. A keystore the template distributes to now and the key
  has no target in gets a new target, which the reconciler provisions in the key's state. A keystore the key
  has a target in but the template no longer distributes to loses the target, but only where the keystore
  cannot hold the key: keyorch never takes a usable (active, deactivated or compromised) key out of a keystore
  as a side effect of a template edit; that stays a deliberate act (destroy the key, or disconnect the keystore).
* its planned activation and expiration dates, which the template gives as periods (``P1Y``; see
  ``planned_dates``) or as dates (a date the template does not plan stays the key's own).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from keyorch.domain.errors import InvalidInput, RuleViolation
from keyorch.domain.models import Keystore, KeyTemplate, ManagedKey, Target, TargetStatus
from keyorch.domain.rules import BLOCKS_DISCONNECT, is_destroyed, new_targets, unlink_key_from_keystore
from keyorch.domain.states import KeyState
from keyorch.domain.validation import check_label_in_keystore

_PERIOD = re.compile(r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?")

#: what a target's last observation says the keystore holds (so removing the target would leave a key there)
_HELD = frozenset({TargetStatus.ACTIVE, TargetStatus.DEACTIVATED, TargetStatus.DESTRUCTION_PENDING})


def planned_date(spec: str | None, created: date) -> date | None:
    """A template's planned key date for a key made on ``created``: its date as is, or the period after
    ``created`` (months and years end on the month's last day where the day does not exist: P1M from Jan 31
    is Feb 28 or 29). ``spec`` is already validated (validation.check_key_date)."""
    if spec is None:
        return None
    period = _PERIOD.fullmatch(spec)
    if period is None:
        return date.fromisoformat(spec)
    years, months, weeks, days = (int(part or 0) for part in period.groups())
    month_index = created.month - 1 + months + 12 * years
    year, month = created.year + month_index // 12, month_index % 12 + 1
    if year > date.max.year:
        return date.max
    day = min(created.day, calendar.monthrange(year, month)[1])
    try:
        return date(year, month, day) + timedelta(weeks=weeks, days=days)
    except OverflowError:
        return date.max


def planned_dates(template: KeyTemplate, created: date) -> tuple[date | None, date | None]:
    """The activation and expiration dates a key made on ``created`` gets from its template: the activation
    period counts from the key's creation, the expiration period from its planned activation where it has one
    (so Terraform's example, activation P5Y1M1W2D and expiration P1Y2M1W4D, plans a key to expire 1Y2M1W4D
    after it activates), from its creation otherwise. A date the template gives is taken as it is."""
    activation = planned_date(template.activation_date, created)
    return activation, planned_date(template.expiration_date, activation or created)


@dataclass(frozen=True)
class Change:
    """One difference between a key and what its template gives it now."""

    field: str  # "keystores" or "activation_date" / "expiration_date"
    description: str
    #: why keyorch will not make it (None: realigning makes it)
    blocked: str | None = None

    def describe(self) -> str:
        return self.description + (f" (refused: {self.blocked})" if self.blocked else "")


@dataclass(frozen=True)
class Realignment:
    """The key as realigning it with its template makes it, and each change (blocked ones included)."""

    key: ManagedKey
    changes: tuple[Change, ...]

    @property
    def blocked(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.blocked is not None)


def _named(keystore_id: str, known: Mapping[str, Keystore]) -> str:
    ks = known.get(keystore_id)
    return f"{ks.name} ({keystore_id})" if ks is not None else keystore_id


def _addition_blocked(key: ManagedKey) -> str | None:
    if is_destroyed(key):
        return "the key is destroyed"
    if key.state is KeyState.COMPROMISED:
        return "a compromised key is not copied to more keystores"
    return None


def _removal_blocked(key: ManagedKey, target: Target) -> str | None:
    if key.state in BLOCKS_DISCONNECT:
        return (
            f"the key is {key.state}, so the keystore holds it usable; keyorch does not take it out as a side "
            "effect of a template change: destroy the key, or put the keystore back in the template"
        )
    if target.status in _HELD:
        return f"keyorch last saw the key there as {target.status}; run `keyorch sync-key` to look again"
    return None


def _date_change(name: str, before: date | None, after: date | None) -> Change | None:
    if before == after:
        return None
    shown = (before.isoformat() if before else "none", after.isoformat() if after else "none")
    return Change(name, f"{name} {shown[0]} -> {shown[1]}")


def _label_or_why(key: ManagedKey, keystore: Keystore, holders: Mapping[str, str]) -> tuple[str | None, str | None]:
    """What a keystore the key is added to will call it (its name, by the keystore type's rule), or why it cannot."""
    try:
        label = check_label_in_keystore(keystore.type, key.name, keystore.name)
    except InvalidInput as exc:
        return None, exc.message
    holder = holders.get(keystore.id)
    if holder is not None:
        return None, f"keystore {keystore.name} already holds managed key {holder} as {label!r}"
    return label, None


def realign(
    key: ManagedKey,
    template: KeyTemplate,
    distribution: Sequence[Keystore],
    known: Mapping[str, Keystore],
    now: datetime,
    holders: Mapping[str, str] | None = None,
) -> Realignment:
    """What realigning ``key`` with ``template`` changes. ``distribution``: the connected keystores the
    template distributes to now (service.templates.distribution); ``known``: the key's keystores by id;
    ``holders``: keystore id -> the other managed key that keystore already holds under this key's name."""
    live = {t.keystore_id: t for t in key.targets if t.status is not TargetStatus.REMOVED}
    changes: list[Change] = []
    key_after = key
    if not is_destroyed(key):  # a destroyed key is in no keystore and stays there
        added = [ks for ks in distribution if ks.id not in live]
        labels: dict[str, str | None] = {}
        for ks in added:
            label, why = _label_or_why(key, ks, holders or {})
            why = _addition_blocked(key) or why
            changes.append(Change("keystores", f"add keystore {ks.name} ({ks.id})", why))
            if why is None:
                labels[ks.id] = label
        if labels:
            key_after = replace(key_after, targets=key_after.targets + new_targets(labels, now))
        wanted = {ks.id for ks in distribution}
        for keystore_id, target in live.items():
            if keystore_id in wanted:
                continue
            why = _removal_blocked(key, target)
            changes.append(Change("keystores", f"remove keystore {_named(keystore_id, known)}", why))
            if why is None:
                key_after = unlink_key_from_keystore(key_after, keystore_id, now)
    planned = planned_dates(template, key.created_at.date())
    # a date the template does not plan stays what the key has (set with PATCH /managed_keys/{id})
    activation = planned[0] if template.activation_date else key.activation_date
    expiration = planned[1] if template.expiration_date else key.expiration_date
    for change in (
        _date_change("activation_date", key.activation_date, activation),
        _date_change("expiration_date", key.expiration_date, expiration),
    ):
        if change is not None:
            changes.append(change)
    key_after = replace(key_after, activation_date=activation, expiration_date=expiration)
    return Realignment(replace(key_after, template_aligned=True, updated_at=now), tuple(changes))


def check_realignment(key: ManagedKey, plan: Realignment) -> None:
    """Refuse a realignment while any of its changes is blocked, naming each and why."""
    if plan.blocked:
        shown = "; ".join(f"{c.description}: {c.blocked}" for c in plan.blocked)
        raise RuleViolation(f"cannot update key {key.label} ({key.id}) from its template: {shown}", target="template")
