"""Keystore credential documents: their shape per keystore type, and reading them from a file.

These are the documents ``keyorch keystore connect --credentials-file`` reads (JSON or YAML).
Secret fields are ``SecretStr`` so a repr or a validation error never shows them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from keyorch.domain.errors import InvalidInput
from keyorch.domain.models import KeystoreType


class _Creds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class AwsCredentials(_Creds):
    access_key_id: str
    secret_access_key: SecretStr
    session_token: SecretStr | None = None


class AzureCredentials(_Creds):
    tenant_id: str
    client_id: str
    client_secret: SecretStr
    authority_host: str = "https://login.microsoftonline.com"


class GoogleServiceAccount(_Creds):
    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    type: str = "service_account"
    project_id: str | None = None
    private_key_id: str
    private_key: SecretStr
    client_email: str
    client_id: str | None = None
    token_uri: str = "https://oauth2.googleapis.com/token"  # noqa: S105 - a public URL


class IbmCredentials(_Creds):
    apikey: SecretStr
    iam_url: str = "https://iam.cloud.ibm.com/identity/token"
    instance_id: str | None = None


CREDENTIAL_MODELS: dict[KeystoreType, type[_Creds]] = {
    KeystoreType.AWS_KMS: AwsCredentials,
    KeystoreType.AZURE_KEY_VAULT: AzureCredentials,
    KeystoreType.GOOGLE_KMS: GoogleServiceAccount,
    KeystoreType.IBM_KEY_PROTECT: IbmCredentials,
}

MAX_CREDENTIALS_BYTES = 64 * 1024


def parse_credentials(kind: KeystoreType, doc: Any) -> _Creds:
    model = CREDENTIAL_MODELS[kind]
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'document'}: {err['msg']}" for err in exc.errors()[:5]
        )
        fields = ", ".join(model.model_fields)
        raise InvalidInput(
            f"credentials for a {kind} keystore are not valid ({problems}); expected fields: {fields}",
            target="credentials",
        ) from None


def read_credentials_file(kind: KeystoreType, path: str) -> dict[str, Any]:
    """Read and validate a credentials file; return the document to store (encrypted)."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise InvalidInput(
            f"--credentials-file {path!r} cannot be read: {exc.strerror}", target="credentials_file"
        ) from None
    if len(raw) > MAX_CREDENTIALS_BYTES:
        raise InvalidInput(f"--credentials-file {path!r} is larger than 64 KiB", target="credentials_file")
    try:
        doc = yaml.safe_load(raw.decode("utf-8")) if not raw.lstrip().startswith(b"{") else json.loads(raw)
    except (ValueError, yaml.YAMLError, UnicodeDecodeError):
        raise InvalidInput(
            f"--credentials-file {path!r} is neither valid JSON nor valid YAML", target="credentials_file"
        ) from None
    if not isinstance(doc, dict):
        raise InvalidInput(f"--credentials-file {path!r} must hold one JSON/YAML object", target="credentials_file")
    parse_credentials(kind, doc)
    return doc


def public_facts(kind: KeystoreType, doc: Any) -> dict[str, str]:
    """What a credentials document says that is no secret and that UKO's keystore answers show: an Azure
    service principal's tenant and client id, a Google service account key's id, the IBM IAM endpoint."""
    creds = parse_credentials(kind, doc)
    if isinstance(creds, AzureCredentials):
        return {"azure_tenant": creds.tenant_id, "azure_service_principal_client_id": creds.client_id}
    if isinstance(creds, GoogleServiceAccount):
        return {"google_private_key_id": creds.private_key_id}
    if isinstance(creds, IbmCredentials):
        parts = urlsplit(creds.iam_url)
        return {"ibm_iam_endpoint": f"{parts.scheme}://{parts.netloc}" if parts.netloc else creds.iam_url}
    return {}
