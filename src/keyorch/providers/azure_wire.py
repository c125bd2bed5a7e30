"""Azure Key Vault (keys) wire format: the one error mapping, the response checks, the state rules.

Everything here is pure (no I/O), used by :mod:`keyorch.providers.azure` (docs/providers.md §2).

* :func:`map_error` is the adapter's one mapping point from a non-2xx answer to the error tree, for
  the vault (``{"error": {"code", "message", "innererror": {"code"}}}``) and for the Entra ID token
  endpoint (``{"error": "invalid_client", "error_description": "AADSTS…"}``) alike.
* :func:`bundle_view`, :func:`item_view` and :func:`deleted_view` check a KeyBundle, a KeyItem and
  a DeletedKeyBundle/Item by hand (cheaper than pydantic on the hot path) and raise
  :class:`MalformedResponse` for anything that is not the documented shape.
* :func:`observe` derives keyorch's state as docs/providers.md §2.3 says, from the latest version:
  ``enabled=false`` or ``exp`` passed → deactivated, ``nbf`` in the future → pre-active, else active;
  a soft-deleted key → deactivated with ``destruction_pending`` until ``scheduledPurgeDate``; a
  deleted key without ``recoveryId`` (no soft delete) → destroyed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from keyorch.domain.states import KeyState
from keyorch.providers.base import KeySpec, KeyVersion, Observation
from keyorch.providers.errors import (
    AuthError,
    Conflict,
    InvalidRequest,
    ProviderError,
    error_for_status,
    parse_json_lenient,
)
from keyorch.providers.http import HttpResult

#: The pinned data-plane api-version (stable, docs/providers.md §2.1; the fake serves it).
API_VERSION = "7.5"
#: Key Vault's largest (and default) page size for ``maxresults``.
MAX_PAGE_SIZE = 25
#: Prefix of every key name keyorch creates: ``keyorch-<managed key id>``.
NAME_PREFIX = "keyorch-"
#: The tag holding the managed key id on every version keyorch creates.
MANAGED_KEY_TAG = "keyorch-managed-key-id"
#: The tag holding the key's display name (the template's naming scheme applied to the label).
NAME_TAG = "keyorch-name"
#: key_ops of the keys keyorch creates (they protect other keys and data).
KEY_OPS = ("encrypt", "decrypt", "wrapKey", "unwrapKey")
#: Key Vault allows at most this many tags per key.
MAX_TAGS = 15
NAME_RE = re.compile(r"[0-9a-zA-Z-]{1,127}")
_ID_RE = re.compile(r"[0-9a-zA-Z-]{1,118}")
#: Entra ID error words that mean the credentials (tenant, client, secret, assertion) are wrong.
_ENTRA_AUTH_ERRORS = frozenset(
    {"invalid_client", "unauthorized_client", "invalid_request", "invalid_grant", "invalid_scope", "invalid_resource"}
)
#: Vault 403 inner codes that are a key state, not a missing permission.
_STATE_403 = frozenset({"KeyDisabled", "KeyOperationForbidden"})


# -- identity ---------------------------------------------------------------------------------


def key_name_for(managed_key_id: str) -> str:
    """The deterministic key name of a managed key: ``keyorch-<id>`` (ids keyorch makes are UUIDs).

    An id with characters Key Vault names do not allow (only letters, digits and ``-``) or a very long
    one is named ``keyorch-x<sha256 hex>`` instead; the id is then known from the key's tag."""
    if _ID_RE.fullmatch(managed_key_id):
        return NAME_PREFIX + managed_key_id.lower()
    return f"{NAME_PREFIX}x{hashlib.sha256(managed_key_id.encode()).hexdigest()}"


def managed_key_id_of(name: str, tags: Mapping[str, str] | None) -> str | None:
    """The managed key id a key belongs to: its tag, else its ``keyorch-<id>`` name, else ``None``."""
    if tags:
        tagged = tags.get(MANAGED_KEY_TAG)
        if tagged:
            return tagged
    if name.lower().startswith(NAME_PREFIX) and len(name) > len(NAME_PREFIX):
        rest = name[len(NAME_PREFIX) :]
        if not (rest.startswith("x") and len(rest) == 65):
            return rest.lower()
    return None


def name_from_key_id(key_id: str) -> str | None:
    """A key name from what keyorch stored as the key's id: the name itself or a ``kid`` URL."""
    if "/" not in key_id:
        return key_id if NAME_RE.fullmatch(key_id) else None
    parts = urlsplit(key_id).path.split("/")
    if len(parts) >= 3 and parts[1] in ("keys", "deletedkeys") and NAME_RE.fullmatch(parts[2]):
        return parts[2]
    return None


def create_body(managed_key_id: str, spec: KeySpec, *, managed_hsm: bool | None) -> dict[str, Any]:
    """The ``KeyCreateParameters`` of a managed key; ``managed_hsm`` False refuses AES before any request.

    ``aes`` → ``oct-HSM`` (Managed HSM only), ``rsa`` → ``RSA-HSM`` on a Managed HSM, else ``RSA``;
    the labels, the managed key id and the display name become tags (at most :data:`MAX_TAGS`)."""
    algorithm = spec.algorithm.lower()
    if algorithm == "aes":
        if managed_hsm is False:
            raise InvalidRequest(
                "a standard Azure key vault holds no AES keys; use an Azure Managed HSM keystore "
                "(endpoint https://<name>.managedhsm.azure.net) for AES templates"
            )
        if spec.size not in (128, 192, 256):
            raise InvalidRequest(f"AES keys are 128, 192 or 256 bits, not {spec.size}")
        kty = "oct-HSM"
    elif algorithm == "rsa":
        if spec.size not in (2048, 3072, 4096):
            raise InvalidRequest(f"RSA keys are 2048, 3072 or 4096 bits, not {spec.size}")
        kty = "RSA-HSM" if managed_hsm else "RSA"
    else:
        raise InvalidRequest(f"the Azure Key Vault adapter cannot create {spec.algorithm!r} keys (aes or rsa)")
    tags = {str(k): str(v) for k, v in spec.labels.items()}
    tags[MANAGED_KEY_TAG] = managed_key_id
    if spec.name:
        tags.setdefault(NAME_TAG, spec.name)
    if len(tags) > MAX_TAGS:
        raise InvalidRequest(f"Key Vault allows {MAX_TAGS} tags per key; this key would have {len(tags)}")
    return {"kty": kty, "key_size": spec.size, "key_ops": list(KEY_OPS), "attributes": {"enabled": True}, "tags": tags}


# -- errors -----------------------------------------------------------------------------------


def map_error(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
    """The one mapping of a Key Vault or Entra ID error answer to keyorch's error tree."""
    doc = parse_json_lenient(body)
    error = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(error, str):  # Entra ID token endpoint
        description = doc.get("error_description") if isinstance(doc, dict) else None
        first_line = description.splitlines()[0] if isinstance(description, str) and description else error
        detail = f"Entra ID refused the token request: {first_line}"
        if status < 500 and status != 429 and (error in _ENTRA_AUTH_ERRORS or status in (400, 401, 403)):
            return AuthError(detail, status=status, provider_code=error, body=body, refresh=False)
        return error_for_status(status, headers, body, provider_code=error, detail=detail)
    code = inner = message = None
    if isinstance(error, dict):
        code = error.get("code") if isinstance(error.get("code"), str) else None
        message = error.get("message") if isinstance(error.get("message"), str) else None
        inner_doc = error.get("innererror")
        if isinstance(inner_doc, dict) and isinstance(inner_doc.get("code"), str):
            inner = inner_doc["code"]
    provider_code = "/".join(c for c in (code, inner) if c) or None
    detail = message or (f"the key vault answered HTTP {status}" if code is None else code)
    if status == 403 and (inner in _STATE_403 or (message is not None and "purge protection" in message)):
        return Conflict(detail, status=status, provider_code=provider_code, body=body)
    if status == 409:
        # A name still being deleted or purged is usable again within seconds: worth another try.
        busy = inner == "ObjectIsBeingDeleted" or (
            code == "Conflict" and inner is None and "another operation" in detail
        )
        return Conflict(detail, status=status, provider_code=provider_code, body=body, transient=busy)
    return error_for_status(status, headers, body, provider_code=provider_code, detail=detail)


# -- response shapes --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyView:
    """The fields of a KeyBundle/KeyItem (or their deleted forms) that keyorch reads."""

    name: str
    version: str | None
    enabled: bool
    nbf: int | None
    exp: int | None
    tags: Mapping[str, str] | None
    deleted: bool = False
    recoverable: bool = True
    scheduled_purge_date: int | None = None
    #: ``attributes.created`` (read-only, Unix seconds)
    created: int | None = None


def _object(result: HttpResult) -> dict[str, Any]:
    doc = result.json_object()
    if "error" in doc:
        raise result.malformed("a success answer carrying an error body")
    return doc


def _int_or_none(result: HttpResult, doc: Mapping[str, Any], name: str) -> int | None:
    value = doc.get(name)
    if value is None:
        return None
    if type(value) is not int:
        raise result.malformed(f"{name} is not a Unix time in seconds")
    return value


def _tags(result: HttpResult, doc: Mapping[str, Any]) -> Mapping[str, str] | None:
    tags = doc.get("tags")
    if tags is None:
        return None
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise result.malformed("tags is not a map of strings")
    return tags


def _view(result: HttpResult, doc: Mapping[str, Any], kid: Any, *, deleted: bool) -> KeyView:
    if not isinstance(kid, str):
        raise result.malformed("the key has no kid")
    # https://<vault>/keys/<name>[/<version>], split by hand: urlsplit costs more than the rest of the parse
    scheme_end = kid.find("://")
    path_start = kid.find("/", scheme_end + 3) if scheme_end > 0 else -1
    parts = kid[path_start:].split("/") if path_start > 0 else []
    if len(parts) not in (3, 4) or parts[1] != "keys" or not NAME_RE.fullmatch(parts[2]):
        raise result.malformed("the key's kid is not a Key Vault key identifier")
    version = parts[3] if len(parts) == 4 and parts[3] else None
    attributes = doc.get("attributes")
    if not isinstance(attributes, dict):
        raise result.malformed("the key has no attributes object")
    enabled = attributes.get("enabled")
    if not isinstance(enabled, bool):
        raise result.malformed("attributes.enabled is not a boolean")
    nbf = _int_or_none(result, attributes, "nbf")
    exp = _int_or_none(result, attributes, "exp")
    recovery_id = doc.get("recoveryId")
    if recovery_id is not None and not isinstance(recovery_id, str):
        raise result.malformed("recoveryId is not a string")
    purge = _int_or_none(result, doc, "scheduledPurgeDate") if deleted else None
    created = _int_or_none(result, attributes, "created")
    tags = _tags(result, doc)
    return KeyView(parts[2], version, enabled, nbf, exp, tags, deleted, recovery_id is not None, purge, created)


def bundle_view(result: HttpResult, *, deleted: bool = False) -> KeyView:
    """A KeyBundle (``deleted``: a DeletedKeyBundle) from a 2xx answer."""
    doc = _object(result)
    key = doc.get("key")
    if not isinstance(key, dict):
        raise result.malformed("the answer has no key object")
    return _view(result, doc, key.get("kid"), deleted=deleted)


def page_views(result: HttpResult, *, deleted: bool = False) -> tuple[list[KeyView], str | None]:
    """The items of one list page and its ``nextLink`` (``None`` on the last page)."""
    doc = _object(result)
    items = doc.get("value")
    next_link = doc.get("nextLink")
    if not isinstance(items, list):
        raise result.malformed("the list answer has no value array")
    if next_link is not None and not isinstance(next_link, str):
        raise result.malformed("nextLink is not a string")
    views = []
    for item in items:
        if not isinstance(item, dict):
            raise result.malformed("a list item is not an object")
        views.append(_view(result, item, item.get("kid"), deleted=deleted))
    return views, next_link or None


# -- state ------------------------------------------------------------------------------------


def _when(seconds: int | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds is not None else None


def observe(view: KeyView, now: float) -> Observation:
    """keyorch's view of one key (its latest version; docs/providers.md §2.3)."""
    managed = managed_key_id_of(view.name, view.tags)
    if view.deleted:
        if not view.recoverable:
            return Observation(view.name, managed, KeyState.DESTROYED, raw_state="deleted (not recoverable)")
        return Observation(
            view.name,
            managed,
            KeyState.DEACTIVATED,
            destruction_pending=True,
            pending_until=_when(view.scheduled_purge_date),
            raw_state="soft-deleted",
        )
    if not view.enabled:
        return Observation(view.name, managed, KeyState.DEACTIVATED, raw_state="enabled=false")
    if view.exp is not None and view.exp <= now:
        return Observation(view.name, managed, KeyState.DEACTIVATED, raw_state="enabled=true, expired")
    if view.nbf is not None and view.nbf > now:
        return Observation(view.name, managed, KeyState.PRE_ACTIVE, raw_state="enabled=true, nbf in the future")
    return Observation(view.name, managed, KeyState.ACTIVE, raw_state="enabled=true")


def destroyed(name: str, managed_key_id: str | None) -> Observation:
    """A key the vault has in neither collection: purged, or its purge date has passed."""
    return Observation(name, managed_key_id, KeyState.DESTROYED, raw_state="absent from keys and deletedkeys")


# -- rotation ---------------------------------------------------------------------------------

#: Key Vault's rotation policy rule: a version is rotated at the earliest 7 days after its creation.
MIN_ROTATION_DAYS = 7


def version_of(view: KeyView, *, primary: bool) -> KeyVersion:
    """One version (a KeyItem of ``/versions`` or a KeyBundle) as the interface reports it."""
    if view.version is None:
        raise ValueError("a key view without a version")
    return KeyVersion(view.version, _when(view.created), primary, view.enabled)


def _is_rotate(action: Any) -> bool:
    return (
        isinstance(action, dict)
        and isinstance(action.get("action"), dict)
        and str(action["action"].get("type", "")).lower() == "rotate"
    )


def rotate_actions(policy: Mapping[str, Any]) -> list[Any]:
    """A rotation policy's ``Rotate`` lifetime actions (their triggers), to tell whether a PUT changes them."""
    actions = policy.get("lifetimeActions")
    return [a.get("trigger") for a in (actions if isinstance(actions, list) else []) if _is_rotate(a)]


def rotation_policy_body(current: Mapping[str, Any], period_days: int | None) -> dict[str, Any]:
    """The ``PUT /keys/{name}/rotationpolicy`` body: the current policy's other lifetime actions and its
    ``expiryTime`` kept, its ``Rotate`` action replaced by one ``timeAfterCreate`` ``P{n}D`` (or dropped
    for ``None``). Raises :class:`InvalidRequest` for a period Key Vault cannot express."""
    if period_days is not None and (type(period_days) is not int or period_days < MIN_ROTATION_DAYS):
        raise InvalidRequest(
            f"Azure Key Vault rotates a key at the earliest {MIN_ROTATION_DAYS} days after its version's creation "
            f"(rotation policy timeAfterCreate >= P{MIN_ROTATION_DAYS}D); a period of {period_days!r} days "
            "cannot be set",
            sent=False,
        )
    actions = current.get("lifetimeActions")
    kept = [a for a in (actions if isinstance(actions, list) else []) if isinstance(a, dict) and not _is_rotate(a)]
    if period_days is not None:
        kept.insert(0, {"trigger": {"timeAfterCreate": f"P{period_days}D"}, "action": {"type": "Rotate"}})
    body: dict[str, Any] = {"lifetimeActions": kept}
    attributes = current.get("attributes")
    if isinstance(attributes, dict) and isinstance(attributes.get("expiryTime"), str):
        body["attributes"] = {"expiryTime": attributes["expiryTime"]}
    return body
