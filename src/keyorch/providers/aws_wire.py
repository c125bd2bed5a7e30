"""AWS KMS wire format: the one error mapping, the response checks and the state rules (pure, no I/O).

* :func:`error_mapper` builds the adapter's one mapping point from a non-2xx answer (``{"__type",
  "message"}``, the code also in ``X-Amzn-ErrorType``; docs/providers.md §1.5) to the error tree.
  KMS answers almost everything with HTTP 400, so the code decides, not the status.
* :func:`key_observation` checks a ``KeyMetadata`` object by hand (cheaper than pydantic on the hot
  path) and maps its ``KeyState`` to keyorch's four states as docs/providers.md §1.3 says:
  ``Enabled`` → active; ``Disabled`` and ``Unavailable`` → deactivated; ``PendingDeletion`` and
  ``PendingReplicaDeletion`` → deactivated with ``destruction_pending`` until ``DeletionDate``;
  ``PendingImport`` and ``Creating`` → pre-active (keyorch never creates ``EXTERNAL`` keys, so an
  imported key whose material expired, strictly a deactivated one (§1.3), cannot be told
  apart from one that never had material without more requests); ``Updating`` (transient) and any
  state word AWS adds later → by the ``Enabled`` flag. A key that is gone is ``None`` (``get_key``),
  never a state: after ``DeletionDate`` KMS answers ``NotFoundException``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from keyorch.domain.states import KeyState
from keyorch.providers.base import KeyVersion, Observation
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
    parse_retry_after,
)
from keyorch.providers.http import ErrorMapper, HttpResult

TARGET_PREFIX = "TrentService."
#: Every key keyorch creates gets the alias ``alias/keyorch/<managed key id>`` ...
ALIAS_PREFIX = "alias/keyorch/"
#: ... and this tag, whose value is the managed key id.
MANAGED_KEY_TAG = "keyorch:managed-key-id"
#: AWS alias names: ``alias/`` + letters, digits, ``/_-`` (and ``:`` in practice), 256 characters at most.
MANAGED_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,200}")

_THROTTLING = frozenset(
    {"ThrottlingException", "ThrottledException", "RequestLimitExceeded", "TooManyRequestsException", "SlowDown"}
)
#: Refusals that other credentials may cure (rotated keys, an expired session token).
_AUTH_REFRESH = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "ExpiredTokenException",
        "ExpiredToken",
        "InvalidClientTokenId",
        "RequestExpired",
    }
)
_AUTH = _AUTH_REFRESH | {
    "AccessDeniedException",
    "AccessDenied",
    "IncompleteSignatureException",
    "IncompleteSignature",
    "MissingAuthenticationTokenException",
    "MissingAuthenticationToken",
    "NotAuthorized",
    "AuthFailure",
}
_NOT_FOUND = frozenset({"NotFoundException"})
_CONFLICT = frozenset({"KMSInvalidStateException", "DisabledException", "AlreadyExistsException", "ConflictException"})
_UNAVAILABLE = frozenset(
    {
        "DependencyTimeoutException",
        "KMSInternalException",
        "InternalFailure",
        "InternalServerError",
        "InternalError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "KeyUnavailableException",
        "CustomKeyStoreInvalidStateException",
    }
)
_TIMEOUT = frozenset({"RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"})
#: 4xx codes that are the request's fault; ``LimitExceededException`` is a resource quota (number of
#: keys or aliases) that waiting does not clear, so keyorch does not retry it as botocore would.
_INVALID = frozenset(
    {
        "ValidationException",
        "InvalidArnException",
        "InvalidMarkerException",
        "InvalidAliasNameException",
        "UnsupportedOperationException",
        "LimitExceededException",
        "TagException",
        "MalformedPolicyDocumentException",
        "SerializationException",
        "UnknownOperationException",
        "InvalidKeyUsageException",
        "InvalidParameterValue",
        "InvalidParameterCombination",
        "MissingParameter",
    }
)

_STATES: dict[str, tuple[KeyState, bool]] = {
    "Enabled": (KeyState.ACTIVE, False),
    "Disabled": (KeyState.DEACTIVATED, False),
    "Unavailable": (KeyState.DEACTIVATED, False),
    "PendingDeletion": (KeyState.DEACTIVATED, True),
    "PendingReplicaDeletion": (KeyState.DEACTIVATED, True),
    "PendingImport": (KeyState.PRE_ACTIVE, False),
    "Creating": (KeyState.PRE_ACTIVE, False),
}

#: keyorch algorithm and size -> (KeySpec, KeyUsage) for CreateKey.
KEY_SPECS: dict[tuple[str, int], tuple[str, str]] = {
    ("aes", 256): ("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT"),
    **{("rsa", bits): (f"RSA_{bits}", "ENCRYPT_DECRYPT") for bits in (2048, 3072, 4096)},
}


def error_code(headers: Mapping[str, str], body: bytes) -> tuple[str | None, str]:
    """The AWS error code (the part after any ``#``) and message of an error answer."""
    doc = parse_json_lenient(body)
    code: str | None = None
    message = ""
    if isinstance(doc, dict):
        raw = doc.get("__type")
        if isinstance(raw, str) and raw:
            code = raw.rpartition("#")[2]
        text = doc.get("message", doc.get("Message"))
        if isinstance(text, str):
            message = text
    if code is None:
        header = headers.get("X-Amzn-ErrorType")
        if header:
            code = header.split(":", 1)[0].strip() or None
    return code, message


def map_error(status: int, headers: Mapping[str, str], body: bytes, *, refresh_auth: bool = True) -> ProviderError:
    """The one mapping of a KMS error answer to the error tree (``refresh_auth``: may new credentials help)."""
    code, message = error_code(headers, body)
    detail = message or f"the keystore answered HTTP {status}"
    kwargs: dict[str, Any] = {"status": status, "provider_code": code, "body": body}
    if code is None:
        return error_for_status(status, headers, body, detail=detail)
    if code in _THROTTLING:
        return Throttled(detail, retry_after=parse_retry_after(headers), **kwargs)
    if code in _AUTH:
        return AuthError(detail, refresh=refresh_auth and code in _AUTH_REFRESH, **kwargs)
    if code in _NOT_FOUND:
        return NotFound(detail, **kwargs)
    if code in _CONFLICT:
        return Conflict(detail, **kwargs)
    if code in _UNAVAILABLE:
        return Unavailable(detail, retry_after=parse_retry_after(headers), **kwargs)
    if code in _TIMEOUT:
        return Timeout(detail, **kwargs)
    if code in _INVALID:
        return InvalidRequest(detail, **kwargs)
    return error_for_status(status, headers, body, provider_code=code, detail=detail)


def error_mapper(*, refresh_auth: bool) -> ErrorMapper:
    """:func:`map_error` for a client whose credentials can (default chain) or cannot change."""

    def mapper(status: int, headers: Mapping[str, str], body: bytes, /) -> ProviderError:
        return map_error(status, headers, body, refresh_auth=refresh_auth)

    return mapper


def is_code(error: ProviderError, code: str) -> bool:
    return error.provider_code == code


# -- responses --------------------------------------------------------------------------------


def response_object(result: HttpResult) -> dict[str, Any]:
    """A success body as a JSON object; a 200 carrying an error document is malformed."""
    doc = result.json_object()
    if "__type" in doc:
        raise result.malformed(f"a success answer carries an error document ({str(doc['__type'])[:80]})")
    return doc


def check_empty(result: HttpResult) -> None:
    """Operations without output answer an empty body (``{}`` and moto's ``null`` tolerated)."""
    body = result.json_body
    if body is None or body == {}:
        return
    if isinstance(body, dict):
        response_object(result)
        return
    raise result.malformed(f"expected an empty answer, got {type(body).__name__}")


def timestamp(result: HttpResult, value: Any, name: str) -> datetime | None:
    """An epoch-seconds JSON number (fractional allowed) as a UTC datetime; ``None`` when absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise result.malformed(f"{name} is not a number of seconds")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise result.malformed(f"{name} is out of range") from None


def string_member(result: HttpResult, doc: Mapping[str, Any], name: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value:
        raise result.malformed(f"{name} is missing or not a string")
    return value


def map_state(result: HttpResult, state: Any, enabled: Any) -> tuple[KeyState, bool]:
    """keyorch's state and whether destruction is pending, for a ``KeyState`` word."""
    if not isinstance(state, str):
        raise result.malformed("KeyState is missing or not a string")
    known = _STATES.get(state)
    if known is not None:
        return known
    if isinstance(enabled, bool):  # Updating, or a state AWS adds later: go by the Enabled flag
        return (KeyState.ACTIVE if enabled else KeyState.DEACTIVATED), False
    raise result.malformed(f"unknown KeyState {state[:40]!r} and no Enabled flag")


def key_observation(result: HttpResult, metadata: Any, managed_key_id: str | None) -> Observation:
    """An :class:`Observation` from a ``KeyMetadata`` object."""
    if not isinstance(metadata, dict):
        raise result.malformed("KeyMetadata is missing or not an object")
    key_id = string_member(result, metadata, "KeyId")
    raw_state = metadata.get("KeyState")
    state, pending = map_state(result, raw_state, metadata.get("Enabled"))
    until = timestamp(result, metadata.get("DeletionDate"), "DeletionDate") if pending else None
    return Observation(key_id, managed_key_id, state, pending, until, str(raw_state))


def alias_targets(result: HttpResult, aliases: Any) -> list[tuple[str, str]]:
    """(alias name, target key id) for every alias on a ``ListAliases`` page that names a key."""
    if not isinstance(aliases, list):
        raise result.malformed("Aliases is missing or not a list")
    targets = []
    for entry in aliases:
        if not isinstance(entry, dict):
            raise result.malformed("an Aliases entry is not an object")
        name = entry.get("AliasName")
        if not isinstance(name, str):
            raise result.malformed("an alias has no AliasName")
        target = entry.get("TargetKeyId")
        if target is None:
            continue  # an alias not associated with a key (AWS lists some of its own that way)
        if not isinstance(target, str) or not target:
            raise result.malformed("TargetKeyId is not a string")
        targets.append((name, target))
    return targets


def key_ids(result: HttpResult, entries: list[Any]) -> list[str]:
    """The ``KeyId`` of each entry of a ``ListKeys`` page."""
    ids = []
    for entry in entries:
        key_id = entry.get("KeyId") if isinstance(entry, dict) else None
        if not isinstance(key_id, str) or not key_id:
            raise result.malformed("a Keys entry has no KeyId")
        ids.append(key_id)
    return ids


def tag_pairs(result: HttpResult, tags: Any) -> list[tuple[str, str]]:
    """(TagKey, TagValue) of each entry of a ``ListResourceTags`` page."""
    if not isinstance(tags, list):
        raise result.malformed("Tags is missing or not a list")
    pairs = []
    for tag in tags:
        key = tag.get("TagKey") if isinstance(tag, dict) else None
        value = tag.get("TagValue", "") if isinstance(tag, dict) else None
        if not isinstance(key, str) or not isinstance(value, str):
            raise result.malformed("a Tags entry is not a TagKey and a TagValue string")
        pairs.append((key, value))
    return pairs


def inventory_name(aliases: list[str]) -> str | None:
    """What a key is called: its first alias that is neither keyorch's identity nor AWS's own, else its first."""
    own = [a for a in aliases if not a.startswith((ALIAS_PREFIX, "alias/aws/"))]
    chosen = own or aliases
    return chosen[0] if chosen else None


def alias_name(managed_key_id: str) -> str:
    if not MANAGED_ID_RE.fullmatch(managed_key_id):
        raise InvalidRequest(
            "a managed key id for AWS KMS must be 1-200 letters, digits, '_' or '-' (it becomes an alias name)",
            sent=False,
        )
    return ALIAS_PREFIX + managed_key_id


def key_spec(algorithm: str, size: int) -> tuple[str, str]:
    spec = KEY_SPECS.get((algorithm.lower(), size))
    if spec is None:
        offered = ", ".join(f"{a} {s}" for a, s in KEY_SPECS)
        raise InvalidRequest(f"AWS KMS cannot hold {algorithm} {size} keys; it offers {offered}", sent=False)
    return spec


# -- versions ---------------------------------------------------------------------------------

#: the id keyorch gives a key's initial material (ListKeyRotations lists rotations only)
ORIGINAL_VERSION = "original"
#: automatic rotation periods EnableKeyRotation accepts (``RotationPeriodInDays``)
MIN_ROTATION_DAYS, MAX_ROTATION_DAYS = 90, 2560


def rotation_entries(result: HttpResult, rotations: Any) -> list[tuple[datetime, str, str | None]]:
    """(RotationDate, version id, KeyMaterialState) for each entry of a ``ListKeyRotations`` page: the
    version id is the entry's ``KeyMaterialId``, or its ``RotationDate`` in ISO form where it has none.
    An entry without a ``RotationDate`` (the initial material, listed only with
    ``IncludeKeyMaterial=ALL_KEY_MATERIAL``, which keyorch does not ask for) is skipped."""
    if not isinstance(rotations, list):
        raise result.malformed("Rotations is missing or not a list")
    entries = []
    for entry in rotations:
        if not isinstance(entry, dict):
            raise result.malformed("a Rotations entry is not an object")
        when = timestamp(result, entry.get("RotationDate"), "RotationDate")
        if when is None:
            continue
        material = entry.get("KeyMaterialId")
        if material is not None and (not isinstance(material, str) or not material):
            raise result.malformed("KeyMaterialId is not a string")
        state = entry.get("KeyMaterialState")
        if state is not None and not isinstance(state, str):
            raise result.malformed("KeyMaterialState is not a string")
        entries.append((when, material or when.isoformat(), state))
    return entries


def key_versions(
    result: HttpResult, created: datetime | None, rotations: list[tuple[datetime, str, str | None]]
) -> list[KeyVersion]:
    """The initial material (``original``) and every rotation, oldest first. The primary is the entry
    KMS marks ``CURRENT``, else the newest rotation, else the initial material."""
    ordered = sorted(rotations, key=lambda entry: entry[0])
    ids = [ORIGINAL_VERSION] + [version for _, version, _ in ordered]
    if len(set(ids)) != len(ids):
        raise result.malformed("ListKeyRotations lists a key material twice")
    current = [index for index, (_, _, state) in enumerate(ordered, start=1) if state == "CURRENT"]
    if len(current) > 1:
        raise result.malformed("ListKeyRotations marks more than one key material CURRENT")
    primary = current[0] if current else len(ordered)
    dates = [created] + [when for when, _, _ in ordered]
    return [KeyVersion(v, when, index == primary) for index, (v, when) in enumerate(zip(ids, dates, strict=True))]


def rotation_period(days: int | None) -> int | None:
    """``days`` as a ``RotationPeriodInDays``; ``InvalidRequest`` naming KMS's rule when it cannot be one."""
    if days is None:
        return None
    if isinstance(days, bool) or not isinstance(days, int) or not MIN_ROTATION_DAYS <= days <= MAX_ROTATION_DAYS:
        raise InvalidRequest(
            f"AWS KMS rotates a key automatically every {MIN_ROTATION_DAYS} to {MAX_ROTATION_DAYS} days "
            f"(RotationPeriodInDays), so a rotation period of {days!r} days cannot be set",
            operation="EnableKeyRotation",
            sent=False,
        )
    return days
