"""Settings: defaults < YAML file (``--config``) < environment (``KEYORCH_*``) < command-line flags.

Nested groups use ``__`` in environment names (``KEYORCH_RECONCILE__WORKERS=8``,
``KEYORCH_API__LISTEN=0.0.0.0:8080``); durations carry their unit in the name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from keyorch.crypto import MasterKey
from keyorch.domain.errors import ConfigurationError
from keyorch.domain.validation import is_loopback_host
from keyorch.providers.limits import (
    CALL_TIMEOUT_RANGE,
    DEFAULT_CALL_TIMEOUT_SECONDS,
    DEFAULT_LISTING_TIMEOUT_SECONDS,
    LISTING_TIMEOUT_RANGE,
)

DEFAULT_DATABASE_URL = "sqlite:///keyorch.db"


class LogSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class ReconcileSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workers: int = Field(default=8, ge=1, le=256)
    resync_interval_seconds: float = Field(default=300.0, gt=0)
    max_backoff_seconds: float = Field(default=300.0, gt=0)
    #: every keystore call, all its attempts and waits included (a keystore's own setting wins)
    call_timeout_seconds: float = Field(
        default=DEFAULT_CALL_TIMEOUT_SECONDS, ge=CALL_TIMEOUT_RANGE[0], le=CALL_TIMEOUT_RANGE[1]
    )
    #: how long a pass waits for one keystore's health check, and for its listing, before skipping it
    listing_timeout_seconds: float = Field(
        default=DEFAULT_LISTING_TIMEOUT_SECONDS, ge=LISTING_TIMEOUT_RANGE[0], le=LISTING_TIMEOUT_RANGE[1]
    )


class ApiToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    roles: dict[str, Literal["reader", "key_custodian_creator", "key_custodian_deployer", "vault_administrator"]]


class ApiSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    listen: str = "127.0.0.1:8080"
    tokens: list[ApiToken] = Field(default_factory=list)
    grace_period_seconds: float = Field(default=30.0, ge=0)
    #: a request's line and headers must arrive within this, from the connection's start or the request's first byte
    header_timeout_seconds: float = Field(default=10.0, ge=0.1, le=300)
    #: a request's body must arrive within this, once its headers have
    body_timeout_seconds: float = Field(default=60.0, ge=0.1, le=3600)
    #: a kept-alive connection with no request is closed after this
    idle_timeout_seconds: float = Field(default=75.0, ge=1, le=3600)
    #: requests handled at once; past it the API answers 503 with Retry-After (health and metrics never are)
    max_concurrent_requests: int = Field(default=64, ge=1, le=10_000)


class EnvironmentCredentialsSettings(BaseModel):
    """Who may use the credentials of keyorch's own environment (``--credentials-from-environment``), and where
    they may be sent: the operator's decision, not a vault administrator's."""

    model_config = ConfigDict(extra="forbid")

    vaults: list[str] = Field(
        default_factory=list,
        description='names of the vaults whose keystores may use them when connected through the API ("*": every '
        "vault); the CLI on the database directly is the operator and needs no entry",
    )
    endpoints: list[str] = Field(
        default_factory=list,
        description="endpoints beyond each provider's official ones they may be sent to (https://HOST[:PORT], "
        "http:// only to loopback): a private proxy, or the fakes in tests",
    )

    @field_validator("endpoints")
    @classmethod
    def _check_endpoints(cls, value: list[str]) -> list[str]:
        for endpoint in value:
            parts = urlsplit(endpoint)
            if parts.scheme not in ("https", "http") or not parts.hostname or parts.username or parts.password:
                raise ValueError(f"{endpoint[:80]!r} is not an endpoint URL; give https://HOST[:PORT]")
            if parts.scheme == "http" and not is_loopback_host(parts.hostname):
                raise ValueError(f"{endpoint[:80]!r} uses plain http:// to a host that is not a loopback address")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="KEYORCH_", env_nested_delimiter="__", extra="forbid", hide_input_in_errors=True
    )

    database_url: str = DEFAULT_DATABASE_URL
    user: str | None = None
    master_key: SecretStr | None = None
    master_key_file: str | None = None
    clock_offset_seconds: float = Field(default=0.0, description="testing only: shift keyorch's clock")
    log: LogSettings = Field(default_factory=LogSettings)
    reconcile: ReconcileSettings = Field(default_factory=ReconcileSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    environment_credentials: EnvironmentCredentialsSettings = Field(default_factory=EnvironmentCredentialsSettings)

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "sqlite+aiosqlite:", "postgresql:", "postgresql+asyncpg:", "postgres:")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

    def load_master_key(self) -> MasterKey | None:
        if self.master_key is not None and self.master_key.get_secret_value().strip():
            return MasterKey.from_base64(self.master_key.get_secret_value())
        if self.master_key_file:
            return MasterKey.from_file(self.master_key_file)
        return None


class _YamlSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def _read_yaml(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"--config {path!r} cannot be read: {exc.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigurationError(f"--config {path!r} is not valid YAML{where}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigurationError(f"--config {path!r} must hold a mapping of settings at its top")
    return doc


def load_settings(config_path: str | None = None, **overrides: Any) -> Settings:
    """Build the settings; raise ConfigurationError with the field, value and what is allowed."""
    file_data = _read_yaml(config_path) if config_path else {}

    class _Loaded(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, _YamlSource(settings_cls, file_data))

    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        loaded = _Loaded(**clean)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        env = "KEYORCH_" + "__".join(str(p).upper() for p in err["loc"])
        raise ConfigurationError(f"setting {where} (env {env}) is not valid: {err['msg']}") from None
    return Settings.model_construct(**{name: getattr(loaded, name) for name in Settings.model_fields})
