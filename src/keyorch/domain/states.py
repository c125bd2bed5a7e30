"""Key states, the actions on keys, and the allowed-actions table (seed 004, Table 2).

This module is the single source of truth for which action is allowed in which state and
where an action leads. CLI, API and reconciler all ask here.
"""

from __future__ import annotations

from enum import StrEnum


class KeyState(StrEnum):
    """NIST SP 800-57 states as UKO models them, with UKO's integer codes.

    ``compromised`` and ``destroyed_compromised`` are the two states UKO's API names beyond the four
    of its console (NIST SP 800-57 section 5.3, KMIP's state enumeration): a key whose material is
    known or suspected to be exposed. Keystores cannot express them; a compromised key is held there
    like a deactivated one (disabled: no new encryption, nothing re-enables it), a destroyed
    compromised key like a destroyed one (:attr:`in_keystores`).
    """

    PRE_ACTIVE = "pre_active"
    ACTIVE = "active"
    DEACTIVATED = "deactivated"
    COMPROMISED = "compromised"
    DESTROYED = "destroyed"
    DESTROYED_COMPROMISED = "destroyed_compromised"

    @property
    def code(self) -> int:
        return _STATE_CODES[self]

    @property
    def in_keystores(self) -> KeyState:
        """The state the keystores are to hold the key in: one of the four a keystore can express."""
        return _IN_KEYSTORES.get(self, self)

    @property
    def compromised(self) -> bool:
        return self in (KeyState.COMPROMISED, KeyState.DESTROYED_COMPROMISED)

    @classmethod
    def from_code(cls, code: int) -> KeyState:
        for state, value in _STATE_CODES.items():
            if value == code:
                return state
        allowed = ", ".join(str(c) for c in sorted(_STATE_CODES.values()))
        raise ValueError(f"no key state has code {code}; allowed: {allowed}")


#: UKO's integer mapping (0, 1, 3, 5, as Key Protect numbers its states); UKO documents none for the
#: compromised states, so keyorch gives them 4 and 6 (KMIP's order: compromised after deactivated,
#: destroyed compromised after destroyed).
_STATE_CODES: dict[KeyState, int] = {
    KeyState.PRE_ACTIVE: 0,
    KeyState.ACTIVE: 1,
    KeyState.DEACTIVATED: 3,
    KeyState.COMPROMISED: 4,
    KeyState.DESTROYED: 5,
    KeyState.DESTROYED_COMPROMISED: 6,
}

_IN_KEYSTORES: dict[KeyState, KeyState] = {
    KeyState.COMPROMISED: KeyState.DEACTIVATED,
    KeyState.DESTROYED_COMPROMISED: KeyState.DESTROYED,
}


class KeyAction(StrEnum):
    GET = "get"
    LIST = "list"
    ACTIVATE = "activate"
    ROTATE = "rotate"
    DEACTIVATE = "deactivate"
    REACTIVATE = "reactivate"
    COMPROMISE = "compromise"
    DESTROY = "destroy"
    REMOVE = "remove"


_P, _A, _D, _X = KeyState.PRE_ACTIVE, KeyState.ACTIVE, KeyState.DEACTIVATED, KeyState.DESTROYED
_C, _XC = KeyState.COMPROMISED, KeyState.DESTROYED_COMPROMISED

#: Table 2 of seed 004 ("How key states affect service actions"), plus activation of a
#: pre-active key ("you can manually activate a Pre-active key later", Table 1). ``list`` is
#: the default listing: destroyed keys are listed only when asked for.
#:
#: The compromised states follow NIST SP 800-57 (which UKO says it follows) and KMIP: an active or
#: deactivated key can be declared compromised, and so can a destroyed one (the record says so for
#: the audit; nothing is left in the keystores); a compromised key is never used again to protect data
#: (no activate, no reactivate, no rotate) and is destroyed like a deactivated one, into destroyed
#: compromised, which leaves the vault like destroyed. A pre-active key was never in a keystore:
#: destroy it instead.
ALLOWED_ACTIONS: dict[KeyAction, frozenset[KeyState]] = {
    KeyAction.GET: frozenset(KeyState),
    KeyAction.LIST: frozenset({_P, _A, _D, _C}),
    KeyAction.ACTIVATE: frozenset({_P}),
    KeyAction.ROTATE: frozenset({_A}),
    KeyAction.DEACTIVATE: frozenset({_A}),
    KeyAction.REACTIVATE: frozenset({_D}),
    KeyAction.COMPROMISE: frozenset({_A, _D, _X}),
    KeyAction.DESTROY: frozenset({_P, _D, _C}),
    KeyAction.REMOVE: frozenset({_X, _XC}),
}

#: Where a state-changing action leads. ``remove`` deletes the record; ``rotate`` keeps the state.
RESULT_STATE: dict[KeyAction, KeyState | None] = {
    KeyAction.ACTIVATE: _A,
    KeyAction.ROTATE: _A,
    KeyAction.DEACTIVATE: _D,
    KeyAction.REACTIVATE: _A,
    KeyAction.COMPROMISE: _C,
    KeyAction.DESTROY: _X,
    KeyAction.REMOVE: None,
}

#: Where an action leads from one particular state, where that differs from ``RESULT_STATE``.
_RESULT_FROM: dict[tuple[KeyAction, KeyState], KeyState] = {
    (KeyAction.DESTROY, _C): _XC,
    (KeyAction.COMPROMISE, _X): _XC,
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
    return _RESULT_FROM.get((action, state), RESULT_STATE.get(action, state))


def allowed_transitions() -> set[tuple[KeyState, KeyState]]:
    """Every (from, to) pair of desired states the table permits (for invariant checks)."""
    pairs: set[tuple[KeyState, KeyState]] = set()
    for action in RESULT_STATE:
        for state in ALLOWED_ACTIONS[action]:
            target = transition_target(action, state)
            if target is not None:
                pairs.add((state, target))
    return pairs
