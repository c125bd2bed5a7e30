"""Google OAuth2 for the Cloud KMS fake: a generated service account and real JWT checks.

The fake's token endpoint (``POST /token``) takes the service-account JWT-bearer grant
(RFC 7523) that google-auth sends: an RS256 JWT signed with the service account's private
key, ``iss`` = client email, ``aud`` = token URI, ``scope``, ``iat``/``exp`` at most an hour
apart and current on the fake clock. Errors use Google's OAuth form
``{"error", "error_description"}`` with HTTP 400.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_TOKEN_URIS = frozenset(
    {
        "https://oauth2.googleapis.com/token",
        "https://www.googleapis.com/oauth2/v4/token",
        "https://accounts.google.com/o/oauth2/token",
    }
)
KMS_SCOPES = frozenset({"https://www.googleapis.com/auth/cloudkms", "https://www.googleapis.com/auth/cloud-platform"})
MAX_LIFETIME_SECONDS = 3600
CLOCK_SKEW_SECONDS = 60
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_TIME_MESSAGE = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
    "Check your iat and exp values in the JWT claim."
)


class OAuthError(Exception):
    """A token-endpoint refusal in Google's OAuth form."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def _b64url_decode(part: str) -> bytes:
    if _B64URL.fullmatch(part) is None or len(part) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@dataclass
class ServiceAccount:
    """The one service account a fake knows, with its own RSA-2048 key.

    Identifiers are fixed at construction; the key pair is generated on first use (about 0.1 s
    of CPU, which a fake that never serves credentials need not spend) and kept from then on.
    """

    project_id: str
    client_email: str = ""
    client_id: str = field(default_factory=lambda: str(secrets.randbelow(10**21 - 10**20) + 10**20))
    private_key_id: str = field(default_factory=lambda: secrets.token_hex(20))
    _key: rsa.RSAPrivateKey | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.client_email:
            self.client_email = f"keyorch-fake@{self.project_id}.iam.gserviceaccount.com"

    @property
    def key(self) -> rsa.RSAPrivateKey:
        if self._key is None:
            self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self._key

    def document(self, base_url: str) -> dict[str, Any]:
        """A service-account JSON as the Cloud console downloads it, pointed at the fake."""
        pem = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode("ascii")
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.private_key_id,
            "private_key": pem,
            "client_email": self.client_email,
            "client_id": self.client_id,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": base_url + "/token",
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": f"{base_url}/robot/v1/metadata/x509/{self.client_email}",
            "universe_domain": "googleapis.com",
        }

    def verify(self, assertion: str, audiences: set[str], now: datetime) -> dict[str, Any]:
        """Check an assertion JWT for real; return its claims or raise :class:`OAuthError`."""
        claims = self.verified_claims(assertion)
        if claims.get("iss") != self.client_email:
            raise OAuthError("invalid_grant", "Invalid grant: account not found")
        audience = claims.get("aud")
        if not isinstance(audience, str) or audience not in audiences | GOOGLE_TOKEN_URIS:
            raise OAuthError("invalid_grant", "Invalid JWT: Failed audience check.")
        if not _timely(claims, now):
            raise OAuthError("invalid_grant", _TIME_MESSAGE)
        scope = claims.get("scope")
        if not isinstance(scope, str) or not scope.split():
            raise OAuthError("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        return claims

    def self_signed_valid(self, token: str, now: datetime) -> bool:
        """A self-signed JWT used directly as the bearer (google-auth's JWT access), still current."""
        try:
            claims = self.verified_claims(token)
        except OAuthError:
            return False
        return claims.get("iss") == self.client_email and _timely(claims, now)

    def verified_claims(self, token: str) -> dict[str, Any]:
        """Decode a compact JWT and check its RS256 signature against this account's key."""
        parts = token.split(".")
        if len(parts) != 3 or len(token) > 16_384:
            raise OAuthError("invalid_grant", "Invalid JWT: malformed assertion.")
        try:
            header = json.loads(_b64url_decode(parts[0]))
            claims = json.loads(_b64url_decode(parts[1]))
            signature = _b64url_decode(parts[2])
        except (ValueError, UnicodeDecodeError) as exc:
            raise OAuthError("invalid_grant", "Invalid JWT: malformed assertion.") from exc
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise OAuthError("invalid_grant", "Invalid JWT: malformed assertion.")
        if header.get("alg") != "RS256" or header.get("kid", self.private_key_id) != self.private_key_id:
            raise OAuthError("invalid_grant", "Invalid JWT Signature.")
        try:
            self.key.public_key().verify(
                signature, f"{parts[0]}.{parts[1]}".encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature as exc:
            raise OAuthError("invalid_grant", "Invalid JWT Signature.") from exc
        return claims


def _timely(claims: dict[str, Any], now: datetime) -> bool:
    """``iat``/``exp`` are numbers at most an hour apart, and ``now`` (fake clock) lies between them."""
    start, end = _number(claims.get("iat")), _number(claims.get("exp"))
    if start is None or end is None:
        return False
    moment = now.timestamp()
    return start - CLOCK_SKEW_SECONDS <= moment < end and 0 < end - start <= MAX_LIFETIME_SECONDS


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
