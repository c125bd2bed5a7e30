"""Audit records: who did what to which object, when, with what outcome, before and after."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, is_dataclass
from datetime import date, datetime
from enum import Enum
from typing import Any, Literal

#: Where a change came from: the REST API (a bearer token's user), the web console (a user signed in with a
#: bearer token), the CLI on the database directly (a self-declared user, not authenticated), or the
#: reconciler's own provider calls.
Source = Literal["cli-direct", "api", "console", "reconciler"]
Outcome = Literal["accepted", "refused"]

#: Sources whose user is authenticated (the API and the console checked a bearer token; the reconciler is keyorch
#: itself).
AUTHENTICATED_SOURCES: frozenset[str] = frozenset({"api", "console", "reconciler"})

_SECRET_FIELDS = frozenset({"credentials", "secret", "token"})


@dataclass(frozen=True)
class Actor:
    user: str
    source: Source = "cli-direct"
    role: str | None = None

    @property
    def authenticated(self) -> bool:
        """Whether ``user`` was proven (a bearer token), not merely declared (``--user``, ``KEYORCH_USER``)."""
        return self.source in AUTHENTICATED_SOURCES


@dataclass(frozen=True)
class AuditRecord:
    at: datetime
    user: str
    source: str
    action: str
    object_type: str
    object_id: str | None
    outcome: str
    before: str | None = None
    after: str | None = None
    detail: str | None = None
    seq: int | None = None
    role: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "user": self.user,
            "role": self.role,
            "source": self.source,
            "action": self.action,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "outcome": self.outcome,
            "before": json.loads(self.before) if self.before else None,
            "after": json.loads(self.after) if self.after else None,
            "detail": self.detail,
        }


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, date):  # datetime too
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k not in _SECRET_FIELDS}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def snapshot(obj: object | None) -> str | None:
    """A JSON snapshot of a domain record for the audit trail (credentials are never included)."""
    if obj is None:
        return None
    data = asdict(obj) if is_dataclass(obj) and not isinstance(obj, type) else obj
    return json.dumps(_plain(data), sort_keys=True, separators=(",", ":"))
