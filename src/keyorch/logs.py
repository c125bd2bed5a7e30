"""Logging through structlog: JSON when not on a TTY (containers) or when asked, console otherwise.

Log lines go to stderr so that ``--output json`` keeps stdout to exactly one document.
Secrets never reach a log line: callers bind ids, never credentials; as a second line of
defence any key that looks secret is masked, and so is the user-info of any URL in any field
(an exception's text included).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Literal

import structlog

from keyorch.urls import redact_urls

_SECRET_WORDS = ("secret", "password", "token", "apikey", "api_key", "private_key", "credential", "master_key")


def _mask_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if any(word in key.lower() for word in _SECRET_WORDS):
            event[key] = "<hidden>"
    return event


def _mask_url_userinfo(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = redact_urls(value)
    return event


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time: a progress display that redirects it while it is
    shown (``rich``'s live display) then prints each log line above itself instead of through it."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure_logging(
    fmt: Literal["auto", "json", "console"] = "auto", level: str = "info", stream: Any = None
) -> None:
    stream = stream or _CurrentStderr()
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _mask_secrets,
            structlog.processors.format_exc_info,
            _mask_url_userinfo,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger(**bound: Any) -> Any:
    return structlog.get_logger("keyorch").bind(**bound)
