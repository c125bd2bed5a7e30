"""Frozen domain records: vaults, keystores, templates, managed keys and their targets."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from keyorch.domain.states import KeyState


class KeystoreType(StrEnum):
    AWS_KMS = "aws_kms"
    AZURE_KEY_VAULT = "azure_key_vault"
    GOOGLE_KMS = "google_kms"
    IBM_KEY_PROTECT = "ibm_key_protect"


class KeystoreStatus(StrEnum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


class CredentialsMode(StrEnum):
    STORED = "stored"  # encrypted at rest under the master key
    ENVIRONMENT = "environment"  # resolved at run time by the provider's default chain


class DriftPolicy(StrEnum):
    FLAG = "flag"  # changes made outside keyorch are flagged, not overwritten
    REMEDIATE = "remediate"  # such changes are overwritten with the desired state


class TargetStatus(StrEnum):
    """What keyorch last observed of a managed key in one keystore."""

    UNKNOWN = "unknown"  # not observed yet
    NOT_PRESENT = "not_present"
    ACTIVE = "active"
    DEACTIVATED = "deactivated"
    DESTRUCTION_PENDING = "destruction_pending"
    DESTROYED = "destroyed"
    REMOVED = "removed"  # the keystore was disconnected


class SyncFlag(StrEnum):
    PENDING = "pending"  # desired state changed; not reconciled yet
    IN_SYNC = "in_sync"
    OUT_OF_SYNC = "out_of_sync"


class SyncReason(StrEnum):
    """UKO's eleven reason codes for a key's status in a keystore."""

    ACTIVE_KEY_IS_ACTIVE_IN_KEYSTORE = "active_key_is_active_in_keystore"
    ACTIVE_KEY_IS_NOT_ACTIVE_IN_KEYSTORE = "active_key_is_not_active_in_keystore"
    DEACTIVATED_KEY_IS_DEACTIVATED_IN_KEYSTORE = "deactivated_key_is_deactivated_in_keystore"
    DEACTIVATED_KEY_IS_NOT_DEACTIVATED_IN_KEYSTORE = "deactivated_key_is_not_deactivated_in_keystore"
    DESTROYED_KEY_IS_NOT_PRESENT_IN_KEYSTORE = "destroyed_key_is_not_present_in_keystore"
    DESTROYED_KEY_IS_PRESENT_IN_KEYSTORE = "destroyed_key_is_present_in_keystore"
    PRE_ACTIVE_KEY_IS_NOT_PRESENT_IN_KEYSTORE = "pre_active_key_is_not_present_in_keystore"
    PRE_ACTIVE_KEY_IS_PRESENT_IN_KEYSTORE = "pre_active_key_is_present_in_keystore"
    TARGET_KEYSTORE_REMOVED_BY_USER = "target_keystore_removed_by_user"
    TARGET_KEYSTORE_REMOVED_BY_USER_CONTAINS_AN_ACTIVE_KEY = "target_keystore_removed_by_user_contains_an_active_key"
    CONNECTION_ERROR = "connection_error"
    #: keyorch's addition to UKO's eleven: the keystore serves an older version of the key as its primary
    #: (a rotation is pending there); UKO's ``keystore_sync_flag_detail`` shows it as
    #: active_key_is_not_active_in_keystore
    KEY_VERSION_IS_NOT_CURRENT_IN_KEYSTORE = "key_version_is_not_current_in_keystore"
    #: keyorch's: an older version of the key is usable in the keystore although the key is deactivated there,
    #: or although the key's ``deactivate_on_rotation`` wants the older versions disabled (UKO's detail: the key
    #: state's "not ... in keystore")
    OLDER_KEY_VERSION_IS_ENABLED_IN_KEYSTORE = "older_key_version_is_enabled_in_keystore"
    #: keyorch's: an older version of an active key is disabled in the keystore, so it no longer decrypts what
    #: it encrypted (the key's ``deactivate_on_rotation`` is off; UKO's detail: active_key_is_not_active_in_keystore)
    OLDER_KEY_VERSION_IS_DISABLED_IN_KEYSTORE = "older_key_version_is_disabled_in_keystore"


#: The reasons keyorch adds to UKO's eleven; UKO's ``keystore_sync_flag_detail`` shows each as the key state's own
#: "not in line" reason (``domain.uko.uko_sync_detail``), keyorch's ``reason`` as it is.
KEYORCH_REASONS: frozenset[SyncReason] = frozenset(
    {
        SyncReason.KEY_VERSION_IS_NOT_CURRENT_IN_KEYSTORE,
        SyncReason.OLDER_KEY_VERSION_IS_ENABLED_IN_KEYSTORE,
        SyncReason.OLDER_KEY_VERSION_IS_DISABLED_IN_KEYSTORE,
    }
)


@dataclass(frozen=True)
class Vault:
    id: str
    name: str
    dual_auth: bool
    created_at: datetime
    updated_at: datetime
    version: int = 1
    description: str = ""
    recovery_key_label: str | None = None
    #: the users who made it and last changed it (None: made before keyorch recorded them)
    created_by: str | None = None
    updated_by: str | None = None


@dataclass(frozen=True)
class VaultCounts:
    """What a vault holds: its managed keys, key templates and connected keystores."""

    keys: int = 0
    key_templates: int = 0
    keystores: int = 0


@dataclass(frozen=True)
class Keystore:
    id: str
    vault_id: str
    name: str
    type: KeystoreType
    settings: dict[str, Any]
    credentials_mode: CredentialsMode
    drift_policy: DriftPolicy
    status: KeystoreStatus
    created_at: datetime
    updated_at: datetime
    version: int = 1
    description: str = ""
    #: UKO's ``location``: where the keystore is, as people describe it (free text; '' when not given)
    location: str = ""
    #: UKO's keystore groups: templates distribute keys to the connected keystores of a group
    groups: tuple[str, ...] = ()
    #: the users who connected it and last changed it (None: before keyorch recorded them)
    created_by: str | None = None
    updated_by: str | None = None

    @property
    def connected(self) -> bool:
        return self.status is KeystoreStatus.CONNECTED


class TemplateState(StrEnum):
    """UKO's template state: an archived template makes no new keys (its keys keep working)."""

    UNARCHIVED = "unarchived"
    ARCHIVED = "archived"


#: UKO's template type for templates made by users (``shadow`` and ``system`` ones are UKO's own)
USER_DEFINED = "user_defined"


@dataclass(frozen=True)
class GroupEntry:
    """A distribution entry: every connected keystore of the vault in ``group`` with type ``type``."""

    group: str
    type: KeystoreType


@dataclass(frozen=True)
class KeyTemplate:
    id: str
    vault_id: str
    name: str
    naming_scheme: str
    algorithm: str
    size: int
    #: keystores named explicitly (keyorch's form of the distribution list)
    keystore_ids: tuple[str, ...]
    initial_state: KeyState
    created_at: datetime
    updated_at: datetime
    version: int = 1
    description: str = ""
    #: UKO's ``type`` list, e.g. ``("user_defined",)``
    types: tuple[str, ...] = (USER_DEFINED,)
    state: TemplateState = TemplateState.UNARCHIVED
    #: UKO's key properties: when keys made from it are planned to activate and expire, as ISO 8601 periods
    #: after the key's creation (``P1Y``) or dates (``2027-01-31``); None: not planned
    activation_date: str | None = None
    expiration_date: str | None = None
    #: UKO's distribution list: keystore groups by type (any number of types: one key across clouds)
    groups: tuple[GroupEntry, ...] = ()
    #: the users who made it and last changed it (None: made before keyorch recorded them)
    created_by: str | None = None
    updated_by: str | None = None
    #: UKO's key property ``deactivate_on_rotation``: what keys made from it get
    #: (:attr:`ManagedKey.deactivate_on_rotation`)
    deactivate_on_rotation: bool = False
    #: keyorch's addition to UKO's key properties: how often its keys rotate, an ISO 8601 duration (``P90D``);
    #: None: not on a schedule (a key's own policy overrides it; docs/rotation.md)
    rotation_policy: str | None = None

    @property
    def archived(self) -> bool:
        return self.state is TemplateState.ARCHIVED


@dataclass(frozen=True)
class TemplateFacts:
    """What a template's answer shows beside its record: vault names, how many keys each template made, and
    the keystores (by id, connected or not) its distribution names."""

    vault_names: dict[str, str] = field(default_factory=dict)
    keys_counts: dict[str, int] = field(default_factory=dict)
    keystores: dict[str, Keystore] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """A managed key as it should be (and was last seen) in one keystore."""

    keystore_id: str
    status: TargetStatus = TargetStatus.UNKNOWN
    sync_flag: SyncFlag = SyncFlag.PENDING
    reason: SyncReason | None = None
    key_id_in_keystore: str | None = None
    pending_destruction_until: datetime | None = None
    last_error: str | None = None
    updated_at: datetime | None = None
    #: the key generation (desired-state change count) this target was last brought in line with
    synced_generation: int | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None
    #: what the keystore calls the key (UKO's ``label_in_keystore``: the AWS alias, the Azure key name, the Cloud KMS
    #: cryptoKeyId, the Key Protect key name), fixed when the key is made; ``None`` on a target recorded before
    #: keyorch named keys by their template (the adapter then uses its ``keyorch-<id>`` identity)
    label_in_keystore: str | None = None
    #: the key's version (1..n) the keystore serves as its primary, as keyorch last made or saw it
    key_version: int = 1
    #: the provider's id of that primary version, once keyorch learned it (the base of the next rotation
    #: there: a rotation is sent only while the primary is still this one)
    primary_version_id: str | None = None
    #: the key existed in the keystore before keyorch managed it (``keyorch key adopt``): it carries no keyorch
    #: identity, so keyorch knows it only by ``key_id_in_keystore`` and never by a listing of the keystore
    adopted: bool = False

    def with_changes(self, **changes: Any) -> Target:
        return replace(self, **changes)


@dataclass(frozen=True)
class KeyVersion:
    """One version of a managed key: 1 is the one it was made with, each rotation adds the next."""

    version: int
    created_at: datetime
    created_by: str | None = None


@dataclass(frozen=True)
class DeletionAuthorization:
    authorized_by: str
    authorized_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Tag:
    """A UKO tag of a managed key: a name and a value (names are unique in a key's tags)."""

    name: str
    value: str


@dataclass(frozen=True)
class ManagedKey:
    id: str
    label: str
    name: str  # the template's naming scheme applied to the label
    vault_id: str
    template_id: str | None
    algorithm: str
    size: int
    state: KeyState
    created_at: datetime
    updated_at: datetime
    targets: tuple[Target, ...] = field(default_factory=tuple)
    deletion_authorization: DeletionAuthorization | None = None
    destroy_force: bool = False
    version: int = 1
    #: bumped on every change of the desired state; targets record the generation they synced to
    generation: int = 1
    description: str = ""
    tags: tuple[Tag, ...] = ()
    #: UKO's planned activation and expiration dates (recorded and shown; keyorch does not act on them)
    activation_date: date | None = None
    expiration_date: date | None = None
    #: the users who made it and last changed it (None: made before keyorch recorded them)
    created_by: str | None = None
    updated_by: str | None = None
    #: whether the key still has what its template gives keys (false once the template changed; see
    #: ``update_from_template``)
    template_aligned: bool = True
    #: the key's current version (1 until its first rotation) and when it was last rotated
    current_version: int = 1
    rotated_at: datetime | None = None
    #: UKO's ``deactivate_on_rotation``: after a rotation the older versions are disabled in the keystores that
    #: keep a state per version (Azure Key Vault, Google Cloud KMS); AWS KMS and Key Protect already keep a
    #: rotated key's older material for decryption only (docs/rotation.md)
    deactivate_on_rotation: bool = False
    #: the key's own rotation policy (an ISO 8601 duration), overriding its template's; None: its template's
    rotation_policy: str | None = None
    #: when the key first became active (None: never, or before keyorch recorded it: its creation then counts)
    activated_at: datetime | None = None

    @property
    def out_of_sync(self) -> bool:
        return any(t.sync_flag is SyncFlag.OUT_OF_SYNC for t in self.targets)

    def target_for(self, keystore_id: str) -> Target | None:
        for target in self.targets:
            if target.keystore_id == keystore_id:
                return target
        return None
