"""The search an in-doubt AWS create runs for a key an earlier ``CreateKey`` made (docs/providers.md §1.6).

``CreateKey`` has no idempotency token, so a create whose answer was lost (or a process that died
between ``CreateKey`` and ``CreateAlias``) can leave a key that carries the tag
``keyorch:managed-key-id=<id>`` but no alias. Before it creates again, an in-doubt create looks for
that key here, and adopts it instead of making a second one:

1. ``ListAliases`` (100 per page): every key some ``alias/keyorch/...`` alias names is claimed; if
   the alias of this very managed key shows up, its key is the answer (the first ``DescribeKey`` of
   the alias missed it: KMS reads are eventually consistent, or another worker just finished).
   Keys named by an ``alias/aws/...`` alias are AWS managed keys, which keyorch never creates.
2. ``ListKeys`` (1,000 per page), and for each key not claimed in step 1 its tags
   (``ListResourceTags``), at most ``concurrency`` at a time (the keystore's concurrency limit; the
   transport's semaphore and rate buckets still apply to each request).
3. A key tagged with the managed key id is ``DescribeKey``-ed; one pending deletion is not
   adopted (an orphan already retired after a lost alias race, or a key someone scheduled).

Why a key with another managed key's alias is skipped even when its tag names this one: keyorch
binds an alias only to a key it created for that same managed key, so such a key can only come
from an operator re-pointing an alias; it serves the other managed key, and adopting it as well
would make two managed keys share one KMS key. Keys with other aliases (an operator's own) are
still searched. An alias deleted after step 1 could hide an orphan; keyorch never deletes aliases.

So a search costs ``ceil(A / 100) + ceil(K / 1000)`` requests plus one ``ListResourceTags`` per key
without a keyorch alias (usually only the orphans themselves and keys that are not keyorch's),
instead of one per key in the account. Every request is a read and goes through the transport's
retry policy; a failure that outlasts it fails the search, and with it the create: creating a key
without knowing whether one exists is what makes duplicates. A key that disappears meanwhile
(``NotFoundException``) is skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from keyorch.providers.aws_wire import (
    ALIAS_PREFIX,
    MANAGED_KEY_TAG,
    alias_targets,
    key_ids,
    response_object,
    string_member,
)
from keyorch.providers.base import Observation
from keyorch.providers.errors import NotFound
from keyorch.providers.http import HttpResult

#: Aliases AWS itself keeps for its managed keys (``alias/aws/ebs``, ...).
AWS_MANAGED_ALIAS_PREFIX = "alias/aws/"
LIST_KEYS_LIMIT = 1000
LIST_ALIASES_LIMIT = 100
LIST_TAGS_LIMIT = 50

Call = Callable[[str, Mapping[str, Any]], Awaitable[HttpResult]]
Describe = Callable[[str], Awaitable[Observation | None]]


@dataclass(frozen=True)
class OrphanSearch:
    """One search: ``call`` sends a (read) KMS operation, ``describe`` reads one key by id."""

    call: Call
    describe: Describe
    concurrency: int

    async def find(self, managed_key_id: str) -> str | None:
        """The key id of the live key made for ``managed_key_id``, or ``None`` when there is none."""
        own_alias = ALIAS_PREFIX + managed_key_id
        claimed: set[str] = set()
        async for result, entries in self._pages("ListAliases", "Aliases", LIST_ALIASES_LIMIT):
            for name, target in alias_targets(result, entries):
                if name == own_alias:
                    return target
                if name.startswith((ALIAS_PREFIX, AWS_MANAGED_ALIAS_PREFIX)):
                    claimed.add(target)
        async for result, entries in self._pages("ListKeys", "Keys", LIST_KEYS_LIMIT):
            candidates = [key_id for key_id in key_ids(result, entries) if key_id not in claimed]
            found = await self._first_live_tagged(candidates, managed_key_id)
            if found is not None:
                return found
        return None

    async def _first_live_tagged(self, key_ids: Sequence[str], managed_key_id: str) -> str | None:
        step = max(1, self.concurrency)
        for start in range(0, len(key_ids), step):
            chunk = key_ids[start : start + step]
            outcomes = await asyncio.gather(*(self.tagged(k, managed_key_id) for k in chunk), return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            for key_id, tagged in zip(chunk, outcomes, strict=True):
                if tagged is True:
                    observed = await self.describe(key_id)
                    if observed is not None and not observed.destruction_pending:
                        return key_id
        return None

    async def tagged(self, key_id: str, managed_key_id: str) -> bool:
        """Whether the key carries ``keyorch:managed-key-id=<managed_key_id>`` (``False`` once it is gone)."""
        marker: str | None = None
        seen: set[str] = set()
        while True:
            members: dict[str, Any] = {"KeyId": key_id, "Limit": LIST_TAGS_LIMIT}
            if marker is not None:
                members["Marker"] = marker
            try:
                result = await self.call("ListResourceTags", members)
            except NotFound:
                return False
            page = response_object(result)
            tags = page.get("Tags", [])
            if not isinstance(tags, list):
                raise result.malformed("Tags is not a list")
            if any(
                isinstance(t, dict) and t.get("TagKey") == MANAGED_KEY_TAG and t.get("TagValue") == managed_key_id
                for t in tags
            ):
                return True
            if page.get("Truncated") is not True:
                return False
            marker = _next_marker(result, page, seen)

    async def _pages(self, operation: str, member: str, limit: int) -> AsyncIterator[tuple[HttpResult, list[Any]]]:
        """Every page of a ``Limit``/``Marker`` listing, with its ``member`` list."""
        marker: str | None = None
        seen: set[str] = set()
        while True:
            members: dict[str, Any] = {"Limit": limit}
            if marker is not None:
                members["Marker"] = marker
            result = await self.call(operation, members)
            page = response_object(result)
            entries = page.get(member, [])
            if not isinstance(entries, list):
                raise result.malformed(f"{member} is not a list")
            yield result, entries
            truncated = page.get("Truncated", False)
            if not isinstance(truncated, bool):
                raise result.malformed("Truncated is not a boolean")
            if not truncated:
                return
            marker = _next_marker(result, page, seen)


def _next_marker(result: HttpResult, page: Mapping[str, Any], seen: set[str]) -> str:
    marker = string_member(result, page, "NextMarker")
    if marker in seen:
        raise result.malformed("NextMarker repeats an earlier marker")
    seen.add(marker)
    return marker
