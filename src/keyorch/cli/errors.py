"""Turning unexpected exceptions into one sentence and an exit code."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

EXIT_INTERNAL = 70


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else ""


def describe_unexpected(exc: BaseException) -> tuple[str, int]:
    if isinstance(exc, DBAPIError):
        return f"database error: {_first_line(str(exc.orig))}", 2
    if isinstance(exc, SQLAlchemyError):
        return f"database error: {_first_line(str(exc))}", 2
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {_first_line(str(exc))}", 2
    return f"internal error ({type(exc).__name__}): {_first_line(str(exc))}; please report this", EXIT_INTERNAL
