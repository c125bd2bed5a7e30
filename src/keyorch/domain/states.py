"""Key states, the actions on keys, and the allowed-actions table (seed 004, Table 2).

This module is the single source of truth for which action is allowed in which state and
where an action leads. CLI, API and reconciler all ask here.
"""

from __future__ import annotations

from enum import StrEnum


class KeyState(StrEnum):
    """NIST SP 800-57 states as UKO models them, with UKO's integer codes."""

    PRE_ACTIVE = "pre_active"
    ACTIVE = "active"
    DEACTIVATED = "deactivated"
    DESTROYED = "destroyed"

    @property
    def code(self) -> int:
        return _STATE_CODES[self]

    @classmethod
    def from_code(cls, code: int) -> KeyState:
        for state, value in _STATE_CODES.items():
            if value == code:
                return state
        raise ValueError(f"no key state has code {code}; allowed: 0, 1, 3, 5")


_STATE_CODES: dict[KeyState, int] = {
    KeyState.PRE_ACTIVE: 0,
    KeyState.ACTIVE: 1,
    KeyState.DEACTIVATED: 3,
    KeyState.DESTROYED: 5,
}


class KeyAction(StrEnum):
    GET = "get"
    LIST = "list"
    ACTIVATE = "activate"
    ROTATE = "rotate"
    DEACTIVATE = "deactivate"
    REACTIVATE = "reactivate"
    DESTROY = "destroy"
    REMOVE = "remove"


_P, _A, _D, _X = KeyState.PRE_ACTIVE, KeyState.ACTIVE, KeyState.DEACTIVATED, KeyState.DESTROYED

#: Table 2 of seed 004 ("How key states affect service actions"), plus activation of a
#: pre-active key ("you can manually activate a Pre-active key later", Table 1). ``list`` is
#: the default listing: destroyed keys are listed only when asked for.
ALLOWED_ACTIONS: dict[KeyAction, frozenset[KeyState]] = {
    KeyAction.GET: frozenset({_P, _A, _D, _X}),
    KeyAction.LIST: frozenset({_P, _A, _D}),
    KeyAction.ACTIVATE: frozenset({_P}),
    KeyAction.ROTATE: frozenset({_A}),
    KeyAction.DEACTIVATE: frozenset({_A}),
    KeyAction.REACTIVATE: frozenset({_D}),
    KeyAction.DESTROY: frozenset({_P, _D}),
    KeyAction.REMOVE: frozenset({_X}),
}

#: Where a state-changing action leads. ``remove`` deletes the record; ``rotate`` keeps the state.
RESULT_STATE: dict[KeyAction, KeyState | None] = {
    KeyAction.ACTIVATE: _A,
    KeyAction.ROTATE: _A,
    KeyAction.DEACTIVATE: _D,
    KeyAction.REACTIVATE: _A,
    KeyAction.DESTROY: _X,
    KeyAction.REMOVE: None,
}

#: States a key may be created in.
INITIAL_STATES: frozenset[KeyState] = frozenset({_P, _A})


def is_allowed(action: KeyAction, state: KeyState) -> bool:
    return state in ALLOWED_ACTIONS[action]


def allowed_from(action: KeyAction) -> list[KeyState]:
    """States an action is allowed from, in lifecycle order (for error messages)."""
    return [s for s in KeyState if s in ALLOWED_ACTIONS[action]]


def transition_target(action: KeyAction, state: KeyState) -> KeyState | None:
    """The state after ``action``; raise ``ValueError`` if the table forbids it."""
    if not is_allowed(action, state):
        raise ValueError(f"{action} is not allowed from {state}")
    return RESULT_STATE.get(action, state)


def allowed_transitions() -> set[tuple[KeyState, KeyState]]:
    """Every (from, to) pair of desired states the table permits (for invariant checks)."""
    pairs: set[tuple[KeyState, KeyState]] = set()
    for action, target in RESULT_STATE.items():
        if target is None:
            continue
        for state in ALLOWED_ACTIONS[action]:
            pairs.add((state, target))
    return pairs
