"""The planner, table-driven: every desired state x observed state x (intent | drift | push | remediate)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from tests.domain.factories import make_key, make_keystore

from keyorch.domain.models import DriftPolicy, KeystoreStatus, SyncFlag, SyncReason, TargetStatus
from keyorch.domain.states import KeyState
from keyorch.providers.base import KeyVersion, Observation
from keyorch.reconcile.planner import Action, Observed, plan_target, version_drift

NOW = datetime(2026, 3, 1, tzinfo=UTC)
UNTIL = NOW + timedelta(days=30)
S = KeyState
R = SyncReason
C, E, Dis, SD = Action.CREATE, Action.ENABLE, Action.DISABLE, Action.SCHEDULE_DESTRUCTION
OK, OUT, PEND = SyncFlag.IN_SYNC, SyncFlag.OUT_OF_SYNC, SyncFlag.PENDING


def observation(observed: Observed) -> Observation | None:
    match observed:
        case Observed.ABSENT:
            return None
        case Observed.ACTIVE:
            return Observation("kid", "k1", S.ACTIVE)
        case Observed.DEACTIVATED:
            return Observation("kid", "k1", S.DEACTIVATED)
        case Observed.PENDING_DESTRUCTION:
            return Observation("kid", "k1", S.DEACTIVATED, destruction_pending=True, pending_until=UNTIL)
        case Observed.DESTROYED:
            return Observation("kid", "k1", S.DESTROYED)
    raise AssertionError(observed)


GONE, ACT, DEACT, PEND_D, DESTR = (
    Observed.ABSENT,
    Observed.ACTIVE,
    Observed.DEACTIVATED,
    Observed.PENDING_DESTRUCTION,
    Observed.DESTROYED,
)

# (desired, observed) -> (reason, actions when pushing; () = in line or nothing keyorch can do, in_line)
TABLE: dict[tuple[S, Observed], tuple[SyncReason, tuple[Action, ...], bool]] = {
    (S.PRE_ACTIVE, GONE): (R.PRE_ACTIVE_KEY_IS_NOT_PRESENT_IN_KEYSTORE, (), True),
    (S.PRE_ACTIVE, DESTR): (R.PRE_ACTIVE_KEY_IS_NOT_PRESENT_IN_KEYSTORE, (), True),
    (S.PRE_ACTIVE, ACT): (R.PRE_ACTIVE_KEY_IS_PRESENT_IN_KEYSTORE, (), False),
    (S.PRE_ACTIVE, DEACT): (R.PRE_ACTIVE_KEY_IS_PRESENT_IN_KEYSTORE, (), False),
    (S.PRE_ACTIVE, PEND_D): (R.PRE_ACTIVE_KEY_IS_PRESENT_IN_KEYSTORE, (), False),
    (S.ACTIVE, ACT): (R.ACTIVE_KEY_IS_ACTIVE_IN_KEYSTORE, (), True),
    (S.ACTIVE, GONE): (R.ACTIVE_KEY_IS_NOT_ACTIVE_IN_KEYSTORE, (C,), False),
    (S.ACTIVE, DEACT): (R.ACTIVE_KEY_IS_NOT_ACTIVE_IN_KEYSTORE, (E,), False),
    (S.ACTIVE, PEND_D): (R.ACTIVE_KEY_IS_NOT_ACTIVE_IN_KEYSTORE, (), False),
    (S.ACTIVE, DESTR): (R.ACTIVE_KEY_IS_NOT_ACTIVE_IN_KEYSTORE, (), False),
    (S.DEACTIVATED, DEACT): (R.DEACTIVATED_KEY_IS_DEACTIVATED_IN_KEYSTORE, (), True),
    (S.DEACTIVATED, ACT): (R.DEACTIVATED_KEY_IS_NOT_DEACTIVATED_IN_KEYSTORE, (Dis,), False),
    (S.DEACTIVATED, GONE): (R.DEACTIVATED_KEY_IS_NOT_DEACTIVATED_IN_KEYSTORE, (C, Dis), False),
    (S.DEACTIVATED, PEND_D): (R.DEACTIVATED_KEY_IS_NOT_DEACTIVATED_IN_KEYSTORE, (), False),
    (S.DEACTIVATED, DESTR): (R.DEACTIVATED_KEY_IS_NOT_DEACTIVATED_IN_KEYSTORE, (), False),
    (S.DESTROYED, GONE): (R.DESTROYED_KEY_IS_NOT_PRESENT_IN_KEYSTORE, (), True),
    (S.DESTROYED, DESTR): (R.DESTROYED_KEY_IS_NOT_PRESENT_IN_KEYSTORE, (), True),
    (S.DESTROYED, PEND_D): (R.DESTROYED_KEY_IS_NOT_PRESENT_IN_KEYSTORE, (), True),
    (S.DESTROYED, ACT): (R.DESTROYED_KEY_IS_PRESENT_IN_KEYSTORE, (Dis, SD), False),
    (S.DESTROYED, DEACT): (R.DESTROYED_KEY_IS_PRESENT_IN_KEYSTORE, (SD,), False),
    # compromised: held disabled like deactivated, but never made again where it is gone
    (S.COMPROMISED, DEACT): (R.DEACTIVATED_KEY_IS_DEACTIVATED_IN_KEYSTORE, (), True),
    (S.COMPROMISED, ACT): (R.DEACTIVATED_KEY_IS_NOT_DEACTIVATED_IN_KEYSTORE, (Dis,), False),
    (S.COMPROMISED, GONE): (R.DEACTIVATED_KEY_IS_NOT_DEACTIVATED_IN_KEYSTORE, (), False),
    (S.COMPROMISED, PEND_D): (R.DEACTIVATED_KEY_IS_NOT_DEACTIVATED_IN_KEYSTORE, (), False),
    (S.COMPROMISED, DESTR): (R.DEACTIVATED_KEY_IS_NOT_DEACTIVATED_IN_KEYSTORE, (), False),
    (S.DESTROYED_COMPROMISED, GONE): (R.DESTROYED_KEY_IS_NOT_PRESENT_IN_KEYSTORE, (), True),
    (S.DESTROYED_COMPROMISED, DESTR): (R.DESTROYED_KEY_IS_NOT_PRESENT_IN_KEYSTORE, (), True),
    (S.DESTROYED_COMPROMISED, PEND_D): (R.DESTROYED_KEY_IS_NOT_PRESENT_IN_KEYSTORE, (), True),
    (S.DESTROYED_COMPROMISED, ACT): (R.DESTROYED_KEY_IS_PRESENT_IN_KEYSTORE, (Dis, SD), False),
    (S.DESTROYED_COMPROMISED, DEACT): (R.DESTROYED_KEY_IS_PRESENT_IN_KEYSTORE, (SD,), False),
}

MODES = ["intent", "drift", "push", "remediate"]


def test_table_is_complete() -> None:
    assert len(TABLE) == len(S) * 5


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("desired", "observed"), list(TABLE))
def test_every_case(desired: S, observed: Observed, mode: str) -> None:
    reason, fix, in_line = TABLE[(desired, observed)]
    key = replace(make_key(desired), generation=4)
    synced = 3 if mode == "intent" else 4
    target = replace(key.targets[0], synced_generation=synced, status=TargetStatus.ACTIVE)
    keystore = make_keystore()
    if mode == "remediate":
        keystore = replace(keystore, drift_policy=DriftPolicy.REMEDIATE)
    plan = plan_target(key, target, keystore, observation(observed), NOW, push=(mode == "push"))
    assert plan.target.reason is reason
    assert plan.observed is observed
    if in_line:
        assert plan.actions == () and plan.target.sync_flag is OK
        assert plan.target.synced_generation == 4 and plan.target.attempts == 0 and not plan.drift
        return
    acts = mode in ("intent", "push", "remediate")
    assert plan.actions == (fix if acts else ())
    assert plan.target.sync_flag is (PEND if plan.actions else OUT)
    assert plan.target.synced_generation == synced  # only an in-line observation advances it
    assert plan.drift is (mode != "intent")
    if not plan.actions:
        assert plan.blocked


def test_status_and_pending_date_recorded() -> None:
    key = make_key(S.DESTROYED)
    plan = plan_target(key, key.targets[0], make_keystore(), observation(PEND_D), NOW)
    assert plan.target.status is TargetStatus.DESTRUCTION_PENDING
    assert plan.target.pending_destruction_until == UNTIL
    assert plan.target.key_id_in_keystore == "kid"


def test_unreachable_keystore_flags_connection_error_and_keeps_intent() -> None:
    key = replace(make_key(S.ACTIVE), generation=2)
    target = replace(key.targets[0], synced_generation=1)
    plan = plan_target(key, target, make_keystore(), None, NOW, unreachable="connection refused")
    assert (plan.target.sync_flag, plan.target.reason) == (OUT, R.CONNECTION_ERROR)
    assert plan.actions == () and plan.target.synced_generation == 1
    assert plan.target.last_error == "connection refused"


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (S.PRE_ACTIVE, R.TARGET_KEYSTORE_REMOVED_BY_USER),
        (S.DESTROYED, R.TARGET_KEYSTORE_REMOVED_BY_USER),
        (S.ACTIVE, R.TARGET_KEYSTORE_REMOVED_BY_USER_CONTAINS_AN_ACTIVE_KEY),
        (S.DEACTIVATED, R.TARGET_KEYSTORE_REMOVED_BY_USER_CONTAINS_AN_ACTIVE_KEY),
    ],
)
def test_disconnected_keystore(state: S, reason: SyncReason) -> None:
    key = make_key(state)
    keystore = replace(make_keystore(), status=KeystoreStatus.DISCONNECTED)
    plan = plan_target(key, key.targets[0], keystore, observation(ACT), NOW, push=True)
    assert plan.actions == () and plan.target.reason is reason and plan.target.status is TargetStatus.REMOVED


@pytest.mark.parametrize(
    ("desired", "observed", "actions", "reason"),
    [
        (S.ACTIVE, ACT, (Action.ROTATE,), R.KEY_VERSION_IS_NOT_CURRENT_IN_KEYSTORE),
        (S.ACTIVE, DEACT, (E, Action.ROTATE), R.ACTIVE_KEY_IS_NOT_ACTIVE_IN_KEYSTORE),
        (S.ACTIVE, GONE, (C,), R.ACTIVE_KEY_IS_NOT_ACTIVE_IN_KEYSTORE),  # made at the current version
        (S.DEACTIVATED, DEACT, (), R.DEACTIVATED_KEY_IS_DEACTIVATED_IN_KEYSTORE),  # rotated once reactivated
    ],
)
def test_a_keystore_behind_the_keys_version_is_rotated(
    desired: S, observed: Observed, actions: tuple[Action, ...], reason: SyncReason
) -> None:
    key = replace(make_key(desired), current_version=3, generation=2)
    [target] = key.targets
    target = target.with_changes(key_version=2, primary_version_id="p2", synced_generation=1)
    plan = plan_target(key, target, make_keystore(), observation(observed), NOW)
    assert (plan.actions, plan.target.reason) == (actions, reason)
    assert plan.target.key_version == 2  # set only once the rotation is made


def test_a_version_behind_without_an_intent_is_flagged_not_rotated() -> None:
    key = replace(make_key(S.ACTIVE), current_version=2)
    [target] = key.targets
    target = target.with_changes(key_version=1, synced_generation=key.generation)
    plan = plan_target(key, target, make_keystore(), observation(ACT), NOW)
    assert plan.actions == () and plan.target.sync_flag is OUT and plan.drift


def versions(*states: tuple[bool, bool, bool]) -> tuple[KeyVersion, ...]:
    """(primary, enabled, destroyed) per version, oldest first."""
    return tuple(KeyVersion(str(n), None, p, e, d) for n, (p, e, d) in enumerate(states, start=1))


OLD_ON, OLD_OFF, OLD_GONE, PRIMARY_ON, PRIMARY_OFF = (
    (False, True, False),
    (False, False, False),
    (False, False, True),
    (True, True, False),
    (True, False, False),
)


@pytest.mark.parametrize(
    ("desired", "state", "held", "deactivate_on_rotation", "expected"),
    [
        # deactivated: no version usable; an older one enabled is drift, fixed by disabling every version
        (S.DEACTIVATED, S.DEACTIVATED, (OLD_ON, PRIMARY_OFF), False, (R.OLDER_KEY_VERSION_IS_ENABLED_IN_KEYSTORE, Dis)),
        (S.COMPROMISED, S.DEACTIVATED, (OLD_ON, PRIMARY_OFF), False, (R.OLDER_KEY_VERSION_IS_ENABLED_IN_KEYSTORE, Dis)),
        (S.DEACTIVATED, S.DEACTIVATED, (OLD_OFF, PRIMARY_OFF), False, None),
        (S.DEACTIVATED, S.DEACTIVATED, (OLD_GONE, PRIMARY_OFF), False, None),
        # active: the older versions enabled (they decrypt what they encrypted) ...
        (S.ACTIVE, S.ACTIVE, (OLD_ON, PRIMARY_ON), False, None),
        (S.ACTIVE, S.ACTIVE, (OLD_OFF, PRIMARY_ON), False, (R.OLDER_KEY_VERSION_IS_DISABLED_IN_KEYSTORE, E)),
        (S.ACTIVE, S.ACTIVE, (OLD_GONE, PRIMARY_ON), False, None),  # destroyed for good: not drift
        # ... or, with deactivate_on_rotation, disabled
        (S.ACTIVE, S.ACTIVE, (OLD_OFF, PRIMARY_ON), True, None),
        (
            S.ACTIVE,
            S.ACTIVE,
            (OLD_OFF, OLD_ON, PRIMARY_ON),
            True,
            (R.OLDER_KEY_VERSION_IS_ENABLED_IN_KEYSTORE, Action.DISABLE_OLDER),
        ),
    ],
)
def test_drift_is_judged_over_every_version(
    desired: S,
    state: S,
    held: tuple[tuple[bool, bool, bool], ...],
    deactivate_on_rotation: bool,
    expected: tuple[SyncReason, Action] | None,
) -> None:
    key = replace(make_key(desired), deactivate_on_rotation=deactivate_on_rotation)
    [target] = key.targets
    target = target.with_changes(synced_generation=key.generation)  # no intent: drift
    seen = Observation("kid", "k1", state, versions=versions(*held))
    drifted = version_drift(key, seen)
    assert (drifted[:2] if drifted else None) == expected
    flagged = plan_target(key, target, make_keystore(), seen, NOW)
    pushed = plan_target(key, target, make_keystore(), seen, NOW, push=True)
    if expected is None:
        assert flagged.in_sync and pushed.actions == ()
    else:
        assert (flagged.actions, flagged.target.sync_flag, flagged.drift) == ((), OUT, True)
        assert flagged.target.reason is expected[0] and flagged.blocked and "flagged" in flagged.blocked
        assert (pushed.actions, pushed.target.reason) == ((expected[1],), expected[0])


def test_without_versions_observed_only_the_key_state_is_judged() -> None:
    key = make_key(S.DEACTIVATED)
    [target] = key.targets
    plan = plan_target(key, target, make_keystore(), Observation("kid", "k1", S.DEACTIVATED), NOW)
    assert plan.in_sync
