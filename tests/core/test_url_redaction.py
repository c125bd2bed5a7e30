"""The one URL redaction: user-info masked in a URL, in free text and in every log line."""

from __future__ import annotations

import io

import pytest

from keyorch.logs import configure_logging, get_logger
from keyorch.urls import redact_url, redact_urls


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://keyorch:pw@db:5432/k", "postgresql://***@db:5432/k"),
        ("postgresql://keyorch@db/k", "postgresql://***@db/k"),
        ("ftp://u:p@ss@host", "ftp://***@host"),
        ("https://u:p w/x@h.example/", "https://***@h.example/"),
        ("u:p@host", "***@host"),
        ("sqlite:////var/lib/a@b.db", "sqlite:////var/lib/a@b.db"),
        ("sqlite:///keyorch.db", "sqlite:///keyorch.db"),
        ("https://kms.us-east-1.amazonaws.com", "https://kms.us-east-1.amazonaws.com"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_urls_in_text() -> None:
    text = "connect to postgresql://keyorch:pw@db/k failed; see https://docs.example/x and mail a@b"
    assert redact_urls(text) == "connect to postgresql://***@db/k failed; see https://docs.example/x and mail a@b"


def test_no_log_line_shows_a_urls_userinfo() -> None:
    stream = io.StringIO()
    configure_logging("json", "info", stream=stream)
    log = get_logger(database="postgresql://keyorch:pw-in-bound@db/k")
    log.warning("database not ready", error="OSError: postgresql://keyorch:pw-in-field@db/k refused")
    try:
        raise ConnectionError("cannot reach postgresql://keyorch:pw-in-exception@db/k")
    except ConnectionError:
        log.exception("failed")
    out = stream.getvalue()
    assert out.count("postgresql://***@db/k") == 5, out
    assert "pw-in" not in out and "keyorch:" not in out
