"""The operator's rule for credentials from keyorch's own environment (``--credentials-from-environment``).

The token comes from the daemon's environment (an IBM API key, Azure or Google workload credentials,
the metadata server, an AWS role) while the endpoint was the connecting user's choice: a vault
administrator could point a keystore at a host of their own and receive the daemon's bearer token.
So using those credentials takes two things only the operator grants, in the setting
``environment_credentials``: the keystore's vault is listed in ``vaults`` (callers of the API; the CLI
on the database directly is the operator), and its endpoint is one of its provider's official
endpoints or listed in ``endpoints``. The endpoint rule is checked again whenever a client is built
(:class:`~keyorch.reconcile.clients.ClientPool`), so a record made any other way cannot send them
elsewhere either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keyorch.domain.errors import Forbidden
from keyorch.domain.models import KeystoreType
from keyorch.providers.endpoints import effective_endpoint, is_allowed
from keyorch.settings import EnvironmentCredentialsSettings
from keyorch.urls import redact_url

VAULTS_SETTING = "environment_credentials.vaults (env KEYORCH_ENVIRONMENT_CREDENTIALS__VAULTS)"
ENDPOINTS_SETTING = "environment_credentials.endpoints (env KEYORCH_ENVIRONMENT_CREDENTIALS__ENDPOINTS)"
EVERY_VAULT = "*"


@dataclass(frozen=True)
class EnvironmentPolicy:
    """``vaults``: the vault names that may use environment credentials (None: any, for the operator);
    ``endpoints``: the operator's endpoints beyond the official ones."""

    vaults: frozenset[str] | None = None
    endpoints: tuple[str, ...] = ()

    @classmethod
    def for_api(cls, settings: EnvironmentCredentialsSettings) -> EnvironmentPolicy:
        return cls(frozenset(settings.vaults), tuple(settings.endpoints))

    @classmethod
    def for_operator(cls, settings: EnvironmentCredentialsSettings) -> EnvironmentPolicy:
        return cls(None, tuple(settings.endpoints))

    def check(self, vault_name: str, kind: KeystoreType, settings: Mapping[str, Any]) -> None:
        """Refuse (403) environment credentials for this vault, or for this keystore's endpoint."""
        if self.vaults is not None and vault_name not in self.vaults and EVERY_VAULT not in self.vaults:
            raise Forbidden(
                f"vault {vault_name} may not use credentials from keyorch's environment: they are the "
                f"operator's, who lists the vaults that may use them in the setting {VAULTS_SETTING}; "
                "or connect with credentials of the keystore's own",
                target="credentials_from_environment",
            )
        check_endpoint(kind, settings, self.endpoints)


def check_endpoint(kind: KeystoreType, settings: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    endpoint = effective_endpoint(kind, settings)
    if endpoint is not None and is_allowed(kind, endpoint, allowed):
        return
    raise Forbidden(
        f"credentials from keyorch's environment go only to the provider's official endpoints or to those in "
        f"the setting {ENDPOINTS_SETTING}; endpoint {redact_url(endpoint) if endpoint else None} is neither",
        target="endpoint",
    )
