"""The IBM Cloud IAM API-key exchange of the Key Protect fake, and its users.

``POST /identity/token`` (and the Go client's ``/oidc/token``) takes the form
``grant_type=urn:ibm:params:oauth:grant-type:apikey&apikey=...`` and answers
``{access_token, refresh_token: "not_supported", token_type: "Bearer", expires_in, expiration, scope}``.
Access tokens are JWT-shaped (``header.payload.signature``; the payload carries ``iam_id``, ``sub``,
``iat`` and ``exp`` as IBM's SDKs read them without verifying) and each one is bound to the user that
owns the API key, which is how dual authorization tells two users apart. A wrong API key gets IAM's
own 400 body ``{"errorCode": "BXNIM0415E", "errorMessage": "Provided API key could not be found.", ...}``.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from keyorch.fakes.clock import FakeClock
from keyorch.fakes.tokens import TokenIssuer

APIKEY_GRANT = "urn:ibm:params:oauth:grant-type:apikey"
ANONYMOUS = "IBMid-anonymous"
MAX_FORM_BYTES = 16 * 1024


def _b64url(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).rstrip(b"=").decode()


def iam_error(status: int, code: str, message: str) -> web.Response:
    """IAM's error form (not Key Protect's)."""
    doc = {
        "errorCode": code,
        "errorMessage": message,
        "context": {
            "requestId": uuid.uuid4().hex,
            "requestType": "incoming.Identity_Token",
            "url": "https://iam.cloud.ibm.com",
            "locale": "en_US",
        },
    }
    return web.json_response(doc, status=status)


@dataclass
class IamUsers:
    """API keys (each owned by a user) and the user each issued access token belongs to."""

    clock: FakeClock
    tokens: TokenIssuer
    account_id: str
    apikeys: dict[str, str] = field(default_factory=dict)
    token_users: dict[str, str] = field(default_factory=dict)

    def add_apikey(self, user: str, apikey: str | None = None) -> str:
        key = apikey or secrets.token_urlsafe(32)
        self.apikeys[key] = user
        return key

    def user_for(self, authorization: str | None) -> str:
        token = (authorization or "").partition(" ")[2].strip()
        return self.token_users.get(token, ANONYMOUS)

    def issue(self, user: str) -> dict[str, Any]:
        now = int(self.clock.now().timestamp())
        ttl = self.tokens.ttl_seconds
        header = _b64url({"kid": "fake-iam", "alg": "RS256"})
        payload = _b64url(
            {
                "iam_id": user,
                "id": user,
                "sub": user,
                "sub_type": "ServiceId" if user.startswith("ServiceId") else "User",
                "account": {"bss": self.account_id},
                "iat": now,
                "exp": now + ttl,
                "iss": "https://iam.cloud.ibm.com/identity",
                "grant_type": APIKEY_GRANT,
                "scope": "ibm openid",
                "client_id": "default",
            }
        )
        token, expires_in = self.tokens.issue(f"{header}.{payload}")
        self.token_users[token] = user
        return {
            "access_token": token,
            "refresh_token": "not_supported",
            "token_type": "Bearer",
            "expires_in": expires_in,
            "expiration": now + expires_in,
            "scope": "ibm openid",
        }

    async def token_endpoint(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if len(raw) > MAX_FORM_BYTES:
            return iam_error(400, "BXNIM0109E", "Property missing or empty.")
        try:
            form = parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=50)
        except (UnicodeDecodeError, ValueError):
            return iam_error(400, "BXNIM0109E", "Property missing or empty.")
        grant = (form.get("grant_type") or [""])[0]
        if grant != APIKEY_GRANT:
            if not grant:
                return iam_error(400, "BXNIM0109E", "Property missing or empty. Property name: grant_type")
            return iam_error(400, "BXNIM0103E", "Unsupported grant type.")
        apikey = (form.get("apikey") or [""])[0]
        if not apikey:
            return iam_error(400, "BXNIM0109E", "Property missing or empty. Property name: apikey")
        user = self.apikeys.get(apikey)
        if user is None:
            return iam_error(400, "BXNIM0415E", "Provided API key could not be found.")
        return web.json_response(self.issue(user))
