"""Each lifecycle rule through the pure domain functions."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from tests.domain.factories import T0, make_key, make_keystore, make_vault

from keyorch.domain import rules
from keyorch.domain.clock import FixedClock
from keyorch.domain.errors import RuleViolation
from keyorch.domain.models import KeyTemplate, SyncFlag, SyncReason, TargetStatus
from keyorch.domain.states import KeyAction, KeyState

P, A, D, X = KeyState.PRE_ACTIVE, KeyState.ACTIVE, KeyState.DEACTIVATED, KeyState.DESTROYED


def test_destroy_active_is_refused_with_hint() -> None:
    with pytest.raises(RuleViolation, match=r"it is active; destroy is allowed only from pre_active, deactivated"):
        rules.check_destroy(make_vault(), make_key(A), "alice", T0)


@pytest.mark.parametrize("state", [P, D])
def test_destroy_from_allowed_states(state: KeyState) -> None:
    key = make_key(state)
    rules.check_destroy(make_vault(), key, "alice", T0)
    destroyed = rules.apply_state_change(key, KeyAction.DESTROY, T0)
    assert destroyed.state is X
    assert all(t.sync_flag is SyncFlag.PENDING for t in destroyed.targets)


def test_remove_only_when_destroyed_and_not_pending() -> None:
    with pytest.raises(RuleViolation, match="cannot remove"):
        rules.check_remove(make_key(D), {}, T0)
    until = T0 + timedelta(days=7)
    key = make_key(X, keystores=("ks1", "ks2"))
    key = replace(
        key,
        targets=(
            key.targets[0].with_changes(
                status=TargetStatus.DESTRUCTION_PENDING, pending_destruction_until=until, synced_generation=1
            ),
            key.targets[1].with_changes(status=TargetStatus.DESTROYED, synced_generation=1),
        ),
    )
    with pytest.raises(RuleViolation, match=r"keystore aws-east keeps it pending destruction until 2026-01-08"):
        rules.check_remove(key, {"ks1": "aws-east"}, T0)
    rules.check_remove(key, {"ks1": "aws-east"}, until + timedelta(seconds=1))


def test_remove_refused_while_a_keystore_still_holds_the_key() -> None:
    key = make_key(X)
    key = replace(key, targets=(key.targets[0].with_changes(status=TargetStatus.DEACTIVATED, synced_generation=1),))
    with pytest.raises(RuleViolation, match="still holds it"):
        rules.check_remove(key, {}, T0)


def test_remove_refused_until_every_target_is_reconciled_since_the_destroy() -> None:
    """Issue 11 point 2: a target not brought in line since the destroy, of unknown status, or with a
    call in flight blocks removal, and the refusal names its keystore."""
    key = make_key(X, keystores=("ks1", "ks2", "ks3"))
    gone = key.targets[0].with_changes(status=TargetStatus.NOT_PRESENT, synced_generation=key.generation)
    cases = {
        "ks1": (gone.with_changes(synced_generation=key.generation - 1), "has not confirmed the destruction"),
        "ks2": (gone.with_changes(keystore_id="ks2", status=TargetStatus.UNKNOWN), "status there is unknown"),
    }
    names = {"ks1": "aws-east", "ks2": "azure-west", "ks3": "gcp"}
    for keystore_id, (target, words) in cases.items():
        others = tuple(gone.with_changes(keystore_id=k) for k in names if k != keystore_id)
        with pytest.raises(RuleViolation, match=rf"keystore {names[keystore_id]}[: ].*{words}"):
            rules.check_remove(replace(key, targets=(target, *others)), names, T0)
    every_gone = replace(key, targets=tuple(gone.with_changes(keystore_id=k) for k in names))
    with pytest.raises(RuleViolation, match="keystore gcp: a call keyorch made there has no recorded outcome"):
        rules.check_remove(every_gone, names, T0, in_flight={"ks3"})
    rules.check_remove(every_gone, names, T0)


def test_disconnect_blocked_by_active_and_deactivated_only() -> None:
    ks = make_keystore()
    keys = [make_key(A, "a"), make_key(D, "d"), make_key(P, "p"), make_key(X, "x"), make_key(A, "other", ("ks2",))]
    with pytest.raises(RuleViolation) as err:
        rules.check_disconnect(ks, keys)
    message = err.value.message
    assert "label-a (a) [active]" in message and "label-d (d) [deactivated]" in message
    assert "label-p" not in message and "label-x" not in message and "label-other" not in message
    rules.check_disconnect(ks, [make_key(P, "p"), make_key(X, "x")])


def test_a_compromised_key_blocks_disconnect_and_a_destroyed_compromised_one_does_not() -> None:
    ks = make_keystore()
    with pytest.raises(RuleViolation, match=r"label-c \(c\) \[compromised\]"):
        rules.check_disconnect(ks, [make_key(KeyState.COMPROMISED, "c")])
    rules.check_disconnect(ks, [make_key(KeyState.DESTROYED_COMPROMISED, "xc")])


def test_compromise_of_a_pre_active_key_is_refused_with_a_hint() -> None:
    with pytest.raises(RuleViolation, match=r"it is pre_active; compromise is allowed only from active, deactivated, "):
        rules.check_action(make_key(P), KeyAction.COMPROMISE)


def test_destroying_a_compromised_key_needs_dual_authorization_and_ends_destroyed_compromised() -> None:
    vault = make_vault(dual_auth=True)
    key = make_key(KeyState.COMPROMISED)
    with pytest.raises(RuleViolation, match="requires dual authorization"):
        rules.destroy(vault, key, "bob", T0, force=False)
    authorized = rules.authorize_deletion(vault, key, "alice", T0)
    destroyed = rules.destroy(vault, authorized, "bob", T0, force=False)
    assert destroyed.state is KeyState.DESTROYED_COMPROMISED and destroyed.deletion_authorization is None
    forced = rules.destroy(vault, rules.authorize_deletion(vault, destroyed, "alice", T0), "bob", T0, force=True)
    assert forced.state is KeyState.DESTROYED_COMPROMISED and forced.destroy_force


def test_unlinking_after_disconnect() -> None:
    key = rules.unlink_key_from_keystore(make_key(P, keystores=("ks1", "ks2")), "ks1", T0)
    removed = key.target_for("ks1")
    assert removed is not None and removed.status is TargetStatus.REMOVED
    assert removed.reason is SyncReason.TARGET_KEYSTORE_REMOVED_BY_USER
    kept = key.target_for("ks2")
    assert kept is not None and kept.status is TargetStatus.UNKNOWN
    # A removed target no longer blocks a disconnect of the same keystore later on.
    rules.check_disconnect(make_keystore(), [replace(key, state=A)])
    template = KeyTemplate("t1", "v1", "t", "{label}", "aes", 256, ("ks1", "ks2"), P, T0, T0)
    assert rules.unlink_template_from_keystore(template, "ks1", T0).keystore_ids == ("ks2",)


def test_vault_must_be_empty() -> None:
    rules.check_vault_empty(make_vault(), 0, 0, 0)
    with pytest.raises(RuleViolation, match="1 keystore\\(s\\), 2 key\\(s\\)"):
        rules.check_vault_empty(make_vault(), 1, 0, 2)


class TestDualAuthorization:
    def test_needs_authorization_by_someone_else(self, clock: FixedClock) -> None:
        vault = make_vault(dual_auth=True)
        key = make_key(D)
        with pytest.raises(RuleViolation, match="another user must run authorize-deletion"):
            rules.check_destroy(vault, key, "bob", clock.now())
        key = rules.authorize_deletion(vault, key, "alice", clock.now())
        with pytest.raises(RuleViolation, match="cannot also destroy"):
            rules.check_destroy(vault, key, "alice", clock.now())
        rules.check_destroy(vault, key, "bob", clock.now())
        destroyed = rules.apply_state_change(key, KeyAction.DESTROY, clock.now())
        assert destroyed.deletion_authorization is None

    def test_lapses_after_seven_days(self, clock: FixedClock) -> None:
        vault = make_vault(dual_auth=True)
        key = rules.authorize_deletion(vault, make_key(D), "alice", clock.now())
        clock.advance(days=6, hours=23)
        rules.check_destroy(vault, key, "bob", clock.now())
        clock.advance(hours=1)
        with pytest.raises(RuleViolation, match="lapsed"):
            rules.check_destroy(vault, key, "bob", clock.now())
        # Once lapsed, a new authorization may be given.
        assert rules.authorize_deletion(vault, key, "carol", clock.now()).deletion_authorization is not None

    def test_withdraw(self, clock: FixedClock) -> None:
        vault = make_vault(dual_auth=True)
        key = rules.authorize_deletion(vault, make_key(P), "alice", clock.now())
        with pytest.raises(RuleViolation, match="already authorized by alice"):
            rules.authorize_deletion(vault, key, "carol", clock.now())
        key = rules.withdraw_authorization(key, clock.now())
        with pytest.raises(RuleViolation, match="another user must"):
            rules.check_destroy(vault, key, "bob", clock.now())
        with pytest.raises(RuleViolation, match="no deletion authorization in force"):
            rules.withdraw_authorization(key, clock.now())

    def test_not_needed_without_dual_auth(self, clock: FixedClock) -> None:
        rules.check_destroy(make_vault(), make_key(D), "alice", clock.now())
        with pytest.raises(RuleViolation, match="does not use dual authorization"):
            rules.authorize_deletion(make_vault(), make_key(D), "alice", clock.now())


def test_disconnect_refused_while_the_keystore_still_holds_a_live_key() -> None:
    """The records say destroyed, but the keystore (asked live) still holds the key enabled."""
    ks = make_keystore()
    destroyed = make_key(X, "x")
    rules.check_disconnect(ks, [destroyed], live={})
    rules.check_disconnect(ks, [destroyed], live={"x": X})
    with pytest.raises(RuleViolation, match=r"still holds key label-x \(x\) as active although its desired state"):
        rules.check_disconnect(ks, [destroyed], live={"x": A})
