"""URLs as they may be shown: every error, log line and printout passes a URL through here first.

A URL's user-info (``user:password@`` in ``scheme://user:password@host``) is never shown, whoever gave it
and however broken the rest of the URL is: a database URL in a settings error, a keystore endpoint refused
by the CLI or the API, an exception's text in a log line. The host, port and path stay, so the message still
says which URL is meant.
"""

from __future__ import annotations

import re

MASK = "***"

# In free text: ``scheme://`` then everything up to the last ``@`` of the same word (no whitespace), unless
# the authority is empty (``sqlite:///path@x`` has no user-info).
_USERINFO_IN_TEXT = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?!/)(?:[^\s@]*@)+")


def redact_url(url: str) -> str:
    """``url`` with its user-info masked (``postgresql://***@db/keyorch``).

    The whole value is taken as one URL, so user-info with spaces, slashes or several ``@`` is masked too,
    and so is ``user:password@host`` given without a scheme. A path holding an ``@`` is masked up to it: a
    message may show less than it could, never a password.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    at = rest.rfind("@")
    if at < 0 or rest.startswith("/"):
        return url
    return f"{scheme}{sep}{MASK}@{rest[at + 1 :]}"


def redact_urls(text: str) -> str:
    """Free text (an exception's message, a log field) with the user-info of every URL in it masked."""
    return _USERINFO_IN_TEXT.sub(lambda m: f"{m['scheme']}{MASK}@", text)
