"""IBM Key Protect v2 wire details for the adapter: the error mapping, key parsing and state mapping.

Kept apart from :mod:`keyorch.providers.ibm` (the client) so each stays small; nothing here sends
a request. References are to docs/providers.md §4 (Key Protect) and §5.1 (all providers).

States (§4.3) onto keyorch's four:

=====================================  ===============================================================
Key Protect ``state``                  keyorch
=====================================  ===============================================================
0 pre-activation                       ``PRE_ACTIVE``
1 active                               ``ACTIVE``
2 suspended (disabled)                 ``DEACTIVATED`` (``enable`` brings it back)
3 deactivated (expired)                ``DEACTIVATED`` (for good: ``enable`` answers 409)
5 with ``restoreAllowed`` true         ``DEACTIVATED``, ``destruction_pending``, ``pending_until`` =
                                       ``restoreExpirationDate`` (else ``deletionDate`` + 30 days)
5 with ``restoreAllowed`` false        ``DESTROYED`` (no longer restorable; purged at 90 days)
404 (purged, or never there)           absent (``get_key`` answers ``None``)
=====================================  ===============================================================
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from keyorch.domain.states import KeyState
from keyorch.providers.base import InventoryKey, KeyVersion, Observation, Registration
from keyorch.providers.errors import (
    AuthError,
    Conflict,
    InvalidRequest,
    MalformedResponse,
    NotFound,
    ProviderError,
    Throttled,
    error_for_status,
    parse_json_lenient,
    parse_retry_after,
)
from keyorch.providers.http import HttpResult

KEY_TYPE = "application/vnd.ibm.kms.key+json"
POLICY_TYPE = "application/vnd.ibm.kms.policy+json"
ERROR_TYPE = "application/vnd.ibm.kms.error+json"

#: keyorch's deterministic identity in an instance: the alias ``keyorch-<managed key id>``.
ALIAS_PREFIX = "keyorch-"
#: Key Protect's alias rule (§4.2): 2-90 letters, digits, ``-`` or ``_``; not a UUID and not a
#: reserved word, which the ``keyorch-`` prefix already rules out.
ALIAS_RE = re.compile(r"^[A-Za-z0-9_-]{2,90}$")
NAME_MAX = 90
RESTORE_WINDOW = timedelta(days=30)
#: Key Protect's wait between actions on a key (``REQ_TOO_EARLY_ERR``, §4.3 and §4.5).
ACTION_WAIT_SECONDS = 30.0

_RAW_STATES = {0: "0 pre-active", 1: "1 active", 2: "2 suspended", 3: "3 deactivated (expired)"}
_STATES = {0: KeyState.PRE_ACTIVE, 1: KeyState.ACTIVE, 2: KeyState.DEACTIVATED, 3: KeyState.DEACTIVATED}

#: Reason codes that mean "the key's state or its protections forbid this" (§4.5), beyond HTTP 409.
_CONFLICT_CODES = frozenset({"KEY_DELETED_ERR", "KEY_EXPIRED_ERR", "KEY_RESTORE_EXPIRED", "KEY_INVALID_STATE_ERR"})
#: Limits on what may be done to a key, refused with 409 but not a state of the key.
_LIMIT_CODES = frozenset({"KEY_ROTATION_NOT_PERMITTED"})
#: What an operator can do about the refusals that block a deletion (and the rotation limit).
_HINTS = {
    "PROTECTED_RESOURCE_ERR": "the key protects registered cloud resources; destroy with force to delete it anyway",
    "PREV_KEY_DEL_ERR": "a registered resource has a retention policy; not even a forced delete is allowed",
    "KEY_ROTATION_NOT_PERMITTED": "Key Protect rotates a root key at most once an hour",
    "AUTHORIZATIONS_NOT_MET": (
        "the key's dual authorization policy in Key Protect is on, so a different user of Key Protect must first "
        "authorize its deletion there (setKeyForDeletion, valid 7 days); keyorch's own dual authorization does not "
        "satisfy it; keyorch retries the deletion until then"
    ),
}


def alias_for(managed_key_id: str) -> str:
    """The alias of the managed key's key in Key Protect; ``InvalidRequest`` if the id cannot make one."""
    alias = ALIAS_PREFIX + managed_key_id
    if not ALIAS_RE.match(alias):
        raise InvalidRequest(
            f"managed key id {managed_key_id[:100]!r} cannot form a Key Protect alias "
            "(2-90 letters, digits, '-' or '_' including the 'keyorch-' prefix)",
            sent=False,
        )
    return alias


def managed_id_from(aliases: Any) -> str | None:
    """The managed key id in a key's ``aliases`` (``keyorch-<id>``), or ``None`` for a foreign key."""
    if isinstance(aliases, list):
        for alias in aliases:
            if isinstance(alias, str) and alias.startswith(ALIAS_PREFIX) and len(alias) > len(ALIAS_PREFIX):
                return alias[len(ALIAS_PREFIX) :]
    return None


def key_name(name: str, alias: str) -> str:
    """A key name Key Protect accepts (2-90 characters): the template's name, cut to 90, else the alias."""
    name = name.strip()[:NAME_MAX]
    return name if len(name) >= 2 else alias


def create_body(name: str, alias: str, managed_key_id: str, name_in_keystore: str | None = None) -> dict[str, Any]:
    """A root key (``extractable: false``, generated by Key Protect) carrying keyorch's alias, named
    ``name_in_keystore`` (its template's naming scheme, checked when the key was made) or, for a key made before
    keys were named so, :func:`key_name` of its display name."""
    resource = {
        "type": KEY_TYPE,
        "name": name_in_keystore or key_name(name, alias),
        "aliases": [alias],
        "description": f"keyorch managed key {managed_key_id}"[:240],
        "extractable": False,
    }
    return {"metadata": {"collectionType": KEY_TYPE, "collectionTotal": 1}, "resources": [resource]}


# -- errors -------------------------------------------------------------------------------------
def _reason(body: bytes) -> tuple[str | None, str | None]:
    """(reason code, message) of a Key Protect error body; (None, None) when it is not one."""
    doc = parse_json_lenient(body)
    if not isinstance(doc, dict):
        return None, None
    resources = doc.get("resources")
    first = resources[0] if isinstance(resources, list) and resources else None
    if not isinstance(first, dict):
        return None, None
    reasons = first.get("reasons")
    reason = reasons[0] if isinstance(reasons, list) and reasons and isinstance(reasons[0], dict) else {}
    code = reason.get("code")
    message = reason.get("message")
    error_msg = first.get("errorMsg")
    code = code if isinstance(code, str) and code else None
    if not isinstance(message, str) or not message:
        message = error_msg if isinstance(error_msg, str) and error_msg else None
    return code, message


def map_error(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
    """The adapter's one mapping point from a non-2xx Key Protect answer to the error tree.

    The message carries the reason code and its text (``PROTECTED_RESOURCE_ERR: Key is protecting
    ...``) so the reconciler can show it as the target's error. ``REQ_TOO_EARLY_ERR`` (enable or
    restore within 30 s of the key's last action) is :class:`Throttled` with ``retry_after`` from the
    answer's ``Retry-After`` or else the documented 30 s: the same request succeeds after the wait.
    """
    code, message = _reason(body)
    if code is None and message is None:
        return error_for_status(status, headers, body)
    detail = f"{code}: {message}" if code and message else (code or message or "")
    hint = _HINTS.get(code or "")
    if hint:
        detail = f"{detail} ({hint})"
    correlation = headers.get("Correlation-Id")
    if correlation and len(correlation) <= 64:
        detail = f"{detail} [correlation-id {correlation}]"
    kwargs: dict[str, Any] = {"status": status, "provider_code": code}
    if status == 401:
        return AuthError(detail, refresh=True, **kwargs)
    if status == 403:
        return AuthError(detail, refresh=False, **kwargs)
    if code == "REQ_TOO_EARLY_ERR":
        return Throttled(detail, retry_after=parse_retry_after(headers) or ACTION_WAIT_SECONDS, **kwargs)
    if code in _LIMIT_CODES:  # a limit on the key that waiting the retry policy's seconds does not lift
        return InvalidRequest(detail, **kwargs)
    if status == 404:
        return NotFound(detail, **kwargs)
    if status in (409, 410) or code in _CONFLICT_CODES:
        return Conflict(detail, **kwargs)
    return error_for_status(status, headers, b"", provider_code=code, detail=detail)


# -- keys ---------------------------------------------------------------------------------------
def resources_of(result: HttpResult) -> list[Any]:
    """The ``resources`` of a 2xx envelope; a 200 carrying an error envelope is a malformed answer."""
    doc = result.json_object()
    metadata = doc.get("metadata")
    if isinstance(metadata, dict) and metadata.get("collectionType") == ERROR_TYPE:
        code, message = _reason(result.raw)
        raise MalformedResponse(
            f"HTTP {result.status} with an error body ({code or 'no reason code'}: {message or 'no message'})",
            keystore=result.keystore,
            operation=result.operation,
            status=result.status,
            provider_code=code,
        )
    resources = doc.get("resources")
    if not isinstance(resources, list):
        raise result.malformed("the answer has no 'resources' list")
    return resources


def single_key(result: HttpResult, managed_key_id: str | None) -> Observation:
    resources = resources_of(result)
    if len(resources) != 1:
        raise result.malformed(f"expected one key in 'resources', got {len(resources)}")
    return parse_key(result, resources[0], managed_key_id)


def parse_key(result: HttpResult, key: Any, managed_key_id: str | None = None) -> Observation:
    """One key resource as an :class:`Observation`; :class:`MalformedResponse` for a wrong shape."""
    if not isinstance(key, dict):
        raise result.malformed(f"a key resource is {type(key).__name__}, not an object")
    key_id = key.get("id")
    state = key.get("state")
    if not isinstance(key_id, str) or not key_id:
        raise result.malformed("a key resource has no string 'id'")
    if type(state) is not int:
        raise result.malformed(f"key {key_id[:64]!r} has no integer 'state'")
    managed = managed_id_from(key.get("aliases")) or managed_key_id
    if state in _STATES:
        return Observation(key_id, managed, _STATES[state], raw_state=_RAW_STATES[state])
    if state != 5:
        raise result.malformed(f"key {key_id[:64]!r} has the unknown state {state}")
    restore_allowed = key.get("restoreAllowed")
    until = _time(result, key, "restoreExpirationDate")
    if until is None:
        deleted = _time(result, key, "deletionDate")
        until = deleted + RESTORE_WINDOW if deleted is not None else None
    if restore_allowed is None and until is not None:
        restore_allowed = datetime.now(UTC) < until  # older answers without the flag: judge by the date
    if restore_allowed is True:
        raw = "5 destroyed (restorable)"
        return Observation(key_id, managed, KeyState.DEACTIVATED, True, until, raw)
    if restore_allowed is False or restore_allowed is None:
        return Observation(key_id, managed, KeyState.DESTROYED, raw_state="5 destroyed")
    raise result.malformed(f"key {key_id[:64]!r} has a non-boolean 'restoreAllowed'")


def _text(result: HttpResult, key: Mapping[str, Any], field: str) -> str:
    value = key.get(field, "")
    if not isinstance(value, str):
        raise result.malformed(f"key {str(key.get('id'))[:64]!r} has a non-string {field!r}")
    return value


def _strings(result: HttpResult, key: Mapping[str, Any], field: str) -> list[str]:
    value = key.get(field) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise result.malformed(f"key {str(key.get('id'))[:64]!r} has {field!r} that is not a list of strings")
    return value


def inventory_key(
    result: HttpResult, key: Mapping[str, Any], observation: Observation, versions: list[KeyVersion]
) -> InventoryKey:
    """A listed key resource as a scan shows it; Key Protect's tags are strings, ``key:value`` split at the first
    colon (any other tag is a label with an empty value)."""
    labels = dict(tag.partition(":")[::2] for tag in _strings(result, key, "tags"))
    return InventoryKey(
        key_id_in_keystore=observation.key_id_in_keystore,
        name=_text(result, key, "name") or None,
        state=observation.state,
        raw_state=observation.raw_state,
        versions=tuple(versions),
        created_at=_time(result, key, "creationDate"),
        aliases=tuple(_strings(result, key, "aliases")),
        labels=labels,
        description=_text(result, key, "description"),
        managed_key_id=observation.managed_key_id,
        destruction_pending=observation.destruction_pending,
        pending_until=observation.pending_until,
        key_type=_text(result, key, "algorithmType") or None,
    )


def _time(result: HttpResult, key: Mapping[str, Any], field: str) -> datetime | None:
    value = key.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise result.malformed(f"'{field}' is not an RFC 3339 time")
    try:
        when = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise result.malformed(f"'{field}' is not an RFC 3339 time: {value!r}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


# -- registrations -------------------------------------------------------------------------------
def parse_registration(result: HttpResult, resource: Any) -> Registration:
    """One registration resource (``keyId``, ``resourceCrn``, ``preventKeyDeletion``, ``description``);
    :class:`MalformedResponse` for a wrong shape."""
    if not isinstance(resource, dict):
        raise result.malformed(f"a registration is {type(resource).__name__}, not an object")
    key_id, crn = resource.get("keyId"), resource.get("resourceCrn")
    prevents, description = resource.get("preventKeyDeletion", False), resource.get("description")
    if not isinstance(key_id, str) or not key_id or len(key_id) > 256:
        raise result.malformed("a registration has no string 'keyId'")
    if not isinstance(crn, str) or not crn or len(crn) > 1024:
        raise result.malformed(f"the registration of key {key_id[:64]!r} has no string 'resourceCrn'")
    if not isinstance(prevents, bool):
        raise result.malformed(f"the registration of key {key_id[:64]!r} has a non-boolean 'preventKeyDeletion'")
    if description is not None and not isinstance(description, str):
        raise result.malformed(f"the registration of key {key_id[:64]!r} has a non-string 'description'")
    return Registration(key_id, crn, prevents, (description or "")[:1024])


# -- versions and rotation ----------------------------------------------------------------------
#: A month of a rotation policy, in days (keyorch's rotation periods are in days; Key Protect's in months).
MONTH_DAYS = 30
MAX_INTERVAL_MONTHS = 12


def current_version(result: HttpResult) -> str | None:
    """The id of the version a key's metadata says new wraps use (``keyVersion.id``), if it says."""
    resources = resources_of(result)
    if len(resources) != 1 or not isinstance(resources[0], dict):
        raise result.malformed("expected one key in 'resources'")
    version = resources[0].get("keyVersion")
    if version is None:
        return None
    if not isinstance(version, dict) or not isinstance(version.get("id"), str) or not version["id"]:
        raise result.malformed("'keyVersion' has no string 'id'")
    return str(version["id"])


def version_entries(result: HttpResult) -> list[tuple[str, datetime | None]]:
    """(id, creationDate) of each version on a ``GET /keys/{id}/versions`` page."""
    entries = []
    for resource in resources_of(result):
        if not isinstance(resource, dict):
            raise result.malformed("a key version is not an object")
        version_id = resource.get("id")
        if not isinstance(version_id, str) or not version_id:
            raise result.malformed("a key version has no string 'id'")
        entries.append((version_id, _time(result, resource, "creationDate")))
    return entries


def key_versions(
    result: HttpResult, entries: list[tuple[str, datetime | None]], current: str | None
) -> list[KeyVersion]:
    """The versions oldest first (Key Protect lists newest first); the primary is ``current`` (the key's
    ``keyVersion``), else the newest. A listing without the current version is malformed."""
    if not entries:
        raise result.malformed("the key has no versions")
    ordered = list(reversed(entries))
    ordered.sort(key=lambda entry: entry[1] or datetime.min.replace(tzinfo=UTC))
    ids = [version_id for version_id, _ in ordered]
    primary = current if current is not None else ids[-1]
    if primary not in ids:
        raise result.malformed(f"the key's current version {primary[:64]!r} is not among its listed versions")
    return [KeyVersion(version_id, when, version_id == primary) for version_id, when in ordered]


def rotation_policy(period_days: int | None) -> dict[str, Any]:
    """The body of ``PUT /keys/{id}/policies?policy=rotation`` for a period in days (``None``: off)."""
    if period_days is None:
        rotation: dict[str, Any] = {"enabled": False}
    else:
        months, rest = divmod(period_days, MONTH_DAYS) if type(period_days) is int else (0, 1)
        if rest or not 1 <= months <= MAX_INTERVAL_MONTHS:
            raise InvalidRequest(
                f"Key Protect rotates a key automatically every 1 to {MAX_INTERVAL_MONTHS} months (interval_month); "
                f"keyorch counts a month as {MONTH_DAYS} days, so a rotation period of {period_days!r} days "
                f"cannot be set (a multiple of {MONTH_DAYS} from {MONTH_DAYS} to {MONTH_DAYS * MAX_INTERVAL_MONTHS})",
                operation="PutKeyPolicies",
                sent=False,
            )
        rotation = {"enabled": True, "interval_month": months}
    resource = {"type": POLICY_TYPE, "rotation": rotation}
    return {"metadata": {"collectionType": POLICY_TYPE, "collectionTotal": 1}, "resources": [resource]}
