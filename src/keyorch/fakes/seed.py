"""Keys made outside keyorch, for the fakes to hold from the start: the seed format (docs/migrating-from-uko.md).

A seed document (YAML or JSON, for ``keyorch fakes serve --seed FILE``) lists, per keystore type, the keys the fake
holds as if UKO or a person had made them; ``POST /_fake/seed`` on a running fake takes one type's list as
``{"keys": [...]}``. Each key is a :class:`SeedKey`: its name in the keystore, more aliases, tags or labels, a
state, a number of versions, a creation date and a description; ``uko`` adds the marks UKO is taken to leave
(:mod:`keyorch.domain.uko_markers`). The fakes make each key in their own store (:mod:`keyorch.fakes.seed_apply`),
so it reads through the provider's API exactly like a key made through it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

#: the provider-neutral states a seeded key can be in (each fake's native form: docs/migrating-from-uko.md)
SeedState = Literal["active", "disabled", "destruction_pending"]
MAX_SEED_KEYS = 5000


class SeedError(ValueError):
    """A seed the fake cannot hold; the message names the key (by its position) and the field."""


class SeedKey(BaseModel):
    """One key made outside keyorch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        min_length=1,
        max_length=256,
        description="what the keystore calls the key (UKO's label_in_keystore): the AWS alias (alias/ is added "
        "when missing), the Azure key name, the Cloud KMS cryptoKeyId, the Key Protect key name",
    )
    aliases: list[str] = Field(default_factory=list, max_length=10, description="more aliases (AWS, Key Protect)")
    tags: dict[str, str] = Field(
        default_factory=dict,
        description="AWS tags, Azure tags, Cloud KMS labels; Key Protect tags are strings: each key, or key:value",
    )
    state: SeedState = "active"
    versions: int = Field(default=1, ge=1, le=50, description="key versions (materials), the newest primary")
    created: datetime | None = Field(default=None, description="creation date (default: the fake's clock)")
    description: str = Field(default="", max_length=240)
    origin: Literal["AWS_KMS", "EXTERNAL"] | None = Field(
        default=None, description="AWS only: whose key material (default EXTERNAL for a uko key, else AWS_KMS)"
    )
    key_type: str | None = Field(
        default=None,
        description="Azure kty (RSA, RSA-HSM, EC, EC-HSM, oct-HSM; default RSA) or Cloud KMS protection level "
        "(SOFTWARE, HSM; default SOFTWARE)",
    )
    key_ring: str | None = Field(default=None, description="Cloud KMS only: the key ring's resource name")
    uko: str | bool | None = Field(
        default=None,
        description="made by UKO: its managed key id (true: a new one); adds UKO's marks to the key",
    )

    @field_validator("created")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("created needs a time zone (e.g. 2024-03-01T10:00:00Z)")
        return value

    @field_validator("uko")
    @classmethod
    def _uko_id(cls, value: str | bool | None) -> str | bool | None:
        if isinstance(value, str) and not (1 <= len(value) <= 64 and value.replace("-", "").isalnum()):
            raise ValueError("uko must be true or a managed key id (letters, digits and '-', at most 64)")
        return value

    def uko_id(self) -> str | None:
        """The UKO managed key id the key is marked with (``None``: not a UKO key)."""
        if self.uko is True:
            return str(uuid.uuid5(uuid.NAMESPACE_URL, f"keyorch-seed:{self.name}"))
        return self.uko if isinstance(self.uko, str) else None


class SeedKeys(BaseModel):
    """``POST /_fake/seed``'s body: one fake's keys."""

    model_config = ConfigDict(extra="forbid")

    keys: list[SeedKey] = Field(max_length=MAX_SEED_KEYS)


class SeedDocument(BaseModel):
    """``--seed FILE``: per keystore type, its keys."""

    model_config = ConfigDict(extra="forbid")

    providers: dict[str, list[SeedKey]] = Field(default_factory=dict)


def error_sentence(exc: ValidationError, prefix: str = "") -> str:
    """The first problem of a seed as one sentence naming its field (``keys[3].state: Input should be ...``)."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    path = prefix
    for part in first["loc"]:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    message = str(first["msg"]).removeprefix("Value error, ").rstrip(".")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return " ".join(f"field {path or '(top level)'}: {message}{more}".split())


def parse_keys(doc: Any) -> list[SeedKey]:
    """``POST /_fake/seed``'s body as keys; :class:`SeedError` naming the first bad field."""
    try:
        return SeedKeys.model_validate(doc).keys
    except ValidationError as exc:
        raise SeedError(error_sentence(exc)) from None
