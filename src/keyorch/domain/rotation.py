"""Rotating a managed key: the rule and the change of desired state. Pure: callers pass the records and time.

A rotation gives the key its next version (1 is the one it was made with). Like any change of desired state
it bumps the key's generation and sets every live target pending: the reconciler then makes each keystore's
primary version a new one (docs/rotation.md). Only an active key rotates (the seeds' action table), and at
most once per ``min_interval`` (UKO: once per hour).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from keyorch.domain.errors import RuleViolation
from keyorch.domain.models import KeystoreType, KeyVersion, ManagedKey
from keyorch.domain.rules import check_action, pending_targets
from keyorch.domain.states import KeyAction, KeyState
from keyorch.domain.validation import Duration, parse_duration

#: UKO's limit: a key rotates at most once an hour (setting ``keys.rotation_min_interval_seconds``)
DEFAULT_MIN_INTERVAL = timedelta(hours=1)


def check_rotation(key: ManagedKey, now: datetime, min_interval: timedelta = DEFAULT_MIN_INTERVAL) -> None:
    """Refuse a rotation the action table forbids (not active) or that comes within ``min_interval`` of the
    key's last one (``min_interval`` 0: no limit), naming the rule and when the next is allowed."""
    check_action(key, KeyAction.ROTATE)
    if key.rotated_at is not None and now < key.rotated_at + min_interval:
        allowed = (key.rotated_at + min_interval).isoformat(timespec="seconds")
        raise RuleViolation(
            f"cannot rotate key {key.label} ({key.id}): it was rotated at "
            f"{key.rotated_at.isoformat(timespec='seconds')}, and a key rotates at most once every "
            f"{min_interval.total_seconds():g} s (setting keys.rotation_min_interval_seconds); "
            f"next allowed at {allowed}",
            target="rotated_at",
        )


def rotate(
    key: ManagedKey, now: datetime, user: str | None, min_interval: timedelta = DEFAULT_MIN_INTERVAL
) -> tuple[ManagedKey, KeyVersion]:
    """The key with its next version current (every live target pending), and that version's record."""
    check_rotation(key, now, min_interval)
    targets = pending_targets(key, now)
    version = KeyVersion(key.current_version + 1, now, user)
    rotated = replace(
        key,
        current_version=version.version,
        rotated_at=now,
        targets=targets,
        updated_at=now,
        updated_by=user,
        generation=key.generation + 1,
    )
    return rotated, version


#: What becomes of a rotated key's older versions in each keystore type (docs/rotation.md, "deactivate_on_rotation"):
#: ``disabled`` or ``enabled`` where the provider keeps a state per version and keyorch sets it by the key's
#: ``deactivate_on_rotation``; ``decrypt_only`` where the provider has one state for the key and every rotation
#: and keeps the older material for decryption only whatever the flag (AWS KMS, Key Protect).
DECRYPT_ONLY = "decrypt_only"

#: The keystore types that keep a state per version of a key (Key Vault's ``attributes.enabled`` per version,
#: Cloud KMS's cryptoKeyVersion ``state``): their adapters report each version's state. AWS KMS and Key Protect
#: keep one state for the key and every rotation of its material.
PER_VERSION_KINDS: frozenset[KeystoreType] = frozenset({KeystoreType.AZURE_KEY_VAULT, KeystoreType.GOOGLE_KMS})


def older_versions(kind: KeystoreType, deactivate_on_rotation: bool) -> str:
    """What a keystore of type ``kind`` does with a rotated key's older versions."""
    if kind not in PER_VERSION_KINDS:
        return DECRYPT_ONLY
    return "disabled" if deactivate_on_rotation else "enabled"


# --- schedules ----------------------------------------------------------------------------------------------------

#: the actor of the rotations keyorch makes on schedule (its audit records name it)
SCHEDULER = "scheduler"


def add_duration(start: datetime, period: Duration) -> datetime:
    """``start`` plus ``period``: its months by the calendar (the same day of the month, or the month's last day
    when it has fewer), then its days and seconds."""
    month = start.month - 1 + period.months
    year, month = start.year + month // 12, month % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return start.replace(year=year, month=month, day=day) + timedelta(days=period.days, seconds=period.seconds)


@dataclass(frozen=True)
class Schedule:
    """A key's rotation schedule: its policy (its own, else its template's) and where that comes from."""

    policy: str
    source: str  # "key" or "template"


def schedule_of(key: ManagedKey, template_policy: str | None) -> Schedule | None:
    """The key's rotation schedule: its own policy overrides its template's (``template_policy``); None: on no
    schedule."""
    if key.rotation_policy is not None:
        return Schedule(key.rotation_policy, "key")
    if template_policy is not None:
        return Schedule(template_policy, "template")
    return None


def last_rotation(key: ManagedKey) -> datetime:
    """Where the schedule counts from: the key's last rotation, else when it became active, else its creation."""
    return key.rotated_at or key.activated_at or key.created_at


def next_rotation_at(key: ManagedKey, schedule: Schedule | None) -> datetime | None:
    """When the key is due to rotate next on its schedule: its last rotation (or activation, or creation) plus
    the policy's period; None for a key not on a schedule or not active (only an active key rotates)."""
    if schedule is None or key.state is not KeyState.ACTIVE:
        return None
    return add_duration(last_rotation(key), parse_duration("rotation_policy", schedule.policy))


def due_for_rotation(key: ManagedKey, schedule: Schedule | None, now: datetime) -> bool:
    """Whether the scheduler rotates the key now: active, on a schedule, and its next rotation is not later."""
    due = next_rotation_at(key, schedule)
    return due is not None and due <= now
