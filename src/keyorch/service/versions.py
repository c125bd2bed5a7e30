"""Optimistic concurrency at the operation level (the API's If-Match, the CLI's --if-version)."""

from __future__ import annotations

from keyorch.domain.errors import StaleVersion


def check_version(current: int, expected: int | None, kind: str, object_id: str) -> None:
    if expected is not None and expected != current:
        raise StaleVersion(
            f"{kind} {object_id} is at version {current}, not {expected}; read it again and retry", target="version"
        )
