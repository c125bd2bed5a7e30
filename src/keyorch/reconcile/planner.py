"""The planner, pure: from a key's desired state, a target's last known status and what the
keystore shows now, decide the actions to take and the target's status, sync flag and reason.

Intent versus drift (level-triggered, like a Kubernetes controller's generation check):
- *intent*: the desired state moved since this target was last brought in line
  (``target.synced_generation < key.generation``): keyorch was asked, so it pushes, and keeps
  pushing until it succeeds;
- *drift*: the target was in line with the current desired state and now is not: someone changed
  the key in the keystore. It is flagged, not overwritten, unless the keystore's drift policy is
  ``remediate`` or a user asked to push (``sync-key``).
Destroying keys a user did not ask to destroy is never planned: a key present where the desired
state is pre-active is flagged only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from keyorch.domain.models import DriftPolicy, Keystore, ManagedKey, SyncFlag, SyncReason, Target, TargetStatus
from keyorch.domain.rules import BLOCKS_DISCONNECT
from keyorch.domain.states import KeyState
from keyorch.providers.base import PER_VERSION_KINDS, Observation

R = SyncReason


class Action(StrEnum):
    CREATE = "create"  # ensure_key: create under the deterministic identity (idempotent)
    ENABLE = "enable"
    DISABLE = "disable"
    SCHEDULE_DESTRUCTION = "schedule_destruction"
    ROTATE = "rotate"  # a new primary version, unless one made since the recorded base already is (in doubt)
    DISABLE_OLDER = "disable_older_versions"  # every version but the primary disabled (deactivate_on_rotation)


#: Whether keyorch can undo an action, and how (shown by `keyorch plan`).
UNDO: dict[Action, str] = {
    Action.CREATE: "yes: the new key can be destroyed again",
    Action.ENABLE: "yes: disable it again",
    Action.DISABLE: "yes: enable it again",
    Action.SCHEDULE_DESTRUCTION: "not by keyorch; in the provider only while destruction is pending",
    Action.ROTATE: "no: the provider keeps the older version, which still decrypts what it encrypted",
    Action.DISABLE_OLDER: "yes: enable the older versions again (deactivate_on_rotation off, then sync)",
}

#: The providers' default pending-destruction windows, in days (for the plan's "until when").
DESTRUCTION_WINDOW_DAYS: dict[str, int] = {
    "aws_kms": 30,
    "azure_key_vault": 90,
    "google_kms": 30,
    "ibm_key_protect": 30,
}


class Observed(StrEnum):
    """What a keystore holds for a managed key, reduced to what the rules care about."""

    ABSENT = "absent"
    ACTIVE = "active"
    DEACTIVATED = "deactivated"
    PENDING_DESTRUCTION = "pending_destruction"
    DESTROYED = "destroyed"
    UNREACHABLE = "unreachable"


def classify(observation: Observation | None) -> Observed:
    if observation is None:
        return Observed.ABSENT
    if observation.destruction_pending:
        return Observed.PENDING_DESTRUCTION
    return {
        KeyState.ACTIVE: Observed.ACTIVE,
        KeyState.DEACTIVATED: Observed.DEACTIVATED,
        KeyState.DESTROYED: Observed.DESTROYED,
        KeyState.PRE_ACTIVE: Observed.DEACTIVATED,  # e.g. Key Protect's pre-active key: present, not usable
    }[observation.state]


_STATUS: dict[Observed, TargetStatus] = {
    Observed.ABSENT: TargetStatus.NOT_PRESENT,
    Observed.ACTIVE: TargetStatus.ACTIVE,
    Observed.DEACTIVATED: TargetStatus.DEACTIVATED,
    Observed.PENDING_DESTRUCTION: TargetStatus.DESTRUCTION_PENDING,
    Observed.DESTROYED: TargetStatus.DESTROYED,
}

A, D, P, X = Observed.ACTIVE, Observed.DEACTIVATED, Observed.PENDING_DESTRUCTION, Observed.DESTROYED
GONE = Observed.ABSENT

#: For each desired state: which observations are in line (with the reason), and for the others
#: the reason they are out of line and the actions that bring them in line (empty: none can).
_IN_LINE: dict[KeyState, dict[Observed, SyncReason]] = {
    KeyState.PRE_ACTIVE: {
        GONE: R.PRE_ACTIVE_KEY_IS_NOT_PRESENT_IN_KEYSTORE,
        X: R.PRE_ACTIVE_KEY_IS_NOT_PRESENT_IN_KEYSTORE,
    },
    KeyState.ACTIVE: {A: R.ACTIVE_KEY_IS_ACTIVE_IN_KEYSTORE},
    KeyState.DEACTIVATED: {D: R.DEACTIVATED_KEY_IS_DEACTIVATED_IN_KEYSTORE},
    KeyState.DESTROYED: {
        GONE: R.DESTROYED_KEY_IS_NOT_PRESENT_IN_KEYSTORE,
        X: R.DESTROYED_KEY_IS_NOT_PRESENT_IN_KEYSTORE,
        P: R.DESTROYED_KEY_IS_NOT_PRESENT_IN_KEYSTORE,
    },
}
_IN_LINE[KeyState.COMPROMISED] = _IN_LINE[KeyState.DEACTIVATED]
_IN_LINE[KeyState.DESTROYED_COMPROMISED] = _IN_LINE[KeyState.DESTROYED]

_FIX: dict[KeyState, dict[Observed, tuple[SyncReason, tuple[Action, ...]]]] = {
    KeyState.PRE_ACTIVE: {
        A: (R.PRE_ACTIVE_KEY_IS_PRESENT_IN_KEYSTORE, ()),
        D: (R.PRE_ACTIVE_KEY_IS_PRESENT_IN_KEYSTORE, ()),
        P: (R.PRE_ACTIVE_KEY_IS_PRESENT_IN_KEYSTORE, ()),
    },
    KeyState.ACTIVE: {
        GONE: (R.ACTIVE_KEY_IS_NOT_ACTIVE_IN_KEYSTORE, (Action.CREATE,)),
        D: (R.ACTIVE_KEY_IS_NOT_ACTIVE_IN_KEYSTORE, (Action.ENABLE,)),
        P: (R.ACTIVE_KEY_IS_NOT_ACTIVE_IN_KEYSTORE, ()),
        X: (R.ACTIVE_KEY_IS_NOT_ACTIVE_IN_KEYSTORE, ()),
    },
    KeyState.DEACTIVATED: {
        GONE: (R.DEACTIVATED_KEY_IS_NOT_DEACTIVATED_IN_KEYSTORE, (Action.CREATE, Action.DISABLE)),
        A: (R.DEACTIVATED_KEY_IS_NOT_DEACTIVATED_IN_KEYSTORE, (Action.DISABLE,)),
        P: (R.DEACTIVATED_KEY_IS_NOT_DEACTIVATED_IN_KEYSTORE, ()),
        X: (R.DEACTIVATED_KEY_IS_NOT_DEACTIVATED_IN_KEYSTORE, ()),
    },
    KeyState.DESTROYED: {
        # disabled first: should the keystore refuse the destruction (Key Protect: registrations, its own
        # dual authorization), the key is at least no longer usable while keyorch retries
        A: (R.DESTROYED_KEY_IS_PRESENT_IN_KEYSTORE, (Action.DISABLE, Action.SCHEDULE_DESTRUCTION)),
        D: (R.DESTROYED_KEY_IS_PRESENT_IN_KEYSTORE, (Action.SCHEDULE_DESTRUCTION,)),
    },
}
#: A compromised key is held disabled like a deactivated one, but never made again where it is gone
#: (its material is exposed: a new key there would only carry the name); nothing re-enables it.
_FIX[KeyState.COMPROMISED] = {
    **_FIX[KeyState.DEACTIVATED],
    GONE: (R.DEACTIVATED_KEY_IS_NOT_DEACTIVATED_IN_KEYSTORE, ()),
}
_FIX[KeyState.DESTROYED_COMPROMISED] = _FIX[KeyState.DESTROYED]


#: The clocks of the processes that stamp target records (API servers, CLI one-shots, replicas) may
#: differ a little: a listing that started within this margin after a record's last change is not
#: trusted to be newer than it.
LISTING_MARGIN = timedelta(seconds=2)


def listing_decides(target: Target, taken_at: datetime) -> bool:
    """Whether an observation from a listing that started at ``taken_at`` may decide for ``target``.

    An observation older than an intent decides nothing: every desired-state change stamps each of
    the key's targets (``apply_state_change``), and so does every result the reconciler records, so a
    listing that started before the target's record last changed may neither satisfy the new desired
    state (recording "in sync" with no call made) nor flag it as drift. Such a target is read afresh.
    """
    return target.updated_at is not None and taken_at >= target.updated_at + LISTING_MARGIN


def _version_behind(key: ManagedKey, target: Target) -> bool:
    """Whether an active key's keystore serves an older version than the key's current one."""
    return key.state is KeyState.ACTIVE and target.key_version < key.current_version


def version_drift(key: ManagedKey, observation: Observation | None) -> tuple[SyncReason, Action, str] | None:
    """Whether the keystore's older versions are out of line although the key itself is (its primary's state),
    judged over every version the observation reports (``Observation.versions``; none reported: nothing to judge).
    A deactivated (or compromised) key has no usable version; an active key's older versions are enabled, or,
    with ``deactivate_on_rotation``, disabled. A destroyed or destruction-scheduled version is out of use for
    good either way. Returns the reason, the action that fixes it and what is wrong, in words."""
    versions = observation.versions if observation is not None else None
    if not versions:
        return None
    older = [v for v in versions if not v.primary and not v.destroyed]
    enabled = [v.version_id for v in older if v.enabled]
    state = key.state.in_keystores
    if state is KeyState.DEACTIVATED or (state is KeyState.ACTIVE and key.deactivate_on_rotation):
        if enabled:
            what = "deactivated" if state is KeyState.DEACTIVATED else "active with deactivate_on_rotation"
            return (
                R.OLDER_KEY_VERSION_IS_ENABLED_IN_KEYSTORE,
                Action.DISABLE if state is KeyState.DEACTIVATED else Action.DISABLE_OLDER,
                f"older version(s) {', '.join(enabled)[:120]} enabled in the keystore, the key is {what}",
            )
    elif state is KeyState.ACTIVE:
        disabled = [v.version_id for v in older if not v.enabled]
        if disabled:
            return (
                R.OLDER_KEY_VERSION_IS_DISABLED_IN_KEYSTORE,
                Action.ENABLE,
                f"older version(s) {', '.join(disabled)[:120]} disabled in the keystore: they no longer decrypt "
                "what they encrypted",
            )
    return None


def _disables_older(key: ManagedKey, keystore: Keystore) -> bool:
    """Whether an active key's rotation or enabling there is followed by disabling its older versions."""
    return key.deactivate_on_rotation and keystore.type in PER_VERSION_KINDS


@dataclass(frozen=True)
class TargetPlan:
    """The decision for one (key, keystore): actions to run now, and the target's new record."""

    keystore_id: str
    observed: Observed
    actions: tuple[Action, ...]
    target: Target
    drift: bool  # out of line although the desired state did not move
    blocked: str | None = None  # why nothing is done although out of line

    @property
    def in_sync(self) -> bool:
        return self.target.sync_flag is SyncFlag.IN_SYNC


def plan_target(
    key: ManagedKey,
    target: Target,
    keystore: Keystore,
    observation: Observation | None,
    now: datetime,
    *,
    push: bool = False,
    unreachable: str | None = None,
) -> TargetPlan:
    """Decide for one target. ``unreachable`` carries the connection error when the keystore
    could not be asked; ``push`` is a user's "Sync key" (push the desired state regardless)."""
    if target.status is TargetStatus.REMOVED or not keystore.connected:
        reason = (
            R.TARGET_KEYSTORE_REMOVED_BY_USER_CONTAINS_AN_ACTIVE_KEY
            if key.state in BLOCKS_DISCONNECT
            else R.TARGET_KEYSTORE_REMOVED_BY_USER
        )
        record = target.with_changes(status=TargetStatus.REMOVED, reason=reason, sync_flag=SyncFlag.IN_SYNC)
        return TargetPlan(target.keystore_id, GONE, (), record, drift=False, blocked="the keystore was disconnected")

    intent = (target.synced_generation or 0) < key.generation
    if unreachable is not None:
        record = target.with_changes(
            sync_flag=SyncFlag.OUT_OF_SYNC, reason=R.CONNECTION_ERROR, last_error=unreachable[:500], updated_at=now
        )
        return TargetPlan(target.keystore_id, Observed.UNREACHABLE, (), record, drift=False, blocked=unreachable)

    observed = classify(observation)
    status = _STATUS[observed]
    common = {
        "status": status,
        "key_id_in_keystore": observation.key_id_in_keystore if observation else target.key_id_in_keystore,
        "pending_destruction_until": observation.pending_until if observation else None,
        "updated_at": now,
    }
    in_line = _IN_LINE[key.state].get(observed)
    behind = _version_behind(key, target)
    drifted = version_drift(key, observation) if in_line is not None and not behind else None
    if in_line is not None and (behind or drifted is not None):
        # the key is as it should be there but for its versions: a rotation (the primary is an older version)
        # or setting the older versions' state brings it in line
        if drifted is not None:
            reason, fix, what = drifted
            actions: tuple[Action, ...] = (fix,)
        else:
            reason, what = R.KEY_VERSION_IS_NOT_CURRENT_IN_KEYSTORE, "the keystore serves an older version"
            actions = (Action.ROTATE, Action.DISABLE_OLDER) if _disables_older(key, keystore) else (Action.ROTATE,)
        record = target.with_changes(**common, sync_flag=SyncFlag.PENDING, reason=reason)
        if intent or push or keystore.drift_policy is DriftPolicy.REMEDIATE:
            return TargetPlan(target.keystore_id, observed, actions, record, drift=not intent)
        stays = f"{what} (changed outside keyorch?); flagged (drift policy 'flag')"
        record = record.with_changes(sync_flag=SyncFlag.OUT_OF_SYNC)
        return TargetPlan(target.keystore_id, observed, (), record, drift=not intent, blocked=stays)
    if in_line is not None:
        record = target.with_changes(
            **common,
            sync_flag=SyncFlag.IN_SYNC,
            reason=in_line,
            last_error=None,
            synced_generation=key.generation,
            attempts=0,
            next_attempt_at=None,
        )
        return TargetPlan(target.keystore_id, observed, (), record, drift=False)

    reason, actions = _FIX[key.state][observed]
    if target.adopted and Action.CREATE in actions:
        # the key keyorch adopted (existing data depends on its material) is gone: another key made in its place
        # would only carry its name, so keyorch flags it and makes none
        actions = ()
    if behind and actions and Action.CREATE not in actions:
        actions = (*actions, Action.ROTATE)  # e.g. re-enabled, then made current
    if Action.ENABLE in actions and _disables_older(key, keystore):
        actions = (*actions, Action.DISABLE_OLDER)  # only the primary was enabled; any older one enabled is not
    drift = not intent
    may_act = intent or push or keystore.drift_policy is DriftPolicy.REMEDIATE
    blocked = None
    if not actions and target.adopted and observed is GONE:
        blocked = "the adopted key is gone from the keystore; keyorch makes no other key in its place"
    elif not actions:
        blocked = f"keyorch cannot bring a key that is {observed} in the keystore to {key.state}"
    elif not may_act:
        blocked = "changed outside keyorch; flagged, not overwritten (drift policy 'flag')"
        actions = ()
    flag = SyncFlag.PENDING if actions else SyncFlag.OUT_OF_SYNC
    record = target.with_changes(**common, sync_flag=flag, reason=reason)
    return TargetPlan(target.keystore_id, observed, actions, record, drift=drift, blocked=blocked)
