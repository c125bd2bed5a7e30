"""Azure Key Vault (keys) adapter: the keystore client interface over the Key Vault REST API.

Wire protocol: docs/providers.md §2, api-version :data:`~keyorch.providers.azure_wire.API_VERSION`
pinned; auth: :mod:`keyorch.providers.azure_auth` (Entra ID client credentials, no azure-identity);
one error mapping: :func:`keyorch.providers.azure_wire.map_error`.

* Identity: a managed key's key name is the one its template's naming scheme gave it (the target's
  ``label_in_keystore``; ``keyorch-<managed key id>`` for a key made before keys were named so), and every
  version is tagged ``keyorch-managed-key-id``. A key found by name (before its name is recorded as the key's id)
  is this managed key's only if that tag (or, untagged, a ``keyorch-<id>`` name) says so: a key of that name
  made for another managed key or outside keyorch is never adopted; ``ensure_key`` refuses it with a
  :class:`Conflict` naming the name. ``ensure_key`` GETs the name (live, then soft-deleted) before it creates,
  since a second create of a live name makes a new version: a live key (enabled or not) or a
  soft-deleted one is the answer, never a reason to create. A create whose outcome is in doubt (no
  answer, a timeout, a 5xx, an unreadable 2xx) is read again; while the key is not there, this client
  does not send another create for that name for twice the keystore's ``read_timeout_seconds``
  (:data:`CREATE_DOUBT_READ_TIMEOUTS`; the first may still land) and answers with a transient error
  instead, so the reconciler reads again later.
* Key types: ``rsa`` → ``RSA-HSM`` on a Managed HSM, ``RSA`` on a vault. ``aes`` → ``oct-HSM``, which
  only a Managed HSM holds: a standard vault (an endpoint host with ``.vault.``) is refused here with
  :class:`InvalidRequest`, although the template rules accept ``aes`` for Azure. An endpoint host with
  ``.managedhsm.`` or the keystore setting ``managed_hsm: true`` marks a Managed HSM; for any other host
  (the fake, a proxy) the service decides and a refusal reads the same way.
* State is per version (``attributes.enabled``): ``disable``/``enable`` PATCH every version that is
  not yet in the wanted state (listing ``/keys/{name}/versions``), and the key's state is its latest
  version's (§2.3), with each version's own ``enabled`` reported by ``get_key`` (one more listing) so drift
  is judged over all of them. A soft-deleted key is deactivated with destruction pending; ``disable`` of
  one succeeds as it is, ``enable`` of one is a :class:`Conflict` (keyorch does not recover keys).
* ``schedule_destruction`` is ``DELETE /keys/{name}`` (soft delete, the vault's retention), then polls
  ``/deletedkeys/{name}`` until the asynchronous delete shows there (2 s apart, at most 15 polls), so a
  later ``get_key`` does not see the key in neither collection (§2.3, §2.4) and take
  it for purged. A repeat finds the key in ``/deletedkeys``; a key in neither collection is reported
  destroyed (``get_key``: ``None``).
* Versions and rotation: ``list_versions`` pages ``/keys/{name}/versions`` (oldest first by
  ``attributes.created``; the primary is the latest, what ``GET /keys/{name}`` answers, and each
  version's ``enabled`` is its own). ``rotate`` is ``POST /keys/{name}/rotate``, sent only while the
  latest version is still ``from_version`` and never resent blindly (an in-doubt answer is followed by
  a versions read). ``set_rotation_policy`` reads and ``PUT``s ``/keys/{name}/rotationpolicy`` with a
  ``Rotate`` action ``timeAfterCreate`` ``P{n}D`` (at least ``P7D``), keeping the policy's other actions
  and ``expiryTime``. ``disable_version`` PATCHes one older version ``enabled=false``.
* ``list_keys`` pages through ``/keys`` and then ``/deletedkeys`` (``maxresults`` = setting
  ``page_size``, 1-25, default 25), following ``nextLink`` only to the endpoint's own scheme and host.

Keystore settings: ``endpoint`` (required), ``managed_hsm``, ``page_size``, and the transport's
(``ca_pem``, ``allow_insecure_http``, timeouts, limits).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from keyorch.domain.errors import InvalidInput
from keyorch.domain.models import Keystore, KeystoreType
from keyorch.domain.validation import check_endpoint
from keyorch.providers.azure_auth import (
    ClientIdentity,
    EntraTokenAuth,
    identity_from_document,
    identity_from_environment,
    scope_for,
)
from keyorch.providers.azure_wire import (
    API_VERSION,
    MANAGED_KEY_TAG,
    MAX_PAGE_SIZE,
    MAX_TAGS,
    KeyView,
    bundle_view,
    create_body,
    destroyed,
    key_name_for,
    managed_key_id_of,
    map_error,
    name_from_key_id,
    observe,
    page_views,
    rotate_actions,
    rotation_policy_body,
    version_of,
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
from keyorch.providers.endpoints import origin_of
from keyorch.providers.errors import (
    Conflict,
    InvalidRequest,
    KeystoreConfigurationError,
    MalformedResponse,
    NotFound,
    ProviderError,
    Throttled,
    Unavailable,
)
from keyorch.providers.http import HttpResult, HttpTransport, TransportSettings, check_transport_settings
from keyorch.providers.limits import ProviderLimits
from keyorch.providers.retry import RetryPolicy, retry_policy_for
from keyorch.urls import redact_url

_QUERY = f"?api-version={API_VERSION}"
#: Polls of ``/deletedkeys/{name}`` after a delete, and the wait between them (azure-keyvault's poller: 2 s).
DELETE_POLLS = 15
DELETE_POLL_SECONDS = 2.0
#: How long after a create whose outcome is in doubt no second create is sent for the same name, in
#: multiples of the keystore's ``read_timeout_seconds``: a request that got no answer may still be
#: carried out by the vault, and a second create of a live name adds a version. A vault that has not
#: made the key within twice the time keyorch waits for an answer is taken not to make it.
CREATE_DOUBT_READ_TIMEOUTS = 2.0
_TOKEN_LIMITS = ProviderLimits(rate_per_second=None, burst=1, max_concurrency=4)
_VERSION_RE = re.compile(r"[0-9a-zA-Z]{1,64}")


def is_managed_hsm(settings: Mapping[str, Any]) -> bool | None:
    """True for a Managed HSM, False for a standard vault, None when the endpoint does not say."""
    flag = settings.get("managed_hsm")
    if isinstance(flag, bool):
        return flag
    host = (urlsplit(str(settings.get("endpoint", ""))).hostname or "").lower()
    if ".managedhsm." in host:
        return True
    return False if ".vault." in host else None


def create_in_doubt(exc: ProviderError) -> bool:
    """Whether a failed create may still have made a version: it reached the vault and no answer says it
    was refused (a lost or cut answer, a timeout, a 5xx, a 2xx keyorch cannot read). A 429 or a 4xx
    such as 409 ``ObjectIsBeingDeleted`` is a refusal."""
    if not exc.sent or isinstance(exc, Throttled | Conflict):
        return False
    return exc.transient or isinstance(exc, MalformedResponse)


def _page_size(settings: Mapping[str, Any]) -> int:
    size = settings.get("page_size", MAX_PAGE_SIZE)
    if type(size) is not int or not 1 <= size <= MAX_PAGE_SIZE:
        raise InvalidInput(f"setting page_size must be an integer from 1 to {MAX_PAGE_SIZE}", target="page_size")
    return size


class AzureKeyVaultClient(KeystoreClient):
    """One Key Vault or Managed HSM. Build it with :class:`AzureKeyVaultFactory` (or directly in tests)."""

    def __init__(
        self,
        keystore: Keystore,
        credentials: Mapping[str, Any] | None,
        *,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        settings = keystore.settings
        self.endpoint = str(settings["endpoint"]).rstrip("/")
        self._origin = origin_of(self.endpoint)
        self.managed_hsm = is_managed_hsm(settings)
        self.page_size = _page_size(settings)
        self._clock = clock
        self._monotonic = monotonic
        #: key name -> when (monotonic) a create of it was sent whose outcome is in doubt
        self._creates_in_doubt: dict[str, float] = {}
        retry = retry or retry_policy_for(KeystoreType.AZURE_KEY_VAULT)
        self._sleep = retry.sleep
        identity: ClientIdentity | KeystoreConfigurationError
        try:
            identity = (
                identity_from_document(credentials) if credentials is not None else identity_from_environment(environ)
            )
            identity.check()
        except KeystoreConfigurationError as exc:
            identity = exc
        transport_settings = TransportSettings.from_settings(settings)
        self.create_doubt_seconds = CREATE_DOUBT_READ_TIMEOUTS * transport_settings.read_timeout_seconds
        token_elsewhere = not isinstance(identity, KeystoreConfigurationError) and (
            origin_of(identity.authority_host) != self._origin
        )
        if token_elsewhere:  # the keystore's own CA certificate is for the vault, not for Entra ID
            transport_settings = replace(transport_settings, ca_pem=None)
        # The token endpoint gets its own small transport: a token fetch happens while a vault request
        # holds one of the vault transport's slots, so sharing them could deadlock at full concurrency.
        # Its retries are the vault request's own (one attempt here), so failures are not retried twice.
        token_transport = HttpTransport(
            keystore.name,
            limits=_TOKEN_LIMITS,
            retry=RetryPolicy(max_attempts=1, sleep=retry.sleep, clock=retry.clock),
            map_error=map_error,
            settings=transport_settings,
        )
        self.auth = EntraTokenAuth(
            identity, scope_for(self.endpoint), token_transport, origin=origin_of(self.endpoint), clock=monotonic
        )
        self.transport = HttpTransport.for_keystore(keystore, map_error=map_error, auth=self.auth, retry=retry)

    def __repr__(self) -> str:
        return f"AzureKeyVaultClient(endpoint={redact_url(self.endpoint)!r})"

    async def aclose(self) -> None:
        await self.transport.aclose()
        await self.auth.aclose()

    # -- plumbing -----------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.endpoint}{path}{_QUERY}"

    async def _call(
        self, method: str, path: str, operation: str, *, json: Any = None, idempotent: bool = True
    ) -> HttpResult:
        return await self.transport.request(
            method, self._url(path), operation=operation, idempotent=idempotent, json=json
        )

    def _name(self, ref: KeyRef) -> str:
        if ref.key_id_in_keystore:
            name = name_from_key_id(ref.key_id_in_keystore)
            if name is None:
                raise InvalidRequest(f"{ref.key_id_in_keystore[:140]!r} is not a Key Vault key name or key id")
            return name
        if ref.name_in_keystore:
            return ref.name_in_keystore
        if ref.managed_key_id:
            return key_name_for(ref.managed_key_id)
        raise InvalidRequest("a key reference needs the key's name in the vault or its managed key id")

    @staticmethod
    def _foreign(view: KeyView, managed_key_id: str | None) -> str | None:
        """Who else a key found by name belongs to (another managed key's id, or "no managed key"), ``None`` when
        it is ``managed_key_id``'s (or no managed key was asked for)."""
        if managed_key_id is None:
            return None
        owner = managed_key_id_of(view.name, view.tags)
        if owner == managed_key_id:
            return None
        return f"managed key {owner}" if owner else "no managed key (it carries no keyorch-managed-key-id tag)"

    def _observe(self, view: KeyView, ref: KeyRef | None = None) -> Observation:
        observation = observe(view, self._clock())
        if observation.managed_key_id is None and ref is not None and ref.managed_key_id:
            observation = Observation(
                observation.key_id_in_keystore,
                ref.managed_key_id,
                observation.state,
                observation.destruction_pending,
                observation.pending_until,
                observation.raw_state,
            )
        return observation

    async def _live(self, name: str) -> KeyView | None:
        try:
            return bundle_view(await self._call("GET", f"/keys/{name}", "GetKey"))
        except NotFound:
            return None

    async def _deleted(self, name: str) -> KeyView | None:
        try:
            return bundle_view(await self._call("GET", f"/deletedkeys/{name}", "GetDeletedKey"), deleted=True)
        except NotFound:
            return None

    async def _find(self, name: str) -> KeyView | None:
        """The key live, else soft-deleted, else ``None``."""
        live = await self._live(name)
        return live if live is not None else await self._deleted(name)

    async def _pages(self, path: str, operation: str, *, deleted: bool) -> AsyncIterator[KeyView]:
        url: str | None = f"{self.endpoint}{path}{_QUERY}&maxresults={self.page_size}"
        seen: set[str] = set()
        while url is not None:
            result = await self.transport.request("GET", url, operation=operation, idempotent=True)
            views, next_link = page_views(result, deleted=deleted)
            for view in views:
                yield view
            url = self._next_url(next_link, result) if next_link else None
            if url is not None:
                if url in seen:
                    raise result.malformed("nextLink repeats an earlier page")
                seen.add(url)

    def _next_url(self, link: str, result: HttpResult) -> str:
        """A server's ``nextLink``, followed only to this vault (same scheme and host)."""
        if link.startswith("/") and not link.startswith("//"):
            link = self.endpoint + link
        parts = urlsplit(link)
        if origin_of(link) != self._origin:
            raise MalformedResponse(
                "nextLink points away from the vault's endpoint; refusing to follow it",
                keystore=self.transport.keystore,
                operation=result.operation,
                status=result.status,
            )
        return link if "api-version=" in (parts.query or "") else f"{link}{'&' if parts.query else '?'}{_QUERY[1:]}"

    # -- the interface ------------------------------------------------------------------------

    async def list_keys(self) -> AsyncIterator[Observation]:
        async for view in self._pages("/keys", "ListKeys", deleted=False):
            yield self._observe(view)
        async for view in self._pages("/deletedkeys", "ListDeletedKeys", deleted=True):
            yield self._observe(view)

    async def inventory(self) -> AsyncIterator[InventoryKey]:
        """Every key: ``/keys`` page by page, each key's versions (:meth:`list_versions`: its ``/versions`` pages and
        its latest version), then ``/deletedkeys`` page by page (a soft-deleted key lists no versions)."""
        async for view in self._pages("/keys", "ListKeys", deleted=False):
            try:
                versions = await self.list_versions(KeyRef(view.name))
            except NotFound:
                continue  # deleted since the page was read
            yield self._inventory_key(view, versions)
        async for view in self._pages("/deletedkeys", "ListDeletedKeys", deleted=True):
            yield self._inventory_key(view, [])

    def _inventory_key(self, view: KeyView, versions: list[KeyVersion]) -> InventoryKey:
        observed = self._observe(view)
        created = versions[0].created_at if versions else None
        return InventoryKey(
            key_id_in_keystore=view.name,
            name=view.name,
            state=observed.state,
            raw_state=observed.raw_state,
            versions=tuple(versions),
            created_at=created or (datetime.fromtimestamp(view.created, UTC) if view.created is not None else None),
            labels=dict(view.tags or {}),
            managed_key_id=observed.managed_key_id,
            destruction_pending=observed.destruction_pending,
            pending_until=observed.pending_until,
        )

    async def get_key(self, ref: KeyRef) -> Observation | None:
        """The key (live, else soft-deleted) with, for a live key, every version's own ``enabled`` (one more
        listing, ``/keys/{name}/versions``): drift is judged over all of them. A soft-deleted key is one state
        for all its versions (Key Vault lists none)."""
        name = self._name(ref)
        view = await self._find(name)
        if view is None or (not ref.key_id_in_keystore and self._foreign(view, ref.managed_key_id)):
            return None  # by name only: a key of that name that is another's is not this managed key's
        observation = self._observe(view, ref)
        if view.deleted or view.version is None:
            return observation
        listed = await self._listed_versions(name)
        return replace(observation, versions=tuple(self._ordered(listed, view)))

    def _refuse_foreign(self, view: KeyView, managed_key_id: str) -> None:
        owner = self._foreign(view, managed_key_id)
        if owner is not None:
            raise Conflict(
                f"the vault already has a key named {view.name} that belongs to {owner}; keyorch does not adopt "
                f"it for managed key {managed_key_id}: give the key another label or naming scheme",
                keystore=self.transport.keystore,
                operation="CreateKey",
                sent=False,
            )

    async def ensure_key(self, managed_key_id: str, spec: KeySpec, *, in_doubt: bool = False) -> Observation:
        ref = KeyRef(None, managed_key_id, spec.name_in_keystore)
        name = self._name(ref)
        body = create_body(managed_key_id, spec, managed_hsm=self.managed_hsm)  # checked before any request
        found = await self._find(name)
        if found is not None:
            self._refuse_foreign(found, managed_key_id)
            self._creates_in_doubt.pop(name, None)
            return self._observe(found, ref)
        self._refuse_while_in_doubt(name)
        sent_at = self._monotonic()
        try:
            result = await self._call("POST", f"/keys/{name}/create", "CreateKey", json=body, idempotent=False)
        except ProviderError as exc:
            if create_in_doubt(exc):  # did the create happen? read, never create again blindly
                self._creates_in_doubt[name] = sent_at
                found = await self._find(name)
                if found is not None:
                    self._refuse_foreign(found, managed_key_id)
                    self._creates_in_doubt.pop(name, None)
                    return self._observe(found, ref)
            if isinstance(exc, InvalidRequest) and spec.algorithm.lower() == "aes":
                raise InvalidRequest(
                    "the keystore refused an oct-HSM (AES) key: only an Azure Managed HSM holds AES keys "
                    f"({exc.detail})",
                    status=exc.status,
                    provider_code=exc.provider_code,
                    keystore=exc.keystore,
                    operation=exc.operation,
                ) from None
            raise
        self._creates_in_doubt.pop(name, None)
        return self._observe(bundle_view(result), ref)

    def _refuse_while_in_doubt(self, name: str) -> None:
        """Raise a transient error (nothing sent) while an earlier create of ``name`` may still land."""
        sent_at = self._creates_in_doubt.get(name)
        if sent_at is None:
            return
        age = self._monotonic() - sent_at
        if age >= self.create_doubt_seconds:
            del self._creates_in_doubt[name]  # it would have landed by now: the key is truly absent
            return
        raise Unavailable(
            f"a create of key {name} sent {age:.0f} s ago got no certain answer and the key is not in the vault; "
            f"keyorch reads the name again rather than create a second version (for up to "
            f"{self.create_doubt_seconds:g} s after that create)",
            keystore=self.transport.keystore,
            operation="CreateKey",
            sent=False,
        )

    async def mark_managed(self, ref: KeyRef, managed_key_id: str) -> str:
        """``PATCH /keys/{name}`` with the key's tags and keyorch's (Key Vault replaces the whole set, so the others
        are sent back as read); nothing is sent when the tag is there already. A key with Key Vault's maximum of
        tags is refused rather than losing one."""
        name = self._name(ref)
        view = await self._live(name)
        if view is None:
            raise NotFound(f"key {name} is not in the vault's keys", keystore=self.transport.keystore, sent=False)
        tags = dict(view.tags or {})
        if tags.get(MANAGED_KEY_TAG) == managed_key_id:
            return f"tag {MANAGED_KEY_TAG}={managed_key_id} (there already)"
        tags[MANAGED_KEY_TAG] = managed_key_id
        if len(tags) > MAX_TAGS:
            raise InvalidRequest(
                f"key {name} has {len(tags) - 1} tags, Key Vault's maximum is {MAX_TAGS}: keyorch's tag does not fit",
                keystore=self.transport.keystore,
                sent=False,
            )
        bundle_view(await self._call("PATCH", f"/keys/{name}", "UpdateKey", json={"tags": tags}))
        return f"tag {MANAGED_KEY_TAG}={managed_key_id}"

    async def enable(self, ref: KeyRef, *, older_versions: bool = True) -> Observation:
        return await self._set_enabled(ref, True, older_versions=older_versions)

    async def disable(self, ref: KeyRef) -> Observation:
        return await self._set_enabled(ref, False)

    async def _set_enabled(self, ref: KeyRef, enabled: bool, *, older_versions: bool = True) -> Observation:
        name = self._name(ref)
        latest = await self._live(name)
        if latest is None:
            deleted = await self._deleted(name)
            if deleted is None:
                raise NotFound(f"key {name} is in neither the vault's keys nor its deleted keys")
            if enabled:
                raise Conflict(
                    f"key {name} is scheduled for destruction (soft-deleted); it cannot be enabled, "
                    "and keyorch does not cancel a pending destruction"
                )
            return self._observe(deleted, ref)  # already out of service
        observed = latest
        async for version in self._pages(f"/keys/{name}/versions", "ListKeyVersions", deleted=False):
            if version.enabled == enabled or version.version is None:
                continue
            if not older_versions and version.version != latest.version:
                continue  # deactivate_on_rotation: the older versions stay disabled
            result = await self._call(
                "PATCH", f"/keys/{name}/{version.version}", "UpdateKey", json={"attributes": {"enabled": enabled}}
            )
            patched = bundle_view(result)
            if patched.version == latest.version:
                observed = patched
        if observed.enabled != enabled:  # the latest version was missing from the list: set it directly
            observed = bundle_view(
                await self._call("PATCH", f"/keys/{name}", "UpdateKey", json={"attributes": {"enabled": enabled}})
            )
        return self._observe(observed, ref)

    async def schedule_destruction(self, ref: KeyRef, *, force: bool = False) -> Observation:
        name = self._name(ref)
        try:
            result = await self._call("DELETE", f"/keys/{name}", "DeleteKey")
        except NotFound:
            deleted = await self._deleted(name)  # a repeat: already soft-deleted, or purged since
            return self._observe(deleted, ref) if deleted is not None else destroyed(name, ref.managed_key_id)
        view = bundle_view(result, deleted=True)
        if view.recoverable:
            await self._await_deleted(name)
        return self._observe(view, ref)

    async def _await_deleted(self, name: str) -> None:
        """Wait until the asynchronous delete shows in ``/deletedkeys`` (as the Azure SDK's poller does),
        so that a ``get_key`` right after this call does not find the key in neither collection and
        take it for purged. Gives up quietly after :data:`DELETE_POLLS` polls: the delete was accepted."""
        for poll in range(DELETE_POLLS):
            if await self._deleted(name) is not None:
                return
            if poll + 1 < DELETE_POLLS:
                await self._sleep(DELETE_POLL_SECONDS)

    # -- versions and rotation --------------------------------------------------------------

    def _malformed(self, detail: str, operation: str) -> MalformedResponse:
        return MalformedResponse(detail, keystore=self.transport.keystore, operation=operation)

    async def list_versions(self, ref: KeyRef) -> list[KeyVersion]:
        """Every version of the live key (``/keys/{name}/versions``, every page), oldest first by
        ``attributes.created``; the primary is the latest version, the one ``GET /keys/{name}`` answers
        (read after the listing, so a version made meanwhile is still reported). ``enabled`` is each
        version's ``attributes.enabled``. A soft-deleted key has no versions to list: :class:`NotFound`."""
        name = self._name(ref)
        listed = await self._listed_versions(name)
        latest = await self._live(name)
        if latest is None:
            raise NotFound(
                f"key {name} is not a live key of the vault (Key Vault lists no versions of a deleted key)",
                keystore=self.transport.keystore,
                operation="GetKey",
            )
        return self._ordered(listed, latest)

    async def _listed_versions(self, name: str) -> dict[str, KeyView]:
        """``/keys/{name}/versions``, every page, by version; an item that is not a version of the key, or a
        version listed twice, is a :class:`MalformedResponse` (never taken as the key's state)."""
        listed: dict[str, KeyView] = {}
        async for view in self._pages(f"/keys/{name}/versions", "ListKeyVersions", deleted=False):
            if view.version is None or view.name.lower() != name.lower():
                raise self._malformed(
                    f"the versions listing of key {name} holds an item that is not one of its versions",
                    "ListKeyVersions",
                )
            if view.version in listed:
                raise self._malformed(
                    f"the versions listing of key {name} repeats version {view.version}", "ListKeyVersions"
                )
            listed[view.version] = view
        return listed

    def _ordered(self, listed: dict[str, KeyView], latest: KeyView) -> list[KeyVersion]:
        """The listed versions and the latest (the primary, added if the listing missed it), oldest first."""
        if latest.version is None:
            raise self._malformed(f"the vault answered key {latest.name} without a version in its kid", "GetKey")
        listed = {**listed, latest.version: latest}
        order = {version: index for index, version in enumerate(listed)}
        views = sorted(
            listed.values(),
            key=lambda v: (v.created or 0, v.version == latest.version, order[v.version or ""]),
        )
        return [version_of(view, primary=view.version == latest.version) for view in views]

    async def rotate(self, ref: KeyRef, *, from_version: str) -> KeyVersion:
        """``POST /keys/{name}/rotate`` unless the latest version is no longer ``from_version``.

        Sent as not idempotent (each rotate makes a version) through ``request_checked``: after an
        answer that leaves the outcome in doubt the versions are read, and a latest version other than
        ``from_version`` is the rotation's result; only otherwise is it sent again."""
        name = self._name(ref)

        async def rotated() -> KeyVersion | None:
            current = primary_version(await self.list_versions(ref))
            return current if current.version_id != from_version else None

        done = await rotated()
        if done is not None:
            return done

        async def send() -> KeyVersion:
            view = bundle_view(await self._call("POST", f"/keys/{name}/rotate", "RotateKey", idempotent=False))
            if view.version is None or view.name.lower() != name.lower():
                raise self._malformed(f"the rotate answer of key {name} is not a version of it", "RotateKey")
            return version_of(view, primary=True)

        return await self.transport.request_checked(send, rotated)

    async def set_rotation_policy(self, ref: KeyRef, period_days: int | None) -> None:
        """The key's rotation policy with a ``Rotate`` action ``timeAfterCreate`` ``P{period_days}D``
        (``None``: without one, so Key Vault never rotates it); the policy's other actions and its
        ``expiryTime`` are kept (read first). A policy already so is left as it is; ``PUT`` replaces the
        whole policy, so it may be repeated."""
        name = self._name(ref)
        rotation_policy_body({}, period_days)  # refuse what Key Vault cannot express before any request
        current = (await self._call("GET", f"/keys/{name}/rotationpolicy", "GetKeyRotationPolicy")).json_object()
        body = rotation_policy_body(current, period_days)
        if rotate_actions(current) == rotate_actions(body):
            return  # already so: no write (the reconciler may ask on every pass)
        result = await self._call("PUT", f"/keys/{name}/rotationpolicy", "UpdateKeyRotationPolicy", json=body)
        answered = result.json_object().get("lifetimeActions")
        if not isinstance(answered, list):
            raise result.malformed("the rotation policy answer has no lifetimeActions array")

    async def disable_older_versions(self, ref: KeyRef) -> None:
        """``PATCH /keys/{name}/{version}`` ``attributes.enabled=false`` for every enabled version that is not the
        latest (deactivate_on_rotation); the latest is left as it is. A soft-deleted key is left as it is."""
        name = self._name(ref)
        latest = await self._live(name)
        if latest is None or latest.version is None:
            return
        for version in self._ordered(await self._listed_versions(name), latest):
            if version.enabled and not version.primary:
                await self.disable_version(ref, version.version_id)

    async def disable_version(self, ref: KeyRef, version_id: str) -> None:
        """``PATCH /keys/{name}/{version}`` ``attributes.enabled=false`` for a version that is not the
        latest (the primary); a repeat finds it disabled and sets it again."""
        name = self._name(ref)
        if not _VERSION_RE.fullmatch(version_id):
            raise InvalidRequest(f"{version_id[:80]!r} is not a Key Vault key version", sent=False)
        latest = await self._live(name)
        if latest is None:
            raise NotFound(f"key {name} is not a live key of the vault", keystore=self.transport.keystore)
        if latest.version is not None and latest.version.lower() == version_id.lower():
            raise Conflict(
                f"version {version_id} is the latest (primary) version of key {name}; keyorch disables only older "
                "versions",
                keystore=self.transport.keystore,
                operation="UpdateKey",
            )
        body = {"attributes": {"enabled": False}}
        patched = bundle_view(await self._call("PATCH", f"/keys/{name}/{version_id}", "UpdateKey", json=body))
        if patched.enabled:
            raise self._malformed(f"the vault answered version {version_id} of key {name} still enabled", "UpdateKey")

    async def validate(self) -> Health:
        url = f"{self.endpoint}/keys{_QUERY}&maxresults=1"
        try:
            page_views(await self.transport.request("GET", url, operation="ListKeys", idempotent=True))
        except ProviderError as exc:
            return Health.from_error(exc)
        return Health(HealthStatus.OK)


class AzureKeyVaultFactory:
    """Checks an Azure keystore's settings and builds :class:`AzureKeyVaultClient` instances."""

    def validate_settings(self, keystore: Keystore) -> None:
        settings = keystore.settings
        endpoint = settings.get("endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            raise InvalidInput("an Azure Key Vault keystore needs --endpoint (https://<vault>.vault.azure.net)")
        check_endpoint(endpoint, settings.get("allow_insecure_http") is True)
        managed_hsm = settings.get("managed_hsm", False)
        if not isinstance(managed_hsm, bool):
            raise InvalidInput("setting managed_hsm must be true or false", target="managed_hsm")
        _page_size(settings)
        check_transport_settings(keystore)

    def create(self, keystore: Keystore, credentials: Mapping[str, Any] | None) -> AzureKeyVaultClient:
        self.validate_settings(keystore)
        return AzureKeyVaultClient(keystore, credentials)


register(KeystoreType.AZURE_KEY_VAULT, AzureKeyVaultFactory())
