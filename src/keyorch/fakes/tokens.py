"""Bearer tokens issued by a fake's token endpoint, checked on every provider call."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from keyorch.fakes.clock import FakeClock

TokenVerdict = Literal["ok", "expired", "revoked", "unknown", "malformed", "missing"]


@dataclass
class TokenIssuer:
    """Issues opaque bearer tokens with an expiry on the fake's clock.

    By default a well-formed token the fake did not issue is accepted (so a user can point an
    SDK with any dummy token at the fake); ``strict=True`` refuses it. Tokens the fake issued are
    refused once expired or after ``revoke_all()`` (the ``DELETE /_fake/tokens`` admin route),
    which is how clients' refresh-on-401 is tested.
    """

    clock: FakeClock
    strict: bool = False
    ttl_seconds: int = 3600
    _issued: dict[str, datetime] = field(default_factory=dict)
    _revoked: set[str] = field(default_factory=set)
    issued_count: int = 0

    def issue(self, prefix: str = "fake") -> tuple[str, int]:
        token = f"{prefix}.{secrets.token_urlsafe(24)}"
        self._issued[token] = self.clock.now() + timedelta(seconds=self.ttl_seconds)
        self.issued_count += 1
        return token, self.ttl_seconds

    def check_header(self, header: str | None) -> TokenVerdict:
        if not header:
            return "missing"
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or " " in token or len(token) > 8192:
            return "malformed"
        if token in self._revoked:
            return "revoked"
        expires = self._issued.get(token)
        if expires is None:
            return "unknown" if self.strict else "ok"
        return "ok" if self.clock.now() < expires else "expired"

    def revoke_all(self) -> int:
        self._revoked.update(self._issued)
        count = len(self._issued)
        self._issued.clear()
        return count
