"""The connection settings of one keystore's transport, read and checked from its settings record.

``connect_timeout_seconds`` (default 10) and ``read_timeout_seconds`` (30, the longest wait for the
next bytes of an answer) bound each attempt on the socket; ``call_timeout_seconds`` (default
:data:`~keyorch.providers.limits.DEFAULT_CALL_TIMEOUT_SECONDS`, 1 to 3600) bounds the whole call,
every attempt and wait included; ``ca_pem`` is a private CA to verify the keystore against;
``allow_insecure_http`` permits plain ``http://`` to a loopback address. Answers are read up to
``max_body_bytes`` (8 MiB).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keyorch.domain.errors import InvalidInput
from keyorch.domain.models import Keystore
from keyorch.providers.errors import KeystoreConfigurationError
from keyorch.providers.limits import CALL_TIMEOUT_RANGE, DEFAULT_CALL_TIMEOUT_SECONDS, limits_for, number_setting


@dataclass(frozen=True)
class TransportSettings:
    """Connection settings of one keystore (from its settings record)."""

    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 30.0
    #: The whole of one call, every attempt and wait included (:mod:`keyorch.providers.deadlines`).
    call_timeout_seconds: float = DEFAULT_CALL_TIMEOUT_SECONDS
    ca_pem: str | None = None
    allow_insecure_http: bool = False
    max_body_bytes: int = 8 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> TransportSettings:
        """Read ``connect_timeout_seconds``, ``read_timeout_seconds``, ``call_timeout_seconds``, ``ca_pem``,
        ``allow_insecure_http``."""
        values: dict[str, Any] = {}
        for key in ("connect_timeout_seconds", "read_timeout_seconds"):
            if key in settings:
                values[key] = number_setting(settings, key, minimum=0.001, maximum=3600)
        if "call_timeout_seconds" in settings:
            low, high = CALL_TIMEOUT_RANGE
            values["call_timeout_seconds"] = number_setting(settings, "call_timeout_seconds", minimum=low, maximum=high)
        ca_pem = settings.get("ca_pem")
        if ca_pem is not None:
            if not isinstance(ca_pem, str) or "-----BEGIN CERTIFICATE-----" not in ca_pem:
                raise InvalidInput("setting ca_pem must hold PEM CA certificates", target="ca_pem")
            values["ca_pem"] = ca_pem
        insecure = settings.get("allow_insecure_http", False)
        if not isinstance(insecure, bool):
            raise InvalidInput(
                f"setting allow_insecure_http must be true or false, not {insecure!r}", target="allow_insecure_http"
            )
        values["allow_insecure_http"] = insecure
        return cls(**values)

    def ssl_context(self) -> ssl.SSLContext | bool:
        """``True`` (aiohttp's verifying default) or a verifying context that trusts only ``ca_pem``."""
        if self.ca_pem is None:
            return True
        try:
            context = ssl.create_default_context(cadata=self.ca_pem)
        except (ssl.SSLError, ValueError) as exc:
            raise KeystoreConfigurationError(
                f"the keystore's CA certificate (ca_pem) cannot be loaded: {type(exc).__name__}", sent=False
            ) from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context


def check_transport_settings(keystore: Keystore) -> None:
    """Validate the transport and limit settings of a keystore (for a provider factory's check)."""
    TransportSettings.from_settings(keystore.settings).ssl_context()
    limits_for(keystore.type, keystore.settings)
