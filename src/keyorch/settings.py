"""Settings: defaults < YAML file (``--config``) < environment (``KEYORCH_*``) < command-line flags.

Every default is here and only here (the container image and the manifests set none of their own).
Nested groups use ``__`` in environment names (``KEYORCH_RECONCILE__WORKERS=8``,
``KEYORCH_API__LISTEN=0.0.0.0:8080``); a list or a mapping is given there as JSON. Durations carry their
unit in the name and each has a range (:func:`seconds`). A bad value is refused when the settings load, in
one sentence naming the setting, where it was given, the value (a secret's never, a URL's without its
user-info) and what is allowed (:mod:`keyorch.settings_errors`).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from keyorch.crypto import MasterKey
from keyorch.domain.errors import ConfigurationError
from keyorch.domain.rotation import DEFAULT_MIN_INTERVAL
from keyorch.domain.validation import is_loopback_host
from keyorch.listen import parse_listen
from keyorch.providers.limits import (
    CALL_TIMEOUT_RANGE,
    DEFAULT_CALL_TIMEOUT_SECONDS,
    DEFAULT_LISTING_TIMEOUT_SECONDS,
    LISTING_TIMEOUT_RANGE,
)
from keyorch.settings_errors import URL_VALUE, SettingsSource, describe_invalid
from keyorch.settings_sources import ENV_NESTED_DELIMITER, ENV_PREFIX, EnvSource, YamlSource, env_name, read_yaml

DEFAULT_DATABASE_URL = "sqlite:///keyorch.db"
DATABASE_URL_ALLOWED = "give sqlite:///PATH or postgresql://USER@HOST[:PORT]/DB (its password from a secret)"
#: the longest any duration setting may be: a day
MAX_DURATION_SECONDS = 86_400.0


def seconds(default: float, low: float, high: float = MAX_DURATION_SECONDS, description: str | None = None) -> Any:
    """A duration setting (its name ends in ``_seconds``): ``low`` to ``high`` seconds, both included."""
    return Field(default=default, ge=low, le=high, description=description)


def _printable(value: str) -> str:
    if not value.isprintable():
        raise ValueError("give printable text (no control characters such as a newline or a tab)")
    return value


def _listen(value: str) -> str:
    try:
        parse_listen(value, subject="it")
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    return value


def _endpoint(value: str) -> str:
    try:
        parts = urlsplit(value)
        scheme, hostname, _ = parts.scheme, parts.hostname, parts.port
        userinfo = parts.username is not None or parts.password is not None
    except ValueError:  # a broken IPv6 host or port
        scheme, hostname, userinfo = "", None, False
    if scheme not in ("https", "http") or not hostname or userinfo:
        raise ValueError("give an endpoint URL, https://HOST[:PORT], without user-info")
    if scheme == "http" and not is_loopback_host(hostname):
        raise ValueError("plain http:// is allowed only to a loopback address: give https://HOST[:PORT]")
    return value


#: Text settings: one line of printable characters.
Text = Annotated[str, AfterValidator(_printable)]
#: A setting holding a URL: shown in errors and printouts without its user-info.
UrlText = Annotated[str, AfterValidator(_printable), URL_VALUE]
#: An endpoint environment credentials may be sent to (``environment_credentials.endpoints``).
Endpoint = Annotated[str, AfterValidator(_printable), AfterValidator(_endpoint), URL_VALUE]


class LogSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class ReconcileSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workers: int = Field(default=8, ge=1, le=256)
    #: how often every keystore is listed to catch drift made outside keyorch
    resync_interval_seconds: float = seconds(300.0, 1.0)
    #: the longest wait before a failed key is tried again
    max_backoff_seconds: float = seconds(300.0, 1.0)
    #: every keystore call, all its attempts and waits included (a keystore's own setting wins)
    call_timeout_seconds: float = seconds(DEFAULT_CALL_TIMEOUT_SECONDS, *CALL_TIMEOUT_RANGE)
    #: how long a pass waits for one keystore's health check, and for its listing, before skipping it
    listing_timeout_seconds: float = seconds(DEFAULT_LISTING_TIMEOUT_SECONDS, *LISTING_TIMEOUT_RANGE)
    #: how long a claim on a key lasts unrenewed: after a replica dies, its keys wait at most this long
    lease_seconds: float = seconds(30.0, 10.0, 600.0)
    #: how often a replica says it is alive (PostgreSQL); one that misses three is gone from the cluster
    heartbeat_seconds: float = seconds(5.0, 0.5, 60.0)


class KeySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: a key rotates at most once in this long (UKO: once an hour); 0: as often as asked. The rule is
    #: domain/rotation.py; the CLI, the API and the service pass this to it
    rotation_min_interval_seconds: float = seconds(DEFAULT_MIN_INTERVAL.total_seconds(), 0.0)

    @property
    def rotation_min_interval(self) -> timedelta:
        return timedelta(seconds=self.rotation_min_interval_seconds)


class ApiToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: Text
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="give 64 lowercase hexadecimal digits, the SHA-256 of the bearer token "
        "(printf %s TOKEN | sha256sum)",
    )
    roles: dict[str, Literal["reader", "key_custodian_creator", "key_custodian_deployer", "vault_administrator"]]


class ApiSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    listen: Annotated[str, AfterValidator(_listen)] = "127.0.0.1:8080"
    tokens: list[ApiToken] = Field(
        default_factory=list,
        description='give a list of tokens, each {"user": NAME, "sha256": HEX, "roles": {VAULT or "*": ROLE}}',
    )
    #: on SIGTERM: how long in-flight provider calls may take to finish
    grace_period_seconds: float = seconds(30.0, 0.0, 3_600.0)
    #: a request's line and headers must arrive within this, from the connection's start or the request's first byte
    header_timeout_seconds: float = seconds(10.0, 0.1, 300.0)
    #: a request's body must arrive within this, once its headers have
    body_timeout_seconds: float = seconds(60.0, 0.1, 3_600.0)
    #: a kept-alive connection with no request is closed after this
    idle_timeout_seconds: float = seconds(75.0, 1.0, 3_600.0)
    #: requests handled at once; past it the API answers 503 with Retry-After (health and metrics never are)
    max_concurrent_requests: int = Field(default=64, ge=1, le=10_000)
    #: a keystore's live status check (GET /keystores/{id}/status) is answered again for this long
    keystore_status_cache_seconds: float = seconds(5.0, 0.0, 300.0)
    #: a keystore's connection test (status, connect with dry_run, a change of its connection) takes this at most
    keystore_check_timeout_seconds: float = seconds(15.0, 1.0, 300.0)


class EnvironmentCredentialsSettings(BaseModel):
    """Who may use the credentials of keyorch's own environment (``--credentials-from-environment``), and where
    they may be sent: the operator's decision, not a vault administrator's."""

    model_config = ConfigDict(extra="forbid")

    vaults: list[Text] = Field(
        default_factory=list,
        description='give a list of the vaults whose keystores may use them when connected through the API ("*": '
        "every vault); the CLI on the database directly is the operator and needs no entry",
    )
    endpoints: list[Endpoint] = Field(
        default_factory=list,
        description="give a list of the endpoints beyond each provider's official ones they may be sent to "
        "(https://HOST[:PORT], http:// only to loopback): a private proxy, or the fakes in tests",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_NESTED_DELIMITER, extra="forbid", hide_input_in_errors=True
    )

    database_url: UrlText = Field(default=DEFAULT_DATABASE_URL, description=DATABASE_URL_ALLOWED)
    user: Text | None = None
    master_key: SecretStr | None = None
    master_key_file: Text | None = None
    log: LogSettings = Field(default_factory=LogSettings)
    reconcile: ReconcileSettings = Field(default_factory=ReconcileSettings)
    keys: KeySettings = Field(default_factory=KeySettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    environment_credentials: EnvironmentCredentialsSettings = Field(default_factory=EnvironmentCredentialsSettings)

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        if not value.startswith(("sqlite:", "sqlite+aiosqlite:", "postgresql:", "postgresql+asyncpg:", "postgres:")):
            raise ValueError(DATABASE_URL_ALLOWED)
        try:
            make_url(value)
        except (ArgumentError, ValueError):  # e.g. a port that is not a number, a broken IPv6 host
            raise ValueError(DATABASE_URL_ALLOWED) from None
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, *cls.sources_after_init(settings_cls))

    @classmethod
    def sources_after_init(cls, settings_cls: type[BaseSettings]) -> tuple[PydanticBaseSettingsSource, ...]:
        """The sources below the values given to the constructor, highest first."""
        return (EnvSource(settings_cls, os.environ),)

    def load_master_key(self) -> MasterKey | None:
        if self.master_key is not None and self.master_key.get_secret_value().strip():
            return MasterKey.from_base64(self.master_key.get_secret_value())
        if self.master_key_file:
            return MasterKey.from_file(self.master_key_file)
        return None


def load_settings(config_path: str | None = None, **overrides: Any) -> Settings:
    """Build the settings; raise ConfigurationError naming the setting, where it was given, the value and what
    is allowed."""
    file_data = read_yaml(config_path) if config_path else {}
    env = EnvSource(Settings, os.environ)

    class _Loaded(Settings):
        @classmethod
        def sources_after_init(cls, settings_cls: type[BaseSettings]) -> tuple[PydanticBaseSettingsSource, ...]:
            return (env, YamlSource(settings_cls, file_data))

    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        loaded = _Loaded(**clean)
    except ValidationError as exc:

        def source(setting: tuple[str, ...]) -> SettingsSource:
            from_env = env.given.get(setting) or env.given.get(setting[:1])
            if setting and setting[0] in clean and (from_env is None or from_env[1] != str(clean[setting[0]])):
                return SettingsSource.command_line()
            if from_env is not None:
                return SettingsSource.env(from_env[0])
            if config_path is not None:
                return SettingsSource.file(config_path)
            return SettingsSource.env(env_name(setting))

        raise ConfigurationError(describe_invalid(Settings, exc.errors()[0], source)) from None
    return Settings.model_construct(**{name: getattr(loaded, name) for name in Settings.model_fields})
