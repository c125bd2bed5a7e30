"""UKO v4's names for keyorch's values, both ways: the one place the API (answers, bodies, query parameters),
the CLI and the contract tests translate between them.

keyorch's own names stay accepted wherever UKO's are (a script written for keyorch keeps working); answers
carry UKO's name in UKO's field and keyorch's richer value, where it has one, in a field of its own.
Source: IBM's UKO Go SDK, ``ukov4/uko_v4.go`` (the ``<Struct>_<Field>_<Value>`` constants).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from keyorch.domain.errors import InvalidInput
from keyorch.domain.models import KEYORCH_REASONS, KeystoreType, SyncFlag, SyncReason, Target, TargetStatus
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
    if target.reason is not None and target.reason not in KEYORCH_REASONS:
        return target.reason.value
    status = target.status
    if target.reason is not None and state.in_keystores in (KeyState.ACTIVE, KeyState.DEACTIVATED):
        # keyorch's own reasons (a version out of line) are the state's "not in line" for UKO
        return (
            SyncReason.ACTIVE_KEY_IS_NOT_ACTIVE_IN_KEYSTORE
            if state.in_keystores is KeyState.ACTIVE
            else SyncReason.DEACTIVATED_KEY_IS_NOT_DEACTIVATED_IN_KEYSTORE
        ).value
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


# -- a keystore's per-type fields ------------------------------------------------------------------------------

#: what UKO's keystore answers carry in the credential fields its SDK declares required (``aws_access_key_id``,
#: ``aws_secret_access_key``, ``azure_service_principal_password``, ``google_credentials``, ``ibm_api_key``):
#: keyorch never returns a credential, stored or not
REDACTED = "[redacted]"
_SECRET_FIELDS: dict[KeystoreType, tuple[str, ...]] = {
    KeystoreType.AWS_KMS: ("aws_access_key_id", "aws_secret_access_key"),
    KeystoreType.AZURE_KEY_VAULT: ("azure_service_principal_password",),
    KeystoreType.GOOGLE_KMS: ("google_credentials",),
    KeystoreType.IBM_KEY_PROTECT: ("ibm_api_key",),
}

#: the settings entry holding UKO's fields keyorch itself does not use (Azure's resource group, a Google
#: service account's private key id, …): kept to answer with, never a credential
UKO_SETTINGS = "uko"
#: UKO's fields of each type that keyorch keeps in ``settings["uko"]`` as given (the others it derives)
UKO_KEPT_FIELDS: dict[KeystoreType, tuple[str, ...]] = {
    KeystoreType.AWS_KMS: (),
    KeystoreType.AZURE_KEY_VAULT: (
        "azure_service_name",
        "azure_environment",
        "azure_resource_group",
        "azure_location",
        "azure_subscription_id",
        "azure_tenant",
        "azure_service_principal_client_id",
    ),
    KeystoreType.GOOGLE_KMS: ("google_private_key_id",),
    KeystoreType.IBM_KEY_PROTECT: ("ibm_iam_endpoint", "ibm_key_ring"),
}
IBM_IAM_DEFAULT = "https://iam.cloud.ibm.com"

#: UKO's ``azure_location`` values (the SDK's KeystoreTypeAzure_AzureLocation_* constants)
AZURE_LOCATIONS = frozenset(
    (
        "asia_east",
        "asia_southeast",
        "australia_central",
        "australia_central_2",
        "australia_east",
        "australia_southeast",
        "brazil_south",
        "canada_central",
        "canada_east",
        "china_east",
        "china_east_2",
        "china_north",
        "china_north_2",
        "europe_north",
        "europe_west",
        "france_central",
        "france_south",
        "germany_central",
        "germany_northeast",
        "india_central",
        "india_south",
        "india_west",
        "japan_east",
        "japan_west",
        "korea_central",
        "korea_south",
        "south_africa_north",
        "south_africa_west",
        "uk_south",
        "uk_west",
        "us_central",
        "us_dod_central",
        "us_dod_east",
        "us_east",
        "us_east_2",
        "us_gov_arizona",
        "us_gov_iowa",
        "us_gov_texas",
        "us_gov_virginia",
        "us_north_central",
        "us_south_central",
        "us_west",
        "us_west_2",
        "us_west_central",
    )
)


def check_azure_location(value: str) -> str:
    if value not in AZURE_LOCATIONS:
        raise InvalidInput(
            f"azure_location {shown(value)} is not one of UKO's Azure locations (e.g. europe_west, us_east_2)",
            target="azure_location",
        )
    return value


_AZURE_ENVIRONMENTS = {
    "azure.net": "azure",
    "azure.cn": "azure_china",
    "microsoftazure.de": "azure_germany",
    "usgovcloudapi.net": "azure_us_government",
}


def uko_aws_region(region: str) -> str:
    """An AWS region as UKO names it (``us_east_1`` for ``us-east-1``)."""
    return region.replace("-", "_")


def aws_region(value: str) -> str:
    """An AWS region given by UKO's name (``us_east_1``) or AWS's (``us-east-1``), as AWS names it."""
    return value.replace("_", "-")


def azure_environment(endpoint: str) -> str:
    """UKO's ``azure_environment`` of a Key Vault URL (``azure`` for ``….vault.azure.net``)."""
    host = (urlsplit(endpoint).hostname or "").lower()
    return next((env for suffix, env in _AZURE_ENVIRONMENTS.items() if host.endswith("." + suffix)), "azure")


def azure_endpoint(service_name: str, environment: str = "azure") -> str:
    """The Key Vault URL of UKO's ``azure_service_name`` in ``azure_environment``."""
    suffix = next((s for s, env in _AZURE_ENVIRONMENTS.items() if env == environment), None)
    if suffix is None:
        allowed = ", ".join(_AZURE_ENVIRONMENTS.values())
        raise InvalidInput(
            f"azure_environment {shown(environment)} is not one of {allowed}", target="azure_environment"
        )
    return f"https://{service_name}.vault.{suffix}"


def uko_keystore_fields(kind: KeystoreType, settings: Mapping[str, Any], endpoint: str | None) -> dict[str, Any]:
    """UKO's fields of a keystore of this type, from its settings and effective ``endpoint``: where it is and
    who it acts as (never a credential: those fields say REDACTED). Unknown optional fields are left out;
    a required one keyorch cannot know (an Azure resource group given to keyorch's own body) is ''."""
    kept: Mapping[str, Any] = settings.get(UKO_SETTINGS) or {}
    doc: dict[str, Any] = {name: REDACTED for name in _SECRET_FIELDS[kind]}
    match kind:
        case KeystoreType.AWS_KMS:
            doc["aws_region"] = uko_aws_region(str(settings.get("region", "")))
        case KeystoreType.AZURE_KEY_VAULT:
            url = endpoint or ""
            doc["azure_service_name"] = (urlsplit(url).hostname or "").split(".")[0]
            doc["azure_environment"] = azure_environment(url)
            for name in UKO_KEPT_FIELDS[kind]:  # as given, where it was (a UKO body's service name and cloud)
                doc[name] = str(kept.get(name) or doc.get(name, ""))
            if not doc["azure_location"]:  # an enum in UKO: not known (keyorch's own body has no field for it)
                del doc["azure_location"]
        case KeystoreType.GOOGLE_KMS:
            doc["google_project_id"] = settings.get("project", "")
            doc["google_location"] = settings.get("location", "")
            doc["google_key_ring"] = settings.get("key_ring", "")
            if kept.get("google_private_key_id"):
                doc["google_private_key_id"] = kept["google_private_key_id"]
        case KeystoreType.IBM_KEY_PROTECT:
            doc["ibm_variant"] = IBM_VARIANT_KEY_PROTECT
            doc["ibm_api_endpoint"] = endpoint or ""
            doc["ibm_iam_endpoint"] = kept.get("ibm_iam_endpoint") or IBM_IAM_DEFAULT
            doc["ibm_instance_id"] = settings.get("instance_id", "")
            if kept.get("ibm_key_ring"):
                doc["ibm_key_ring"] = kept["ibm_key_ring"]
    return doc


# -- disconnecting a keystore (DeleteKeystore's ``mode``) -------------------------------------------------------

#: UKO's modes of ``DELETE /keystores/{id}`` (``DeleteKeystoreOptions_Mode_*``). In UKO ``restrict`` (the default)
#: refuses while keys are in the keystore, ``disconnect`` leaves them there unchanged, and ``deactivate`` and
#: ``destroy`` change them first. keyorch never lets a disconnect change or abandon a live key: every mode is
#: decided by the one disconnect rule (``domain.rules.check_disconnect``), which refuses while a key targeting
#: the keystore is active, deactivated or compromised; ``deactivate`` and ``destroy`` are then done through the
#: keys' own lifecycle (transition table, dual authorization), and the disconnect repeated.
DISCONNECT_MODES: tuple[str, ...] = ("restrict", "disconnect", "deactivate", "destroy")
DEFAULT_DISCONNECT_MODE = "restrict"


def disconnect_mode(value: str | None, field: str = "mode") -> str:
    """A DeleteKeystore mode (``None``: the default); anything else is bad input naming the field and value."""
    if value is None:
        return DEFAULT_DISCONNECT_MODE
    if value in DISCONNECT_MODES:
        return value
    raise InvalidInput(
        f"{field} {shown(value)} is not a mode of disconnecting a keystore; use one of {', '.join(DISCONNECT_MODES)}",
        target=field,
    )


# -- associated resources ----------------------------------------------------------------------------------------

#: UKO's ``AssociatedResource.type`` of a resource registered with a key in IBM Cloud (Key Protect registrations).
IBM_REGISTRATION_TYPE = "com_ibm_cloud_kms_registration"
