"""Request parsing for the Cloud KMS fake, the way Google's REST front end binds a request.

Query parameters bind to request fields (``keyRingId`` or ``key_ring_id``) or are system
parameters (``$alt``, ``fields``...); anything else is refused. JSON bodies are proto3 JSON:
unknown field names are refused, snake_case names are accepted as aliases. Lists follow
AIP-158 pagination (``pageSize``/``pageToken`` -> ``nextPageToken``, ``totalSize``) with a
small AIP-160 ``filter`` subset (``field=value``, ``field!=value``, ``field:value`` joined by
``AND``) and ``orderBy`` on ``name``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from keyorch.fakes.gcp_model import GoogleError, invalid

T = TypeVar("T")

SYSTEM_PARAMS = frozenset(
    {"alt", "fields", "key", "prettyPrint", "quotaUser", "callback", "access_token", "oauth_token", "uploadType"}
)
LIST_PARAMS = frozenset({"pageSize", "pageToken", "filter", "orderBy"})
DEFAULT_PAGE_SIZE = 1000
MAX_FILTER_LENGTH = 1024
_INT32 = re.compile(r"-?[0-9]{1,10}")
_SNAKE = re.compile(r"_([a-z0-9])")
_TERM = re.compile(r'(NOT\s+)?([A-Za-z][A-Za-z0-9_.]*)\s*(!=|=|:)\s*("([^"]*)"|[^\s"=!:<>][^\s"]*)')


def camel(name: str) -> str:
    return _SNAKE.sub(lambda m: m.group(1).upper(), name)


@dataclass
class Call:
    """One bound API call: the request, the names captured from its path, the enum encoding."""

    request: web.Request
    operation: str
    groups: dict[str, str]
    ints: bool

    def param(self, name: str) -> str | None:
        for key, value in self.request.query.items():
            if camel(key) == name:
                return value
        return None

    def bool_param(self, name: str, field_path: str) -> bool:
        raw = self.param(name)
        if raw is None or raw in ("false", "False", "0"):
            return False
        if raw in ("true", "True", "1"):
            return True
        raise invalid(f"Invalid value at '{field_path}' (TYPE_BOOL), \"{raw[:80]}\"", field_path)

    async def body(self, where: str, allowed: Iterable[str]) -> dict[str, Any]:
        """The JSON body as a message with only ``allowed`` fields (an empty body is ``{}``)."""
        raw = await self.request.read()
        if not raw.strip():
            return {}
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # deep nesting exhausts the parser
            raise invalid("Invalid JSON payload received. Unexpected token.") from exc
        return message(doc, where, allowed)


def message(doc: Any, where: str, allowed: Iterable[str]) -> dict[str, Any]:
    """Check a JSON object against a message's field names; return it with camelCase names."""
    if not isinstance(doc, dict):
        raise invalid(f"Invalid JSON payload received. Expected an object at '{where}'.", where)
    known = set(allowed)
    out: dict[str, Any] = {}
    for key, value in doc.items():
        name = camel(key)
        if name not in known:
            raise invalid(
                f"Invalid JSON payload received. Unknown name \"{key[:100]}\" at '{where}': Cannot find field."
            )
        out[name] = value
    return out


def enum_encoding_ints(request: web.Request) -> bool:
    """``$alt=json;enum-encoding=int`` (what Google's Python REST transport sends) -> integer enums."""
    ints = False
    for key in ("$alt", "alt"):
        for value in request.query.getall(key, []):
            parts = [part.strip() for part in value.split(";")]
            if parts[0] != "json" or any(p not in ("enum-encoding=int", "enum-encoding=string") for p in parts[1:]):
                raise invalid(f"Invalid value for alt parameter: {value[:80]!r}; only json is supported.", "alt")
            ints = ints or "enum-encoding=int" in parts[1:]
    return ints


def check_query(request: web.Request, accepted: frozenset[str]) -> None:
    for key in request.query:
        name = camel(key)
        if name in accepted or name.lstrip("$") in SYSTEM_PARAMS or key.startswith("$"):
            continue
        raise invalid(
            f'Invalid JSON payload received. Unknown name "{key[:100]}": Cannot bind query parameter. '
            f"Field '{key[:100]}' could not be found in request message."
        )


def _lookup(doc: Any, path: str) -> str:
    for part in path.split("."):
        doc = doc.get(part, "") if isinstance(doc, dict) else ""
    return json.dumps(doc) if isinstance(doc, dict | list) else str(doc)


def _matches(doc: dict[str, Any], terms: list[tuple[bool, str, str, str]]) -> bool:
    for negate, path, op, value in terms:
        actual = _lookup(doc, path)
        hit = value in actual if op == ":" else (actual == value) == (op == "=")
        if hit == negate:
            return False
    return True


def parse_filter(text: str) -> list[tuple[bool, str, str, str]]:
    if len(text) > MAX_FILTER_LENGTH:
        raise invalid("Invalid filter: too long.", "filter")
    terms = []
    for chunk in re.split(r"\s+AND\s+", text.strip()):
        match = _TERM.fullmatch(chunk.strip())
        if match is None:
            raise invalid(f"Invalid filter: {chunk[:100]!r}.", "filter")
        value = match.group(5) if match.group(5) is not None else match.group(4)
        terms.append((match.group(1) is not None, match.group(2), match.group(3), value))
    return terms


def paginate(
    call: Call,
    items: list[T],
    render: Callable[[T, bool], dict[str, Any]],
    list_field: str,
) -> dict[str, Any]:
    """One page of ``items`` (already in name order) as Google's list response."""
    filter_text = call.param("filter") or ""
    order = " ".join((call.param("orderBy") or "").lower().split())
    if order not in ("", "name", "name asc", "name desc"):
        raise invalid(f"Invalid orderBy: {order[:100]!r}; only 'name' ordering is supported.", "order_by")
    if filter_text:
        terms = parse_filter(filter_text)
        items = [item for item in items if _matches(render(item, False), terms)]
    if order == "name desc":
        items = items[::-1]
    size_text = call.param("pageSize") or "0"
    if _INT32.fullmatch(size_text) is None or not -(2**31) <= int(size_text) < 2**31:
        raise invalid(f"Invalid value at 'page_size' (TYPE_INT32), \"{size_text[:40]}\"", "page_size")
    size = int(size_text)
    if size < 0:
        raise invalid("page_size must be non-negative.", "page_size")
    size = min(size or DEFAULT_PAGE_SIZE, DEFAULT_PAGE_SIZE)
    scope = hashlib.sha256(f"{call.operation}|{call.request.path}|{filter_text}|{order}".encode()).hexdigest()[:16]
    start = _token_offset(call.param("pageToken") or "", scope)
    page = items[start : start + size]
    response: dict[str, Any] = {}
    if page:
        response[list_field] = [render(item, call.ints) for item in page]
    if start + size < len(items):
        response["nextPageToken"] = _make_token(start + size, scope)
    if not filter_text and items:
        response["totalSize"] = len(items)
    return response


def _make_token(offset: int, scope: str) -> str:
    return base64.urlsafe_b64encode(f"{scope}:{offset}".encode()).decode().rstrip("=")


def _token_offset(token: str, scope: str) -> int:
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        token_scope, _, offset = text.partition(":")
        if token_scope == scope and offset.isascii() and offset.isdigit():
            return int(offset)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        pass
    raise GoogleError("INVALID_ARGUMENT", "Invalid page token.")
