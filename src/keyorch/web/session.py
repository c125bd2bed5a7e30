"""The console's sessions: a signed and encrypted cookie (AES-256-GCM), and the CSRF tokens bound to it.

A session holds the user, the SHA-256 of the API token the user signed in with (never the token), a random
session id and its expiry. Every request reads the roles afresh from the configured tokens by that hash
(:meth:`keyorch.api.auth.Authenticator.by_digest`), so a token taken out of the settings ends its sessions at
the next restart, and the roles are always the API's. The cookie key is derived from the master key (every
replica of one database shares it, so a session is good on each); without one, from random bytes at start.

Signing out revokes the session id in this process (until its expiry) and clears the cookie; another replica
does not learn of it (see docs/console.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keyorch.crypto import MasterKey

COOKIE = "keyorch_console"
#: the double-submit cookie of the sign-in form (no session exists yet to bind its CSRF token to)
SIGN_IN_COOKIE = "keyorch_console_sign_in"
#: how long a session lasts from sign-in
LIFETIME = timedelta(hours=8)
_AAD = b"keyorch console session v1"
_NONCE_BYTES = 12


@dataclass(frozen=True)
class Session:
    sid: str
    user: str
    token_sha256: str
    expires_at: datetime


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    """Issues, reads and revokes sessions; makes and checks their CSRF tokens."""

    def __init__(self, master_key: MasterKey | None) -> None:
        if master_key is not None:
            seal, csrf = master_key.derive(b"keyorch console session"), master_key.derive(b"keyorch console csrf")
        else:
            seal, csrf = os.urandom(32), os.urandom(32)
        self._aead = AESGCM(seal)
        self._csrf_key = csrf
        self._revoked: dict[str, datetime] = {}

    def issue(self, user: str, token_sha256: str, now: datetime) -> tuple[Session, str]:
        """A new session and its cookie value."""
        session = Session(secrets.token_urlsafe(18), user, token_sha256, now + LIFETIME)
        doc = {"sid": session.sid, "user": user, "sha256": token_sha256, "exp": session.expires_at.isoformat()}
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, json.dumps(doc, separators=(",", ":")).encode("utf-8"), _AAD)
        return session, _b64(nonce + sealed)

    def read(self, cookie: str | None, now: datetime) -> Session | None:
        """The session the cookie carries; None if there is none, or it is forged, expired or signed out."""
        if not cookie or len(cookie) > 4096:
            return None
        try:
            raw = _unb64(cookie)
            doc = json.loads(self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _AAD))
            session = Session(
                str(doc["sid"]), str(doc["user"]), str(doc["sha256"]), datetime.fromisoformat(str(doc["exp"]))
            )
        except (InvalidTag, ValueError, KeyError, TypeError, binascii.Error):
            return None
        if session.expires_at <= now or session.sid in self._revoked:
            return None
        return session

    def revoke(self, session: Session, now: datetime) -> None:
        self._revoked = {sid: until for sid, until in self._revoked.items() if until > now}
        self._revoked[session.sid] = session.expires_at

    def csrf_token(self, session: Session) -> str:
        return _b64(hmac.new(self._csrf_key, session.sid.encode("utf-8"), hashlib.sha256).digest())

    def csrf_ok(self, session: Session, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(self.csrf_token(session).encode(), given.encode())
