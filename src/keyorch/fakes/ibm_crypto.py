"""Wrap, unwrap and rewrap for the IBM Key Protect fake: real AES-256-GCM under each key version.

A ciphertext is base64 of a small JSON document naming the key version that sealed it (like Key
Protect's own), so an unwrap after rotation still finds the old version.
"""

from __future__ import annotations

import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keyorch.fakes.ibm_state import IbmKey, KeyProtectState, KeyVersion, check_fields, new_material
from keyorch.fakes.ibm_wire import IbmError, b64, b64decode


def wrap_key(state: KeyProtectState, key: IbmKey, body: dict[str, Any] | None) -> dict[str, Any]:
    """The ``wrap`` action: seal the given plaintext, or a new 256-bit DEK, under the latest version."""
    state.check_action(key, "wrap")
    context = "Wrap with key could not be performed"
    body = check_fields(body, {"plaintext", "aad"}, context)
    aad = parse_aad(body.get("aad"), context)
    generated = body.get("plaintext") is None
    if generated:
        plaintext = new_material()
    else:
        plaintext = b64decode(body["plaintext"], "plaintext", context, "a base64 encoded key material")
        if len(plaintext) > 4096:
            raise IbmError("INVALID_FIELD_ERR", context, detail="plaintext is too large", target="plaintext")
    version = key.versions[-1]
    doc: dict[str, Any] = {"ciphertext": seal(version, plaintext, aad), "keyVersion": version.as_json()}
    if generated:
        doc["plaintext"] = b64(plaintext)
    return doc


def unwrap_key(state: KeyProtectState, key: IbmKey, body: dict[str, Any] | None, *, rewrap: bool) -> dict[str, Any]:
    """The ``unwrap`` action (or ``rewrap``: open, then seal under the latest version)."""
    state.check_action(key, "rewrap" if rewrap else "unwrap")
    context = f"{'Rewrap' if rewrap else 'Unwrap'} with key could not be performed"
    if body is None:
        raise IbmError("NO_BODY_ERR", "Action could not be performed on key")
    check_fields(body, {"ciphertext", "aad"}, context)
    aad = parse_aad(body.get("aad"), context)
    version, plaintext = open_sealed(key, body.get("ciphertext"), aad, context)
    if rewrap:
        latest = key.versions[-1]
        return {"ciphertext": seal(latest, plaintext, aad), "keyVersion": latest.as_json()}
    return {"plaintext": b64(plaintext), "keyVersion": version.as_json()}


def parse_aad(raw: Any, context: str) -> bytes | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) > 255 or not all(isinstance(x, str) and len(x) <= 255 for x in raw):
        raise IbmError("INVALID_FIELD_ERR", context, detail="The field `aad` must be: a list of strings", target="aad")
    return "\x00".join(raw).encode()


def seal(version: KeyVersion, plaintext: bytes, aad: bytes | None) -> str:
    """AES-GCM under the key version's material; the ciphertext names its version (like Key Protect's)."""
    iv = os.urandom(12)
    sealed = AESGCM(version.material).encrypt(iv, plaintext, aad)
    blob = {"ciphertext": b64(sealed), "iv": b64(iv), "version": "4.0.0", "handle": version.id}
    return b64(json.dumps(blob, separators=(",", ":")).encode())


def open_sealed(key: IbmKey, ciphertext: Any, aad: bytes | None, context: str) -> tuple[KeyVersion, bytes]:
    what = "the original base64 encoded ciphertext from the wrap operation"
    raw = b64decode(ciphertext, "ciphertext", context, what)
    try:
        blob = json.loads(raw)
        handle, iv, sealed = blob["handle"], b64decode(blob["iv"], "iv", context, what), blob["ciphertext"]
        sealed_bytes = b64decode(sealed, "ciphertext", context, what)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, IbmError) as exc:
        raise IbmError("UNPROCESSABLE_CIPHERTEXT_ERR", context) from exc
    version = next((v for v in key.versions if v.id == handle), None)
    if version is None or len(iv) != 12:
        raise IbmError("UNPROCESSABLE_CIPHERTEXT_ERR", context)
    try:
        return version, AESGCM(version.material).decrypt(iv, sealed_bytes, aad)
    except InvalidTag as exc:
        raise IbmError("UNPROCESSABLE_CIPHERTEXT_ERR", context) from exc
