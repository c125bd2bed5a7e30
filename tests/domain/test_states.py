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

# Written out from the seed's table, independently of the module under test.
EXPECTED = {
    KeyAction.GET: {P: True, A: True, D: True, X: True},
    KeyAction.LIST: {P: True, A: True, D: True, X: False},
    KeyAction.ACTIVATE: {P: True, A: False, D: False, X: False},
    KeyAction.ROTATE: {P: False, A: True, D: False, X: False},
    KeyAction.DEACTIVATE: {P: False, A: True, D: False, X: False},
    KeyAction.REACTIVATE: {P: False, A: False, D: True, X: False},
    KeyAction.DESTROY: {P: True, A: False, D: True, X: False},
    KeyAction.REMOVE: {P: False, A: False, D: False, X: True},
}


def test_state_codes() -> None:
    assert [(s.value, s.code) for s in KeyState] == [
        ("pre_active", 0),
        ("active", 1),
        ("deactivated", 3),
        ("destroyed", 5),
    ]
    assert KeyState.from_code(3) is D
    with pytest.raises(ValueError, match="allowed: 0, 1, 3, 5"):
        KeyState.from_code(2)


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
    with pytest.raises(ValueError):
        transition_target(KeyAction.DESTROY, A)


def test_active_never_goes_straight_to_destroyed() -> None:
    pairs = allowed_transitions()
    assert (A, X) not in pairs
    assert (X, A) not in pairs and (X, D) not in pairs and (X, P) not in pairs
    assert pairs == {(P, A), (A, A), (A, D), (D, A), (P, X), (D, X)}
