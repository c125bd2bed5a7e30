"""UKO v4's names for keyorch's values, both ways: the one place the API (answers, bodies, query parameters),
the CLI and the contract tests translate between them.

keyorch's own names stay accepted wherever UKO's are (a script written for keyorch keeps working); answers
carry UKO's name in UKO's field and keyorch's richer value, where it has one, in a field of its own.
Source: IBM's UKO Go SDK, ``ukov4/uko_v4.go`` (the ``<Struct>_<Field>_<Value>`` constants).
"""

from __future__ import annotations

from keyorch.domain.errors import InvalidInput
from keyorch.domain.models import KeystoreType, SyncFlag, SyncReason, Target, TargetStatus
from keyorch.domain.states import KeyState
from keyorch.domain.validation import shown

# -- key states ------------------------------------------------------------------------------------------------

_STATE_TO_UKO: dict[KeyState, str] = {
    KeyState.PRE_ACTIVE: "pre_activation",
    KeyState.ACTIVE: "active",
    KeyState.DEACTIVATED: "deactivated",
    KeyState.COMPROMISED: "compromised",
    KeyState.DESTROYED: "destroyed",
    KeyState.DESTROYED_COMPROMISED: "destroyed_compromised",
}
_STATE_FROM_UKO: dict[str, KeyState] = {name: state for state, name in _STATE_TO_UKO.items()}


def uko_state(state: KeyState) -> str:
    """A key state as UKO names it (``pre_activation`` for keyorch's ``pre_active``)."""
    return _STATE_TO_UKO[state]


def key_state(value: str, field: str = "state") -> KeyState:
    """A key state given by UKO's name or keyorch's; anything else is bad input naming the field."""
    if value in _STATE_FROM_UKO:
        return _STATE_FROM_UKO[value]
    try:
        return KeyState(value)
    except ValueError:
        allowed = ", ".join(STATE_NAMES)
        raise InvalidInput(f"{field} {shown(value)} is not a key state: use one of {allowed}", target=field) from None


def state_alias(value: object) -> object:
    """For a parser that knows keyorch's names: UKO's name of a state turned into keyorch's (others unchanged)."""
    if isinstance(value, str) and value in _STATE_FROM_UKO:
        return _STATE_FROM_UKO[value].value
    return value


#: every name a key state may be given by, UKO's first
STATE_NAMES: tuple[str, ...] = (*_STATE_FROM_UKO, KeyState.PRE_ACTIVE.value)


# -- keystore types --------------------------------------------------------------------------------------------

#: UKO names Key Protect ``ibm_cloud_kms`` with ``ibm_variant: key_protect``; the other three names agree
_TYPE_TO_UKO: dict[KeystoreType, str] = {
    KeystoreType.AWS_KMS: "aws_kms",
    KeystoreType.AZURE_KEY_VAULT: "azure_key_vault",
    KeystoreType.GOOGLE_KMS: "google_kms",
    KeystoreType.IBM_KEY_PROTECT: "ibm_cloud_kms",
}
IBM_VARIANT_KEY_PROTECT = "key_protect"
#: UKO's other IBM variants (Hyper Protect Crypto Services, its internal keystores); keyorch has no adapter
IBM_VARIANTS_UNSUPPORTED = ("hpcs", "internal")


def uko_type(kind: KeystoreType) -> str:
    """A keystore type as UKO names it."""
    return _TYPE_TO_UKO[kind]


def keystore_type_alias(value: object) -> object:
    """For a parser that knows keyorch's names: UKO's name of a keystore type turned into keyorch's."""
    if value == "ibm_cloud_kms":
        return KeystoreType.IBM_KEY_PROTECT.value
    return value


def keystore_type(value: str, field: str = "type", ibm_variant: str | None = None) -> KeystoreType:
    """A keystore type given by UKO's name (``ibm_cloud_kms`` is Key Protect unless ``ibm_variant`` names
    another variant, which keyorch cannot drive) or keyorch's; anything else is bad input naming the field."""
    if value == "ibm_cloud_kms":
        if ibm_variant not in (None, IBM_VARIANT_KEY_PROTECT):
            raise InvalidInput(
                f"ibm_variant {shown(ibm_variant)} is not supported: use {IBM_VARIANT_KEY_PROTECT} "
                "(keyorch drives IBM Key Protect only)",
                target="ibm_variant",
            )
        return KeystoreType.IBM_KEY_PROTECT
    for kind in KeystoreType:
        if value == kind.value:
            return kind
    allowed = sorted({*_TYPE_TO_UKO.values(), *(k.value for k in KeystoreType)})
    raise InvalidInput(f"{field} {shown(value)} is not a keystore type: use one of {', '.join(allowed)}", target=field)


# -- a key's status in one keystore ----------------------------------------------------------------------------

_STATUS_TO_UKO: dict[TargetStatus, str] = {
    TargetStatus.UNKNOWN: "not_present",  # not observed there yet: keyorch has seen no key
    TargetStatus.NOT_PRESENT: "not_present",
    TargetStatus.ACTIVE: "active",
    TargetStatus.DEACTIVATED: "not_active",
    TargetStatus.DESTRUCTION_PENDING: "not_active",
    TargetStatus.DESTROYED: "not_present",
    TargetStatus.REMOVED: "not_present",
}


def uko_status(target: Target) -> str:
    """UKO's ``status`` of a key in a keystore: ``error`` where the keystore could not be read."""
    if target.reason is SyncReason.CONNECTION_ERROR:
        return "error"
    return _STATUS_TO_UKO[target.status]


def uko_sync_flag(target: Target) -> str:
    """UKO's ``keystore_sync_flag``: ``ok``, ``out_of_sync`` (also while a change is not carried out yet:
    the keystore does not match the key), or ``error`` where the keystore could not be read."""
    if target.reason is SyncReason.CONNECTION_ERROR:
        return "error"
    return "ok" if target.sync_flag is SyncFlag.IN_SYNC else "out_of_sync"


_PRESENT_STATUSES = frozenset({TargetStatus.ACTIVE, TargetStatus.DEACTIVATED, TargetStatus.DESTRUCTION_PENDING})


def uko_sync_detail(state: KeyState, target: Target) -> str:
    """UKO's ``keystore_sync_flag_detail``: the reason keyorch recorded, or, before its first observation
    (or while a change is pending), the one that the key's state and the last observation give."""
    if target.reason is not None:
        return target.reason.value
    status = target.status
    if status is TargetStatus.REMOVED:
        return SyncReason.TARGET_KEYSTORE_REMOVED_BY_USER.value
    match state.in_keystores:
        case KeyState.PRE_ACTIVE:
            present = status in _PRESENT_STATUSES
            reason = (
                SyncReason.PRE_ACTIVE_KEY_IS_PRESENT_IN_KEYSTORE
                if present
                else SyncReason.PRE_ACTIVE_KEY_IS_NOT_PRESENT_IN_KEYSTORE
            )
        case KeyState.ACTIVE:
            reason = (
                SyncReason.ACTIVE_KEY_IS_ACTIVE_IN_KEYSTORE
                if status is TargetStatus.ACTIVE
                else SyncReason.ACTIVE_KEY_IS_NOT_ACTIVE_IN_KEYSTORE
            )
        case KeyState.DEACTIVATED:
            reason = (
                SyncReason.DEACTIVATED_KEY_IS_DEACTIVATED_IN_KEYSTORE
                if status is TargetStatus.DEACTIVATED
                else SyncReason.DEACTIVATED_KEY_IS_NOT_DEACTIVATED_IN_KEYSTORE
            )
        case KeyState.DESTROYED:
            gone = status in (TargetStatus.NOT_PRESENT, TargetStatus.DESTROYED, TargetStatus.DESTRUCTION_PENDING)
            reason = (
                SyncReason.DESTROYED_KEY_IS_NOT_PRESENT_IN_KEYSTORE
                if gone
                else SyncReason.DESTROYED_KEY_IS_PRESENT_IN_KEYSTORE
            )
    return reason.value
