"""The allowed-actions table (seed 004, Table 2), cell by cell."""

from __future__ import annotations

import pytest

from keyorch.domain.states import (
    ALLOWED_ACTIONS,
    KeyAction,
    KeyState,
    allowed_transitions,
    is_allowed,
    transition_target,
)

P, A, D, X = KeyState.PRE_ACTIVE, KeyState.ACTIVE, KeyState.DEACTIVATED, KeyState.DESTROYED
C, XC = KeyState.COMPROMISED, KeyState.DESTROYED_COMPROMISED

# Written out from the seed's table (P, A, D, X) and NIST SP 800-57 / KMIP for the compromised
# states (C, XC), independently of the module under test.
EXPECTED = {
    KeyAction.GET: {P: True, A: True, D: True, C: True, X: True, XC: True},
    KeyAction.LIST: {P: True, A: True, D: True, C: True, X: False, XC: False},
    KeyAction.ACTIVATE: {P: True, A: False, D: False, C: False, X: False, XC: False},
    KeyAction.ROTATE: {P: False, A: True, D: False, C: False, X: False, XC: False},
    KeyAction.DEACTIVATE: {P: False, A: True, D: False, C: False, X: False, XC: False},
    KeyAction.REACTIVATE: {P: False, A: False, D: True, C: False, X: False, XC: False},
    KeyAction.COMPROMISE: {P: False, A: True, D: True, C: False, X: True, XC: False},
    KeyAction.DESTROY: {P: True, A: False, D: True, C: True, X: False, XC: False},
    KeyAction.REMOVE: {P: False, A: False, D: False, C: False, X: True, XC: True},
}


def test_state_codes() -> None:
    assert [(s.value, s.code) for s in KeyState] == [
        ("pre_active", 0),
        ("active", 1),
        ("deactivated", 3),
        ("compromised", 4),
        ("destroyed", 5),
        ("destroyed_compromised", 6),
    ]
    assert KeyState.from_code(3) is D
    with pytest.raises(ValueError, match="allowed: 0, 1, 3, 4, 5, 6"):
        KeyState.from_code(2)


def test_keystores_hold_a_compromised_key_as_deactivated_and_a_destroyed_compromised_one_as_destroyed() -> None:
    assert [s.in_keystores for s in KeyState] == [P, A, D, D, X, X]


@pytest.mark.parametrize("action", list(KeyAction))
@pytest.mark.parametrize("state", list(KeyState))
def test_every_cell(action: KeyAction, state: KeyState) -> None:
    assert is_allowed(action, state) is EXPECTED[action][state]


def test_table_covers_every_action() -> None:
    assert set(ALLOWED_ACTIONS) == set(EXPECTED)


def test_targets() -> None:
    assert transition_target(KeyAction.ACTIVATE, P) is A
    assert transition_target(KeyAction.DEACTIVATE, A) is D
    assert transition_target(KeyAction.REACTIVATE, D) is A
    assert transition_target(KeyAction.DESTROY, P) is X
    assert transition_target(KeyAction.DESTROY, D) is X
    assert transition_target(KeyAction.REMOVE, X) is None
    assert transition_target(KeyAction.COMPROMISE, A) is C
    assert transition_target(KeyAction.COMPROMISE, D) is C
    assert transition_target(KeyAction.COMPROMISE, X) is XC
    assert transition_target(KeyAction.DESTROY, C) is XC
    assert transition_target(KeyAction.REMOVE, XC) is None
    with pytest.raises(ValueError):
        transition_target(KeyAction.DESTROY, A)
    with pytest.raises(ValueError):
        transition_target(KeyAction.REACTIVATE, C)


def test_active_never_goes_straight_to_destroyed() -> None:
    pairs = allowed_transitions()
    assert (A, X) not in pairs
    assert (X, A) not in pairs and (X, D) not in pairs and (X, P) not in pairs
    assert pairs == {(P, A), (A, A), (A, D), (D, A), (P, X), (D, X), (A, C), (D, C), (C, XC), (X, XC)}
    assert not any(frm in (C, XC) and to in (P, A, D) for frm, to in pairs)  # a compromised key stays out of use
