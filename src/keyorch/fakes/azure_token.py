"""The Entra ID (v2.0) client-credentials token endpoint served by the Azure Key Vault fake:
``POST /{tenant}/oauth2/v2.0/token`` with a form body, answered with a bearer token or an
Entra-style error body (``error``, ``error_description`` with an ``AADSTS`` code, ``error_codes``,
``timestamp``, ``trace_id``, ``correlation_id``, ``error_uri``)."""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web

from keyorch.fakes.clock import FakeClock
from keyorch.fakes.tokens import TokenIssuer

VAULT_RESOURCE = "https://vault.azure.net"
ACCEPTED_SCOPES = (f"{VAULT_RESOURCE}/.default", f"{VAULT_RESOURCE}//.default")


@dataclass(frozen=True)
class EntraApp:
    """The one tenant and application registration the fake knows."""

    tenant_id: str
    client_id: str
    client_secret: str


def entra_error(status: int, error: str, aadsts: int, description: str, now: datetime) -> web.Response:
    trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
    text = (
        f"AADSTS{aadsts}: {description}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}"
        f"\r\nTimestamp: {stamp}"
    )
    body = {
        "error": error,
        "error_description": text,
        "error_codes": [aadsts],
        "timestamp": stamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={aadsts}",
    }
    return web.json_response(body, status=status, headers={"Cache-Control": "no-store, no-cache"})


async def _form(request: web.Request) -> dict[str, str]:
    if request.content_type != "application/x-www-form-urlencoded":
        await request.read()
        return {}
    try:
        posted = await request.post()
    except (ValueError, UnicodeDecodeError):
        return {}
    return {k: v for k, v in posted.items() if isinstance(v, str)}


async def token_response(request: web.Request, app: EntraApp, tokens: TokenIssuer, clock: FakeClock) -> web.Response:
    """Serve one client-credentials token request, checking the tenant, client and secret for real."""
    now = clock.now()
    tenant = request.match_info.get("tenant", "")
    form = await _form(request)
    if tenant.lower() != app.tenant_id.lower():
        return entra_error(
            400,
            "invalid_request",
            90002,
            f"Tenant '{tenant[:100]}' not found. Check to make sure you have the correct tenant ID and are signing "
            "into the correct cloud.",
            now,
        )
    for required in ("grant_type", "client_id", "scope"):
        if not form.get(required):
            return entra_error(
                400,
                "invalid_request",
                900144,
                f"The request body must contain the following parameter: '{required}'.",
                now,
            )
    if form["grant_type"] != "client_credentials":
        return entra_error(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{form['grant_type'][:100]}'.",
            now,
        )
    scope = form["scope"]
    if not scope.endswith("/.default"):
        return entra_error(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {scope[:200]} is not valid. Client credential flows must have a scope "
            "value with /.default suffixed to the resource identifier (application ID URI).",
            now,
        )
    if scope not in ACCEPTED_SCOPES:
        resource = scope.removesuffix("/.default")[:200]
        return entra_error(
            400,
            "invalid_resource",
            500011,
            f"The resource principal named {resource} was not found in the tenant named {app.tenant_id}.",
            now,
        )
    if form["client_id"] != app.client_id:
        return entra_error(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{form['client_id'][:100]}' was not found in the directory "
            f"'{app.tenant_id}'.",
            now,
        )
    secret = form.get("client_secret")
    if not secret:
        return entra_error(
            401,
            "invalid_client",
            7000216,
            "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
            now,
        )
    if not hmac.compare_digest(secret.encode(), app.client_secret.encode()):
        return entra_error(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
            f"value, not the client secret ID, for a secret added to app '{app.client_id}'.",
            now,
        )
    token, ttl = tokens.issue(prefix="azure")
    return web.json_response(
        {"token_type": "Bearer", "expires_in": ttl, "ext_expires_in": ttl, "access_token": token},
        headers={"Cache-Control": "no-store, no-cache"},
    )
