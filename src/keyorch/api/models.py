"""Request bodies and query strings of the API, validated by pydantic (and described in the OpenAPI document).

The models check types and shapes only; names, labels, endpoints, algorithms and the lifecycle are
checked by the service functions behind them (``domain.validation``), so the API and the CLI refuse the
same input alike, with the same message.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, model_validator

from keyorch.domain.models import DriftPolicy, KeystoreType
from keyorch.domain.states import KeyState
from keyorch.domain.uko import keystore_type_alias, state_alias
from keyorch.domain.uko_keystores import ALL_UKO_BODY_FIELDS
from keyorch.domain.validation import (
    LABEL_RE,
    MAX_DESCRIPTION,
    MAX_GROUPS,
    MAX_LOCATION,
    MAX_TAG_NAME,
    MAX_TAG_VALUE,
    MAX_TAGS,
    NAME_RE,
)
from keyorch.providers.limits import MAX_CONCURRENCY_LIMIT

_Ref = Field(min_length=1, max_length=256)
_Setting = Field(default=None, min_length=1, max_length=2048)
_Uko = Field(default=None, max_length=2048, description="UKO's field")
_UkoSecret = Field(
    default=None, min_length=1, max_length=8192, description="UKO's field: stored encrypted, never returned"
)


def _checked(regex: re.Pattern[str], description: str, **field: Any) -> Any:
    """A field the service checks (``domain.validation``, the same check the CLI runs); the document shows
    the rule as a JSON Schema pattern (anchored: JSON Schema patterns match anywhere)."""
    return Field(description=description, json_schema_extra={"pattern": f"^{regex.pattern}$"}, **field)


_NAME = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"


class Body(BaseModel):
    """JSON bodies: unknown fields are refused; booleans and integers must be JSON booleans and integers."""

    model_config = ConfigDict(extra="forbid")


class Query(BaseModel):
    """Query strings are text, so these convert ("true", "20"). A parameter the model does not name is
    refused (400 naming it and the allowed ones): a filter silently ignored would widen what a client acts on."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def parameter_names(cls) -> list[str]:
        return [f.alias or name for name, f in cls.model_fields.items()]


_DESCRIPTION = f"free text, at most {MAX_DESCRIPTION} characters, no control characters but tab and newline"
_LABEL = "1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"


class VaultCreate(Body):
    """UKO's CreateVault body (name, description, recovery_key_label) and keyorch's ``dual_auth``."""

    name: str = _checked(NAME_RE, _NAME)
    description: str = Field(default="", description=_DESCRIPTION)
    recovery_key_label: str | None = _checked(LABEL_RE, _LABEL, default=None)
    dual_auth: StrictBool = Field(default=False, description="deleting a key needs two different users (seed 002)")


class VaultUpdate(Body):
    """UKO's UpdateVault body: the fields to change (an absent one stays as it is)."""

    name: str | None = _checked(NAME_RE, _NAME, default=None)
    description: str | None = Field(default=None, description=_DESCRIPTION)
    recovery_key_label: str | None = _checked(LABEL_RE, _LABEL, default=None)


class IdReference(Body):
    """A reference by id, as UKO's bodies give one (``vault: {id}``)."""

    id: str = _Ref


class KeystoreFields(Body):
    """What connecting a keystore and changing one share: where it is, its TLS trust, its credentials."""

    endpoint: str | None = _Setting
    region: str | None = _Setting
    project: str | None = _Setting
    location: str | None = _Setting
    key_ring: str | None = _Setting
    instance_id: str | None = _Setting
    credentials: dict[str, Any] | None = Field(
        default=None, description="the provider's credentials document; stored encrypted, never returned"
    )
    credentials_from_environment: StrictBool = False
    ca_pem: str | None = Field(default=None, min_length=1, max_length=256 * 1024, description="PEM CA bundle")
    # UKO's per-type fields (IBM's SDK: KeystoreCreationRequest/KeystoreUpdateRequest…), mapped onto keyorch's
    # by keyorch.domain.uko_keystores; secrets among them are stored encrypted and never returned
    aws_region: str | None = _Uko
    aws_access_key_id: str | None = _Uko
    aws_secret_access_key: str | None = _UkoSecret
    google_location: str | None = Field(
        default=None, min_length=1, max_length=2048, description="Cloud KMS location (UKO's field)"
    )
    azure_service_name: str | None = _Uko
    azure_resource_group: str | None = _Uko
    azure_location: str | None = _Uko
    azure_service_principal_client_id: str | None = _Uko
    azure_service_principal_password: str | None = _UkoSecret
    azure_tenant: str | None = _Uko
    azure_subscription_id: str | None = _Uko
    azure_environment: str | None = _Uko
    azure_authority_host: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="keyorch: the Azure AD authority (default: the cloud's own)",
    )
    google_credentials: str | None = Field(
        default=None, min_length=1, max_length=96 * 1024, description="UKO: the service account's JSON key, base64"
    )
    google_project_id: str | None = _Uko
    google_private_key_id: str | None = _Uko
    google_key_ring: str | None = _Uko
    ibm_variant: str | None = _Uko
    ibm_api_endpoint: str | None = _Uko
    ibm_iam_endpoint: str | None = _Uko
    ibm_api_key: str | None = _UkoSecret
    ibm_instance_id: str | None = _Uko
    ibm_key_ring: str | None = _Uko

    def uko_fields(self) -> dict[str, str | None]:
        """UKO's per-type fields of the body (``google_location`` is keyorch's field of the same name)."""
        return {name: getattr(self, name, None) for name in ALL_UKO_BODY_FIELDS}

    def keyorch_fields(self) -> dict[str, Any]:
        """keyorch's fields of the body that were given."""
        return {name: getattr(self, name) for name in self.model_fields_set if name not in ALL_UKO_BODY_FIELDS}


_GROUPS: Any = Field(
    default_factory=list,
    max_length=MAX_GROUPS,
    description=f"the keystore's groups (UKO), each {_NAME}; templates distribute keys to a group's keystores",
)
_LOCATION_TEXT = (
    f"UKO's location: where the keystore is, free text of at most {MAX_LOCATION} characters; for a google_kms "
    "keystore given no google_location, also its Cloud KMS location (as before UKO's fields)"
)


class KeystoreConnect(KeystoreFields):
    """The fields of `keyorch keystore connect`; credentials inline (stored encrypted) or from the environment."""

    vault: Annotated[str, _Ref] | IdReference = Field(description="the vault's id or name, or UKO's {id}")
    name: str | None = _checked(NAME_RE, _NAME, default=None)
    type: Annotated[KeystoreType, BeforeValidator(keystore_type_alias)] = Field(
        description="the keystore type: UKO's names (aws_kms, azure_key_vault, google_kms, ibm_cloud_kms) or keyorch's"
    )
    location: str | None = Field(default=None, max_length=2048, description=_LOCATION_TEXT)
    description: str = Field(default="", description=_DESCRIPTION)
    groups: list[str] = _GROUPS
    allow_insecure_http: StrictBool = False
    drift_policy: DriftPolicy = DriftPolicy.FLAG
    rate_per_second: StrictFloat | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="cap on this keystore's request rate, requests per second (at least 0.1); 0: no keystore-wide cap; "
        "default: the provider's",
    )
    max_concurrency: StrictInt | None = Field(
        default=None,
        ge=1,
        le=MAX_CONCURRENCY_LIMIT,
        description=f"requests in flight to this keystore at most (1-{MAX_CONCURRENCY_LIMIT}); default: the provider's",
    )
    provider_quotas: StrictBool = Field(
        default=True, description="pace each operation by the provider's published request quota"
    )


class KeystoreUpdate(KeystoreFields):
    """What `keyorch keystore update` changes, or UKO's KeystoreUpdateRequest of the keystore's type; a field left
    out stays as it is. Moving the endpoint or the TLS trust of a keystore with stored credentials needs them again
    (credentials). New credentials are tried on the keystore before they are saved."""

    name: str | None = _checked(NAME_RE, _NAME, default=None)
    description: str | None = Field(default=None, description=_DESCRIPTION)
    groups: list[str] | None = Field(default=None, max_length=MAX_GROUPS, description="the keystore's groups (UKO)")
    allow_insecure_http: StrictBool | None = None
    drift_policy: DriftPolicy | None = None


class TemplateVaultRef(Body):
    """UKO's VaultReferenceInCreationRequest."""

    id: str = _Ref


class TemplateGroupEntry(Body):
    """UKO's KeystoresPropertiesCreate: every connected keystore of the vault in ``group`` of type ``type``."""

    group: str = _checked(NAME_RE, _NAME)
    type: str = Field(min_length=1, max_length=32, description="keystore type: UKO's name or keyorch's")


_ROTATION_POLICY = Field(
    default=None,
    min_length=1,
    max_length=40,
    description="keyorch: how often keys rotate, an ISO 8601 duration (P90D, P3M, P1Y); null: on no schedule",
)

_KEY_DATE = Field(
    default=None,
    min_length=1,
    max_length=100,
    description="ISO 8601 period after the key's creation (P1Y, P5Y1M1W2D) or a date YYYY-MM-DD",
)


_DEACTIVATE_ON_ROTATION = Field(
    default=None,
    description="UKO: after a rotation, disable the older versions where the keystore keeps a state per version "
    "(Azure Key Vault, Google Cloud KMS); AWS KMS and Key Protect keep older material for decryption only anyway",
)


class TemplateKeyProperties(Body):
    """UKO's KeyProperties (``size`` is text there: "256"; a number is accepted too)."""

    size: str | StrictInt | None = Field(default=None, description='bits: "256" (UKO) or 256')
    algorithm: str | None = Field(default=None, min_length=1, max_length=16)
    activation_date: str | None = _KEY_DATE
    expiration_date: str | None = _KEY_DATE
    state: Literal["pre_activation", "pre_active", "active"] | None = Field(
        default=None, description="the state keys start in"
    )
    deactivate_on_rotation: StrictBool | None = _DEACTIVATE_ON_ROTATION
    rotation_policy: str | None = _ROTATION_POLICY


class KeystoreConnectQuery(Query):
    dry_run: bool = Field(
        default=False,
        description="true: test the connection with the given credentials and store nothing (200: it passed)",
    )


class TemplateCreate(Body):
    """keyorch's body (vault by id or name, ``keystores`` by id or name, algorithm, size, state) and UKO's
    CreateKeyTemplate body (``vault{id}``, ``key{…}``, ``keystores[{group, type}]``, description, type, state)."""

    vault: str | TemplateVaultRef = Field(description="vault id or name, or UKO's {id}")
    name: str = _checked(NAME_RE, _NAME)
    description: str = Field(default="", description=_DESCRIPTION)
    keystores: list[Annotated[str, _Ref] | TemplateGroupEntry] = Field(
        min_length=1, max_length=64, description="keystore ids or names, and UKO's {group, type} entries"
    )
    key: TemplateKeyProperties | None = None
    algorithm: str | None = Field(default=None, min_length=1, max_length=16, description="default aes")
    size: StrictInt | None = Field(default=None, ge=1, le=65536, description="default 256")
    naming_scheme: str = Field(default="{label}", min_length=1, max_length=96)
    type: list[Annotated[str, Field(min_length=1, max_length=32)]] | None = Field(
        default=None, max_length=8, description='UKO\'s template type: ["user_defined"]'
    )
    state: Literal["pre_active", "active", "unarchived", "archived"] | None = Field(
        default=None,
        description="UKO: the template's state (unarchived, archived); keyorch: the state keys start in "
        "(pre_active, active; UKO gives that as key.state)",
    )


class TemplateKeyUpdate(Body):
    """UKO's KeyPropertiesUpdate: the planned dates keys get (null: none planned). ``size``, ``algorithm`` and
    ``state`` are accepted as the SDK round-trips them, but only as they are: keys keep what they were made with."""

    size: str | StrictInt | None = Field(default=None, description="unchanged only")
    algorithm: str | None = Field(default=None, min_length=1, max_length=16, description="unchanged only")
    state: Literal["pre_activation", "pre_active", "active"] | None = Field(default=None, description="unchanged only")
    activation_date: str | None = _KEY_DATE
    expiration_date: str | None = _KEY_DATE
    deactivate_on_rotation: StrictBool | None = Field(
        default=None, description="what keys made from now on get (keys made before keep theirs)"
    )
    rotation_policy: str | None = _ROTATION_POLICY


class TemplateUpdate(Body):
    """UKO's UpdateKeyTemplate body: the fields to change (absent: as it is). ``keystores`` replaces the whole
    distribution (keystore ids or names, and UKO's ``{group, type}`` entries)."""

    name: str | None = _checked(NAME_RE, _NAME, default=None)
    description: str | None = Field(default=None, description=_DESCRIPTION)
    keystores: list[Annotated[str, _Ref] | TemplateGroupEntry] | None = Field(
        default=None, min_length=1, max_length=64, description="the new distribution"
    )
    key: TemplateKeyUpdate | None = None


class DryRunQuery(Query):
    dry_run: bool = Field(default=False, description="only show what would change; change nothing")


class TagBody(Body):
    """A UKO tag of a managed key."""

    name: str = Field(min_length=1, max_length=MAX_TAG_NAME)
    value: str = Field(max_length=MAX_TAG_VALUE)


_TAGS = Field(default=None, max_length=MAX_TAGS, description="UKO's tags: names unique; replaces the key's tags")


class KeyCreate(Body):
    """keyorch's body (``template`` by id or name) or UKO's CreateManagedKey body (``template_name`` and
    ``vault: {id}``), with UKO's ``description`` and ``tags``."""

    template: str = Field(min_length=1, max_length=256, description="template id or name (or give UKO's template_name)")
    template_name: str | None = Field(default=None, min_length=1, max_length=256, description="UKO: template name")
    vault: IdReference | None = Field(default=None, description="UKO: the vault the template is in")
    label: str = _checked(LABEL_RE, _LABEL)
    description: str = Field(default="", description=_DESCRIPTION)
    tags: list[TagBody] | None = _TAGS
    state: Literal["pre_active", "active"] | None = Field(default=None, description="defaults to the template's")
    deactivate_on_rotation: StrictBool | None = Field(default=None, description="defaults to the template's")
    rotation_policy: str | None = Field(
        default=None,
        min_length=1,
        max_length=40,
        description="keyorch: the key's own rotation policy, an ISO 8601 duration (P90D); default: its template's",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_template(cls, data: Any) -> Any:
        """UKO's ``template_name`` is another spelling of ``template``: given alone it stands for it, so a
        body with neither is told ``template`` is required."""
        if isinstance(data, dict) and "template_name" in data:
            if "template" in data:
                raise ValueError("give the template either as template (an id or name) or as template_name, not both")
            return {**data, "template": data["template_name"]}
        return data

    @property
    def template_ref(self) -> str:
        return self.template


class KeyUpdate(Body):
    """UKO's UpdateManagedKey body: the fields to change (an absent one stays as it is; a null date clears it)."""

    label: str | None = _checked(LABEL_RE, _LABEL, default=None)
    description: str | None = Field(default=None, description=_DESCRIPTION)
    tags: list[TagBody] | None = _TAGS
    activation_date: date | None = Field(default=None, description="planned activation date (YYYY-MM-DD)")
    expiration_date: date | None = Field(default=None, description="planned expiration date (YYYY-MM-DD)")
    deactivate_on_rotation: StrictBool | None = _DEACTIVATE_ON_ROTATION
    rotation_policy: str | None = Field(
        default=None,
        min_length=1,
        max_length=40,
        description="keyorch: the key's own rotation policy, an ISO 8601 duration (P90D); null: its template's",
    )


def _comma_list(value: object) -> object:
    """UKO's SDK sends a list filter as one comma-separated parameter."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",")]
    return value


def _each(convert: Any) -> Any:
    """Convert each item of a list (before a list-splitting validator in Annotated: pydantic runs them last first)."""
    return BeforeValidator(lambda value: [convert(v) for v in value] if isinstance(value, list) else value)


def _never(name: str, why: str) -> Any:
    def refuse(value: object) -> object:
        raise ValueError(f"{name} cannot filter keys here: {why}")

    return BeforeValidator(refuse)


_List = Field(default=None, min_length=1, max_length=100)
_NO_DEACTIVATION = "keyorch records no deactivation date; filter by state=deactivated or updated_at instead"


class Page(Query):
    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=1_000_000_000)


class VaultFilter(Page):
    vault: str | None = Field(default=None, min_length=1, max_length=256, description="vault id or name")
    vault_id: str | None = Field(
        default=None,
        alias="vault.id",
        min_length=1,
        max_length=64 * 100,
        pattern=r"^[^,]+(,[^,]+)*$",
        description="vault ids, comma-separated (UKO's filter); with `vault` too, only vaults both name",
    )

    @property
    def vault_ids(self) -> list[str] | None:
        return [v.strip() for v in self.vault_id.split(",")] if self.vault_id is not None else None


_LIST = r"^[^,]+(,[^,]+)*$"


def _text_filter(description: str, limit: int, alias: str | None = None, pattern: str | None = None) -> Any:
    """A text filter of at most ``limit`` characters (all of a list's together stay within a request line)."""
    return Field(default=None, min_length=1, max_length=limit, alias=alias, pattern=pattern, description=description)


def _csv(alias: str | None = None, description: str | None = None, max_length: int = 64) -> Any:
    """A query parameter listing values separated by commas (short: a request line has at most 8 KiB)."""
    return Field(
        default=None,
        alias=alias,
        min_length=1,
        max_length=max_length,
        pattern=r"^[^,]+(,[^,]+)*$",
        description=description,
    )


class TemplateQuery(VaultFilter):
    """UKO's ListKeyTemplates parameters (a list is comma-separated; a template matching any value is shown)."""

    vault_id: str | None = Field(
        default=None,
        alias="vault.id",
        min_length=1,
        max_length=37 * 10,
        pattern=r"^[^,]+(,[^,]+)*$",
        description="vault ids, comma-separated (at most 10); with `vault` too, only vaults both name",
    )
    name: str | None = Field(default=None, min_length=1, max_length=64)
    naming_scheme: str | None = Field(default=None, min_length=1, max_length=96)
    key_algorithm: str | None = _csv("key.algorithm")
    key_size: int | None = Field(default=None, alias="key.size", ge=1, le=65536)
    key_size_min: int | None = Field(default=None, alias="key.size_min", ge=1, le=65536)
    key_size_max: int | None = Field(default=None, alias="key.size_max", ge=1, le=65536)
    keystores_type: str | None = _csv("keystores[].type", "keystore types (UKO's names or keyorch's)", 128)
    keystores_group: str | None = _csv("keystores[].group", max_length=256)
    type: str | None = _csv("type[]", "template types, e.g. user_defined")
    state: str | None = _csv(description="unarchived, archived")
    sort: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="fields separated by commas, - before one for descending: name, naming_scheme, state, "
        "key.algorithm, key.size, vault.id, created_at, updated_at",
    )


class KeystoreFilter(VaultFilter):
    """UKO's ListKeystores query (and keyorch's ``vault``, ``include_disconnected``)."""

    include_disconnected: bool = False
    type: str | None = _text_filter(
        "keystore types, comma-separated (UKO's or keyorch's names): any of them", 128, pattern=_LIST
    )
    name: str | None = _text_filter("only keystores whose name contains this", 64)
    description: str | None = _text_filter("only keystores whose description contains this", 128)
    group: str | None = _text_filter("only keystores in this group (not with groups[])", 64)
    groups: str | None = _text_filter("only keystores in any of these groups, comma-separated", 256, "groups[]", _LIST)
    location: str | None = _text_filter("only keystores at one of these locations, comma-separated", 128, None, _LIST)
    sort: str | None = _text_filter(
        "fields to sort by, comma-separated, '-' before one for descending order: name, type, location, "
        "description, created_at, updated_at, id",
        128,
        pattern=_LIST,
    )


def _day_or_instant(value: object) -> object:
    """``YYYY-MM-DD`` is a day (a filter takes it whole); anything else is parsed as an instant."""
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a day (YYYY-MM-DD)") from None
    return value


Stamp = Annotated[datetime | date, BeforeValidator(_day_or_instant)]


class KeyFilterQuery(VaultFilter):
    """UKO's ListManagedKeys parameters (and keyorch's ``out_of_sync``, ``include_destroyed``, ``vault``). Each
    filters; those keyorch cannot answer (``deactivation_date``) are refused, never ignored."""

    state: Annotated[list[KeyState] | None, _each(state_alias), BeforeValidator(_comma_list)] = Field(
        default=None,
        min_length=1,
        max_length=8,
        description="states, comma-separated: UKO's names (pre_activation, active, deactivated, destroyed) "
        "or keyorch's",
    )
    out_of_sync: bool = False
    include_destroyed: bool = False
    label: str | None = Field(default=None, min_length=1, max_length=128, description="the key's label, exactly")
    algorithm: Annotated[list[Literal["aes", "rsa", "ec", "hmac"]] | None, BeforeValidator(_comma_list)] = _List
    size: int | None = Field(default=None, ge=1, le=65536)
    size_min: int | None = Field(default=None, ge=1, le=65536)
    size_max: int | None = Field(default=None, ge=1, le=65536)
    activation_date: date | None = None
    activation_date_min: date | None = None
    activation_date_max: date | None = None
    expiration_date: date | None = None
    expiration_date_min: date | None = None
    expiration_date_max: date | None = None
    created_at: Stamp | None = Field(default=None, description="a day (YYYY-MM-DD) or an instant")
    created_at_min: Stamp | None = None
    created_at_max: Stamp | None = None
    updated_at: Stamp | None = Field(default=None, description="a day (YYYY-MM-DD) or an instant")
    updated_at_min: Stamp | None = None
    updated_at_max: Stamp | None = None
    deactivation_date: Annotated[str | None, _never("deactivation_date", _NO_DEACTIVATION)] = None
    deactivation_date_min: Annotated[str | None, _never("deactivation_date_min", _NO_DEACTIVATION)] = None
    deactivation_date_max: Annotated[str | None, _never("deactivation_date_max", _NO_DEACTIVATION)] = None
    template_name: Annotated[list[str] | None, BeforeValidator(_comma_list)] = Field(
        default=None, alias="template.name", min_length=1, max_length=100
    )
    template_id: Annotated[list[str] | None, BeforeValidator(_comma_list)] = Field(
        default=None, alias="template.id", min_length=1, max_length=100
    )
    keystore_type: Annotated[list[KeystoreType] | None, _each(keystore_type_alias), BeforeValidator(_comma_list)] = (
        Field(default=None, alias="referenced_keystores[].type", min_length=1, max_length=8)
    )
    keystore_name: Annotated[list[str] | None, BeforeValidator(_comma_list)] = Field(
        default=None, alias="referenced_keystores[].name", min_length=1, max_length=100
    )
    instance_keystore_type: Annotated[
        list[KeystoreType] | None, _each(keystore_type_alias), BeforeValidator(_comma_list)
    ] = Field(default=None, alias="instances[].keystore.type", min_length=1, max_length=8)
    sort: Annotated[list[str] | None, BeforeValidator(_comma_list)] = Field(
        default=None,
        min_length=1,
        max_length=10,
        description="fields to sort by, comma-separated, '-' first for descending: label, name, algorithm, state, "
        "size, activation_date, expiration_date, created_at, updated_at, vault.id",
    )


class AssociatedResourceQuery(Page):
    """UKO's ListAssociatedResourcesFor{ManagedKey,TargetKeystore} parameters."""

    sort: Annotated[list[str] | None, BeforeValidator(_comma_list)] = Field(
        default=None,
        min_length=1,
        max_length=5,
        description="fields to sort by, comma-separated, '-' first for descending: name, type, id, key_id_in_keystore",
    )


_UkoName = Annotated[str, Field(min_length=1, max_length=256)]


class UnmanagedKeyQuery(Page):
    """``GET /keystores/{id}/unmanaged_keys`` parameters (keyorch's: UKO has no such list)."""

    made_by: Literal["uko", "keyorch", "unknown"] | None = Field(
        default=None, description="only the keys that look made by UKO, by keyorch (orphans), or by neither"
    )
    uko_name: Annotated[list[_UkoName] | None, BeforeValidator(_comma_list)] = Field(
        default=None,
        max_length=100,
        description="globs of names UKO gave keys (labels of a UKO export, or a naming scheme: akms-*), "
        "comma-separated: a key whose name matches looks made by UKO",
    )


class KeystoreDeleteQuery(Query):
    """UKO's DeleteKeystore parameters."""

    mode: str | None = Field(
        default=None,
        description="UKO's mode: restrict (the default), disconnect, deactivate or destroy; keyorch decides each "
        "by its disconnect rule (refused while a key targeting the keystore is active, deactivated or compromised)",
    )


class DestroyQuery(Query):
    force: bool = Field(default=False, description="destroy even where the keystore reports the key in use")


class ActivateQuery(Query):
    transition: Literal["any", "activate", "reactivate"] = Field(
        default="any",
        description="any: activate a pre-active key or reactivate a deactivated one (UKO); activate or "
        "reactivate: only that transition",
    )


class PlanRequest(Body):
    keys: list[Annotated[str, _Ref]] = Field(
        default_factory=list, max_length=1000, description="key ids or labels; empty: every key with a target"
    )


class AuditQuery(Query):
    object: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="only records about this object: an id, a vault, keystore or template name, or a key label",
    )
    limit: int = Field(default=1000, ge=1, le=100_000, description="the newest records, at most this many")


class AdoptInstance(Body):
    """One provider key to adopt: the keystore it is in, and its id (or name) there."""

    keystore: IdReference
    key_id_in_keystore: str = Field(min_length=1, max_length=512, description="the provider's id or name of the key")


class AdoptFilter(Body):
    """Which of the keystores' unmanaged keys to adopt in bulk (all that match every given part)."""

    all_unmanaged: bool = Field(default=False, description="every key no managed key targets")
    name_pattern: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=list, max_length=100, description="globs; a key whose name matches one is adopted"
    )
    tags: list[TagBody] = Field(default_factory=list, max_length=50, description="tags or labels a key must carry")


class AdoptBody(Body):
    """keyorch's ``POST /managed_keys/adopt``: keys that exist in keystores become managed keys, as they are."""

    keystores: list[IdReference] = Field(min_length=1, max_length=50, description="the keystores (id or name)")
    vault: IdReference = Field(description="the vault the managed keys go to (id or name)")
    template: IdReference = Field(description="the template (in that vault) they are made from (id or name)")
    instances: list[AdoptInstance] | None = Field(
        default=None, min_length=1, max_length=50, description="the keys of ONE managed key, one per keystore"
    )
    filter: AdoptFilter | None = Field(default=None, description="or: which unmanaged keys to adopt in bulk")
    label: str | None = Field(default=None, min_length=1, max_length=256, description="with instances: its label")
    state: Literal["active", "deactivated"] | None = Field(
        default=None, description="the state to take when the keystores disagree (default: what they show)"
    )
    marker: bool = Field(default=True, description="add keyorch's tag, label or alias to each adopted key")
