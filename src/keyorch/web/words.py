"""What the console says in words: states, statuses, sync reasons, planned steps, and each action's effect."""

from __future__ import annotations

from keyorch.domain.models import KeystoreType, SyncReason, TargetStatus
from keyorch.domain.states import KeyState

STATE: dict[str, str] = {
    KeyState.PRE_ACTIVE: "Pre-active",
    KeyState.ACTIVE: "Active",
    KeyState.DEACTIVATED: "Deactivated",
    KeyState.COMPROMISED: "Compromised",
    KeyState.DESTROYED: "Destroyed",
    KeyState.DESTROYED_COMPROMISED: "Destroyed (compromised)",
}

STATUS: dict[str, str] = {
    TargetStatus.UNKNOWN: "not observed yet",
    TargetStatus.NOT_PRESENT: "not present",
    TargetStatus.ACTIVE: "active",
    TargetStatus.DEACTIVATED: "deactivated (disabled)",
    TargetStatus.DESTRUCTION_PENDING: "pending destruction",
    TargetStatus.DESTROYED: "destroyed",
    TargetStatus.REMOVED: "unlinked (keystore disconnected)",
}

SYNC: dict[str, str] = {"in_sync": "In sync", "out_of_sync": "Out of sync", "pending": "Change pending"}

R = SyncReason
REASON: dict[SyncReason, str] = {
    R.ACTIVE_KEY_IS_ACTIVE_IN_KEYSTORE: "The key is active, and active in this keystore.",
    R.ACTIVE_KEY_IS_NOT_ACTIVE_IN_KEYSTORE: "The key is active, but this keystore does not hold it active.",
    R.DEACTIVATED_KEY_IS_DEACTIVATED_IN_KEYSTORE: "The key is deactivated, and disabled in this keystore.",
    R.DEACTIVATED_KEY_IS_NOT_DEACTIVATED_IN_KEYSTORE: "The key is deactivated, but this keystore does not hold it "
    "disabled (it may have been enabled there outside keyorch).",
    R.DESTROYED_KEY_IS_NOT_PRESENT_IN_KEYSTORE: "The key is destroyed, and this keystore holds no usable copy.",
    R.DESTROYED_KEY_IS_PRESENT_IN_KEYSTORE: "The key is destroyed, but this keystore still holds it.",
    R.PRE_ACTIVE_KEY_IS_NOT_PRESENT_IN_KEYSTORE: "The key is pre-active, and not installed in this keystore.",
    R.PRE_ACTIVE_KEY_IS_PRESENT_IN_KEYSTORE: "The key is pre-active, but this keystore holds a copy.",
    R.TARGET_KEYSTORE_REMOVED_BY_USER: "This keystore was disconnected; the key is unlinked from it.",
    R.TARGET_KEYSTORE_REMOVED_BY_USER_CONTAINS_AN_ACTIVE_KEY: "This keystore was disconnected while it held the key.",
    R.CONNECTION_ERROR: "keyorch could not reach this keystore; its last known status is shown.",
    R.KEY_VERSION_IS_NOT_CURRENT_IN_KEYSTORE: "This keystore serves an older version of the key; a rotation there is "
    "pending.",
}

STEP: dict[str, str] = {
    "create": "create the key there",
    "enable": "enable the key (it can be used again)",
    "disable": "disable the key (nothing can use it; data it protects cannot be read)",
    "schedule_destruction": "schedule the key's destruction",
    "rotate": "make a new primary version",
}

KEYSTORE_TYPE: dict[str, str] = {
    KeystoreType.AWS_KMS: "AWS KMS",
    KeystoreType.AZURE_KEY_VAULT: "Azure Key Vault",
    KeystoreType.GOOGLE_KMS: "Google Cloud KMS",
    KeystoreType.IBM_KEY_PROTECT: "IBM Key Protect",
}


def reason(code: str | None) -> str:
    if code is None:
        return "Not reconciled yet."
    try:
        return REASON[SyncReason(code)]
    except ValueError:
        return code
