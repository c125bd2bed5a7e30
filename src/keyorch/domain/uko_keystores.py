"""UKO v4's keystore bodies as keyorch's connection fields and credentials document: the one place they map.

IBM's UKO Go SDK (``ukov4/uko_v4.go``) sends a keystore per type: ``KeystoreCreationRequestKeystoreType
{AwsKms,Azure,GoogleKms,IbmCloudKmsInternalExternal}Create`` to connect one, ``KeystoreUpdateRequestKeystoreType
…Update`` to change one. Each carries the provider's location and credentials in fields of its own
(``aws_region``, ``aws_access_key_id``, …); keyorch keeps settings (``region``, ``endpoint``, ``project``, …) and
one credentials document per type (:mod:`keyorch.credentials`). :func:`from_uko` turns the first into the
second, so the API, whichever body it got, reaches the one connect and update implementation
(:mod:`keyorch.service.keystores`, :mod:`keyorch.service.keystore_update`).

UKO's bodies name no endpoint for AWS, Azure or Google: AWS's follows from the region and Google's is its
one API (:func:`keyorch.providers.endpoints.effective_endpoint`), Azure's from the key vault's name and cloud
(:func:`keyorch.domain.uko.azure_endpoint`, stored as the keystore's endpoint). keyorch's own ``endpoint`` and
``allow_insecure_http`` stay allowed beside UKO's fields (a private endpoint, the fakes in tests), and
``azure_authority_host`` names the Azure AD authority for it (by default the cloud's). A field keyorch
cannot honour is refused naming it, never dropped: another IBM variant than Key Protect, a Key Protect key
ring other than the default one, an AWS partition given as a region, a Google private key id that is not
the credentials' own.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from keyorch.domain.errors import InvalidInput
from keyorch.domain.models import KeystoreType
from keyorch.domain.uko import IBM_VARIANT_KEY_PROTECT, UKO_KEPT_FIELDS, aws_region, azure_endpoint

#: UKO's per-type fields of a keystore body (the SDK's json names), by type
UKO_BODY_FIELDS: dict[KeystoreType, tuple[str, ...]] = {
    KeystoreType.AWS_KMS: ("aws_region", "aws_access_key_id", "aws_secret_access_key"),
    KeystoreType.AZURE_KEY_VAULT: (
        "azure_service_name",
        "azure_resource_group",
        "azure_location",
        "azure_service_principal_client_id",
        "azure_service_principal_password",
        "azure_tenant",
        "azure_subscription_id",
        "azure_environment",
        "azure_authority_host",  # keyorch's: where the service principal signs in (default: the cloud's)
    ),
    KeystoreType.GOOGLE_KMS: (
        "google_credentials",
        "google_location",
        "google_project_id",
        "google_private_key_id",
        "google_key_ring",
    ),
    KeystoreType.IBM_KEY_PROTECT: (
        "ibm_variant",
        "ibm_api_endpoint",
        "ibm_iam_endpoint",
        "ibm_api_key",
        "ibm_instance_id",
        "ibm_key_ring",
    ),
}
ALL_UKO_BODY_FIELDS: tuple[str, ...] = tuple(f for names in UKO_BODY_FIELDS.values() for f in names)

#: the credential fields of each type: given one, the body carries the keystore's credentials
SECRET_FIELDS: dict[KeystoreType, tuple[str, ...]] = {
    KeystoreType.AWS_KMS: ("aws_access_key_id", "aws_secret_access_key"),
    KeystoreType.AZURE_KEY_VAULT: ("azure_service_principal_password",),
    KeystoreType.GOOGLE_KMS: ("google_credentials",),
    KeystoreType.IBM_KEY_PROTECT: ("ibm_api_key",),
}
#: which of keyorch's connection fields each UKO field stands for (the two may not both be given)
_SETTING_OF: dict[str, str] = {
    "aws_region": "region",
    "ibm_api_endpoint": "endpoint",
    "ibm_instance_id": "instance_id",
    "google_project_id": "project",
    "google_key_ring": "key_ring",
}
#: UKO's AWS "regions" that are partitions: KMS keys live in a region of one
_AWS_PARTITIONS = frozenset({"aws_global", "aws_cn_global", "aws_us_gov_global", "aws_iso_global", "aws_iso_b_global"})
_AZURE_AUTHORITIES = {
    "azure": "https://login.microsoftonline.com",
    "azure_china": "https://login.chinacloudapi.cn",
    "azure_germany": "https://login.microsoftonline.de",
    "azure_us_government": "https://login.microsoftonline.us",
}
IBM_DEFAULT_KEY_RING = "default"
IBM_DEFAULT_IAM_URL = "https://iam.cloud.ibm.com/identity/token"


@dataclass(frozen=True)
class UkoConnection:
    """What a UKO body says, in keyorch's terms (None / empty: the body did not say)."""

    #: keyorch's connection fields (endpoint, region, project, key_ring, instance_id)
    connection: dict[str, str] = field(default_factory=dict)
    #: the Cloud KMS location
    google_location: str | None = None
    #: the credentials document to store (encrypted), when the body carried credentials
    credentials: dict[str, Any] | None = None
    #: UKO's fields keyorch keeps to answer with (``settings["uko"]``)
    kept: dict[str, str] = field(default_factory=dict)


def _required(kind: KeystoreType, given: Mapping[str, str], names: tuple[str, ...]) -> None:
    for name in names:
        if not given.get(name):
            raise InvalidInput(f"a keystore of type {kind} given as UKO's body needs {name}", target=name)


def _google_credentials(encoded: str) -> dict[str, Any]:
    """UKO's ``google_credentials``: the service account's JSON key, base64-encoded (never echoed back)."""
    try:
        doc = json.loads(base64.b64decode(encoded.strip(), validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidInput(
            "google_credentials is not a service account's JSON key in base64", target="google_credentials"
        ) from None
    if not isinstance(doc, dict):
        raise InvalidInput("google_credentials must hold one JSON object", target="google_credentials")
    return doc


def _aws(given: Mapping[str, str], out: dict[str, Any], stored: Mapping[str, Any]) -> None:
    if "aws_region" in given:
        region = given["aws_region"]
        if region in _AWS_PARTITIONS:
            raise InvalidInput(
                f"aws_region {region!r} is an AWS partition, not a region: give the region the keys are in "
                "(e.g. us_east_1)",
                target="aws_region",
            )
        out["connection"]["region"] = aws_region(region)
    if "aws_secret_access_key" in given:  # a new secret alone keeps the stored access key id
        known = {"aws_access_key_id": str(stored.get("access_key_id", "")), **given}
        _required(KeystoreType.AWS_KMS, known, SECRET_FIELDS[KeystoreType.AWS_KMS])
        out["credentials"] = {
            "access_key_id": known["aws_access_key_id"],
            "secret_access_key": given["aws_secret_access_key"],
        }
    elif "aws_access_key_id" in given:
        _required(KeystoreType.AWS_KMS, given, SECRET_FIELDS[KeystoreType.AWS_KMS])


def _azure(
    given: Mapping[str, str],
    out: dict[str, Any],
    kept_before: Mapping[str, str],
    stored: Mapping[str, Any],
    endpoint_given: bool,
) -> None:
    environment = given.get("azure_environment", kept_before.get("azure_environment", "azure"))
    if "azure_service_name" in given or "azure_environment" in given:
        name = given.get("azure_service_name") or kept_before.get("azure_service_name")
        if not name:
            raise InvalidInput("azure_environment needs azure_service_name too", target="azure_service_name")
        url = azure_endpoint(name, environment)  # refuses an unknown environment, naming it
        if not endpoint_given:
            out["connection"]["endpoint"] = url
        out["kept"]["azure_service_name"] = name
        out["kept"]["azure_environment"] = environment
    for name in ("azure_resource_group", "azure_location", "azure_subscription_id"):
        if name in given:
            out["kept"][name] = given[name]
    identity = ("azure_tenant", "azure_service_principal_client_id")
    if "azure_service_principal_password" in given or "azure_authority_host" in given:
        # a new password alone keeps the stored service principal, and its sign-in authority unless the cloud moves
        was = {"azure_tenant": stored.get("tenant_id"), "azure_service_principal_client_id": stored.get("client_id")}
        known = {n: given.get(n) or str(was[n] or "") for n in identity}
        _required(KeystoreType.AZURE_KEY_VAULT, {**given, **known}, (*identity, "azure_service_principal_password"))
        authority = given.get("azure_authority_host")
        if authority is None:
            kept_authority = stored.get("authority_host") if "azure_environment" not in given else None
            authority = str(kept_authority or _AZURE_AUTHORITIES[environment])
        out["credentials"] = {
            "tenant_id": known["azure_tenant"],
            "client_id": known["azure_service_principal_client_id"],
            "client_secret": given["azure_service_principal_password"],
            "authority_host": authority,
        }
    elif any(n in given for n in identity):
        raise InvalidInput(
            "azure_tenant and azure_service_principal_client_id come with azure_service_principal_password "
            "(the service principal's credentials are replaced together)",
            target="azure_service_principal_password",
        )


def _google(given: Mapping[str, str], out: dict[str, Any]) -> None:
    if "google_location" in given:
        out["google_location"] = given["google_location"]
    for name in ("google_project_id", "google_key_ring"):
        if name in given:
            out["connection"][_SETTING_OF[name]] = given[name]
    if "google_credentials" in given:
        doc = _google_credentials(given["google_credentials"])
        key_id = given.get("google_private_key_id")
        if key_id is not None and key_id != doc.get("private_key_id"):
            raise InvalidInput(
                "google_private_key_id is not the private key id of google_credentials", target="google_private_key_id"
            )
        if "project" not in out["connection"] and isinstance(doc.get("project_id"), str):
            out["connection"]["project"] = doc["project_id"]
        out["credentials"] = doc
    elif "google_private_key_id" in given:
        raise InvalidInput(
            "google_private_key_id comes with google_credentials (it is their key's id)", target="google_private_key_id"
        )


def _ibm(given: Mapping[str, str], out: dict[str, Any], stored: Mapping[str, Any]) -> None:
    variant = given.get("ibm_variant", IBM_VARIANT_KEY_PROTECT)
    if variant != IBM_VARIANT_KEY_PROTECT:
        raise InvalidInput(
            f"ibm_variant {variant!r} is not supported: use {IBM_VARIANT_KEY_PROTECT} (keyorch drives IBM Key "
            "Protect only)",
            target="ibm_variant",
        )
    ring = given.get("ibm_key_ring")
    if ring is not None and ring != IBM_DEFAULT_KEY_RING:
        raise InvalidInput(
            f"ibm_key_ring {ring!r} is not supported: keyorch keeps Key Protect keys in the instance's "
            f"{IBM_DEFAULT_KEY_RING!r} key ring",
            target="ibm_key_ring",
        )
    for name in ("ibm_api_endpoint", "ibm_instance_id"):
        if name in given:
            value = given[name].rstrip("/") if name == "ibm_api_endpoint" else given[name]
            out["connection"][_SETTING_OF[name]] = value
    iam = given.get("ibm_iam_endpoint")
    if iam is not None:
        out["kept"]["ibm_iam_endpoint"] = iam.rstrip("/")
    if "ibm_api_key" in given:  # a new API key alone is exchanged where the stored one was
        iam_url = f"{iam.rstrip('/')}/identity/token" if iam else str(stored.get("iam_url") or IBM_DEFAULT_IAM_URL)
        out["credentials"] = {"apikey": given["ibm_api_key"], "iam_url": iam_url}
    elif iam is not None:
        raise InvalidInput(
            "ibm_iam_endpoint comes with ibm_api_key (the API key is exchanged there)", target="ibm_api_key"
        )


def from_uko(
    kind: KeystoreType,
    given: Mapping[str, str | None],
    keyorch_fields: Mapping[str, Any],
    *,
    create: bool,
    kept_before: Mapping[str, str] | None = None,
    stored_before: Mapping[str, Any] | None = None,
) -> UkoConnection:
    """UKO's per-type fields of a body (``given``; absent or None: not given) in keyorch's terms.

    ``keyorch_fields`` are the body's keyorch fields that were given (``region``, ``endpoint``, ``credentials``,
    …): a UKO field and the keyorch field it stands for may not both be given. ``create``: a connect, where UKO's
    SDK requires the location and credential fields of the type; on an update every field is optional and
    ``kept_before`` (the keystore's kept UKO fields) and ``stored_before`` (its stored credentials) fill in what a
    partial change leaves out: a new secret alone keeps the stored identity it belongs to."""
    present = {name: value for name, value in given.items() if value is not None}
    foreign = [name for name in present if name not in UKO_BODY_FIELDS[kind]]
    if foreign:
        raise InvalidInput(f"{foreign[0]} does not apply to a keystore of type {kind}", target=foreign[0])
    for name, setting in _SETTING_OF.items():
        if name in present and keyorch_fields.get(setting) is not None:
            raise InvalidInput(f"give {name} or {setting}, not both", target=name)
    if any(name in present for name in SECRET_FIELDS[kind]):
        for other in ("credentials", "credentials_from_environment"):
            if keyorch_fields.get(other):
                raise InvalidInput(f"give {SECRET_FIELDS[kind][0]} or {other}, not both", target=other)
    uko_shaped = any(name in present for name in SECRET_FIELDS[kind])
    if create and uko_shaped:
        needs: dict[KeystoreType, tuple[tuple[str, str | None], ...]] = {
            KeystoreType.AWS_KMS: (("aws_region", "region"),),
            KeystoreType.AZURE_KEY_VAULT: (
                ("azure_service_name", "endpoint"),
                ("azure_tenant", None),
                ("azure_service_principal_client_id", None),
            ),
            KeystoreType.GOOGLE_KMS: (("google_location", "location"), ("google_key_ring", "key_ring")),
            KeystoreType.IBM_KEY_PROTECT: (("ibm_api_endpoint", "endpoint"), ("ibm_instance_id", "instance_id")),
        }
        for name, instead in needs[kind]:
            if not present.get(name) and (instead is None or not keyorch_fields.get(instead)):
                raise InvalidInput(f"a keystore of type {kind} given as UKO's body needs {name}", target=name)
    out: dict[str, Any] = {"connection": {}, "google_location": None, "credentials": None, "kept": {}}
    before, stored = kept_before or {}, stored_before or {}
    match kind:
        case KeystoreType.AWS_KMS:
            _aws(present, out, stored)
        case KeystoreType.AZURE_KEY_VAULT:
            _azure(present, out, before, stored, bool(keyorch_fields.get("endpoint")))
        case KeystoreType.GOOGLE_KMS:
            _google(present, out)
        case KeystoreType.IBM_KEY_PROTECT:
            _ibm(present, out, stored)
    kept = {k: v for k, v in out["kept"].items() if k in UKO_KEPT_FIELDS[kind]}
    return UkoConnection(
        connection=out["connection"],
        google_location=out["google_location"],
        credentials=out["credentials"],
        kept=kept,
    )
