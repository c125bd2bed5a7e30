"""The KMS operations the fake serves, one function per ``X-Amz-Target`` action.

Each takes the store and the request members and returns the response object (``None`` for the
operations AWS answers with an empty body). Encrypt/Decrypt are real AES-256-GCM with random
material per key; the ciphertext blob is opaque to clients but carries the key ID, so Decrypt
finds the key without being told.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keyorch.fakes.aws_input import Members, validation_error
from keyorch.fakes.aws_state import (
    DISABLED,
    ENABLED,
    PENDING_DELETION,
    PENDING_IMPORT,
    ROTATION_CONFLICT_WINDOW,
    SPEC_USAGES,
    KeyMaterial,
    KmsAlias,
    KmsKey,
    KmsStore,
    decode_marker,
    encode_marker,
    is_key_id,
)
from keyorch.fakes.base import FakeError

T = TypeVar("T")
Operation = Callable[[KmsStore, Members], dict[str, Any] | None]

MAX_TAGS_PER_KEY = 50
DEFAULT_WINDOW_DAYS = 30
MIN_WINDOW_DAYS, MAX_WINDOW_DAYS = 7, 30
#: ciphertext blob layout: version, key id length, key id, key material index (2 bytes), nonce, sealed
_BLOB_VERSION = 2
_NONCE_BYTES = 12

KEY_USAGES = frozenset(
    {"ENCRYPT_DECRYPT", "SIGN_VERIFY", "GENERATE_VERIFY_MAC", "KEY_AGREEMENT", "ENCAPSULATE_DECAPSULATE"}
)
ORIGINS = frozenset({"AWS_KMS", "EXTERNAL", "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"})
ENCRYPTION_ALGORITHMS = frozenset({"SYMMETRIC_DEFAULT", "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "SM2PKE"})
_ALIAS_NAME = re.compile(r"[a-zA-Z0-9:/_-]+")
_MARKER = re.compile(r"[\u0020-\u00FF]*")


def _key_ref(m: Members, name: str = "KeyId") -> str:
    return m.required_string(name, max_len=2048)


def _page_size(m: Members, default: int) -> int:
    limit = m.integer("Limit", minimum=1, maximum=1000)
    return default if limit is None else limit


def _marker(m: Members) -> str | None:
    return m.string("Marker", max_len=1024, pattern=_MARKER)


def _page(
    items: list[T], m: Members, kind: str, position: Callable[[T], int], *, default: int = 100, most: int = 1000
) -> tuple[list[T], dict[str, Any]]:
    """One page of ``items`` from ``Marker``/``Limit``, and the ``Truncated``/``NextMarker`` members."""
    start = decode_marker(kind, _marker(m))
    limit = min(_page_size(m, default), most)
    remaining = [item for item in items if position(item) >= start]
    page, rest = remaining[:limit], remaining[limit:]
    extra: dict[str, Any] = {"Truncated": bool(rest)}
    if rest:
        extra["NextMarker"] = encode_marker(kind, position(rest[0]))
    return page, extra


# -- keys -------------------------------------------------------------------------------------


def _policy(m: Members) -> None:
    policy = m.string("Policy", max_len=131072)
    if policy is None:
        return
    try:
        doc = json.loads(policy)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise FakeError(400, "MalformedPolicyDocumentException", "The key policy is not a valid JSON document.")


def create_key(store: KmsStore, m: Members) -> dict[str, Any]:
    specs = frozenset(SPEC_USAGES)
    description = m.string("Description", min_len=0, max_len=8192) or ""
    key_spec, legacy_spec = m.enum("KeySpec", specs), m.enum("CustomerMasterKeySpec", specs)
    if key_spec is not None and legacy_spec is not None:
        raise validation_error("You cannot specify KeySpec and CustomerMasterKeySpec in the same request.")
    spec = key_spec or legacy_spec or "SYMMETRIC_DEFAULT"
    usage = m.enum("KeyUsage", KEY_USAGES, default="ENCRYPT_DECRYPT") or "ENCRYPT_DECRYPT"
    if usage not in SPEC_USAGES[spec]:
        raise validation_error(f"KeyUsage {usage} is not compatible with KeySpec {spec}.")
    origin = m.enum("Origin", ORIGINS, default="AWS_KMS") or "AWS_KMS"
    custom_store = m.string("CustomKeyStoreId", max_len=64)
    m.string("XksKeyId", max_len=128)
    m.boolean("BypassPolicyLockoutSafetyCheck")
    _policy(m)
    multi_region = bool(m.boolean("MultiRegion"))
    tags = m.tags("Tags")
    if custom_store is not None or origin in ("AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"):
        raise FakeError(400, "CustomKeyStoreNotFoundException", "The fake has no custom key stores.")
    key_id = store.new_key_id(multi_region)
    key = KmsKey(
        key_id=key_id,
        arn=store.key_arn(key_id),
        created=store.clock.now(),
        seq=store.next_seq(),
        description=description,
        key_usage=usage,
        key_spec=spec,
        origin=origin,
        state=PENDING_IMPORT if origin == "EXTERNAL" else ENABLED,
        multi_region=multi_region,
        materials=[KeyMaterial(AESGCM.generate_key(bit_length=256), store.clock.now())]
        if origin == "AWS_KMS" and spec == "SYMMETRIC_DEFAULT"
        else [],
        tags=dict(tags),
    )
    store.keys[key_id] = key
    return {"KeyMetadata": store.metadata(key)}


def describe_key(store: KmsStore, m: Members) -> dict[str, Any]:
    m.string_list("GrantTokens", max_items=10)
    return {"KeyMetadata": store.metadata(store.resolve(_key_ref(m), allow_alias=True))}


def list_keys(store: KmsStore, m: Members) -> dict[str, Any]:
    m.string_list("ResourceOwners", max_items=2)
    store.sweep()
    keys = sorted(store.keys.values(), key=lambda k: k.seq)
    page, extra = _page(keys, m, "keys", lambda k: k.seq)
    return {"Keys": [{"KeyId": k.key_id, "KeyArn": k.arn} for k in page], **extra}


def _set_state(operation: str, state: str) -> Operation:
    def handler(store: KmsStore, m: Members) -> None:
        key = store.resolve(_key_ref(m))
        store.require_state(key, operation)
        key.state = state

    return handler


def schedule_key_deletion(store: KmsStore, m: Members) -> dict[str, Any]:
    ref = _key_ref(m)
    window = m.integer("PendingWindowInDays", minimum=1, maximum=365)
    days = DEFAULT_WINDOW_DAYS if window is None else window
    if not MIN_WINDOW_DAYS <= days <= MAX_WINDOW_DAYS:
        raise validation_error(f"PendingWindowInDays must be between {MIN_WINDOW_DAYS} and {MAX_WINDOW_DAYS}")
    key = store.resolve(ref)
    store.require_state(key, "ScheduleKeyDeletion")
    key.state = PENDING_DELETION
    deletion_date = store.clock.now() + timedelta(days=days)
    store.schedule_deletion(key, deletion_date)
    key.pending_window_days = days
    return {
        "KeyId": key.arn,
        "DeletionDate": deletion_date.timestamp(),
        "KeyState": PENDING_DELETION,
        "PendingWindowInDays": days,
    }


def cancel_key_deletion(store: KmsStore, m: Members) -> dict[str, Any]:
    key = store.resolve(_key_ref(m))
    store.require_state(key, "CancelKeyDeletion")
    # AWS: the key comes back Disabled; an imported key that never got material has only PendingImport.
    key.state = DISABLED if key.has_material else PENDING_IMPORT
    key.deletion_date = None
    key.pending_window_days = None
    return {"KeyId": key.arn}


# -- aliases ----------------------------------------------------------------------------------


def _alias_name(m: Members) -> str:
    name = m.required_string("AliasName", max_len=256, pattern=_ALIAS_NAME)
    if not name.startswith("alias/") or name == "alias/":
        raise FakeError(400, "InvalidAliasNameException", "Alias must begin with 'alias/' followed by a name.")
    return name


def create_alias(store: KmsStore, m: Members) -> None:
    name = _alias_name(m)
    key = store.resolve(_key_ref(m, "TargetKeyId"))
    if name.startswith("alias/aws/"):
        raise FakeError(400, "InvalidAliasNameException", "Alias names beginning with 'alias/aws/' are reserved.")
    if name in store.aliases:
        raise FakeError(400, "AlreadyExistsException", f"An alias with the name {store.alias_arn(name)} already exists")
    store.require_state(key, "CreateAlias")
    now = store.clock.now()
    store.aliases[name] = KmsAlias(name, store.alias_arn(name), key.key_id, now, now, store.next_seq())


def delete_alias(store: KmsStore, m: Members) -> None:
    name = _alias_name(m)
    store.sweep()
    if name not in store.aliases:
        raise FakeError(400, "NotFoundException", f"Alias {store.alias_arn(name)} is not found.")
    del store.aliases[name]


def list_aliases(store: KmsStore, m: Members) -> dict[str, Any]:
    ref = m.string("KeyId", max_len=2048)
    store.sweep()
    aliases = sorted(store.aliases.values(), key=lambda a: a.seq)
    if ref is not None:
        key_id = store.resolve(ref).key_id
        aliases = [a for a in aliases if a.target_key_id == key_id]
    page, extra = _page(aliases, m, "aliases", lambda a: a.seq)
    return {"Aliases": [store.alias_entry(a) for a in page], **extra}


# -- tags -------------------------------------------------------------------------------------


def tag_resource(store: KmsStore, m: Members) -> None:
    key = store.resolve(_key_ref(m))
    tags = m.tags("Tags", required=True)
    store.require_state(key, "TagResource")
    merged = {**key.tags, **dict(tags)}
    if len(merged) > MAX_TAGS_PER_KEY:
        raise FakeError(400, "LimitExceededException", f"A KMS key can have at most {MAX_TAGS_PER_KEY} tags.")
    key.tags = merged


def untag_resource(store: KmsStore, m: Members) -> None:
    key = store.resolve(_key_ref(m))
    names = m.string_list("TagKeys", required=True)
    store.require_state(key, "UntagResource")
    for name in names:
        key.tags.pop(name, None)


def list_resource_tags(store: KmsStore, m: Members) -> dict[str, Any]:
    key = store.resolve(_key_ref(m))
    indexed = list(enumerate(key.tags.items()))
    page, extra = _page(indexed, m, "tags", lambda item: item[0], default=50, most=50)
    return {"Tags": [{"TagKey": k, "TagValue": v} for _, (k, v) in page], **extra}


# -- cryptography -----------------------------------------------------------------------------


def _aad(key_id: str, context: dict[str, str]) -> bytes:
    return key_id.encode() + b"\x00" + json.dumps(context, sort_keys=True, separators=(",", ":")).encode()


def _crypto_checks(store: KmsStore, key: KmsKey, operation: str, m: Members) -> None:
    store.require_state(key, operation)
    algorithm = m.enum("EncryptionAlgorithm", ENCRYPTION_ALGORITHMS, default="SYMMETRIC_DEFAULT")
    if key.key_usage != "ENCRYPT_DECRYPT" or algorithm != "SYMMETRIC_DEFAULT":
        raise FakeError(400, "InvalidKeyUsageException", f"{key.arn} key usage or algorithm is not valid here.")
    if key.material is None:
        raise FakeError(400, "UnsupportedOperationException", "The fake encrypts only with SYMMETRIC_DEFAULT keys.")
    if m.boolean("DryRun"):
        raise FakeError(400, "DryRunOperationException", "The request would have succeeded.")


def encrypt(store: KmsStore, m: Members) -> dict[str, Any]:
    ref = _key_ref(m)
    plaintext = m.blob("Plaintext", required=True, max_len=4096)
    context = m.string_map("EncryptionContext")
    m.string_list("GrantTokens", max_items=10)
    key = store.resolve(ref, allow_alias=True)
    _crypto_checks(store, key, "Encrypt", m)
    assert key.material is not None and plaintext is not None
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(key.material).encrypt(nonce, plaintext, _aad(key.key_id, context))
    key_id = key.key_id.encode()
    index = (len(key.materials) - 1).to_bytes(2, "big")  # the current material; Decrypt finds it by index
    blob = bytes([_BLOB_VERSION, len(key_id)]) + key_id + index + nonce + sealed
    return {
        "CiphertextBlob": base64.b64encode(blob).decode(),
        "KeyId": key.arn,
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }


def _invalid_ciphertext() -> FakeError:
    return FakeError(400, "InvalidCiphertextException", "The ciphertext is invalid or was not made by this service.")


def _split_blob(blob: bytes) -> tuple[str, int, bytes, bytes]:
    """(key id, key material index, nonce, sealed bytes) of a ciphertext blob."""
    if len(blob) < 2 or blob[0] != _BLOB_VERSION:
        raise _invalid_ciphertext()
    end = 2 + blob[1]
    index = int.from_bytes(blob[end : end + 2], "big")
    body = blob[end + 2 :]
    if len(body) <= _NONCE_BYTES + 16:
        raise _invalid_ciphertext()
    key_id = blob[2:end].decode("latin-1")
    if not is_key_id(key_id):
        raise _invalid_ciphertext()
    return key_id, index, body[:_NONCE_BYTES], body[_NONCE_BYTES:]


def decrypt(store: KmsStore, m: Members) -> dict[str, Any]:
    blob = m.blob("CiphertextBlob", required=True, max_len=6144)
    context = m.string_map("EncryptionContext")
    ref = m.string("KeyId", max_len=2048)
    m.string_list("GrantTokens", max_items=10)
    assert blob is not None
    key_id, index, nonce, sealed = _split_blob(blob)
    key = store.resolve(key_id)
    if ref is not None and store.resolve(ref, allow_alias=True).key_id != key.key_id:
        raise FakeError(400, "IncorrectKeyException", "The key ID in the request does not identify the key used.")
    _crypto_checks(store, key, "Decrypt", m)
    if index >= len(key.materials):
        raise _invalid_ciphertext()
    try:
        plaintext = AESGCM(key.materials[index].material).decrypt(nonce, sealed, _aad(key.key_id, context))
    except InvalidTag as exc:
        raise _invalid_ciphertext() from exc
    return {
        "KeyId": key.arn,
        "Plaintext": base64.b64encode(plaintext).decode(),
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }


# -- rotation ---------------------------------------------------------------------------------

MIN_ROTATION_DAYS, MAX_ROTATION_DAYS, DEFAULT_ROTATION_DAYS = 90, 2560, 365
INCLUDE_KEY_MATERIAL = frozenset({"ALL_KEY_MATERIAL", "ROTATIONS_ONLY"})


def _rotatable(store: KmsStore, m: Members, operation: str) -> KmsKey:
    """The key (id or ARN) of a rotation operation, in a state and of a kind that allows it."""
    key = store.resolve(_key_ref(m))
    store.require_state(key, operation)
    if not key.rotatable:
        raise FakeError(
            400,
            "UnsupportedOperationException",
            f"{key.arn} key rotation is supported only on symmetric encryption keys with key material made by KMS.",
        )
    return key


def rotate_key_on_demand(store: KmsStore, m: Members) -> dict[str, Any]:
    """A new key material: KMS starts the rotation and completes it shortly after; the fake completes it
    within the request, or after ``KmsStore.on_demand_duration`` on its clock."""
    key = _rotatable(store, m, "RotateKeyOnDemand")
    now = store.clock.now()
    if key.next_rotation is not None and key.next_rotation - now <= ROTATION_CONFLICT_WINDOW:
        raise FakeError(
            400,
            "ConflictException",
            f"An automatic rotation of {key.arn} is in progress or scheduled to begin within the next 20 minutes.",
        )
    if key.on_demand_started is not None:  # the fake's choice: AWS documents no answer for this case
        raise FakeError(400, "ConflictException", f"An on-demand rotation of {key.arn} is in progress.")
    if key.on_demand_rotations >= store.max_on_demand_rotations:
        raise FakeError(
            400,
            "LimitExceededException",
            f"{key.arn} has reached the maximum of {store.max_on_demand_rotations} on-demand rotations.",
        )
    store.start_on_demand(key)
    return {"KeyId": key.key_id}


def list_key_rotations(store: KmsStore, m: Members) -> dict[str, Any]:
    include = m.enum("IncludeKeyMaterial", INCLUDE_KEY_MATERIAL, default="ROTATIONS_ONLY") or "ROTATIONS_ONLY"
    key = _rotatable(store, m, "ListKeyRotations")
    indexed = list(enumerate(key.materials))
    if include == "ROTATIONS_ONLY":
        indexed = indexed[1:]
    page, extra = _page(indexed, m, "rotations", lambda item: item[0])
    current = len(key.materials) - 1
    entries = []
    for index, material in page:
        entry: dict[str, Any] = {
            "KeyId": key.key_id,
            "KeyMaterialId": material.material_id,
            "KeyMaterialState": "CURRENT" if index == current else "NON_CURRENT",
            "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE",
        }
        if material.rotation_type is not None:
            entry["RotationDate"] = material.created.timestamp()
            entry["RotationType"] = material.rotation_type
        entries.append(entry)
    return {"Rotations": entries, **extra}


def get_key_rotation_status(store: KmsStore, m: Members) -> dict[str, Any]:
    key = _rotatable(store, m, "GetKeyRotationStatus")
    enabled = key.rotation_period_days is not None and key.state != PENDING_DELETION
    doc: dict[str, Any] = {"KeyRotationEnabled": enabled, "KeyId": key.arn}
    if enabled and key.next_rotation is not None:
        doc["RotationPeriodInDays"] = key.rotation_period_days
        doc["NextRotationDate"] = key.next_rotation.timestamp()
    if key.on_demand_started is not None:
        doc["OnDemandRotationStartDate"] = key.on_demand_started.timestamp()
    return doc


def enable_key_rotation(store: KmsStore, m: Members) -> None:
    period = m.integer("RotationPeriodInDays", minimum=MIN_ROTATION_DAYS, maximum=MAX_ROTATION_DAYS)
    key = _rotatable(store, m, "EnableKeyRotation")
    store.set_rotation(key, DEFAULT_ROTATION_DAYS if period is None else period)


def disable_key_rotation(store: KmsStore, m: Members) -> None:
    key = _rotatable(store, m, "DisableKeyRotation")
    store.set_rotation(key, None)


OPERATIONS: dict[str, Operation] = {
    "CreateKey": create_key,
    "DescribeKey": describe_key,
    "ListKeys": list_keys,
    "EnableKey": _set_state("EnableKey", ENABLED),
    "DisableKey": _set_state("DisableKey", DISABLED),
    "ScheduleKeyDeletion": schedule_key_deletion,
    "CancelKeyDeletion": cancel_key_deletion,
    "CreateAlias": create_alias,
    "DeleteAlias": delete_alias,
    "ListAliases": list_aliases,
    "TagResource": tag_resource,
    "UntagResource": untag_resource,
    "ListResourceTags": list_resource_tags,
    "Encrypt": encrypt,
    "Decrypt": decrypt,
    "RotateKeyOnDemand": rotate_key_on_demand,
    "ListKeyRotations": list_key_rotations,
    "GetKeyRotationStatus": get_key_rotation_status,
    "EnableKeyRotation": enable_key_rotation,
    "DisableKeyRotation": disable_key_rotation,
}
