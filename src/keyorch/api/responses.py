"""The documents the API answers with (2xx), as pydantic models: the handlers check every answer against its
model (:func:`keyorch.api.routing.respond`), and the OpenAPI document shows the same models' schemas.

The documents themselves are built by :mod:`keyorch.views` (shared with the CLI's ``--output json``) and
:mod:`keyorch.reconcile.report`; a field added there and not here makes the answer fail loudly in the tests,
so the document can never drift from what is served. Times are ISO 8601 strings, as the views write them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from keyorch.domain.models import (
    CredentialsMode,
    DriftPolicy,
    KeystoreStatus,
    KeystoreType,
    SyncFlag,
    SyncReason,
    TargetStatus,
    TemplateState,
)
from keyorch.domain.states import KeyState
from keyorch.reconcile.planner import Action, Observed

_TIME = Field(json_schema_extra={"format": "date-time"})
#: a time that is left out where there is none
_OPTIONAL_TIME = Field(default=None, json_schema_extra={"format": "date-time"})


#: UKO's names of the key states (domain/uko.py translates)
UkoKeyState = Literal["pre_activation", "active", "deactivated", "compromised", "destroyed", "destroyed_compromised"]


class Document(BaseModel):
    """An answer's document: exactly these fields (a field the model does not name is an error of keyorch)."""

    model_config = ConfigDict(extra="forbid")


class Versioned(Document):
    """An object of the vault model: when it was made and changed, and its version (its ETag's)."""

    created_at: str | None = _TIME
    updated_at: str | None = _TIME
    version: int


class Vault(Versioned):
    """UKO v4's vault, with keyorch's ``dual_auth`` and ``version``."""

    id: str
    name: str
    description: str
    recovery_key_label: str | None
    dual_auth: bool
    keys_count: int = Field(description="managed keys in the vault")
    key_templates_count: int = Field(description="key templates in the vault")
    keystores_count: int = Field(description="connected keystores in the vault")
    created_by: str | None = Field(description="the user who made it (null: made before keyorch recorded it)")
    updated_by: str | None = Field(description="the user who last changed it (null: as created_by)")
    href: str = Field(description="the vault's URL path")


class VaultReference(Document):
    """UKO's reference to a vault: ``{id, name, href}`` (``name`` left out where it is not known)."""

    id: str
    name: str | None = None
    href: str


_REDACTED = Field(default=None, description="always '[redacted]': keyorch never returns a credential")


class Keystore(Versioned):
    """UKO v4's keystore (one of KeystoreTypeAwsKms, …Azure, …GoogleKms, …IbmCloudKms by ``type``: each type's
    fields are present for that type only), with keyorch's ``status``, ``settings``, ``credentials``,
    ``drift_policy`` and ``version``."""

    id: str
    vault: VaultReference
    name: str
    type: Literal["aws_kms", "azure_key_vault", "google_kms", "ibm_cloud_kms"] = Field(
        description="UKO's keystore type (IBM Key Protect: ibm_cloud_kms with ibm_variant key_protect)"
    )
    description: str
    location: str = Field(description="where the keystore is (free text; '' when not given)")
    groups: list[str] = Field(description="the keystore's groups")
    created_by: str | None = Field(default=None, description="the user who connected it (absent: not recorded)")
    updated_by: str | None = Field(default=None, description="the user who last changed it (absent: not recorded)")
    href: str = Field(description="the keystore's URL path")
    aws_region: str | None = Field(default=None, description="AWS: the region, as UKO names it (us_east_1)")
    aws_access_key_id: str | None = _REDACTED
    aws_secret_access_key: str | None = _REDACTED
    azure_service_name: str | None = Field(default=None, description="Azure: the key vault's name")
    azure_resource_group: str | None = None
    azure_location: str | None = Field(default=None, description="Azure: UKO's location (absent: not given)")
    azure_service_principal_client_id: str | None = None
    azure_service_principal_password: str | None = _REDACTED
    azure_tenant: str | None = None
    azure_subscription_id: str | None = None
    azure_environment: Literal["azure", "azure_china", "azure_germany", "azure_us_government"] | None = None
    google_project_id: str | None = None
    google_location: str | None = Field(default=None, description="Google: the Cloud KMS location")
    google_key_ring: str | None = None
    google_private_key_id: str | None = Field(default=None, description="Google: the service account key's id")
    google_credentials: str | None = _REDACTED
    ibm_variant: Literal["key_protect"] | None = None
    ibm_api_endpoint: str | None = Field(default=None, description="IBM: the Key Protect API URL")
    ibm_iam_endpoint: str | None = None
    ibm_instance_id: str | None = None
    ibm_key_ring: str | None = None
    ibm_api_key: str | None = _REDACTED
    status: KeystoreStatus = Field(description="keyorch's: connected or disconnected")
    settings: dict[str, Any] = Field(description="keyorch's: where the keystore is and how it is reached")
    credentials: CredentialsMode = Field(description="keyorch's: where its credentials come from")
    drift_policy: DriftPolicy


class TemplateVault(Document):
    """UKO's VaultReference: the template's vault."""

    id: str
    name: str | None = None
    href: str


class TemplateKey(Document):
    """UKO's KeyProperties: what keys made from the template get."""

    size: str = Field(description="bits, as text (UKO)")
    algorithm: str
    activation_date: str | None = Field(
        default=None, description="planned activation: ISO 8601 period after creation (P1Y) or date; absent: none"
    )
    expiration_date: str | None = Field(
        default=None, description="planned expiration: ISO 8601 period after creation (P1Y) or date; absent: none"
    )
    state: Literal["pre_activation", "active"] = Field(description="the state keys start in (UKO's names)")
    deactivate_on_rotation: bool = Field(
        description="UKO: keys made from the template disable their older versions after a rotation"
    )
    rotation_policy: str | None = Field(
        default=None, description="keyorch: how often its keys rotate, an ISO 8601 duration (P90D); absent: never"
    )


class TemplateKeystore(Document):
    """A distribution entry: UKO's ``{group, type}`` (every connected keystore of that group and type), or a
    keystore keyorch names by id (``{id, name, type, href}``)."""

    group: str | None = None
    type: str | None = Field(default=None, description="UKO's keystore type name")
    id: str | None = None
    name: str | None = None
    href: str | None = None


class Template(Versioned):
    """UKO v4's key template, with keyorch's ``algorithm``, ``size`` (a number) and ``initial_state``."""

    id: str
    vault: TemplateVault
    name: str
    description: str
    type: list[str] = Field(description='UKO\'s template types, e.g. ["user_defined"]')
    state: TemplateState
    keys_count: int = Field(description="managed keys made from the template")
    key: TemplateKey
    naming_scheme: str
    keystores: list[TemplateKeystore]
    algorithm: str
    size: int
    initial_state: KeyState
    href: str
    created_by: str = Field(description="the user who made it ('' where keyorch has no record of it)")
    updated_by: str = Field(description="the user who last changed it ('' where keyorch has no record of it)")


class Target(Document):
    """A managed key in one keystore, as keyorch last observed it."""

    keystore: str
    keystore_name: str | None
    status: TargetStatus
    sync_flag: SyncFlag
    reason: SyncReason | None
    key_id_in_keystore: str | None
    pending_destruction_until: str | None = _TIME
    last_error: str | None
    updated_at: str | None = _TIME
    key_version: int = Field(description="the key's version the keystore serves as its primary")
    primary_version_id: str | None = Field(description="the provider's id of that version (null: not learned yet)")


class DeletionAuthorization(Document):
    authorized_by: str
    authorized_at: str | None = _TIME
    expires_at: str | None = _TIME


class Reference(Document):
    """UKO's reference to another object: ``{id, name, href}`` (``name`` left out where it is not known)."""

    id: str
    name: str | None = None
    href: str


class KeyTemplateReference(Reference):
    """UKO's ``TemplateReference`` of a managed key, with keyorch's ``alignment_status``."""

    alignment_status: Literal["aligned", "unaligned"] = Field(
        description="unaligned: the template changed since the key was made or last realigned with it "
        "(POST /managed_keys/{id}/update_from_template realigns it)"
    )


class KeystoreReference(Reference):
    """UKO's ``TargetKeystoreReference``."""

    type: str = Field(
        description="the keystore's type as UKO names it (aws_kms, azure_key_vault, google_kms, ibm_cloud_kms)"
    )


class InstanceKeystore(Document):
    group: str = Field(description="the keystore's group")
    type: str


class KeyInstance(Document):
    """UKO's ``KeyInstance``: the key's copy in one keystore."""

    id: str
    label_in_keystore: str = Field(description="what the keystore calls the key (AWS: its alias)")
    type: Literal["secret_key", "key_pair"]
    keystore: InstanceKeystore


class StatusError(Document):
    code: str
    message: str


class StatusErrors(Document):
    errors: list[StatusError]


class StatusInKeystore(Document):
    """UKO's ``StatusInKeystore``, with keyorch's end of the provider's pending-destruction window."""

    keystore: KeystoreReference
    status: Literal["active", "not_active", "not_present", "wrong_key", "error"]
    keystore_sync_flag: Literal["ok", "out_of_sync", "error"]
    keystore_sync_flag_detail: SyncReason
    key_id_in_keystore: str | None = None
    error: StatusErrors | None = None
    pending_destruction_until: str | None = _OPTIONAL_TIME


class TagDocument(Document):
    name: str
    value: str


class OlderVersions(Document):
    """What one keystore does with a rotated key's older versions."""

    keystore: KeystoreReference
    older_versions: Literal["enabled", "disabled", "decrypt_only"] = Field(
        description="enabled or disabled (deactivate_on_rotation) where the keystore keeps a state per version "
        "(Azure Key Vault, Google Cloud KMS); decrypt_only where it keeps older material for decryption only and "
        "has no state per version (AWS KMS, IBM Key Protect)"
    )


class ManagedKey(Document):
    """UKO v4's managed key, with keyorch's ``name``, ``state_code``, ``version``, ``out_of_sync``, dual
    authorization, ``destroy_force`` and ``targets``."""

    id: str
    label: str
    name: str = Field(description="the template's naming scheme applied to the label")
    vault: Reference
    template: KeyTemplateReference | None = None
    algorithm: str
    size: str = Field(description="the key size in bits, as a string (UKO's type)")
    state: UkoKeyState
    state_code: int = Field(
        description="NIST SP 800-57 state as UKO numbers it: 0, 1, 3, 5 (4 compromised, 6 destroyed_compromised)"
    )
    referenced_keystores: list[KeystoreReference]
    instances: list[KeyInstance]
    status_in_keystores: list[StatusInKeystore]
    href: str
    version: int
    current_version: int = Field(description="the key's current version (1 until its first rotation)")
    out_of_sync: bool
    deletion_authorization: DeletionAuthorization | None
    destroy_force: bool
    deactivate_on_rotation: bool = Field(
        description="UKO: after a rotation the older versions are disabled where the keystore can express it"
    )
    older_versions_in_keystores: list[OlderVersions] = Field(
        description="keyorch's: what each keystore does with the key's older versions"
    )
    created_at: str | None = _TIME
    updated_at: str | None = _TIME
    targets: list[Target] = Field(description="keyorch's record of the key in each keystore, retries included")
    description: str
    tags: list[TagDocument]
    activation_date: str | None = Field(default=None, json_schema_extra={"format": "date"})
    expiration_date: str | None = Field(default=None, json_schema_extra={"format": "date"})
    created_by: str | None = Field(default=None, description="left out for a key made before keyorch recorded it")
    updated_by: str | None = None
    rotated_at: str | None = Field(default=None, description="UKO: when the key was last rotated (absent: never)")
    rotation_policy: str | None = Field(
        default=None, description="keyorch: how often the key rotates, an ISO 8601 duration (absent: never)"
    )
    rotation_policy_from: Literal["key", "template"] | None = Field(
        default=None, description="keyorch: whether the policy is the key's own or its template's"
    )
    next_rotation_at: str | None = Field(
        default=None,
        description="keyorch: when the key rotates next on its schedule (absent: on none, or not active)",
        json_schema_extra={"format": "date-time"},
    )


class TemplateChange(Document):
    """One difference between a key and what its template gives it now."""

    field: Literal["keystores", "activation_date", "expiration_date"]
    description: str
    blocked: str | None = Field(description="why keyorch refuses to make it (null: realigning makes it)")


class KeyRealignment(ManagedKey):
    """UKO's ManagedKey as realigning it with its template makes it (with ``dry_run``: would make it), and
    keyorch's ``changes``: each difference, blocked ones included."""

    changes: list[TemplateChange]
    dry_run: bool


class VersionInKeystore(Document):
    keystore: KeystoreReference
    version_id_in_keystore: str | None = Field(description="the provider's id of the version (null: not learned yet)")
    in_sync: bool


class VersionIdInKeystore(Document):
    keystore: KeystoreReference
    version_id_in_keystore: str = Field(description="the provider's id of the version in that keystore")
    primary: bool = Field(description="whether the keystore serves this version as its primary")


class KeyVersionDocument(Document):
    version: int
    created_at: str | None = _TIME
    created_by: str | None
    current: bool
    keystores: list[VersionInKeystore] = Field(description="the keystores serving this version as their primary")
    version_ids_in_keystores: list[VersionIdInKeystore] = Field(
        description="every keystore whose id of this version keyorch learned (at each rotation there), primary or not"
    )


class KeyVersions(Document):
    """A managed key's versions (keyorch's; UKO's SDK 4.7.3, whose models the contract derives, has none)."""

    id: str
    label: str
    current_version: int
    versions: list[KeyVersionDocument]


class _Page(Document):
    total_count: int
    limit: int
    offset: int


class HrefObject(Document):
    href: str = Field(description="the page's URL path and query")


class LinkedPage(_Page):
    """A page with UKO's links to the first, last, previous and next pages (the last two left out where none)."""

    first: HrefObject
    last: HrefObject
    previous: HrefObject | None = Field(default=None, description="left out on the first page")
    next: HrefObject | None = Field(default=None, description="left out on the last page")


class VaultList(LinkedPage):
    vaults: list[Vault]


class KeystoreList(LinkedPage):
    keystores: list[Keystore]


class TemplateList(LinkedPage):
    templates: list[Template]


class ManagedKeyList(LinkedPage):
    managed_keys: list[ManagedKey]


class ManagedKeyReference(Document):
    """UKO's ``ManagedKeyReference``."""

    id: str
    label: str
    href: str


class IbmCloudKmsRegistration(Document):
    """UKO's ``IbmCloudKmsRegistration``: a Key Protect registration."""

    prevents_key_deletion: bool = Field(description="a retention policy: Key Protect refuses even a forced delete")
    service_name: str = Field(description="the registering service, from the resource's CRN")
    service_instance_name: str = Field(description="the service instance, from the resource's CRN")
    crn: str
    description: str


class AssociatedResource(Document):
    """UKO's ``AssociatedResource``: a cloud resource a managed key protects, as its keystore records it."""

    id: str
    vault: Reference
    managed_key: ManagedKeyReference
    referenced_keystore: KeystoreReference
    key_id_in_keystore: str
    name: str
    type: Literal["com_ibm_cloud_kms_registration"]
    com_ibm_cloud_kms_registration: IbmCloudKmsRegistration


class AssociatedResourceList(LinkedPage):
    associated_resources: list[AssociatedResource]


class UnmanagedKeyVersion(Document):
    id: str = Field(description="the provider's id of the version")
    created_at: str | None = _OPTIONAL_TIME
    primary: bool
    enabled: bool


class UnmanagedKey(Document):
    """A key of the keystore that no managed key targets (keyorch's scan; UKO has none): what the keystore holds
    and who seems to have made it."""

    key_id_in_keystore: str = Field(
        description="the AWS key id, the Azure key name, the Cloud KMS resource name, the Key Protect key id"
    )
    label_in_keystore: str | None = Field(
        default=None, description="what the keystore calls it: AWS alias, Azure key name, cryptoKeyId, Key Protect name"
    )
    aliases: list[str]
    tags: list[TagDocument] = Field(description="AWS and Azure tags, Cloud KMS labels, Key Protect tags (key:value)")
    state: UkoKeyState
    state_in_keystore: str = Field(description="the provider's own state words")
    destruction_pending: bool
    pending_until: str | None = _OPTIONAL_TIME
    versions: list[UnmanagedKeyVersion] = Field(description="oldest first (none for a soft-deleted Azure key)")
    created_at: str | None = _OPTIONAL_TIME
    description: str
    key_type: str | None = Field(default=None, description="AWS KeySpec, Cloud KMS purpose, Key Protect algorithm")
    origin: str | None = Field(default=None, description="AWS: AWS_KMS, or EXTERNAL for imported key material")
    managed_key_id: str | None = Field(default=None, description="the managed key keyorch's identity on it names")
    uko_managed_key_id: str | None = Field(default=None, description="the UKO managed key UKO's mark on it names")
    made_by: Literal["uko", "keyorch", "unknown"]
    evidence: list[str] = Field(description="what made_by rests on")


class UnmanagedKeyList(LinkedPage):
    """The keys of a keystore that no managed key targets, and how many keys it holds."""

    unmanaged_keys: list[UnmanagedKey]
    keystore: KeystoreReference
    keys_in_keystore: int
    managed_in_keystore: int


class StatusInKeystores(Document):
    """UKO's ``StatusInKeystores``, with the key's id, state and keyorch's out-of-sync flag."""

    id: str
    state: UkoKeyState
    out_of_sync: bool
    status_in_keystores: list[StatusInKeystore]


class KeystoreHealth(Document):
    """UKO's ``KeystoreStatus`` from a live check (cached a few seconds: setting api.keystore_status_cache_seconds),
    with keyorch's id, name, type and status (connected or disconnected)."""

    health_status: Literal["ok", "not_responding", "configuration_error"] = Field(
        description="ok; not_responding: not reached or no answer in time; configuration_error: it answered but "
        "refused (credentials, permissions, a missing key ring or vault), or keyorch cannot reach it as configured"
    )
    last_heartbeat: str | None = Field(default=None, description="when the check was made (absent: none was)")
    message: str
    id: str
    name: str
    type: KeystoreType
    status: KeystoreStatus


class KeystoreDryRun(Keystore):
    """``POST /keystores?dry_run=true``: the keystore as it would be connected (no id: nothing was stored), after its
    connection test passed; with UKO's KeystoreStatus fields of that test."""

    id: str | None = None  # type: ignore[assignment]
    href: str | None = None  # type: ignore[assignment]
    version: int | None = None  # type: ignore[assignment]
    dry_run: Literal[True]
    health_status: Literal["ok"]
    last_heartbeat: str
    message: str


class TargetOutcome(Document):
    """What a reconcile did for a key in one keystore."""

    key: str
    label: str
    keystore: str
    keystore_name: str | None
    observed: Observed
    status: TargetStatus
    sync_flag: SyncFlag
    reason: SyncReason | None
    actions_taken: list[Action]
    pending_destruction_until: str | None = _TIME
    error: str | None
    drift: bool


class PassCounts(Document):
    keys_checked: int
    in_sync: int = Field(description="keys in sync after the pass")
    flagged: int
    actions_taken: int
    errors: int
    keystores_down: dict[str, str] = Field(description="keystore id → why it could not be reached")
    exit_code: int = Field(description="what the CLI exits with: 0 in sync, 1 not, 4 a keystore unreachable")


class SyncResult(PassCounts):
    id: str
    targets: list[TargetOutcome]
    status_in_keystores: list[StatusInKeystore] = Field(
        description="UKO's answer: the key's status in each keystore after the pass"
    )


class ReconcileResult(PassCounts):
    flagged_keys: list[TargetOutcome]


class PlanStep(Document):
    key: str
    label: str
    desired: KeyState
    keystore: str
    keystore_name: str | None
    observed: Observed
    actions: list[Action]
    undo: list[str] = Field(description="for each action, whether and how it can be undone")
    destroy_undo_until: str | None = _TIME
    reason: SyncReason | None
    drift: bool
    blocked: str | None = Field(description="why nothing is done although the target is out of line")


class PlannedRotation(Document):
    """A key's next rotation on its schedule (keyorch's rotation policies)."""

    key: str
    label: str
    version: int = Field(description="the version the rotation makes the key's current one")
    rotation_policy: str = Field(description="ISO 8601 duration")
    rotation_policy_from: Literal["key", "template"]
    next_rotation_at: str = _TIME
    overdue: bool = Field(description="due now: the daemon's next pass makes it")


class Plan(Document):
    steps: list[PlanStep]
    keystores_down: dict[str, str]
    rotations: list[PlannedRotation] = Field(description="the rotations scheduled next, soonest first")


class AuditRecord(Document):
    seq: int | None
    at: str = _TIME
    user: str
    role: str | None
    source: str
    action: str
    object_type: str
    object_id: str | None
    outcome: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    detail: str | None


class AuditRecords(Document):
    audit_records: list[AuditRecord]
    limit: int


class AuditChain(Document):
    records_verified: int
    sealed_with_master_key: int
    sealed_with_stored_key: int
    last_seq: int | None
    anchor: str | None = Field(description="the verified head as SEQ:HMAC, to keep outside the database (--anchor)")


class AdoptedInstance(Document):
    keystore: KeystoreReference
    key_id_in_keystore: str
    label_in_keystore: str | None = None
    state_in_keystore: str = Field(description="the provider's own state words")
    made_by: Literal["uko", "keyorch", "unknown"]
    marker: str | None = Field(default=None, description="the marker added, or why none was")


class AdoptedKey(Document):
    label: str
    outcome: Literal["adopted", "planned", "refused"]
    state: UkoKeyState | None = None
    conflict: str | None = Field(default=None, description="why the keys were not adopted")
    instances: list[AdoptedInstance]
    managed_key: Reference | None = None
    template_aligned: bool | None = None
    markers_to_add: int | None = None


class AdoptionResult(Document):
    """An adoption's plan (``dry_run``: nothing written, nothing changed in any keystore) or outcome."""

    dry_run: bool
    vault: Reference
    template: Reference
    keystores: list[KeystoreReference]
    marker: bool
    managed_keys: list[AdoptedKey]
    adopted: int
    planned: int
    refused: int
