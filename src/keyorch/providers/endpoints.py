"""Where a keystore's requests go: its effective endpoint, origins, and each provider's official endpoints.

Credentials taken from keyorch's own environment (``--credentials-from-environment``: an IBM API key,
Azure or Google workload credentials, a metadata server, an AWS role) are the operator's. Their
tokens and signatures may only go to the provider's official endpoints, or to the ones the operator
lists in the setting ``environment_credentials.endpoints`` (a private proxy, the fakes in tests):
:func:`is_official` knows the official host names, from each provider's public documentation:

* AWS KMS: ``kms.<region>.amazonaws.com``, FIPS ``kms-fips.<region>.amazonaws.com``, China
  ``….amazonaws.com.cn``, dual-stack ``kms[-fips].<region>.api.aws``, and VPC interface endpoints
  ``vpce-….kms.<region>.vpce.amazonaws.com``
  (https://docs.aws.amazon.com/general/latest/gr/kms.html);
* Azure Key Vault and Managed HSM: ``<name>.vault.azure.net``, ``<name>.managedhsm.azure.net`` and the
  sovereign clouds' ``.azure.cn``, ``.usgovcloudapi.net``, ``.microsoftazure.de``
  (https://learn.microsoft.com/azure/key-vault/general/about-keys-secrets-certificates);
* Google Cloud KMS: ``cloudkms.googleapis.com``, mTLS ``cloudkms.mtls.googleapis.com``, regional
  ``cloudkms.<location>.rep.googleapis.com``, Private Service Connect ``cloudkms-<name>.p.googleapis.com``
  (https://cloud.google.com/kms/docs/reference/rest);
* IBM Key Protect: ``<region>.kms.cloud.ibm.com`` and private ``private.<region>.kms.cloud.ibm.com``
  (https://cloud.ibm.com/docs/key-protect?topic=key-protect-regions).

Only ``https://`` on the default port counts as official. This module is pure (no provider client, no network).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from keyorch.domain.models import KeystoreType
from keyorch.providers.google_wire import DEFAULT_ENDPOINT as GOOGLE_DEFAULT_ENDPOINT

_AWS_REGION = r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}"
_OFFICIAL_HOSTS: dict[KeystoreType, tuple[re.Pattern[str], ...]] = {
    KeystoreType.AWS_KMS: (
        re.compile(rf"kms(?:-fips)?\.{_AWS_REGION}\.(?:amazonaws\.com|amazonaws\.com\.cn|api\.aws)"),
        re.compile(rf"vpce-[a-z0-9-]{{1,64}}\.kms\.{_AWS_REGION}\.vpce\.amazonaws\.com(?:\.cn)?"),
    ),
    KeystoreType.AZURE_KEY_VAULT: (
        re.compile(
            r"[a-z0-9](?:[a-z0-9-]{1,22}[a-z0-9])?\.(?:vault|managedhsm)\."
            r"(?:azure\.net|azure\.cn|usgovcloudapi\.net|microsoftazure\.de)"
        ),
    ),
    KeystoreType.GOOGLE_KMS: (
        re.compile(r"cloudkms(?:\.mtls)?\.googleapis\.com"),
        re.compile(r"cloudkms\.[a-z0-9-]{1,40}\.rep\.googleapis\.com"),
        re.compile(r"cloudkms-[a-z0-9]{1,20}\.p\.googleapis\.com"),
    ),
    KeystoreType.IBM_KEY_PROTECT: (re.compile(r"(?:private\.)?[a-z]{2}-[a-z]{3,5}\.kms\.cloud\.ibm\.com"),),
}


def aws_default_endpoint(region: str) -> str:
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://kms.{region}.{suffix}"


def effective_endpoint(kind: KeystoreType, settings: Mapping[str, Any]) -> str | None:
    """The URL a keystore's requests go to: its ``endpoint``, else its provider's default for its settings."""
    endpoint = settings.get("endpoint")
    if isinstance(endpoint, str) and endpoint:
        return endpoint.rstrip("/")
    region = settings.get("region")
    if kind is KeystoreType.AWS_KMS and isinstance(region, str) and region:
        return aws_default_endpoint(region)
    if kind is KeystoreType.IBM_KEY_PROTECT and isinstance(region, str) and region:
        return f"https://{region}.kms.cloud.ibm.com"
    if kind is KeystoreType.GOOGLE_KMS:
        return GOOGLE_DEFAULT_ENDPOINT  # the one google_wire names
    return None


def origin_of(url: str) -> str:
    """``scheme://host:port`` of a URL, lowercased, the default port made explicit (for same-origin checks)."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        port = parts.port or {"https": 443, "http": 80}.get(scheme)
    except ValueError:
        return "invalid:"
    host = (parts.hostname or "").lower()
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def is_official(kind: KeystoreType, url: str) -> bool:
    """Whether ``url`` is one of the provider's own endpoints (https, default port, an official host)."""
    origin = origin_of(url)
    if not origin.startswith("https://") or not origin.endswith(":443"):
        return False
    host = origin[len("https://") : -len(":443")]
    return any(p.fullmatch(host) for p in _OFFICIAL_HOSTS[kind])


def is_allowed(kind: KeystoreType, url: str, allowed: Iterable[str]) -> bool:
    """Official, or of the same origin as one of the operator's ``allowed`` endpoints."""
    origin = origin_of(url)
    return is_official(kind, url) or any(origin_of(a) == origin for a in allowed)
