"""The AWS KMS adapter: keyorch's client interface over KMS's JSON 1.1 protocol (docs/providers.md §1).

Every call is ``POST /`` with ``X-Amz-Target: TrentService.<Operation>``, SigV4-signed by
:class:`~keyorch.providers.aws_auth.KmsSigner` with botocore's credentials, sent through the shared
:class:`~keyorch.providers.http.HttpTransport`; errors are mapped at one point
(:func:`~keyorch.providers.aws_wire.map_error`).

Settings: ``region`` (required), ``endpoint`` (default ``https://kms.<region>.amazonaws.com``, or
``.amazonaws.com.cn`` in the China regions), ``pending_window_days`` (7-30, default 30: the window
``ScheduleKeyDeletion`` asks for), ``page_size`` (1-100, default 100: ``Limit`` of each
``ListAliases`` page), plus the transport's and the limiter's settings.

Deterministic identity (§1.2, §1.6; ``CreateKey`` has no idempotency token): the key of
managed key ``<id>`` is the one the alias ``alias/keyorch/<id>`` names; it also carries the tag
``keyorch:managed-key-id=<id>``. :meth:`AwsKmsClient.ensure_key`:

1. ``DescribeKey`` on the alias; if it names a key, that is the key (whatever its state).
2. Otherwise ``CreateKey`` (with the tag), then ``CreateAlias``. The alias is the commit point:
   AWS lets exactly one key hold the name, so of two racing creates (two workers, or a replay
   after a crash between the two calls) exactly one ``CreateAlias`` wins.
3. ``CreateAlias`` answering ``AlreadyExistsException`` means someone got there first (or our own
   earlier attempt did and its answer was lost): ``DescribeKey`` the alias again. If it names the
   key just created, done; if it names another key, that one is the managed key, and the key just
   created is an orphan no alias points to: it is scheduled for deletion at once with the shortest
   window (7 days; it never protected anything). That is the only way to stay at one live key,
   since KMS cannot delete a key outright. Disabling it first would add a request and nothing else:
   a key pending deletion cannot be used either.
4. A ``CreateKey`` that fails after it was sent (a timeout, a 5xx) may still have made a key, which
   then has the tag but no alias; ``CreateKey`` is therefore never retried after it was sent. When
   the reconciler says a create is in doubt, :class:`~keyorch.providers.aws_orphans.OrphanSearch`
   looks for such a key by its tag (``ListAliases``, ``ListKeys``, and ``ListResourceTags`` only for
   keys no keyorch alias names) and the alias is bound to it instead of creating another key.

The key's name (UKO's ``label_in_keystore``, from its template's naming scheme) is a second alias,
``alias/<name>`` (the target's ``label_in_keystore``; a key made before keys were named so has only the identity
alias, which is then its name). ``ensure_key`` checks before ``CreateKey`` that no key holds that alias (one that
does is not this managed key's, since the identity alias names no key: a :class:`Conflict`, nothing created),
binds it right after ``CreateKey`` and before the identity alias, so that a replay after a crash between the
two finds the key by its tag (the orphan search skips only keys with ``alias/keyorch/`` or ``alias/aws/``
aliases) and binds what is missing. A racing create that bound the name first wins if its key carries this
managed key's tag (the key just made is retired, as in step 3); an alias naming any other key is a
:class:`Conflict`. Reads and listings go by the identity alias and the key id only.

``list_keys`` yields the keys keyorch owns (those an ``alias/keyorch/<id>`` alias names; other keys
have no managed key id and nothing for keyorch to do). KMS lists carry no state, so one listing
costs ``ceil(A / page_size)`` ``ListAliases`` requests (A = aliases in the account and region) plus
one ``DescribeKey`` per owned key, sent concurrently per page (under the keystore's concurrency
limit and DescribeKey quota). ``ListKeys`` is not needed: the alias list already maps every owned
key, and a key without state would be of no use to the reconciler.

``enable``/``disable`` answer from the successful call without reading the key again (the reconciler
reads it back anyway). Repeats: ``EnableKey``/``DisableKey`` succeed on a key already in that state
(§1.6), so the transport may resend them after a lost answer; ``DisableKey`` on a key pending
deletion is already deactivated, so after KMS's ``KMSInvalidStateException`` the key is read and
returned. ``EnableKey`` on a key pending deletion or import stays a
:class:`~keyorch.providers.errors.Conflict`. ``ScheduleKeyDeletion`` is refused when repeated, so it is
never resent blindly: after an answer that leaves the outcome in doubt the key is read first, and
pending deletion is the result (with its first ``DeletionDate``); see :func:`~keyorch.providers.retry.call_checked`.
A ``ScheduleKeyDeletion`` the reconciler itself sends for a key already pending deletion is refused and
read the same way. ``CancelKeyDeletion`` is never sent (keyorch cannot cancel a destruction).

Versions: KMS rotates a key's material, not the key. ``list_versions`` names the initial material
``original`` (dated by ``CreationDate``) and each rotation by its ``KeyMaterialId`` (or ``RotationDate``
where the answer has no id), from ``ListKeyRotations``; the primary is the ``CURRENT`` one, else the newest.
``rotate`` sends ``RotateKeyOnDemand`` at most once per call, never while ``GetKeyRotationStatus`` shows
one in progress and never after an answer that left it in doubt without listing first; the lifetime
quota of on-demand rotations per key (``LimitExceededException``) is an
:class:`~keyorch.providers.errors.InvalidRequest` saying so. ``set_rotation_policy`` is
``EnableKeyRotation`` (``RotationPeriodInDays`` 90-2560) or ``DisableKeyRotation``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

from keyorch.domain.errors import InvalidInput
from keyorch.domain.models import Keystore, KeystoreType
from keyorch.domain.states import KeyState
from keyorch.domain.validation import check_endpoint
from keyorch.logs import get_logger
from keyorch.providers.aws_auth import CONTENT_TYPE, CredentialSource, KmsSigner
from keyorch.providers.aws_orphans import OrphanSearch
from keyorch.providers.aws_wire import (
    ALIAS_PREFIX,
    MANAGED_KEY_TAG,
    ORIGINAL_VERSION,
    TARGET_PREFIX,
    alias_name,
    alias_targets,
    check_empty,
    error_mapper,
    inventory_name,
    is_code,
    key_ids,
    key_observation,
    key_spec,
    key_versions,
    map_state,
    response_object,
    rotation_entries,
    rotation_period,
    string_member,
    tag_pairs,
    timestamp,
)
from keyorch.providers.base import (
    Health,
    HealthStatus,
    InventoryKey,
    KeyRef,
    KeySpec,
    KeystoreClient,
    KeyVersion,
    Observation,
    primary_version,
    register,
)
from keyorch.providers.endpoints import aws_default_endpoint
from keyorch.providers.errors import Conflict, InvalidRequest, NotFound, ProviderError, Unavailable
from keyorch.providers.http import HttpResult, HttpTransport, check_transport_settings
from keyorch.providers.limits import number_setting
from keyorch.providers.retry import RetryHook, RetryPolicy
from keyorch.urls import redact_url

DEFAULT_WINDOW_DAYS = 30
ORPHAN_WINDOW_DAYS = 7
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 100
#: ``CreateAlias`` right after ``CreateKey`` may not find the key yet (KMS is eventually consistent).
ALIAS_ATTEMPTS = 3

_REGION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_HEADERS = {
    op: {"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET_PREFIX + op}
    for op in (
        "CreateKey",
        "CreateAlias",
        "DescribeKey",
        "DisableKey",
        "EnableKey",
        "ListAliases",
        "ListKeys",
        "ListResourceTags",
        "TagResource",
        "ScheduleKeyDeletion",
        "RotateKeyOnDemand",
        "ListKeyRotations",
        "GetKeyRotationStatus",
        "EnableKeyRotation",
        "DisableKeyRotation",
    )
}
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def default_endpoint(region: str) -> str:
    return aws_default_endpoint(region)


class AwsKmsClient(KeystoreClient):
    """One AWS KMS account and region. ``retry`` and ``on_retry`` override the transport's policy."""

    def __init__(
        self,
        keystore: Keystore,
        credentials: Mapping[str, Any] | None,
        *,
        retry: RetryPolicy | None = None,
        on_retry: RetryHook | None = None,
    ) -> None:
        AwsKmsFactory().validate_settings(keystore)
        settings = keystore.settings
        region = str(settings["region"])
        self.keystore = keystore.name
        self.endpoint = str(settings.get("endpoint") or default_endpoint(region))
        self.window_days = int(settings.get("pending_window_days", DEFAULT_WINDOW_DAYS))
        self.page_size = int(settings.get("page_size", DEFAULT_PAGE_SIZE))
        self._url = self.endpoint.rstrip("/") + "/"
        self.credentials = CredentialSource(credentials)
        self.signer = KmsSigner(self._url, region, self.credentials)
        self.transport = HttpTransport.for_keystore(
            keystore,
            map_error=error_mapper(refresh_auth=self.credentials.from_chain),
            auth=self.signer,
            retry=retry,
            on_retry=on_retry,
        )
        self._log = get_logger(keystore=keystore.name, provider="aws_kms")

    def __repr__(self) -> str:
        return f"AwsKmsClient(keystore={self.keystore!r}, endpoint={redact_url(self.endpoint)!r})"

    async def _call(self, operation: str, members: Mapping[str, Any], *, idempotent: bool = True) -> HttpResult:
        return await self.transport.request(
            "POST",
            self._url,
            operation=operation,
            idempotent=idempotent,
            headers=_HEADERS[operation],
            data=_dumps(members).encode(),
        )

    async def _describe(self, key: str, managed_key_id: str | None) -> Observation | None:
        """The key ``key`` (id, ARN or alias) names, or ``None`` when KMS does not have it."""
        try:
            result = await self._call("DescribeKey", {"KeyId": key})
        except NotFound:
            return None
        return key_observation(result, response_object(result).get("KeyMetadata"), managed_key_id)

    async def _key_id(self, ref: KeyRef) -> tuple[str, str | None]:
        """The key id a lifecycle call needs (they take no alias), found by alias when not known."""
        if ref.key_id_in_keystore:
            return ref.key_id_in_keystore, ref.managed_key_id
        found = await self.get_key(ref)
        if found is None:
            raise NotFound(
                f"no key is named by alias {alias_name(ref.managed_key_id or '')}",
                keystore=self.keystore,
                sent=False,
            )
        return found.key_id_in_keystore, ref.managed_key_id

    # -- reads --------------------------------------------------------------------------------

    async def get_key(self, ref: KeyRef) -> Observation | None:
        if ref.key_id_in_keystore:
            return await self._describe(ref.key_id_in_keystore, ref.managed_key_id)
        if ref.managed_key_id:
            return await self._describe(alias_name(ref.managed_key_id), ref.managed_key_id)
        raise InvalidRequest("a key reference needs a key id or a managed key id", keystore=self.keystore, sent=False)

    async def _pages(
        self, operation: str, members: Mapping[str, Any], limit: int | None = None
    ) -> AsyncIterator[tuple[HttpResult, dict[str, Any]]]:
        """Every page of a ``Limit``/``Marker`` listing (``limit``, default the keystore's ``page_size``), following
        ``Truncated`` and ``NextMarker`` (a repeated marker is a malformed answer, not an endless loop)."""
        marker: str | None = None
        seen: set[str] = set()
        while True:
            request = {**members, "Limit": limit or self.page_size}
            if marker is not None:
                request["Marker"] = marker
            result = await self._call(operation, request)
            page = response_object(result)
            yield result, page
            truncated = page.get("Truncated", False)
            if not isinstance(truncated, bool):
                raise result.malformed("Truncated is not a boolean")
            if not truncated:
                return
            marker = string_member(result, page, "NextMarker")
            if marker in seen:
                raise result.malformed("NextMarker repeats an earlier marker")
            seen.add(marker)

    async def list_keys(self) -> AsyncIterator[Observation]:
        async for result, page in self._pages("ListAliases", {}):
            owned = _owned_keys(result, page.get("Aliases"))
            found = await asyncio.gather(
                *(self._describe(key, managed) for managed, key in owned), return_exceptions=True
            )
            for item in found:
                if isinstance(item, BaseException):
                    raise item
            for observation in found:
                if isinstance(observation, Observation):  # None: deleted since the alias page was read
                    yield observation

    async def inventory(self) -> AsyncIterator[InventoryKey]:
        """Every customer key: ``ListAliases`` (every page: each key's aliases), then ``ListKeys`` page by page and,
        for each key on a page (concurrently, under the keystore's limits), ``DescribeKey``, ``ListResourceTags``
        and ``ListKeyRotations``. Keys AWS manages itself (``KeyManager`` ``AWS``) are left out: no one adopts them."""
        aliases: dict[str, list[str]] = {}
        async for result, page in self._pages("ListAliases", {}):
            for name, target in alias_targets(result, page.get("Aliases")):
                aliases.setdefault(target, []).append(name)
        async for result, page in self._pages("ListKeys", {}):
            entries = page.get("Keys")
            if not isinstance(entries, list):
                raise result.malformed("Keys is missing or not a list")
            ids = key_ids(result, entries)
            found = await asyncio.gather(*(self._inventory_key(k, aliases.get(k, [])) for k in ids))
            for item in found:
                if item is not None:  # None: deleted since the page was read, or AWS's own
                    yield item

    async def _inventory_key(self, key_id: str, aliases: list[str]) -> InventoryKey | None:
        try:
            described = await self._call("DescribeKey", {"KeyId": key_id})
            metadata = response_object(described).get("KeyMetadata")
            observed = key_observation(described, metadata, None)
            assert isinstance(metadata, dict)
            if metadata.get("KeyManager") == "AWS":
                return None
            tags: list[tuple[str, str]] = []
            async for result, page in self._pages("ListResourceTags", {"KeyId": key_id}, min(self.page_size, 50)):
                tags += tag_pairs(result, page.get("Tags"))
            created = timestamp(described, metadata.get("CreationDate"), "CreationDate")
            versions = await self._inventory_versions(key_id, created)
        except NotFound:
            return None
        labels = dict(tags)
        owned = [a[len(ALIAS_PREFIX) :] for a in aliases if a.startswith(ALIAS_PREFIX)]
        description, spec, origin = (metadata.get(f) for f in ("Description", "KeySpec", "Origin"))
        return InventoryKey(
            key_id_in_keystore=observed.key_id_in_keystore,
            name=inventory_name(aliases),
            state=observed.state,
            raw_state=observed.raw_state,
            versions=tuple(versions),
            created_at=created,
            aliases=tuple(aliases),
            labels=labels,
            description=description if isinstance(description, str) else "",
            managed_key_id=labels.get(MANAGED_KEY_TAG) or (owned[0] if owned else None),
            destruction_pending=observed.destruction_pending,
            pending_until=observed.pending_until,
            key_type=spec if isinstance(spec, str) else None,
            origin=origin if isinstance(origin, str) else None,
        )

    async def _inventory_versions(self, key_id: str, created: datetime | None) -> list[KeyVersion]:
        """The key's versions; only its initial material where KMS lists no rotations for it (imported or asymmetric
        material: ``UnsupportedOperationException``; a state that allows no listing: ``KMSInvalidStateException``)."""
        try:
            return await self._versions(key_id, created)
        except (InvalidRequest, Conflict) as exc:
            if exc.provider_code not in ("UnsupportedOperationException", "KMSInvalidStateException"):
                raise
        return [KeyVersion(ORIGINAL_VERSION, created, True)]

    # -- changes ------------------------------------------------------------------------------

    async def mark_managed(self, ref: KeyRef, managed_key_id: str) -> str:
        """``TagResource`` with keyorch's tag (a repeat sets the same value: idempotent)."""
        key_id, _ = await self._key_id(ref)
        tags = [{"TagKey": MANAGED_KEY_TAG, "TagValue": managed_key_id}]
        await self._call("TagResource", {"KeyId": key_id, "Tags": tags})
        return f"tag {MANAGED_KEY_TAG}={managed_key_id}"

    async def ensure_key(self, managed_key_id: str, spec: KeySpec, *, in_doubt: bool = False) -> Observation:
        alias = alias_name(managed_key_id)
        named = self._name_alias(spec.name_in_keystore, alias)
        existing = await self._describe(alias, managed_key_id)
        if existing is not None:
            if named is not None:
                await self._bind_name(named, existing.key_id_in_keystore, managed_key_id, made_now=False)
            return existing
        if in_doubt:
            # An earlier CreateKey may have made the key without the alias (its answer was lost, or
            # the process died before CreateAlias): find it by its tag and finish the job instead.
            adopted = await self._adopt_orphan(managed_key_id, named)
            if adopted is not None:
                return adopted
        if named is not None:
            holder = await self._describe(named, None)
            if holder is not None:  # the identity alias names no key, so this one is not this managed key's
                raise self._taken(named, holder.key_id_in_keystore, managed_key_id)
        kms_spec, usage = key_spec(spec.algorithm, spec.size)
        tags = [{"TagKey": MANAGED_KEY_TAG, "TagValue": managed_key_id}]
        tags += [{"TagKey": k, "TagValue": v} for k, v in spec.labels.items() if k != MANAGED_KEY_TAG]
        members = {"KeySpec": kms_spec, "KeyUsage": usage, "Description": spec.name[:8192], "Tags": tags}
        result = await self._call("CreateKey", members, idempotent=False)
        created = key_observation(result, response_object(result).get("KeyMetadata"), managed_key_id)
        key_id = created.key_id_in_keystore
        if named is not None:
            key_id = await self._bind_name(named, key_id, managed_key_id, made_now=True)
        winner = await self._bind_alias(alias, key_id, managed_key_id)
        if winner is not None:
            return winner
        return (
            created
            if key_id == created.key_id_in_keystore
            else (await self._describe(key_id, managed_key_id)) or created
        )

    def _name_alias(self, name_in_keystore: str | None, identity: str) -> str | None:
        """The alias the template's naming scheme gives the key, when it is not the identity alias itself."""
        if name_in_keystore is None or name_in_keystore == identity:
            return None
        if not name_in_keystore.startswith("alias/") or name_in_keystore.startswith((ALIAS_PREFIX, "alias/aws/")):
            raise InvalidRequest(
                f"{name_in_keystore[:260]!r} cannot be a keyorch key's alias: alias/<name>, not alias/aws/ or "
                f"{ALIAS_PREFIX}",
                keystore=self.keystore,
                operation="CreateAlias",
                sent=False,
            )
        return name_in_keystore

    def _taken(self, alias: str, key_id: str, managed_key_id: str) -> Conflict:
        return Conflict(
            f"alias {alias} already names key {key_id}, which is not keyorch's key for managed key {managed_key_id}; "
            "keyorch does not adopt it: give the key another label or naming scheme",
            keystore=self.keystore,
            operation="CreateAlias",
            sent=False,
        )

    async def _bind_name(self, alias: str, key_id: str, managed_key_id: str, *, made_now: bool) -> str:
        """Give ``key_id`` the alias its template's naming scheme names it by, before its identity alias; return the
        key that alias names. An alias already naming the key is done. One naming another key tagged for the same
        managed key is a racing create's (that key is the managed key; ``key_id``, when ``made_now``, is an orphan
        and is retired). One naming any other key is someone else's: a :class:`Conflict` (and a key ``made_now``
        is retired, as nothing names it)."""
        try:
            await self._create_alias(alias, key_id)
            return key_id
        except Conflict as exc:
            if not is_code(exc, "AlreadyExistsException"):
                raise
            holder = await self._describe(alias, None)
            if holder is None:
                raise
        if holder.key_id_in_keystore == key_id:
            return key_id  # an earlier answer was lost
        search = OrphanSearch(self._call, self._describe_id, self.transport.limiter.limits.max_concurrency)
        ours = await search.tagged(holder.key_id_in_keystore, managed_key_id)
        if made_now:
            await self._retire_orphan(key_id, managed_key_id)
        if not ours:
            raise self._taken(alias, holder.key_id_in_keystore, managed_key_id)
        return holder.key_id_in_keystore

    async def find_in_doubt(self, managed_key_id: str, name_in_keystore: str | None = None) -> Observation | None:
        alias = alias_name(managed_key_id)
        existing = await self._describe(alias, managed_key_id)
        if existing is not None:
            return existing
        return await self._adopt_orphan(managed_key_id, self._name_alias(name_in_keystore, alias))

    async def _adopt_orphan(self, managed_key_id: str, named: str | None = None) -> Observation | None:
        """Find the key a lost ``CreateKey`` made for ``managed_key_id`` by its tag and bind its aliases (the one
        its naming scheme gives it, ``named``, first, as ``ensure_key`` does)."""
        search = OrphanSearch(self._call, self._describe_id, self.transport.limiter.limits.max_concurrency)
        orphan = await search.find(managed_key_id)
        if orphan is None:
            return None
        if named is not None:
            orphan = await self._bind_name(named, orphan, managed_key_id, made_now=False)
        winner = await self._bind_alias(alias_name(managed_key_id), orphan, managed_key_id)
        # by id: a read through the alias just bound may not see it yet (eventual consistency)
        adopted = winner or await self._describe(orphan, managed_key_id)
        if adopted is not None:
            self._log.info("key of an in-doubt create adopted", key_id=orphan, managed_key_id=managed_key_id)
        return adopted

    async def _describe_id(self, key_id: str) -> Observation | None:
        return await self._describe(key_id, None)

    async def _bind_alias(self, alias: str, key_id: str, managed_key_id: str) -> Observation | None:
        """``CreateAlias``; ``None`` when it named ``key_id``. When the alias already names a key, that
        key is returned: ``key_id`` itself (an earlier answer was lost), or the winner of a race, and
        then ``key_id`` is an orphan no alias points to, retired at once."""
        try:
            await self._create_alias(alias, key_id)
        except Conflict as exc:
            if not is_code(exc, "AlreadyExistsException"):
                raise
            winner = await self._describe(alias, managed_key_id)
            if winner is None:
                raise
            if winner.key_id_in_keystore != key_id:
                await self._retire_orphan(key_id, managed_key_id)
            return winner
        return None

    async def _create_alias(self, alias: str, key_id: str) -> None:
        policy = self.transport.retry
        for attempt in range(1, ALIAS_ATTEMPTS + 1):
            try:
                check_empty(await self._call("CreateAlias", {"AliasName": alias, "TargetKeyId": key_id}))
                return
            except NotFound:
                if attempt == ALIAS_ATTEMPTS:
                    raise
                await policy.sleep(policy.backoff(attempt))

    async def _retire_orphan(self, key_id: str, managed_key_id: str) -> None:
        """Schedule the deletion of a key that lost the alias race (best effort: it is tagged)."""
        try:
            await self._schedule_deletion(key_id, None, ORPHAN_WINDOW_DAYS)
        except ProviderError as exc:
            self._log.warning("orphan key not scheduled for deletion", key_id=key_id, error=exc.message)
            return
        self._log.info("orphan key scheduled for deletion", key_id=key_id, managed_key_id=managed_key_id)

    async def enable(self, ref: KeyRef, *, older_versions: bool = True) -> Observation:
        key_id, managed = await self._key_id(ref)
        check_empty(await self._call("EnableKey", {"KeyId": key_id}))
        return Observation(key_id, managed, KeyState.ACTIVE, raw_state="Enabled")

    async def disable(self, ref: KeyRef) -> Observation:
        key_id, managed = await self._key_id(ref)
        try:
            check_empty(await self._call("DisableKey", {"KeyId": key_id}))
        except Conflict:
            current = await self._describe(key_id, managed)
            if current is not None and current.destruction_pending:
                return current
            raise
        return Observation(key_id, managed, KeyState.DEACTIVATED, raw_state="Disabled")

    async def schedule_destruction(self, ref: KeyRef, *, force: bool = False) -> Observation:
        key_id, managed = await self._key_id(ref)
        return await self._schedule_deletion(key_id, managed, self.window_days)

    async def _schedule_deletion(self, key_id: str, managed: str | None, window_days: int) -> Observation:
        """``ScheduleKeyDeletion``, sent so that KMS never sees a blind repeat (§1.6: a repeat on a
        key pending deletion is refused with ``KMSInvalidStateException``).

        The transport sends it as not idempotent: it retries only what surely never left this host. After
        an answer that leaves the outcome in doubt (no answer in time, a dropped connection, a body cut
        short, a 5xx) the key is read: pending deletion means it was done, and that reading is the
        result; otherwise the call is sent again, under the keystore's retry policy. A throttled call was
        refused unprocessed and is sent again without a read. A refusal because the key is already
        pending deletion (someone else, or KMS's eventual consistency hiding our own) is read the same way.
        """

        async def pending() -> Observation | None:
            current = await self._describe(key_id, managed)
            return current if current is not None and current.destruction_pending else None

        members = {"KeyId": key_id, "PendingWindowInDays": window_days}

        async def send() -> Observation:
            result = await self._call("ScheduleKeyDeletion", members, idempotent=False)
            doc = response_object(result)  # a 200 it cannot read is in doubt: read before a resend
            raw_state = doc.get("KeyState", "PendingDeletion")  # older responses (and moto) omit it
            state, is_pending = map_state(result, raw_state, False)
            if not is_pending:
                raise result.malformed(f"ScheduleKeyDeletion answered KeyState {str(raw_state)[:40]!r}")
            until = timestamp(result, doc.get("DeletionDate"), "DeletionDate")
            return Observation(key_id, managed, state, True, until, str(raw_state))

        try:
            return await self.transport.request_checked(send, pending)
        except Conflict:
            current = await pending()
            if current is not None:
                return current
            raise

    # -- versions and rotation ----------------------------------------------------------------

    async def _created(self, ref: KeyRef) -> tuple[str, datetime | None]:
        """The key's id and creation date (the initial material's), from ``DescribeKey`` by id or alias."""
        if not ref.key_id_in_keystore and not ref.managed_key_id:
            raise InvalidRequest(
                "a key reference needs a key id or a managed key id", keystore=self.keystore, sent=False
            )
        name = ref.key_id_in_keystore or alias_name(ref.managed_key_id or "")
        result = await self._call("DescribeKey", {"KeyId": name})
        metadata = response_object(result).get("KeyMetadata")
        if not isinstance(metadata, dict):
            raise result.malformed("KeyMetadata is missing or not an object")
        return string_member(result, metadata, "KeyId"), timestamp(result, metadata.get("CreationDate"), "CreationDate")

    async def _versions(self, key_id: str, created: datetime | None) -> list[KeyVersion]:
        rotations: list[tuple[datetime, str, str | None]] = []
        last: HttpResult | None = None
        async for result, page in self._pages("ListKeyRotations", {"KeyId": key_id}):
            rotations += rotation_entries(result, page.get("Rotations"))
            last = result
        assert last is not None
        return key_versions(last, created, rotations)

    async def list_versions(self, ref: KeyRef) -> list[KeyVersion]:
        """``DescribeKey`` (the initial material's date) and ``ceil(R / page_size)`` ``ListKeyRotations``
        pages for R rotations. KMS holds the key's state, not each material's: every version is enabled."""
        key_id, created = await self._created(ref)
        return await self._versions(key_id, created)

    async def rotate(self, ref: KeyRef, *, from_version: str) -> KeyVersion:
        """``RotateKeyOnDemand`` unless ``from_version`` is no longer the primary; never resent blindly.

        KMS refuses nothing when the same rotation is asked twice: it rotates twice, and each counts
        against the key's lifetime quota of on-demand rotations. KMS also completes a rotation some time
        after accepting it, and lists it only then. So before sending, and whenever the listing shows no
        new primary, ``GetKeyRotationStatus`` is asked whether a rotation is in progress
        (``OnDemandRotationStartDate``): then nothing is sent and the call ends with a transient
        :class:`Unavailable` (a later ``rotate`` finds the new primary). The request is sent as not
        idempotent, at most once per call, through ``request_checked``: after an answer that leaves the
        outcome in doubt the rotations are listed first. A refusal because the quota is used up is an
        :class:`InvalidRequest` saying so."""
        key_id, created = await self._created(ref)
        current = primary_version(await self._versions(key_id, created))
        if current.version_id != from_version:
            return current
        await self._not_rotating(key_id)
        accepted = False

        async def rotated() -> KeyVersion | None:
            now = primary_version(await self._versions(key_id, created))
            if now.version_id != from_version:
                return now
            await self._not_rotating(key_id)
            return None

        async def send() -> KeyVersion:
            nonlocal accepted
            if not accepted:
                try:
                    result = await self._call("RotateKeyOnDemand", {"KeyId": key_id}, idempotent=False)
                except InvalidRequest as exc:
                    if is_code(exc, "LimitExceededException"):
                        raise _quota_error(exc, key_id) from None
                    raise
                accepted = True
                response_object(result)  # a 200 it cannot read is in doubt: the versions are read next
            found = await rotated()
            if found is None:
                raise Unavailable(
                    f"RotateKeyOnDemand for key {key_id} was accepted but its new key material is not listed "
                    "yet; it is not sent again",
                    keystore=self.keystore,
                    operation="RotateKeyOnDemand",
                    transient=True,
                )
            return found

        return await self.transport.request_checked(send, rotated)

    async def _not_rotating(self, key_id: str) -> None:
        """Raise a transient :class:`Unavailable` while an on-demand rotation of the key is in progress."""
        result = await self._call("GetKeyRotationStatus", {"KeyId": key_id})
        started = timestamp(
            result, response_object(result).get("OnDemandRotationStartDate"), "OnDemandRotationStartDate"
        )
        if started is not None:
            raise Unavailable(
                f"an on-demand rotation of key {key_id} started at {started.isoformat()} is still in progress; "
                "no other rotation is sent until its key material is listed",
                keystore=self.keystore,
                operation="RotateKeyOnDemand",
                sent=False,
            )

    async def set_rotation_policy(self, ref: KeyRef, period_days: int | None) -> None:
        """``EnableKeyRotation`` with ``RotationPeriodInDays`` (90-2560), or ``DisableKeyRotation``;
        both may be repeated, so they are sent as idempotent."""
        period = rotation_period(period_days)
        key_id, _ = await self._key_id(ref)
        if period is None:
            check_empty(await self._call("DisableKeyRotation", {"KeyId": key_id}))
        else:
            check_empty(await self._call("EnableKeyRotation", {"KeyId": key_id, "RotationPeriodInDays": period}))

    # -- health -------------------------------------------------------------------------------

    async def validate(self) -> Health:
        try:
            result = await self._call("ListKeys", {"Limit": 1})
            if not isinstance(response_object(result).get("Keys"), list):
                raise result.malformed("Keys is missing or not a list")
        except ProviderError as exc:
            return Health.from_error(exc)
        return Health(HealthStatus.OK, f"AWS KMS at {self.endpoint} answers and accepts the credentials")

    async def aclose(self) -> None:
        await self.transport.aclose()


def _quota_error(exc: ProviderError, key_id: str) -> InvalidRequest:
    return InvalidRequest(
        f"AWS KMS refused another on-demand rotation of key {key_id}: on-demand rotations per key are limited "
        "over the key's lifetime and the quota cannot be raised; automatic rotation (EnableKeyRotation) is not "
        f"limited ({exc.detail})",
        keystore=exc.keystore,
        operation="RotateKeyOnDemand",
        status=exc.status,
        provider_code=exc.provider_code,
    )


def _owned_keys(result: HttpResult, aliases: Any) -> list[tuple[str, str]]:
    """(managed key id, target key id) for every ``alias/keyorch/<id>`` alias on a ListAliases page."""
    return [
        (name[len(ALIAS_PREFIX) :], target)
        for name, target in alias_targets(result, aliases)
        if name.startswith(ALIAS_PREFIX)
    ]


class AwsKmsFactory:
    """Checks an AWS KMS keystore's settings and builds its client."""

    def validate_settings(self, keystore: Keystore) -> None:
        settings = keystore.settings
        region = settings.get("region")
        if not isinstance(region, str) or not region or not set(region) <= _REGION_CHARS or "-" not in region:
            raise InvalidInput(
                f"setting region must be an AWS region such as us-east-1, not {region!r}", target="region"
            )
        endpoint = settings.get("endpoint")
        if endpoint is not None:
            if not isinstance(endpoint, str):
                raise InvalidInput("setting endpoint must be a URL", target="endpoint")
            check_endpoint(endpoint, settings.get("allow_insecure_http") is True)
        if "pending_window_days" in settings:
            number_setting(settings, "pending_window_days", minimum=7, maximum=30, integer=True)
        if "page_size" in settings:
            number_setting(settings, "page_size", minimum=1, maximum=MAX_PAGE_SIZE, integer=True)
        check_transport_settings(keystore)

    def create(self, keystore: Keystore, credentials: Mapping[str, Any] | None) -> KeystoreClient:
        return AwsKmsClient(keystore, credentials)


register(KeystoreType.AWS_KMS, AwsKmsFactory())
