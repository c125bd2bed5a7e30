"""IBM Key Protect v2 wire details shared by the fake's state and routes.

The ``metadata``/``resources`` envelope, the error form and its reason codes (from Key Protect's
error catalogue, ``ibm-cloud-docs/key-protect`` ``error-messages.md``), and small parsers that turn
bad input into the documented 400s.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from aiohttp import web

from keyorch.fakes.base import FakeError

KEY_TYPE = "application/vnd.ibm.kms.key+json"
COLLECTION_TYPE = "application/vnd.ibm.collection+json"
KEY_ACTION_TYPE = "application/vnd.ibm.kms.key_action+json"
POLICY_TYPE = "application/vnd.ibm.kms.policy+json"
ALIAS_TYPE = "application/vnd.ibm.kms.key_alias+json"
REGISTRATION_TYPE = "application/vnd.ibm.kms.registration+json"
VERSION_TYPE = "application/vnd.ibm.kms.key.version+json"
ERROR_TYPE = "application/vnd.ibm.kms.error+json"
MORE_INFO = "https://cloud.ibm.com/apidocs/key-protect"

#: reason code -> (HTTP status, the catalogue's reason message)
REASONS: dict[str, tuple[int, str]] = {
    "BAD_BODY_ERR": (
        400,
        "Invalid body data was passed: Please ensure the data passed had valid formatting with no invalid characters",
    ),
    "INVALID_FIELD_ERR": (400, "Invalid field error"),
    "NO_BODY_ERR": (400, "Missing body in request"),
    "COLLECTION_TOTAL_MISMATCH_ERR": (400, "Collection total does not match number of resources"),
    "BODY_QUERY_PARAM_MISMATCH_ERR": (400, "Data in body does not match data required by query parameter"),
    "NUM_COLLECTION_RESOURCE_ERR": (
        400,
        "Only a single instance policy may be created per query parameter: Please pass single resource object",
    ),
    "KEY_ROOT_REQ_ERR": (400, "Requested action can only be completed with a root key"),
    "KEY_RESTORE_EXPIRED": (400, "Key restoration has expired"),
    "KEY_EXPIRED_ERR": (400, "The action could not be performed on the key because the key is expired"),
    "KEY_PAYLOAD_REQ_ERR": (
        400,
        "This root key was created with user-supplied key material: "
        "Key material is required to perform a 'rotate' action",
    ),
    "KEY_ALIAS_QUOTA_ERR": (400, "Key aliases quota has been reached: A key can have at most 5 aliases"),
    "UNAUTHORIZED_ERR": (401, "Unauthorized: The user does not have access to the specified resource"),
    "KEY_NOT_FOUND_ERR": (404, "Key does not exist"),
    "KEY_ACTION_INVALID_STATE_ERR": (409, "Key is not in a valid state"),
    "AUTHORIZATIONS_NOT_MET": (409, "Number of authorizations required to delete is not met"),
    "PROTECTED_RESOURCE_ERR": (409, "Key is protecting one or more cloud resources"),
    "PREV_KEY_DEL_ERR": (
        409,
        "The key cannot be deleted because it's protecting a cloud resource that has a retention policy: "
        "Before you delete this key, contact an account owner to remove the retention policy on each resource "
        "that is associated with the key",
    ),
    "NOT_DUAL_AUTH_ERR": (409, "The key is not dual auth enabled and cannot be set for deletion"),
    "REQ_TOO_EARLY_ERR": (409, "The key was updated recently: Please wait and try again"),
    "KEY_ROTATION_NOT_PERMITTED": (
        409,
        "This root key has been rotated within the last hour: Only one 'rotate' action per hour is permitted",
    ),
    "KEY_ALIAS_NOT_UNIQUE_ERR": (409, "The alias already exists in this instance"),
    "KEY_DELETED_ERR": (410, "Key has already been deleted: Please delete references to this key"),
    "UNPROCESSABLE_CIPHERTEXT_ERR": (422, "The provided ciphertext is invalid or corrupted"),
}

#: codes whose errors carry only ``errorMsg`` (no ``reasons``), as the catalogue shows for 401
_MSG_ONLY = {"UNAUTHORIZED_ERR"}


class IbmError(FakeError):
    """A Key Protect error: reason code, the errorMsg context, optional reason detail and target field."""

    def __init__(self, code: str, context: str, *, detail: str | None = None, target: str | None = None) -> None:
        status = REASONS[code][0]
        super().__init__(status, code, context)
        self.detail = detail
        self.target = target


def phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def error_body(status: int, code: str, context: str, detail: str | None = None, target: str | None = None) -> Any:
    """The error document. Codes outside the catalogue (routing, faults) carry only ``errorMsg``."""
    known = code in REASONS and code not in _MSG_ONLY
    if code in _MSG_ONLY:
        resource: dict[str, Any] = {"errorMsg": REASONS[code][1]}
    elif known:
        resource = {
            "errorMsg": f"{phrase(status)}: {context}: Please see `reasons` for more details ({code})",
            "reasons": [
                {
                    "code": code,
                    "message": REASONS[code][1] + (f": {detail}" if detail else ""),
                    "status": status,
                    "moreInfo": MORE_INFO,
                }
            ],
        }
        if target:
            resource["reasons"][0]["target"] = {"type": "field", "name": target}
    else:
        resource = {"errorMsg": f"{phrase(status)}: {context}"}
    return {"metadata": {"collectionType": ERROR_TYPE, "collectionTotal": 1}, "resources": [resource]}


def envelope(collection_type: str, resources: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"collectionType": collection_type, "collectionTotal": len(resources)}
    metadata.update(extra)
    return {"metadata": metadata, "resources": resources}


def json_response(doc: Any, status: int = 200) -> web.Response:
    return web.json_response(doc, status=status)


def iso(when: datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any, field: str, context: str) -> datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise IbmError(
            "INVALID_FIELD_ERR", context, detail=f"The field `{field}` must be: an RFC 3339 time", target=field
        )
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise IbmError(
            "INVALID_FIELD_ERR", context, detail=f"The field `{field}` must be: an RFC 3339 time", target=field
        ) from exc
    if when.tzinfo is None:
        raise IbmError("INVALID_FIELD_ERR", context, detail=f"The field `{field}` needs a time zone", target=field)
    return when


def b64decode(value: Any, field: str, context: str, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise IbmError("INVALID_FIELD_ERR", context, detail=f"The field `{field}` must be: {what}", target=field)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise IbmError(
            "INVALID_FIELD_ERR", context, detail=f"The field `{field}` must be: {what}", target=field
        ) from exc


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def parse_body(raw: bytes, context: str, *, required: bool) -> dict[str, Any] | None:
    """A JSON object body, or None when absent and not required."""
    if not raw.strip():
        if required:
            raise IbmError("NO_BODY_ERR", context)
        return None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IbmError("BAD_BODY_ERR", context, detail="the body is not valid JSON") from exc
    if not isinstance(doc, dict):
        raise IbmError("BAD_BODY_ERR", context, detail="the body must be a JSON object")
    return doc


def parse_envelope(doc: dict[str, Any], context: str, *, single: bool = True) -> list[dict[str, Any]]:
    """Check ``metadata``/``resources`` and return the resources (each a JSON object)."""
    metadata = doc.get("metadata")
    resources = doc.get("resources")
    if not isinstance(metadata, dict) or not metadata:
        raise IbmError("BAD_BODY_ERR", context, detail="CollectionMetadata is empty")
    if not isinstance(resources, list) or not resources:
        raise IbmError("BAD_BODY_ERR", context, detail="resources are missing")
    total = metadata.get("collectionTotal")
    if not isinstance(metadata.get("collectionType"), str):
        raise IbmError("BAD_BODY_ERR", context, detail="collectionType is missing")
    if type(total) is not int or total != len(resources):
        raise IbmError("COLLECTION_TOTAL_MISMATCH_ERR", context)
    if single and len(resources) != 1:
        raise IbmError("BAD_BODY_ERR", context, detail="Only creation of one key per request is supported")
    if not all(isinstance(r, dict) for r in resources):
        raise IbmError("BAD_BODY_ERR", context, detail="each resource must be a JSON object")
    return resources


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise IbmError(
            "INVALID_FIELD_ERR",
            "Request could not be processed",
            detail=f"The query parameter `{name}` must be: an integer from {low} to {high}",
            target=name,
        )
    return int(raw)


def query_bool(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw.lower() not in ("true", "false"):
        raise IbmError(
            "INVALID_FIELD_ERR",
            "Request could not be processed",
            detail=f"The query parameter `{name}` must be: true or false",
            target=name,
        )
    return raw.lower() == "true"
