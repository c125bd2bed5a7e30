"""UKO's per-type keystore bodies (IBM's Go SDK: KeystoreCreationRequestKeystoreType…Create) pointed at keyorch's
fakes on loopback, and the four fakes themselves: what the keystore connection tests share."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from keyorch.api.auth import token_hash
from keyorch.fakes.aws import AwsKmsFake
from keyorch.fakes.azure import AzureKeyVaultFake
from keyorch.fakes.base import ProviderFake, RunningFake, start_fake
from keyorch.fakes.gcp import GoogleKmsFake
from keyorch.fakes.ibm import KeyProtectFake
from keyorch.settings import ApiSettings, ApiToken

from .conftest import USERS, token_of

#: what UKO's SDK names each type, and keyorch's fake of it
KINDS = ("aws_kms", "azure_key_vault", "google_kms", "ibm_cloud_kms")
GOOGLE_PROJECT = "uko-project-1"


def make_fake(kind: str) -> ProviderFake:
    """Fakes that refuse credentials they did not issue."""
    match kind:
        case "aws_kms":
            return AwsKmsFake(strict=True)
        case "azure_key_vault":
            return AzureKeyVaultFake(strict_tokens=True)
        case "google_kms":
            return GoogleKmsFake(project_id=GOOGLE_PROJECT)
        case _:
            return KeyProtectFake()


@asynccontextmanager
async def running(kind: str) -> AsyncIterator[RunningFake]:
    fake = await start_fake(make_fake(kind))
    try:
        yield fake
    finally:
        await fake.stop()


def uko_body(vault: str, name: str, kind: str, running_fake: RunningFake, **extra: Any) -> dict[str, Any]:
    """The body IBM's SDK sends for ``kind``, with the fake's credentials; keyorch's ``endpoint`` (where UKO's body
    names none) and ``allow_insecure_http`` point it at the fake."""
    url, fake = running_fake.url, running_fake.fake
    creds = fake.credentials(url)
    body: dict[str, Any] = {"type": kind, "vault": {"id": vault}, "name": name, "description": "by the SDK"}
    body["groups"] = ["uko"]
    body["allow_insecure_http"] = True
    match kind:
        case "aws_kms":
            body |= {
                "aws_region": "us_east_1",
                "aws_access_key_id": creds["access_key_id"],
                "aws_secret_access_key": creds["secret_access_key"],
                "endpoint": url,
            }
        case "azure_key_vault":
            body |= {
                "azure_service_name": "payments-kv",
                "azure_resource_group": "rg-payments",
                "azure_location": "europe_west",
                "azure_service_principal_client_id": creds["client_id"],
                "azure_service_principal_password": creds["client_secret"],
                "azure_tenant": creds["tenant_id"],
                "azure_subscription_id": "sub-0001",
                "azure_environment": "azure",
                "endpoint": url,
                "azure_authority_host": url,
            }
        case "google_kms":
            body |= {
                "google_credentials": base64.b64encode(json.dumps(creds).encode()).decode(),
                "google_location": "europe-west3",
                "google_project_id": GOOGLE_PROJECT,
                "google_private_key_id": creds["private_key_id"],
                "google_key_ring": "uko-ring",
                "endpoint": url,
            }
        case _:
            body |= {
                "ibm_variant": "key_protect",
                "ibm_api_endpoint": url,
                "ibm_iam_endpoint": url,
                "ibm_api_key": creds["apikey"],
                "ibm_instance_id": creds["instance_id"],
            }
    return body | extra


#: the secret field of each UKO body (never in an answer)
SECRET_FIELD = {
    "aws_kms": "aws_secret_access_key",
    "azure_key_vault": "azure_service_principal_password",
    "google_kms": "google_credentials",
    "ibm_cloud_kms": "ibm_api_key",
}
#: the operation each adapter's health check makes, in the fake's request log
PROBE_OPERATION = {
    "aws_kms": "ListKeys",
    "azure_key_vault": "ListKeys",
    "google_kms": "GetKeyRing",
    "ibm_cloud_kms": "ListKeys",
}


def api_settings(**limits: float) -> ApiSettings:
    """The API's settings with the test users' tokens and these keystore check limits (api.keystore_*)."""
    tokens = [ApiToken(user=u, sha256=token_hash(token_of(u)), roles=roles) for u, roles in USERS.items()]  # type: ignore[arg-type]
    return ApiSettings(tokens=tokens, **limits)
