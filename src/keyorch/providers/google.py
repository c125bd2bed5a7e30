"""The Google Cloud KMS v1 adapter (REST): keys in one key ring, lifecycle on their versions.

* Keystore settings: ``project``, ``location``, ``key_ring`` (required), ``endpoint`` (default
  ``https://cloudkms.googleapis.com``), ``page_size`` (list page size, 1-1000, default 1000), plus the
  transport's and the limits' settings (:mod:`keyorch.providers.http`, :mod:`keyorch.providers.limits`).
* Auth: :mod:`keyorch.providers.google_auth` (service-account JWT exchanged at the document's
  ``token_uri``; with ``credentials=None``, ``GOOGLE_APPLICATION_CREDENTIALS`` and then the GCE/GKE
  metadata server). Every call carries ``$alt=json;enum-encoding=int`` as Google's REST client does.
* Identity: the managed key ``<id>`` is the cryptoKey of the key ring its template's naming scheme named
  (the target's ``label_in_keystore``, ``[a-zA-Z0-9_-]{1,63}``; ``keyorch-<id>`` for a key made before keys
  were named so), labelled ``keyorch-managed-key=<id>``; ``key_id_in_keystore`` is the key's full resource
  name (a bare cryptoKeyId in a ref is read in this key ring). A key maps to a managed key id by that label,
  else by a ``keyorch-<id>`` cryptoKeyId. A key found by name (before its resource name is recorded) is this
  managed key's only if it maps to it: one made for another managed key, or outside keyorch, is never
  adopted (``ensure_key``: a :class:`Conflict` naming the cryptoKeyId; cryptoKeyIds are never reusable).
* ``ensure_key``: GET the key; on 404 create it with ``?cryptoKeyId=`` (creating the key ring first
  when that is what is missing; a 409 there is fine); a 409 ``ALREADY_EXISTS`` on the key (a retried
  or concurrent create) means it exists, so it is read. A key that exists with another purpose is a
  ``Conflict``. AES-256 keys are ``ENCRYPT_DECRYPT``/``GOOGLE_SYMMETRIC_ENCRYPTION``, RSA keys
  ``ASYMMETRIC_DECRYPT``/``RSA_DECRYPT_OAEP_<size>_SHA256``, all SOFTWARE protection.
* ``enable``/``disable``: PATCH (``updateMask=state``) every DISABLED/ENABLED version; repeats find
  nothing to change and succeed. ``enable`` of a key that cannot become active (destruction
  scheduled, destroyed, material pending) is a ``Conflict``. ``disable`` of such a key succeeds.
* ``schedule_destruction``: ``:destroy`` every version not already DESTROY_SCHEDULED/destroyed (nor
  IMPORT_FAILED/GENERATION_FAILED, which hold no material) → ``DEACTIVATED`` with
  ``destruction_pending`` until the latest ``destroyTime``; ``DESTROYED`` only once every version is.
  A version refused with FAILED_PRECONDITION is re-read: already scheduled or destroyed is success.
  ``:destroy`` is not idempotent (a repeat is refused), so it is never resent blindly: after an
  answer that leaves the outcome in doubt the version is read first (``cryptoKeyVersions.get``).
  The enabling/disabling PATCH sets a state, so the transport may resend it after a lost answer.
  ``:restore`` is never sent (keyorch cannot cancel a destruction).
* Versions and rotation: ``list_versions`` pages ``cryptoKeyVersions.list`` (``page_size``), oldest
  (lowest id) first, ``enabled`` meaning ENABLED; the primary is the key's ``primary`` (other purposes:
  the newest version that is ENABLED or being generated). ``rotate`` creates a version (never resent
  blindly) and makes it primary with ``updatePrimaryVersion``; a newer ENABLED version that is not
  primary (a rotation cut short) is made primary instead of creating another. ``set_rotation_policy``
  PATCHes ``rotationPeriod``/``nextRotationTime`` (1 day to 876,000 hours; ENCRYPT_DECRYPT only).
  ``disable_version`` PATCHes one non-primary version DISABLED.
* ``list_keys`` costs ``ceil(N / page_size)`` requests for N keys, plus one versions listing (per
  ``page_size`` versions) for each ``keyorch-`` key whose primary version is neither ENABLED nor DISABLED (or
  that has no primary): those keys' state needs every version. Other keys are reported from their
  primary version alone. ``get_key`` costs two requests and more: the key and every page of its versions (drift
  is judged over every version, docs/rotation.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar
from urllib.parse import quote

from keyorch.domain.errors import InvalidInput
from keyorch.domain.models import Keystore, KeystoreType
from keyorch.domain.states import KeyState
from keyorch.domain.validation import check_endpoint
from keyorch.providers.base import (
    Health,
    HealthStatus,
    InventoryKey,
    KeyRef,
    KeySpec,
    KeystoreClient,
    KeyVersion,
    Observation,
    register,
)
from keyorch.providers.endpoints import origin_of
from keyorch.providers.errors import Conflict, InvalidRequest, MalformedResponse, NotFound, ProviderError, Unavailable
from keyorch.providers.google_auth import GoogleAuth, credential_source
from keyorch.providers.google_wire import (
    ALT_QUERY,
    DEFAULT_ENDPOINT,
    DESTROYED_STATES,
    ID_RE,
    MANAGED_KEY_LABEL,
    NEW_VERSION_STATES,
    NO_DESTROY_STATES,
    KeyInfo,
    VersionInfo,
    WireError,
    crypto_key_id,
    derive,
    describe,
    format_time,
    is_key_name,
    map_google_error,
    needs_versions,
    parse_key,
    parse_page,
    parse_version,
    primary_name,
    rotation_period_text,
    versions_view,
)
from keyorch.providers.http import HttpResult, HttpTransport, TransportSettings, check_transport_settings
from keyorch.providers.limits import ProviderLimits, number_setting
from keyorch.providers.retry import RetryPolicy

T = TypeVar("T")
#: Which of a key's versions a change is for: every one, the primary only, or every one but the primary.
Which = Literal["all", "primary", "older"]
MAX_PAGE_SIZE = 1000
_TOKEN_LIMITS = ProviderLimits(rate_per_second=None, burst=1, max_concurrency=4)
_KEY_TEMPLATES: dict[str, tuple[str, dict[int, str]]] = {
    "aes": ("ENCRYPT_DECRYPT", {256: "GOOGLE_SYMMETRIC_ENCRYPTION"}),
    "rsa": ("ASYMMETRIC_DECRYPT", {size: f"RSA_DECRYPT_OAEP_{size}_SHA256" for size in (2048, 3072, 4096)}),
}


def _label(text: str, *, key: bool) -> str:
    """A label key or value Cloud KMS accepts: lowercase letters, digits, ``_``, ``-``; at most 63."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "_" for c in text.lower())[:63]
    if key and not cleaned[:1].isalpha():
        cleaned = ("k" + cleaned)[:63]
    return cleaned


def _foreign(key: KeyInfo, managed_key_id: str | None) -> str | None:
    """Who else a key found by name belongs to (another managed key, or none), ``None`` when it is
    ``managed_key_id``'s (or no managed key was asked for). The label holds the id as :func:`_label` wrote it."""
    if managed_key_id is None:
        return None
    owner = key.managed_key_id
    if owner in (managed_key_id, _label(managed_key_id, key=False)):
        return None
    return f"managed key {owner}" if owner else "no managed key (it carries no keyorch-managed-key label)"


class GoogleKmsClient(KeystoreClient):
    """One Cloud KMS key ring."""

    def __init__(
        self,
        keystore: Keystore,
        credentials: Mapping[str, Any] | None,
        *,
        retry: RetryPolicy | None = None,
        page_size: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        settings = keystore.settings
        endpoint = str(settings.get("endpoint") or DEFAULT_ENDPOINT).rstrip("/")
        self._ring = f"projects/{settings['project']}/locations/{settings['location']}/keyRings/{settings['key_ring']}"
        self._base = f"{endpoint}/v1/"
        self._page_size = page_size or int(settings.get("page_size", MAX_PAGE_SIZE))
        self._clock = clock
        token_transport = HttpTransport(
            keystore.name,
            limits=_TOKEN_LIMITS,
            retry=RetryPolicy(max_attempts=1),  # the keystore call that needs the token retries
            map_error=map_google_error,
            settings=TransportSettings.from_settings(settings),
        )
        self.auth = GoogleAuth(credential_source(credentials), token_transport, origin=origin_of(endpoint))
        self.http = HttpTransport.for_keystore(keystore, map_error=map_google_error, auth=self.auth, retry=retry)
        self._ring_ready = False

    # -- plumbing -----------------------------------------------------------------------------

    def _url(self, name: str, query: str = "") -> str:
        return f"{self._base}{name}?{ALT_QUERY}{query}"

    async def _call(
        self, method: str, name: str, operation: str, *, query: str = "", body: Any = None, idempotent: bool = True
    ) -> HttpResult:
        return await self.http.request(
            method, self._url(name, query), operation=operation, idempotent=idempotent, json=body
        )

    @staticmethod
    def _parse(result: HttpResult, parse: Callable[[Any], T]) -> T:
        try:
            return parse(result.json_body)
        except WireError as exc:
            raise result.malformed(str(exc)) from None

    def _name_of(self, ref: KeyRef) -> str | None:
        """The key's resource name from the ref (or the managed key's deterministic identity)."""
        key_id = ref.key_id_in_keystore
        if key_id is None and ref.name_in_keystore is not None:
            key_id = ref.name_in_keystore if ID_RE.fullmatch(ref.name_in_keystore) else None
            return f"{self._ring}/cryptoKeys/{key_id}" if key_id is not None else None
        if key_id is None:
            if ref.managed_key_id is None:
                return None
            try:
                return f"{self._ring}/cryptoKeys/{crypto_key_id(ref.managed_key_id)}"
            except InvalidRequest:
                return None
        if ID_RE.fullmatch(key_id) is not None:
            return f"{self._ring}/cryptoKeys/{key_id}"
        # a full resource name, but only one in this keystore's key ring
        return key_id if key_id.startswith(self._ring + "/") and is_key_name(key_id) else None

    def _require_name(self, ref: KeyRef) -> str:
        name = self._name_of(ref)
        if name is None:
            raise NotFound(
                f"no Cloud KMS key can be named by {ref.key_id_in_keystore or ref.managed_key_id!r}"[:200],
                keystore=self.http.keystore,
                sent=False,
            )
        return name

    async def _read_key(self, name: str) -> KeyInfo:
        return self._parse(await self._call("GET", name, "cryptoKeys.get"), parse_key)

    async def _versions(self, key_name: str) -> list[VersionInfo]:
        versions: list[VersionInfo] = []
        token: str | None = None
        while True:
            query = f"&pageSize={self._page_size}" + (f"&pageToken={quote(token, safe='')}" if token else "")
            result = await self._call("GET", f"{key_name}/cryptoKeyVersions", "cryptoKeyVersions.list", query=query)
            page, next_token = self._parse(result, lambda doc: parse_page(doc, "cryptoKeyVersions", parse_version))
            versions.extend(page)
            if next_token is None:
                return versions
            if next_token == token:
                raise result.malformed("the versions listing repeats its page token")
            token = next_token

    def _observe(self, key: KeyInfo, versions: Sequence[VersionInfo] | None) -> Observation:
        """The key's state from every version (or, ``versions`` None, from its primary alone), with each
        version's own state where they were read."""
        derived = derive(key, versions)
        try:
            view = tuple(versions_view(key, versions)) if versions is not None else None
        except WireError as exc:
            raise MalformedResponse(str(exc), keystore=self.http.keystore, operation="cryptoKeyVersions.list") from None
        return Observation(
            key.name,
            key.managed_key_id,
            derived.state,
            derived.destruction_pending,
            derived.pending_until,
            derived.raw_state,
            view,
        )

    async def _observe_full(self, key: KeyInfo) -> Observation:
        """The key with every version read (``cryptoKeyVersions.list``, every page): drift is judged over them."""
        return self._observe(key, await self._versions(key.name))

    # -- reads --------------------------------------------------------------------------------

    async def _key_pages(self) -> AsyncIterator[tuple[HttpResult, list[KeyInfo]]]:
        """Every page of ``cryptoKeys.list`` (none while the key ring does not exist yet)."""
        token: str | None = None
        while True:
            query = f"&pageSize={self._page_size}" + (f"&pageToken={quote(token, safe='')}" if token else "")
            try:
                result = await self._call("GET", f"{self._ring}/cryptoKeys", "cryptoKeys.list", query=query)
            except NotFound:
                if token is None:
                    return  # no key ring yet, so no keys
                raise
            keys, next_token = self._parse(result, lambda doc: parse_page(doc, "cryptoKeys", parse_key))
            yield result, keys
            if next_token is None:
                return
            if next_token == token:
                raise result.malformed("the key listing repeats its page token")
            token = next_token

    async def list_keys(self) -> AsyncIterator[Observation]:
        async for _, keys in self._key_pages():
            owned = [key for key in keys if key.managed_key_id is not None and needs_versions(key)]
            listed = await asyncio.gather(*(self._versions_or_none(key.name) for key in owned))
            versions = {key.name: found for key, found in zip(owned, listed, strict=True)}
            for key in keys:
                if key.name in versions and versions[key.name] is None:
                    continue  # deleted between the two listings
                yield self._observe(key, versions.get(key.name))

    async def inventory(self) -> AsyncIterator[InventoryKey]:
        """Every key of the key ring: ``cryptoKeys.list`` page by page and, for each key on a page (concurrently,
        under the keystore's limits), every page of its ``cryptoKeyVersions.list``. No key ring yet: no keys."""
        async for result, keys in self._key_pages():
            listed = await asyncio.gather(*(self._versions_or_none(key.name) for key in keys))
            for key, versions in zip(keys, listed, strict=True):
                if versions is not None:  # None: deleted between the two listings
                    yield self._inventory_key(result, key, versions)

    def _inventory_key(self, result: HttpResult, key: KeyInfo, versions: list[VersionInfo]) -> InventoryKey:
        observed = self._observe(key, versions)
        try:
            view = versions_view(key, versions)
        except WireError as exc:
            raise result.malformed(str(exc)) from None
        return InventoryKey(
            key_id_in_keystore=key.name,
            name=key.key_id,
            state=observed.state,
            raw_state=observed.raw_state,
            versions=tuple(view),
            created_at=key.create_time,
            labels=dict(key.labels),
            managed_key_id=key.managed_key_id,
            destruction_pending=observed.destruction_pending,
            pending_until=observed.pending_until,
            key_type=key.purpose,
        )

    async def _versions_or_none(self, key_name: str) -> list[VersionInfo] | None:
        try:
            return await self._versions(key_name)
        except NotFound:
            return None

    async def get_key(self, ref: KeyRef) -> Observation | None:
        name = self._name_of(ref)
        if name is None:
            return None
        try:
            key = await self._read_key(name)
        except NotFound:
            return None
        if not ref.key_id_in_keystore and _foreign(key, ref.managed_key_id):
            return None  # by name only: a key of that name that is another's is not this managed key's
        return await self._observe_full(key)

    # -- writes -------------------------------------------------------------------------------

    async def ensure_key(self, managed_key_id: str, spec: KeySpec, *, in_doubt: bool = False) -> Observation:
        try:
            key_id = spec.name_in_keystore or crypto_key_id(managed_key_id)
            if ID_RE.fullmatch(key_id) is None:
                raise InvalidRequest(f"{key_id[:90]!r} cannot name a Cloud KMS key: [a-zA-Z0-9_-]{{1,63}}", sent=False)
        except InvalidRequest as exc:
            exc.bind(keystore=self.http.keystore, operation="cryptoKeys.create")
            raise
        purpose, body = self._create_body(managed_key_id, spec)
        name = f"{self._ring}/cryptoKeys/{key_id}"
        try:
            key = await self._read_key(name)
        except NotFound:
            key = await self._create(name, key_id, body)
        owner = _foreign(key, managed_key_id)
        if owner is not None:
            raise Conflict(
                f"the key ring already has a cryptoKey {key_id} that belongs to {owner}; keyorch does not adopt it "
                f"for managed key {managed_key_id} (Cloud KMS never frees a cryptoKeyId): give the key another "
                "label or naming scheme",
                keystore=self.http.keystore,
                operation="cryptoKeys.create",
                sent=False,
            )
        if key.purpose != purpose:
            raise Conflict(
                f"Cloud KMS key {key_id} exists with purpose {key.purpose}, not {purpose}",
                keystore=self.http.keystore,
                operation="cryptoKeys.create",
            )
        return await self._observe_full(key)

    def _create_body(self, managed_key_id: str, spec: KeySpec) -> tuple[str, dict[str, Any]]:
        purpose, algorithms = _KEY_TEMPLATES.get(spec.algorithm.lower(), ("", {}))
        algorithm = algorithms.get(spec.size)
        if algorithm is None:
            raise InvalidRequest(
                f"Cloud KMS keystores hold aes 256 and rsa 2048/3072/4096 keys, not {spec.algorithm[:20]} {spec.size}",
                keystore=self.http.keystore,
                sent=False,
            )
        labels = {_label(k, key=True): _label(v, key=False) for k, v in list(spec.labels.items())[:60]}
        labels["managed-by"] = "keyorch"
        labels[MANAGED_KEY_LABEL] = _label(managed_key_id, key=False)
        template = {"algorithm": algorithm, "protectionLevel": "SOFTWARE"}
        return purpose, {"purpose": purpose, "versionTemplate": template, "labels": labels}

    async def _create(self, name: str, key_id: str, body: dict[str, Any]) -> KeyInfo:
        """Create the key (its key ring too, if that is missing); an existing key is read instead."""
        query = f"&cryptoKeyId={key_id}"
        for attempt in range(2):
            try:
                result = await self._call(
                    "POST", f"{self._ring}/cryptoKeys", "cryptoKeys.create", query=query, body=body
                )
                return self._parse(result, parse_key)
            except Conflict as exc:
                if exc.provider_code != "ALREADY_EXISTS":
                    raise
                return await self._read_key(name)
            except NotFound:
                if attempt or self._ring_ready:
                    raise
                await self._ensure_ring()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _ensure_ring(self) -> None:
        parent, _, ring_id = self._ring.rpartition("/keyRings/")
        try:
            await self._call("POST", f"{parent}/keyRings", "keyRings.create", query=f"&keyRingId={ring_id}", body={})
        except Conflict as exc:
            if exc.provider_code != "ALREADY_EXISTS":
                raise
        self._ring_ready = True

    async def _set_versions(
        self, ref: KeyRef, wanted: frozenset[str], change: str, operation: str, *, which: Which = "all"
    ) -> tuple[KeyInfo, list[VersionInfo]]:
        """Send ``change`` (``ENABLED``/``DISABLED``/``destroy``) to every version in a ``wanted`` state, or only
        to the primary (``which="primary"``) or only to the others (``"older"``)."""
        key = await self._read_key(self._require_name(ref))
        versions = await self._versions(key.name)
        primary = primary_name(key, versions)
        todo = [
            v for v in versions if v.state in wanted and (which == "all" or (v.name == primary) == (which == "primary"))
        ]
        if not todo:
            return key, versions
        outcomes = await asyncio.gather(*(self._change(v, change, operation) for v in todo), return_exceptions=True)
        updated = {v.name: v for v in versions}
        refused = False
        for outcome in outcomes:
            if isinstance(outcome, Conflict) and outcome.provider_code == "FAILED_PRECONDITION":
                refused = True  # the version changed state meanwhile: read them all again below
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                updated[outcome.name] = outcome
        return key, await self._versions(key.name) if refused else list(updated.values())

    async def _change(self, version: VersionInfo, change: str, operation: str) -> VersionInfo:
        if change == "destroy":
            return await self._destroy(version, operation)
        # PATCH to a state: a repeat after a lost answer finds the version in that state already (a no-op).
        result = await self._call("PATCH", version.name, operation, query="&updateMask=state", body={"state": change})
        return self._parse(result, parse_version)

    async def _destroy(self, version: VersionInfo, operation: str) -> VersionInfo:
        """``:destroy`` one version, never repeated blindly: Cloud KMS refuses a repeat with
        FAILED_PRECONDITION once the version is DESTROY_SCHEDULED (docs/providers.md §3.6).

        The transport sends it as not idempotent, so it retries only what surely never left this host.
        An attempt after one whose outcome is in doubt (no answer in time, a dropped connection, a body
        cut short, a 5xx) first reads the version: DESTROY_SCHEDULED or destroyed means it was done,
        and that reading is the result; otherwise ``:destroy`` is sent again. The attempts follow the
        keystore's retry policy; a throttled call was refused unprocessed and is sent again at once
        after its wait. When the policy gives up on an in-doubt failure, the version is read once more.
        """

        async def done() -> VersionInfo | None:
            current = self._parse(await self._call("GET", version.name, "cryptoKeyVersions.get"), parse_version)
            return current if current.state in DESTROYED_STATES or current.state == "DESTROY_SCHEDULED" else None

        async def send() -> VersionInfo:
            result = await self._call("POST", f"{version.name}:destroy", operation, body={}, idempotent=False)
            return self._parse(result, parse_version)  # a 200 it cannot read is in doubt, read before a resend

        return await self.http.request_checked(send, done)

    async def enable(self, ref: KeyRef, *, older_versions: bool = True) -> Observation:
        key, versions = await self._set_versions(
            ref,
            frozenset({"DISABLED"}),
            "ENABLED",
            "cryptoKeyVersions.patch",
            which="all" if older_versions else "primary",
        )
        observation = self._observe(key, versions)
        if observation.state is not KeyState.ACTIVE:
            raise Conflict(
                f"Cloud KMS key {key.key_id} cannot be enabled ({describe(key.primary, versions)})",
                keystore=self.http.keystore,
                operation="cryptoKeyVersions.patch",
                provider_code="FAILED_PRECONDITION",
            )
        return observation

    async def disable(self, ref: KeyRef) -> Observation:
        key, versions = await self._set_versions(ref, frozenset({"ENABLED"}), "DISABLED", "cryptoKeyVersions.patch")
        return self._observe(key, versions)

    async def disable_older_versions(self, ref: KeyRef) -> None:
        """PATCH every ENABLED version but the primary DISABLED (``deactivate_on_rotation``)."""
        await self._set_versions(ref, frozenset({"ENABLED"}), "DISABLED", "cryptoKeyVersions.patch", which="older")

    async def schedule_destruction(self, ref: KeyRef, *, force: bool = False) -> Observation:
        key, versions = await self._set_versions(
            ref,
            frozenset({"ENABLED", "DISABLED", "PENDING_GENERATION", "PENDING_IMPORT"}),
            "destroy",
            "cryptoKeyVersions.destroy",
        )
        observation = self._observe(key, versions)
        if observation.state is not KeyState.DESTROYED and not observation.destruction_pending:
            left = [v.state for v in versions if v.state not in NO_DESTROY_STATES]
            raise Conflict(
                f"Cloud KMS key {key.key_id}: destruction could not be scheduled for every version "
                f"({', '.join(left)[:120]})",
                keystore=self.http.keystore,
                operation="cryptoKeyVersions.destroy",
                provider_code="FAILED_PRECONDITION",
            )
        return observation

    # -- versions and rotation ------------------------------------------------------------------

    async def _version_state(self, name: str) -> tuple[KeyInfo, list[VersionInfo], list[KeyVersion]]:
        """The key's versions (every page), then the key itself (its primary), and the interface's view."""
        versions = await self._versions(name)
        result = await self._call("GET", name, "cryptoKeys.get")
        key = self._parse(result, parse_key)
        try:
            return key, versions, versions_view(key, versions)
        except WireError as exc:
            raise result.malformed(str(exc)) from None

    async def list_versions(self, ref: KeyRef) -> list[KeyVersion]:
        return (await self._version_state(self._require_name(ref)))[2]

    async def rotate(self, ref: KeyRef, *, from_version: str) -> KeyVersion:
        """A new primary version, in two calls Cloud KMS makes separate: ``cryptoKeyVersions.create``
        (not idempotent: every call adds a version, so it is never resent blindly; an in-doubt answer is
        followed by a versions read) and ``cryptoKeys.updatePrimaryVersion`` (setting a primary is
        idempotent). A crash between them leaves a newer version that is not primary: the next rotate
        from the same ``from_version`` makes that one primary instead of creating another (and answers
        a transient error while it is still PENDING_GENERATION). Nothing is sent once the primary is
        no longer ``from_version``. Keys of other purposes have no primary to update: the new version is
        theirs (:func:`~keyorch.providers.google_wire.primary_name`)."""
        name = self._require_name(ref)
        key, versions, view = await self._version_state(name)
        current = next((v for v in view if v.primary), None)
        if current is not None and current.version_id != from_version:
            return current
        symmetric = key.purpose == "ENCRYPT_DECRYPT"
        floor = int(current.version_id) if current is not None else 0
        newer = [v for v in versions if v.number > floor and v.state in NEW_VERSION_STATES]
        if symmetric and newer:  # an earlier rotation made its version but did not make it primary
            return await self._make_primary(max(newer, key=lambda v: v.number))
        made = await self._create_version(name, max((v.number for v in versions), default=0))
        return await self._make_primary(made) if symmetric else self._as_primary(made)

    async def _create_version(self, name: str, highest: int) -> VersionInfo:
        async def done() -> VersionInfo | None:
            made = [v for v in await self._versions(name) if v.number > highest]
            return max(made, key=lambda v: v.number) if made else None

        async def send() -> VersionInfo:
            result = await self._call(
                "POST", f"{name}/cryptoKeyVersions", "cryptoKeyVersions.create", body={}, idempotent=False
            )
            return self._parse(result, parse_version)  # a 200 it cannot read is in doubt: read before a resend

        return await self.http.request_checked(send, done)

    async def _make_primary(self, version: VersionInfo) -> KeyVersion:
        key_name = version.name.rpartition("/cryptoKeyVersions/")[0]
        if version.state != "ENABLED":
            raise Unavailable(
                f"Cloud KMS version {version.name} is {version.state}; it becomes the primary once ENABLED",
                keystore=self.http.keystore,
                operation="cryptoKeys.updatePrimaryVersion",
                sent=False,
            )
        body = {"cryptoKeyVersionId": str(version.number)}
        result = await self._call(
            "POST", f"{key_name}:updatePrimaryVersion", "cryptoKeys.updatePrimaryVersion", body=body
        )
        key = self._parse(result, parse_key)
        if key.primary is None or key.primary.name != version.name:
            raise result.malformed("updatePrimaryVersion answered another primary version")
        return self._as_primary(key.primary)

    @staticmethod
    def _as_primary(version: VersionInfo) -> KeyVersion:
        return KeyVersion(str(version.number), version.create_time, True, version.state == "ENABLED")

    async def set_rotation_policy(self, ref: KeyRef, period_days: int | None) -> None:
        """Cloud KMS's own rotation: ``rotationPeriod`` and ``nextRotationTime`` (``PATCH`` with
        ``updateMask=rotationPeriod,nextRotationTime``; ``None`` clears both). The next rotation is one
        period after the primary version's creation, or now when that has passed. A key already on that
        period (or, for ``None``, without a schedule) is left as it is. Only ENCRYPT_DECRYPT
        keys rotate automatically; a period for another key is refused (:class:`InvalidRequest`)."""
        period = rotation_period_text(period_days)
        name = self._require_name(ref)
        key = await self._read_key(name)
        if key.purpose != "ENCRYPT_DECRYPT":
            if period is None:
                return  # such a key never has a rotation schedule
            raise InvalidRequest(
                f"Cloud KMS rotates only ENCRYPT_DECRYPT keys automatically; key {key.key_id} is {key.purpose}",
                keystore=self.http.keystore,
                operation="cryptoKeys.patch",
                sent=False,
            )
        wanted = period_days * 86400 if period_days is not None else None
        if key.rotation_period_seconds == wanted and (wanted is None) == (key.next_rotation_time is None):
            return  # already so: no write (the reconciler may ask on every pass)
        body: dict[str, Any] = {}
        if period_days is not None and period is not None:
            now = datetime.fromtimestamp(self._clock(), UTC)
            created = key.primary.create_time if key.primary is not None else None
            due = created + timedelta(days=period_days) if created is not None else now + timedelta(days=period_days)
            body = {"rotationPeriod": period, "nextRotationTime": format_time(max(due, now))}
        query = "&updateMask=rotationPeriod,nextRotationTime"
        self._parse(await self._call("PATCH", name, "cryptoKeys.patch", query=query, body=body), parse_key)

    async def mark_managed(self, ref: KeyRef, managed_key_id: str) -> str:
        """``cryptoKeys.patch`` (``updateMask=labels``) with the key's labels and keyorch's; nothing is sent when the
        label is there already."""
        name = self._name_of(ref)
        if name is None:
            raise InvalidRequest("a key reference needs the key's name to mark it", sent=False)
        key = await self._read_key(name)
        value = _label(managed_key_id, key=False)
        if key.labels.get(MANAGED_KEY_LABEL) == value:
            return f"label {MANAGED_KEY_LABEL}={value} (there already)"
        labels = {**key.labels, MANAGED_KEY_LABEL: value}
        await self._call("PATCH", name, "cryptoKeys.patch", query="&updateMask=labels", body={"labels": labels})
        return f"label {MANAGED_KEY_LABEL}={value}"

    async def disable_version(self, ref: KeyRef, version_id: str) -> None:
        """``PATCH`` one version ``state=DISABLED`` (``updateMask=state``; a repeat is a no-op). The primary is
        refused; a version Cloud KMS refuses to disable because it is destroyed or scheduled for destruction
        is already out of use, which is success."""
        if not (version_id.isascii() and version_id.isdigit()) or len(version_id) > 18:
            raise InvalidRequest(f"{version_id[:80]!r} is not a Cloud KMS key version id", sent=False)
        name = self._require_name(ref)
        view = (await self._version_state(name))[2]
        if any(v.primary and v.version_id == str(int(version_id)) for v in view):
            raise Conflict(
                f"version {version_id} is the primary version of Cloud KMS key {name.rpartition('/')[2]}; keyorch "
                "disables only older versions",
                keystore=self.http.keystore,
                operation="cryptoKeyVersions.patch",
            )
        version_name = f"{name}/cryptoKeyVersions/{int(version_id)}"
        try:
            await self._change(VersionInfo(version_name, "ENABLED"), "DISABLED", "cryptoKeyVersions.patch")
        except Conflict as exc:
            if exc.provider_code != "FAILED_PRECONDITION":
                raise
            current = self._parse(await self._call("GET", version_name, "cryptoKeyVersions.get"), parse_version)
            if current.state == "ENABLED":
                raise

    # -- health -------------------------------------------------------------------------------

    async def validate(self) -> Health:
        try:
            await self._call("GET", self._ring, "keyRings.get")
        except NotFound as exc:
            if exc.detail.startswith("KeyRing "):  # "KeyRing projects/... not found.", not an unknown URL
                return Health(
                    HealthStatus.OK, f"key ring {self._ring} does not exist yet; it is made with the first key"
                )
            return Health(HealthStatus.CONFIGURATION_ERROR, exc.message)
        except ProviderError as exc:
            return Health.from_error(exc)
        return Health(HealthStatus.OK, f"key ring {self._ring} answers")

    async def aclose(self) -> None:
        try:
            await self.http.aclose()
        finally:
            await self.auth.aclose()


class GoogleKmsFactory:
    """Checks a Cloud KMS keystore's settings and builds its client."""

    def validate_settings(self, keystore: Keystore) -> None:
        settings = keystore.settings
        if keystore.type is not KeystoreType.GOOGLE_KMS:
            raise InvalidInput(f"keystore {keystore.name!r} is not a Google Cloud KMS keystore", target="type")
        for field in ("project", "location", "key_ring"):
            value = settings.get(field)
            if not isinstance(value, str) or not value:
                raise InvalidInput(f"a Google Cloud KMS keystore needs setting {field}", target=field)
        if not is_key_name(
            f"projects/{settings['project']}/locations/{settings['location']}/keyRings/"
            f"{settings['key_ring']}/cryptoKeys/k"
        ):
            raise InvalidInput("settings project, location and key_ring are not valid Cloud KMS ids", target="project")
        endpoint = settings.get("endpoint")
        if endpoint is not None:
            if not isinstance(endpoint, str):
                raise InvalidInput("setting endpoint must be a URL", target="endpoint")
            check_endpoint(endpoint, bool(settings.get("allow_insecure_http", False)))
        if "page_size" in settings:
            number_setting(settings, "page_size", minimum=1, maximum=MAX_PAGE_SIZE, integer=True)
        check_transport_settings(keystore)

    def create(self, keystore: Keystore, credentials: Mapping[str, Any] | None) -> KeystoreClient:
        return GoogleKmsClient(keystore, credentials)


register(KeystoreType.GOOGLE_KMS, GoogleKmsFactory())
