"""Cloud KMS v1 on the wire: names, the JSON shapes keyorch reads, the state mapping, the error mapping.

Responses are read with small hand-written checks rather than pydantic models (this is the hot path
of every listing and observation): each parser takes the decoded JSON and raises :class:`WireError`
for a shape the protocol does not allow; the client turns that into a ``MalformedResponse`` that
carries the operation and a body snippet. Enums are read as integers (keyorch sends
``$alt=json;enum-encoding=int`` as Google's REST client does) and also as their names.

State mapping (docs/providers.md §3.3): Cloud KMS keeps lifecycle on key *versions*.

* versions in ``IMPORT_FAILED``/``GENERATION_FAILED`` never held material and are left out;
* no version left → ``PRE_ACTIVE``; every version ``DESTROYED`` (or ``PENDING_EXTERNAL_DESTRUCTION``,
  ``EXTERNAL_DESTRUCTION_FAILED``) → ``DESTROYED``;
* the primary version ``ENABLED`` (any version, for keys without a primary) → ``ACTIVE``;
* every version not destroyed is ``DESTROY_SCHEDULED`` → ``DEACTIVATED`` with ``destruction_pending``
  and ``pending_until`` the latest ``destroyTime``;
* otherwise some version is ``ENABLED``/``DISABLED``/``DESTROY_SCHEDULED`` → ``DEACTIVATED`` (a
  destruction scheduled for only some versions is not reported as pending, so it is finished);
  only ``PENDING_GENERATION``/``PENDING_IMPORT`` versions → ``PRE_ACTIVE``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from keyorch.domain.states import KeyState
from keyorch.providers.base import KeyVersion
from keyorch.providers.errors import (
    AuthError,
    Conflict,
    InvalidRequest,
    NotFound,
    ProviderError,
    Throttled,
    Timeout,
    Unavailable,
    error_for_status,
    parse_json_lenient,
)

T = TypeVar("T")

DEFAULT_ENDPOINT = "https://cloudkms.googleapis.com"
#: What Google's Python REST transport appends to every call (``$alt=json;enum-encoding=int``), encoded.
ALT_QUERY = "%24alt=json%3Benum-encoding%3Dint"
KEY_PREFIX = "keyorch-"
ID_RE = re.compile(r"[a-zA-Z0-9_-]{1,63}")
_NAME_RE = re.compile(
    r"projects/[a-z0-9.:-]{1,100}/locations/[a-zA-Z0-9_-]{1,63}/keyRings/[a-zA-Z0-9_-]{1,63}/cryptoKeys/"
    r"[a-zA-Z0-9_-]{1,63}"
)
_TIME_RE = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)", re.I)
_DURATION_RE = re.compile(r"(\d{1,12})(?:\.\d{1,9})?s")

VERSION_STATES: dict[int, str] = {
    0: "CRYPTO_KEY_VERSION_STATE_UNSPECIFIED",
    1: "ENABLED",
    2: "DISABLED",
    3: "DESTROYED",
    4: "DESTROY_SCHEDULED",
    5: "PENDING_GENERATION",
    6: "PENDING_IMPORT",
    7: "IMPORT_FAILED",
    8: "GENERATION_FAILED",
    9: "PENDING_EXTERNAL_DESTRUCTION",
    10: "EXTERNAL_DESTRUCTION_FAILED",
}
PURPOSES: dict[int, str] = {
    0: "CRYPTO_KEY_PURPOSE_UNSPECIFIED",
    1: "ENCRYPT_DECRYPT",
    5: "ASYMMETRIC_SIGN",
    6: "ASYMMETRIC_DECRYPT",
    7: "RAW_ENCRYPT_DECRYPT",
    9: "MAC",
    10: "KEY_ENCAPSULATION",
    11: "AES_WRAPPING",
}
_KNOWN_STATES = frozenset(VERSION_STATES.values())
_KNOWN_PURPOSES = frozenset(PURPOSES.values())
DESTROYED_STATES = frozenset({"DESTROYED", "PENDING_EXTERNAL_DESTRUCTION", "EXTERNAL_DESTRUCTION_FAILED"})
FAILED_STATES = frozenset({"IMPORT_FAILED", "GENERATION_FAILED"})
#: Version states a ``:destroy`` would be refused in, or that need none.
NO_DESTROY_STATES = DESTROYED_STATES | FAILED_STATES | {"DESTROY_SCHEDULED"}


class WireError(ValueError):
    """A response body that does not have the shape the protocol promises."""


@dataclass(frozen=True, slots=True)
class VersionInfo:
    name: str
    state: str
    destroy_time: datetime | None = None
    create_time: datetime | None = None

    @property
    def number(self) -> int:
        """The version id, a decimal number Cloud KMS assigns in order (checked by :func:`parse_version`)."""
        return int(self.name.rpartition("/")[2])


#: The label holding the managed key id on every key keyorch creates.
MANAGED_KEY_LABEL = "keyorch-managed-key"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    name: str
    purpose: str
    primary: VersionInfo | None
    #: ``rotationPeriod`` in whole seconds and ``nextRotationTime`` (Cloud KMS's own rotation schedule)
    rotation_period_seconds: int | None = None
    next_rotation_time: datetime | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    #: ``createTime`` (read leniently: it decides nothing)
    create_time: datetime | None = None

    @property
    def key_id(self) -> str:
        return self.name.rpartition("/")[2]

    @property
    def managed_key_id(self) -> str | None:
        """The managed key the key is for: its ``keyorch-managed-key`` label, else (a key made before keys were
        named by their template, or labelled by hand) its ``keyorch-<id>`` cryptoKeyId, else ``None``."""
        labelled = self.labels.get(MANAGED_KEY_LABEL)
        if labelled:
            return labelled
        key_id = self.key_id
        return key_id[len(KEY_PREFIX) :] if key_id.startswith(KEY_PREFIX) and len(key_id) > len(KEY_PREFIX) else None


@dataclass(frozen=True, slots=True)
class Derived:
    state: KeyState
    destruction_pending: bool
    pending_until: datetime | None
    raw_state: str


# -- names ----------------------------------------------------------------------------------------


def crypto_key_id(managed_key_id: str) -> str:
    """The deterministic cryptoKeyId of a managed key: ``keyorch-<id>``; ``InvalidRequest`` if it cannot be one."""
    key_id = KEY_PREFIX + managed_key_id
    if ID_RE.fullmatch(key_id) is None:
        raise InvalidRequest(
            f"managed key id {managed_key_id[:80]!r} cannot name a Cloud KMS key: {key_id[:90]!r} must match "
            "[a-zA-Z0-9_-]{1,63}",
            sent=False,
        )
    return key_id


def is_key_name(name: str) -> bool:
    return _NAME_RE.fullmatch(name) is not None


# -- scalars --------------------------------------------------------------------------------------


def parse_time(raw: Any, field: str) -> datetime:
    """An RFC 3339 timestamp as protobuf prints it (0-9 fractional digits, ``Z`` or an offset)."""
    match = _TIME_RE.fullmatch(raw) if isinstance(raw, str) else None
    if match is None:
        raise WireError(f"{field} is not an RFC 3339 timestamp")
    fraction = (match.group(2) or "")[:6]
    zone = "+00:00" if match.group(3).upper() == "Z" else match.group(3)
    try:
        when = datetime.fromisoformat(f"{match.group(1)}{'.' + fraction.ljust(6, '0') if fraction else ''}{zone}")
    except ValueError:
        raise WireError(f"{field} is not a valid date") from None
    return when.astimezone(UTC)


def parse_enum(raw: Any, names: Mapping[int, str], known: frozenset[str], field: str) -> str:
    """An enum as an integer (``enum-encoding=int``) or as its name; unknown values are kept, not refused."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return names.get(raw, f"{field.upper()}_{raw}")
    if isinstance(raw, str) and 0 < len(raw) <= 64 and raw.isascii() and raw.replace("_", "").isalnum():
        if raw in known or not raw.isdigit():
            return raw
        return names.get(int(raw), f"{field.upper()}_{raw}")
    raise WireError(f"{field} is not an enum value")


def _text(doc: Mapping[str, Any], field: str) -> str:
    value = doc.get(field)
    if not isinstance(value, str) or not value:
        raise WireError(f"{field} is missing or not a string")
    return value


def _object(raw: Any, what: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise WireError(f"{what} is not a JSON object")
    if "error" in raw and "name" not in raw:
        raise WireError("a success answer carries an error body")
    return raw


# -- resources ------------------------------------------------------------------------------------


def parse_version(raw: Any) -> VersionInfo:
    doc = _object(raw, "the key version")
    name = _text(doc, "name")
    version_id = name.rpartition("/cryptoKeyVersions/")[2]
    if "/cryptoKeyVersions/" not in name or not (version_id.isascii() and version_id.isdigit()) or len(version_id) > 18:
        raise WireError("the key version's name is not a version name")
    state = parse_enum(doc.get("state", 0), VERSION_STATES, _KNOWN_STATES, "state")
    destroy_time, create_time = doc.get("destroyTime"), doc.get("createTime")
    return VersionInfo(
        name,
        state,
        parse_time(destroy_time, "destroyTime") if destroy_time is not None else None,
        parse_time(create_time, "createTime") if create_time is not None else None,
    )


def parse_key(raw: Any) -> KeyInfo:
    doc = _object(raw, "the key")
    name = _text(doc, "name")
    if not is_key_name(name):
        raise WireError("the key's name is not a cryptoKey name")
    purpose = parse_enum(doc.get("purpose", 0), PURPOSES, _KNOWN_PURPOSES, "purpose")
    primary = doc.get("primary")
    version = parse_version(primary) if primary is not None else None
    if version is not None and not version.name.startswith(name + "/"):
        raise WireError("the key's primary version belongs to another key")
    # The schedule is read leniently: it decides no state, and one odd key must not break a listing
    # (an unreadable value is taken as unknown, so set_rotation_policy writes it again).
    seconds = parse_duration_seconds(doc.get("rotationPeriod"))
    try:
        upcoming = parse_time(doc["nextRotationTime"], "nextRotationTime") if "nextRotationTime" in doc else None
    except WireError:
        upcoming = None
    # labels are read leniently too: one that is not a string names no managed key
    raw_labels = doc.get("labels")
    labels = (
        {k: v for k, v in raw_labels.items() if isinstance(k, str) and isinstance(v, str)}
        if isinstance(raw_labels, dict)
        else {}
    )
    try:
        created = parse_time(doc["createTime"], "createTime") if "createTime" in doc else None
    except WireError:
        created = None
    return KeyInfo(name, purpose, version, seconds, upcoming, labels, created)


def parse_page(raw: Any, field: str, parse: Callable[[Any], T]) -> tuple[list[T], str | None]:
    """A list response: its parsed items (absent = none) and ``nextPageToken`` (absent or empty = last page)."""
    doc = _object(raw, "the list answer")
    items = doc.get(field, [])
    if not isinstance(items, list):
        raise WireError(f"{field} is not a list")
    token = doc.get("nextPageToken")
    if token is not None and (not isinstance(token, str) or len(token) > 4096):
        raise WireError("nextPageToken is not a page token")
    return [parse(item) for item in items], token or None


def parse_duration_seconds(raw: Any) -> int | None:
    match = _DURATION_RE.fullmatch(raw) if isinstance(raw, str) else None
    return int(match.group(1)) if match is not None else None


# -- states ---------------------------------------------------------------------------------------


def needs_versions(key: KeyInfo) -> bool:
    """Whether the primary alone cannot tell the key's state (it is neither ENABLED nor DISABLED)."""
    return key.primary is None or key.primary.state not in ("ENABLED", "DISABLED")


def describe(primary: VersionInfo | None, versions: Sequence[VersionInfo]) -> str:
    """The provider's words for display: the primary's state (as the versions now show it) and a count per state."""
    counts = Counter(v.state for v in versions)
    listed = ", ".join(f"{state} x{count}" for state, count in sorted(counts.items())) or "none"
    if primary is None:
        return f"versions: {listed}"[:200]
    state = next((v.state for v in versions if v.name == primary.name), primary.state)
    return f"primary {state}; versions: {listed}"[:200]


def derive(key: KeyInfo, versions: Sequence[VersionInfo] | None) -> Derived:
    """The key-level state from all its versions, or (``versions`` None) from its primary alone."""
    if versions is None:
        if key.primary is None:
            return Derived(KeyState.PRE_ACTIVE, False, None, "no primary version (versions not read)")
        versions = [key.primary]
        raw = f"primary {key.primary.state} (other versions not read)"
    else:
        raw = describe(key.primary, versions)
    material = [v for v in versions if v.state not in FAILED_STATES]
    if not material:
        return Derived(KeyState.PRE_ACTIVE, False, None, raw)
    if all(v.state in DESTROYED_STATES for v in material):
        return Derived(KeyState.DESTROYED, False, None, raw)
    if key.primary is not None:
        primary_state = next((v.state for v in material if v.name == key.primary.name), key.primary.state)
        active = primary_state == "ENABLED"
    else:
        active = any(v.state == "ENABLED" for v in material)
    if active:
        return Derived(KeyState.ACTIVE, False, None, raw)
    alive = [v for v in material if v.state not in DESTROYED_STATES]
    if all(v.state == "DESTROY_SCHEDULED" for v in alive):
        times = [v.destroy_time for v in alive if v.destroy_time is not None]
        return Derived(KeyState.DEACTIVATED, True, max(times) if times else None, raw)
    if any(v.state in ("ENABLED", "DISABLED", "DESTROY_SCHEDULED") for v in alive):
        return Derived(KeyState.DEACTIVATED, False, None, raw)
    return Derived(KeyState.PRE_ACTIVE, False, None, raw)


# -- errors ---------------------------------------------------------------------------------------

_PERMANENT: dict[str, type[ProviderError]] = {
    "INVALID_ARGUMENT": InvalidRequest,
    "OUT_OF_RANGE": InvalidRequest,
    "UNIMPLEMENTED": InvalidRequest,
    "FAILED_PRECONDITION": Conflict,
    "ALREADY_EXISTS": Conflict,
    "NOT_FOUND": NotFound,
}
_TRANSIENT: dict[str, type[ProviderError]] = {
    "ABORTED": Unavailable,
    "CANCELLED": Unavailable,
    "UNAVAILABLE": Unavailable,
    "INTERNAL": Unavailable,
    "UNKNOWN": Unavailable,
    "DEADLINE_EXCEEDED": Timeout,
}


def _retry_delay(details: Any) -> float | None:
    """``google.rpc.RetryInfo.retryDelay`` (a Duration such as ``"1s"``), if the error carries one."""
    if not isinstance(details, list):
        return None
    for detail in details:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            return parse_duration_seconds(detail.get("retryDelay"))
    return None


def map_google_error(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
    """The one mapping point of Cloud KMS (and its OAuth token endpoint) answers to the error tree."""
    doc = parse_json_lenient(body)
    error = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(error, str) and status < 500:
        # OAuth 2 token endpoint: {"error": "invalid_grant", "error_description": "..."}
        description = doc.get("error_description") if isinstance(doc, dict) else None
        text = f": {description[:200]}" if isinstance(description, str) else ""
        return AuthError(
            f"the token endpoint refused the credentials ({error[:60]}{text})",
            status=status,
            provider_code=error[:60],
            body=body,
            refresh=False,
        )
    if not isinstance(error, dict):
        return error_for_status(status, headers, body)
    canonical = error.get("status") if isinstance(error.get("status"), str) else None
    message = error.get("message") if isinstance(error.get("message"), str) else None
    detail = (message or f"Cloud KMS answered HTTP {status}")[:300]
    kwargs: dict[str, Any] = {"status": status, "provider_code": canonical, "body": body}
    if canonical == "UNAUTHENTICATED":
        return AuthError(detail, refresh=True, **kwargs)
    if canonical == "PERMISSION_DENIED":
        return AuthError(detail, refresh=False, **kwargs)
    if canonical == "RESOURCE_EXHAUSTED":
        return Throttled(detail, retry_after=_retry_delay(error.get("details")), **kwargs)
    cls = _PERMANENT.get(canonical or "") or _TRANSIENT.get(canonical or "")
    if cls is not None:
        return cls(detail, **kwargs)
    return error_for_status(status, headers, body, provider_code=canonical, detail=detail)


# -- rotation -------------------------------------------------------------------------------------

#: ``rotationPeriod`` bounds (resources.proto: at least 24 hours, at most 876,000 hours), in days.
MIN_ROTATION_DAYS = 1
MAX_ROTATION_DAYS = 876_000 // 24
#: Version states a version made by a rotation passes through before it can be the primary.
NEW_VERSION_STATES = frozenset({"ENABLED", "PENDING_GENERATION"})


def format_time(when: datetime) -> str:
    """An RFC 3339 timestamp in UTC as protobuf prints one (``2030-01-01T00:00:00Z``)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + (
        f".{when.microsecond:06d}Z" if when.microsecond else "Z"
    )


def primary_name(key: KeyInfo, versions: Sequence[VersionInfo]) -> str | None:
    """The version new encryption uses: the key's ``primary`` for ENCRYPT_DECRYPT keys. Other purposes
    have no primary in Cloud KMS; their newest version that is ENABLED or still being generated (the one
    a rotation made) stands for it, else their newest version."""
    if key.purpose == "ENCRYPT_DECRYPT":
        return key.primary.name if key.primary is not None else None
    fresh = [v for v in versions if v.state in NEW_VERSION_STATES]
    candidates = fresh or list(versions)
    return max(candidates, key=lambda v: v.number).name if candidates else None


def versions_view(key: KeyInfo, versions: Sequence[VersionInfo]) -> list[KeyVersion]:
    """Every version oldest first (version ids are assigned in order), exactly one primary when there
    are any; ``enabled`` is the version's state ENABLED. A primary missing from the listing (made
    between the listing and the key's read) is added from the key. Raises :class:`WireError` for a
    listing that repeats a version or holds another key's."""
    by_number: dict[int, VersionInfo] = {}
    for version in versions:
        if not version.name.startswith(key.name + "/cryptoKeyVersions/"):
            raise WireError("the versions listing holds a version of another key")
        if version.number in by_number:
            raise WireError(f"the versions listing repeats version {version.number}")
        by_number[version.number] = version
    if key.purpose == "ENCRYPT_DECRYPT" and key.primary is not None:
        by_number.setdefault(key.primary.number, key.primary)
    ordered = [by_number[n] for n in sorted(by_number)]
    primary = primary_name(key, ordered)
    return [
        KeyVersion(str(v.number), v.create_time, v.name == primary, v.state == "ENABLED", v.state in NO_DESTROY_STATES)
        for v in ordered
    ]


def rotation_period_text(period_days: int | None) -> str | None:
    """``rotationPeriod`` for a period in days; :class:`InvalidRequest` naming Cloud KMS's bounds."""
    if period_days is None:
        return None
    if type(period_days) is not int or not MIN_ROTATION_DAYS <= period_days <= MAX_ROTATION_DAYS:
        raise InvalidRequest(
            "Cloud KMS takes a rotationPeriod of at least 24 hours and at most 876,000 hours (1 to "
            f"{MAX_ROTATION_DAYS} days), not {period_days!r} days",
            sent=False,
        )
    return f"{period_days * 86400}s"
