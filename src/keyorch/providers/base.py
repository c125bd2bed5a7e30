"""What the reconciler sees of a keystore: one client interface, one factory per type, a registry.

Adapters turn each call into the provider's wire protocol and answer with an :class:`Observation`,
the provider-neutral view of one key: its id in the keystore, the managed key it belongs to, its
state as one of keyorch's four (``keyorch.domain.states.KeyState``), and whether destruction is
pending and until when. As docs/providers.md §0.3 says, a key whose destruction
is scheduled but can still be undone is ``DEACTIVATED`` with ``destruction_pending`` set and
``pending_until`` its deadline; ``DESTROYED`` is reported only once the provider can no longer undo it.

Contract for every client method, written once here so each adapter keeps it:

* ``ensure_key`` is idempotent through a deterministic identity derived from the managed key id:
  calling it twice (or after a crash) finds the first key instead of making a second one.
* ``enable``/``disable``/``schedule_destruction`` on a key already in that state succeed and
  return the current observation (re-reading the state where the provider errors on repeats).
* ``get_key`` returns ``None`` for a key the keystore does not have (or no longer has).
* Failures raise :mod:`keyorch.providers.errors` classes only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import TracebackType
from typing import Any, Protocol, Self

from keyorch.domain.errors import ConfigurationError
from keyorch.domain.models import Keystore, KeystoreType
from keyorch.domain.rotation import PER_VERSION_KINDS  # their get_key reports Observation.versions
from keyorch.domain.states import KeyState
from keyorch.providers.errors import InvalidRequest, MalformedResponse, ProviderError


@dataclass(frozen=True)
class KeyRef:
    """A key in one keystore: its id there, and the managed key it belongs to (if keyorch knows).

    ``key_id_in_keystore`` is ``None`` when keyorch has not recorded it yet (e.g. after a crash
    between create and record): adapters then find the key by the managed key id's deterministic
    identity (alias, tag, name).

    ``name_in_keystore`` is what the keystore calls the key (the target's ``label_in_keystore``: the AWS alias, the
    Azure key name, the Cloud KMS cryptoKeyId, the Key Protect name), fixed when the key was made from its
    template's naming scheme; ``None`` for a key named before that, by the ``keyorch-<id>`` identity. Where the
    name is the key's address (Azure, Google) a key found by it counts only if its identity tag or label names
    ``managed_key_id``: a key of that name made for another managed key, or outside keyorch, is not this one."""

    key_id_in_keystore: str | None
    managed_key_id: str | None = None
    name_in_keystore: str | None = None


@dataclass(frozen=True)
class KeyVersion:
    """One version of a key as the keystore holds it (``KeystoreClient.list_versions``, ``rotate``)."""

    #: The provider's id of the version: Azure the version segment of the ``kid``, Google the
    #: cryptoKeyVersion number as text, AWS ``original`` for the initial material and then each
    #: rotation's ``KeyMaterialId`` (else its ``RotationDate`` in ISO form), Key Protect the version id.
    version_id: str
    created_at: datetime | None
    #: The version new encryption uses (exactly one per key).
    primary: bool
    #: Usable in the keystore (False: disabled, destruction scheduled or destroyed), where the provider
    #: says so per version; providers that keep state per key report every version enabled.
    enabled: bool = True
    #: Out of use for good as far as keyorch goes: destroyed, scheduled for destruction or without material
    #: (Cloud KMS's DESTROY_SCHEDULED, DESTROYED, ..._FAILED). keyorch never enables such a version again.
    destroyed: bool = False


@dataclass(frozen=True)
class Observation:
    """One key as the keystore reports it, in keyorch's terms."""

    key_id_in_keystore: str
    managed_key_id: str | None
    state: KeyState
    destruction_pending: bool = False
    pending_until: datetime | None = None
    #: The provider's own state words, for display only (``PendingDeletion``, ``enabled=false`` ...).
    raw_state: str = ""
    #: Every version the keystore holds for the key with its own state, oldest first, where the provider keeps
    #: state per version (Azure Key Vault, Google Cloud KMS: :data:`PER_VERSION_KINDS`) and this observation
    #: read them; ``None`` where it did not (a listing) or where the provider has one state for the whole key
    #: (AWS KMS, Key Protect). The planner judges drift over these (``planner.version_drift``). Not part of an
    #: observation's equality: two reads of one key in one state are equal whether or not one listed versions.
    versions: tuple[KeyVersion, ...] | None = field(default=None, compare=False)

    @property
    def ref(self) -> KeyRef:
        return KeyRef(self.key_id_in_keystore, self.managed_key_id)


@dataclass(frozen=True)
class InventoryKey:
    """One key a keystore holds, whoever made it (:meth:`KeystoreClient.inventory`): what a scan shows of it and
    what an adoption needs to take it over as it is."""

    #: what a target records as the key's id: the AWS key id, the Azure key name, the Cloud KMS resource name,
    #: the Key Protect key id
    key_id_in_keystore: str
    #: what the keystore calls the key (UKO's ``label_in_keystore``): the AWS alias (one not keyorch's or AWS's
    #: own when there is one), the Azure key name, the Cloud KMS cryptoKeyId, the Key Protect name
    name: str | None
    state: KeyState
    #: the provider's own state words (``Disabled``, ``enabled=false``, ``primary DISABLED``, ``2 suspended``)
    raw_state: str
    #: every version oldest first, the primary marked (none for a soft-deleted Azure key, which lists none)
    versions: tuple[KeyVersion, ...]
    created_at: datetime | None
    #: every alias (AWS, Key Protect)
    aliases: tuple[str, ...] = ()
    #: tags (AWS, Azure), labels (Cloud KMS), or Key Protect's tags (``key:value`` split at the first colon)
    labels: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    #: the managed key keyorch's own identity (alias, tag, label) names on the key, if it carries one
    managed_key_id: str | None = None
    destruction_pending: bool = False
    pending_until: datetime | None = None
    #: the provider's words for the kind of key: AWS ``KeySpec``, Cloud KMS purpose, Key Protect algorithm
    key_type: str | None = None
    #: AWS only: whose key material (``AWS_KMS``, ``EXTERNAL`` for imported material)
    origin: str | None = None


def primary_version(versions: list[KeyVersion]) -> KeyVersion:
    """The primary of a key's versions (adapters list exactly one; ``MalformedResponse`` if none is)."""
    for version in versions:
        if version.primary:
            return version
    raise MalformedResponse("the keystore listed the key's versions without a primary one")


@dataclass(frozen=True)
class KeySpec:
    """What to create: algorithm and size as in a key template, a display name and labels (tags), and what the
    keystore is to call the key (see :attr:`KeyRef.name_in_keystore`; ``None``: the ``keyorch-<id>`` identity)."""

    algorithm: str
    size: int
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    name_in_keystore: str | None = None


@dataclass(frozen=True)
class Registration:
    """A cloud resource that a key in the keystore protects, as the keystore records it (Key Protect's
    registrations: made by the IBM Cloud services that use the key, never by keyorch)."""

    key_id_in_keystore: str
    resource_crn: str
    prevents_key_deletion: bool
    description: str = ""


#: The keystore types that record the resources their keys protect (the others have no such thing).
REGISTERING_KINDS: frozenset[KeystoreType] = frozenset({KeystoreType.IBM_KEY_PROTECT})


class HealthStatus(StrEnum):
    OK = "ok"
    NOT_RESPONDING = "not_responding"
    CONFIGURATION_ERROR = "configuration_error"


@dataclass(frozen=True)
class Health:
    status: HealthStatus
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status is HealthStatus.OK

    @classmethod
    def from_error(cls, error: ProviderError) -> Health:
        """Not responding for transient failures; a configuration error for everything else
        (refused credentials, TLS, a missing key ring or vault, nonsense answers)."""
        status = HealthStatus.NOT_RESPONDING if error.transient else HealthStatus.CONFIGURATION_ERROR
        return cls(status, error.message)


class KeystoreClient(ABC):
    """One connected keystore. Async throughout; close with :meth:`aclose` (or ``async with``)."""

    @abstractmethod
    def list_keys(self) -> AsyncIterator[Observation]:
        """Every key in the keystore, across every page (implement as an async generator)."""

    @abstractmethod
    async def get_key(self, ref: KeyRef) -> Observation | None: ...

    @abstractmethod
    async def ensure_key(self, managed_key_id: str, spec: KeySpec, *, in_doubt: bool = False) -> Observation:
        """Create the key for ``managed_key_id`` unless it already exists; return it either way.

        ``in_doubt``: an earlier create for this key may have reached the provider without keyorch
        learning the outcome (a lost answer, a crash). Adapters whose identity is fixed at creation
        (a caller-chosen name or alias) need nothing more; AWS, where the alias is attached after
        CreateKey, then looks for an untagged-alias key by its tag before creating another."""

    async def find_in_doubt(self, managed_key_id: str, name_in_keystore: str | None = None) -> Observation | None:
        """The key an earlier in-doubt create for ``managed_key_id`` made, bound to its deterministic
        identity so that later reads find it; ``None`` when there is none. Called when a read by that
        identity found nothing although a create may have happened, whatever the desired state (a key
        made by a lost create must be destroyed with its managed key, not left behind). Adapters whose
        identity is fixed at creation (a caller-chosen name or alias) have already looked: a read by
        identity is the answer. AWS, where the alias comes after ``CreateKey``, searches by tag."""
        return await self.get_key(KeyRef(None, managed_key_id, name_in_keystore))

    @abstractmethod
    async def enable(self, ref: KeyRef, *, older_versions: bool = True) -> Observation:
        """Enable the key: every version of it where the provider keeps state per version, or (``older_versions``
        False, the key's ``deactivate_on_rotation``) its primary only, the older versions left disabled.
        Providers with one state for the key and all its rotations (AWS KMS, Key Protect) ignore it."""

    @abstractmethod
    async def disable(self, ref: KeyRef) -> Observation: ...

    @abstractmethod
    async def schedule_destruction(self, ref: KeyRef, *, force: bool = False) -> Observation:
        """Schedule destruction (the provider keeps it pending for its window). ``force`` deletes a
        Key Protect key that still protects registered resources; other providers ignore it."""

    def inventory(self) -> AsyncIterator[InventoryKey]:
        """Every key the keystore holds, whoever made it, across every page of the provider's own listing, with
        its names, tags or labels, state, versions and creation date (an async generator; reads only). A key
        that goes while the listing runs is left out; an answer keyorch cannot read is a ``MalformedResponse``."""
        raise InvalidRequest(f"{type(self).__name__} cannot list every key of its keystore", sent=False)

    async def mark_managed(self, ref: KeyRef, managed_key_id: str) -> str:
        """Add keyorch's ownership marker for ``managed_key_id`` to an existing key (an adoption) and change nothing
        else: no rename, no state change, no new version. Returns what was added, in words; a repeat adds nothing."""
        raise InvalidRequest(f"{type(self).__name__} cannot mark a key as keyorch's", sent=False)

    async def registrations(self, ref: KeyRef | None = None) -> list[Registration]:
        """The resources registered with the key ``ref`` (none when the keystore does not have it), or with
        every key of the keystore (``None``). Only :data:`REGISTERING_KINDS` keystores record any."""
        return []

    async def disable_older_versions(self, ref: KeyRef) -> None:
        """Disable every enabled version but the primary (``deactivate_on_rotation``), where the provider keeps a
        state per version (:data:`PER_VERSION_KINDS`). The others have nothing to disable: AWS KMS and Key
        Protect keep a rotated key's older material for decryption only already (docs/rotation.md)."""
        return None

    @abstractmethod
    async def list_versions(self, ref: KeyRef) -> list[KeyVersion]:
        """Every version the keystore holds for the key, oldest first, across every page."""

    @abstractmethod
    async def rotate(self, ref: KeyRef, *, from_version: str) -> KeyVersion:
        """Make a new primary version, unless the primary is already not ``from_version`` (an earlier
        rotation took effect): then return the current primary and send nothing. Never resent blindly:
        after an answer that leaves the outcome in doubt the versions are read before any new attempt."""

    @abstractmethod
    async def validate(self) -> Health:
        """Check that the keystore answers and the credentials work; never raises a provider error."""

    @abstractmethod
    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class ProviderFactory(Protocol):
    """Stateless: checks a keystore's settings and builds a client for it."""

    def validate_settings(self, keystore: Keystore) -> None:
        """Raise ``InvalidInput`` naming the first unusable setting."""

    def create(self, keystore: Keystore, credentials: Mapping[str, Any] | None) -> KeystoreClient:
        """A client for ``keystore``; ``credentials`` is the decrypted credentials document, or ``None``
        to use the provider library's default chain (environment, workload identity, instance role)."""


_FACTORIES: dict[KeystoreType, ProviderFactory] = {}


def register(kind: KeystoreType, factory: ProviderFactory, *, replace: bool = False) -> None:
    """Make ``factory`` the one for ``kind``; refuse a second registration unless ``replace``."""
    if kind in _FACTORIES and not replace and _FACTORIES[kind] is not factory:
        raise ValueError(f"a provider factory for {kind} is already registered")
    _FACTORIES[kind] = factory


def unregister(kind: KeystoreType) -> None:
    _FACTORIES.pop(kind, None)


def factory_for(kind: KeystoreType) -> ProviderFactory:
    try:
        return _FACTORIES[kind]
    except KeyError:
        raise ConfigurationError(f"no provider adapter is registered for keystore type {kind}") from None


def registered_kinds() -> list[KeystoreType]:
    return [kind for kind in KeystoreType if kind in _FACTORIES]


__all__ = [
    "PER_VERSION_KINDS",
    "REGISTERING_KINDS",
    "Health",
    "HealthStatus",
    "InventoryKey",
    "KeyRef",
    "KeySpec",
    "KeyVersion",
    "KeystoreClient",
    "Observation",
    "ProviderFactory",
    "Registration",
    "factory_for",
    "primary_version",
    "register",
    "registered_kinds",
    "unregister",
]
