"""Bounds on the JSON a keystore answers with: documents nested deeper than :data:`MAX_JSON_DEPTH`
are refused before they are parsed.

Python's ``json`` module parses nesting by recursion: a body of 100,000 ``[`` raises
``RecursionError``, which is no ``ValueError`` and escaped every handler, and anything deep
enough to parse is still a hazard for whatever walks the result. No provider answer nests deeper
than about ten levels (AWS, Azure, Cloud KMS and Key Protect documents alike), so 64 leaves room
to spare. (The body's size is bounded by the transport, ``max_body_bytes``, 8 MiB.)

The depth is found without recursion and at C speed: string literals are removed (they may hold
any bracket), everything but brackets is dropped, and empty pairs are removed level by level, at
most :data:`MAX_JSON_DEPTH` times. Brackets left over after that are either nesting beyond the
bound or not JSON at all, which the parser then reports. A body with fewer brackets than the
bound (most single-key answers) skips the scan.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: The deepest nesting of arrays and objects accepted in a keystore's answer.
MAX_JSON_DEPTH = 64

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class TooDeep(ValueError):
    """The document nests arrays and objects deeper than :data:`MAX_JSON_DEPTH`."""

    def __init__(self) -> None:
        super().__init__(f"the JSON nests deeper than {MAX_JSON_DEPTH} levels")


def nests_too_deep(raw: bytes) -> bool:
    """Whether the JSON text ``raw`` nests arrays and objects deeper than :data:`MAX_JSON_DEPTH`."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return False
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    for _ in range(MAX_JSON_DEPTH):
        inner = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if inner == brackets:
            return False  # unbalanced: not JSON, and the parser says so
        brackets = inner
        if not brackets:
            return False
    return b"[]" in brackets or b"{}" in brackets


def loads(raw: bytes | str) -> Any:
    """``json.loads`` of a keystore's answer, refusing nesting beyond the bound with :class:`TooDeep`
    (a ``ValueError``, like every other reason the text is not acceptable JSON)."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if nests_too_deep(data):
        raise TooDeep
    try:
        return json.loads(raw)
    except RecursionError:  # cannot happen within the bound; kept so no answer ever escapes as one
        raise TooDeep from None
