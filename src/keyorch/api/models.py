"""Request bodies and query strings of the API, validated by pydantic (and described in the OpenAPI document).

The models check types and shapes only; names, labels, endpoints, algorithms and the lifecycle are
checked by the service functions behind them (``domain.validation``), so the API and the CLI refuse the
same input alike, with the same message.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

from keyorch.domain.models import DriftPolicy, KeystoreType
from keyorch.domain.states import KeyState
from keyorch.domain.uko import state_alias
from keyorch.domain.validation import LABEL_RE, MAX_DESCRIPTION, MAX_GROUPS, MAX_LOCATION, NAME_RE
from keyorch.providers.limits import MAX_CONCURRENCY_LIMIT

_Ref = Field(min_length=1, max_length=256)
_Setting = Field(default=None, min_length=1, max_length=2048)


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

    vault: str = _Ref
    name: str = _checked(NAME_RE, _NAME)
    type: KeystoreType
    location: str | None = Field(default=None, max_length=2048, description=_LOCATION_TEXT)
    google_location: str | None = Field(default=None, min_length=1, max_length=2048, description="Cloud KMS location")
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
    """What `keyorch keystore update` changes; a field left out stays as it is. Moving the endpoint or the TLS
    trust of a keystore with stored credentials needs them again (credentials)."""

    allow_insecure_http: StrictBool | None = None
    drift_policy: DriftPolicy | None = None


class TemplateCreate(Body):
    vault: str = _Ref
    name: str = _checked(NAME_RE, _NAME)
    keystores: list[str] = Field(min_length=1, max_length=64, description="keystore ids or names")
    algorithm: str = Field(default="aes", min_length=1, max_length=16)
    size: StrictInt = Field(default=256, ge=1, le=65536)
    naming_scheme: str = Field(default="{label}", min_length=1, max_length=96)
    state: Literal["pre_active", "active"] = "pre_active"


class KeyCreate(Body):
    template: str = _Ref
    label: str = _checked(LABEL_RE, "1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
    state: Literal["pre_active", "active"] | None = Field(default=None, description="defaults to the template's")


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


class KeystoreFilter(VaultFilter):
    include_disconnected: bool = False


class KeyFilterQuery(VaultFilter):
    state: Annotated[KeyState | None, BeforeValidator(state_alias)] = Field(
        default=None, description="UKO's name (pre_activation, active, deactivated, destroyed) or keyorch's"
    )
    out_of_sync: bool = False
    include_destroyed: bool = False


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
