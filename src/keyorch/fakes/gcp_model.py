"""Google Cloud KMS resources held by the fake: key rings, crypto keys and versions.

Everything here follows ``google/cloud/kms/v1/resources.proto`` and the proto3 JSON mapping
(lowerCamelCase names, enums as names or, with ``$alt=json;enum-encoding=int``, as integers,
RFC 3339 timestamps, ``"<seconds>s"`` durations, default values omitted).
Version states change only through the functions at the bottom, which raise
:class:`GoogleError` with Google's canonical status when a transition is not allowed.
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keyorch.fakes.base import FakeError

VERSION_STATES: dict[str, int] = {
    "CRYPTO_KEY_VERSION_STATE_UNSPECIFIED": 0,
    "ENABLED": 1,
    "DISABLED": 2,
    "DESTROYED": 3,
    "DESTROY_SCHEDULED": 4,
    "PENDING_GENERATION": 5,
    "PENDING_IMPORT": 6,
    "IMPORT_FAILED": 7,
    "GENERATION_FAILED": 8,
    "PENDING_EXTERNAL_DESTRUCTION": 9,
    "EXTERNAL_DESTRUCTION_FAILED": 10,
}
PURPOSES: dict[str, int] = {
    "CRYPTO_KEY_PURPOSE_UNSPECIFIED": 0,
    "ENCRYPT_DECRYPT": 1,
    "ASYMMETRIC_SIGN": 5,
    "ASYMMETRIC_DECRYPT": 6,
    "RAW_ENCRYPT_DECRYPT": 7,
    "MAC": 9,
    "KEY_ENCAPSULATION": 10,
    "AES_WRAPPING": 11,
}
PROTECTION_LEVELS: dict[str, int] = {
    "PROTECTION_LEVEL_UNSPECIFIED": 0,
    "SOFTWARE": 1,
    "HSM": 2,
    "EXTERNAL": 3,
    "EXTERNAL_VPC": 4,
    "HSM_SINGLE_TENANT": 5,
}
ALGORITHMS: dict[str, int] = {
    "CRYPTO_KEY_VERSION_ALGORITHM_UNSPECIFIED": 0,
    "GOOGLE_SYMMETRIC_ENCRYPTION": 1,
    "RSA_SIGN_PSS_2048_SHA256": 2,
    "RSA_SIGN_PKCS1_2048_SHA256": 5,
    "RSA_DECRYPT_OAEP_2048_SHA256": 8,
    "EC_SIGN_P256_SHA256": 12,
    "EC_SIGN_P384_SHA384": 13,
    "EXTERNAL_SYMMETRIC_ENCRYPTION": 18,
    "AES_256_GCM": 19,
    "HMAC_SHA256": 32,
    "AES_128_GCM": 41,
}
#: enum-typed JSON fields -> (values, fully-qualified proto enum for error messages)
ENUM_FIELDS: dict[str, tuple[dict[str, int], str]] = {
    "state": (VERSION_STATES, "google.cloud.kms.v1.CryptoKeyVersion.CryptoKeyVersionState"),
    "purpose": (PURPOSES, "google.cloud.kms.v1.CryptoKey.CryptoKeyPurpose"),
    "protectionLevel": (PROTECTION_LEVELS, "google.cloud.kms.v1.ProtectionLevel"),
    "algorithm": (ALGORITHMS, "google.cloud.kms.v1.CryptoKeyVersion.CryptoKeyVersionAlgorithm"),
}

DEFAULT_DESTROY_SCHEDULED = timedelta(days=30)
MIN_DESTROY_SCHEDULED = timedelta(hours=24)
MAX_DESTROY_SCHEDULED = timedelta(days=120)
MAX_CRYPTO_BYTES = 64 * 1024
#: Automatic rotations one key catches up on in one read (a clock moved centuries ahead stops there).
MAX_CATCH_UP_ROTATIONS = 1000
ID_PATTERN = re.compile(r"[a-zA-Z0-9_-]{1,63}")
_DURATION = re.compile(r"(\d{1,12})(?:\.(\d{1,9}))?s")
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
_B64 = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")


class GoogleError(FakeError):
    """An error in Google's form: canonical status name, HTTP code and ``details``."""

    HTTP = {
        "INVALID_ARGUMENT": 400,
        "FAILED_PRECONDITION": 400,
        "OUT_OF_RANGE": 400,
        "UNAUTHENTICATED": 401,
        "PERMISSION_DENIED": 403,
        "NOT_FOUND": 404,
        "ALREADY_EXISTS": 409,
        "ABORTED": 409,
        "RESOURCE_EXHAUSTED": 429,
        "CANCELLED": 499,
        "UNKNOWN": 500,
        "INTERNAL": 500,
        "DATA_LOSS": 500,
        "UNIMPLEMENTED": 501,
        "UNAVAILABLE": 503,
        "DEADLINE_EXCEEDED": 504,
    }

    def __init__(
        self,
        status: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(self.HTTP[status], status, message, headers)
        self.details = details or []


def invalid(message: str, field_path: str | None = None) -> GoogleError:
    details = []
    if field_path is not None:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": field_path, "description": message}],
            }
        )
    return GoogleError("INVALID_ARGUMENT", message, details)


def precondition(resource: str, state: str) -> GoogleError:
    message = (
        f"The request cannot be fulfilled. Resource {resource} has value {state} in field crypto_key_version.state."
    )
    details = [
        {
            "@type": "type.googleapis.com/google.rpc.PreconditionFailure",
            "violations": [{"type": "STATE", "subject": resource, "description": message}],
        }
    ]
    return GoogleError("FAILED_PRECONDITION", message, details)


def not_found(kind: str, name: str) -> GoogleError:
    return GoogleError(
        "NOT_FOUND",
        f"{kind} {name} not found.",
        [{"@type": "type.googleapis.com/google.rpc.ResourceInfo", "resourceType": kind, "resourceName": name}],
    )


# -- proto3 JSON scalars -----------------------------------------------------------------------


def rfc3339(when: datetime) -> str:
    """Timestamp as protobuf prints it: 0, 3 or 6 fractional digits, ``Z``."""
    base = when.strftime("%Y-%m-%dT%H:%M:%S")
    micros = when.microsecond
    if micros == 0:
        return base + "Z"
    if micros % 1000 == 0:
        return f"{base}.{micros // 1000:03d}Z"
    return f"{base}.{micros:06d}Z"


def duration_text(value: timedelta) -> str:
    seconds = value.total_seconds()
    return f"{int(seconds)}s" if seconds == int(seconds) else f"{seconds:.6f}".rstrip("0") + "s"


def parse_duration(raw: Any, field_path: str) -> timedelta:
    match = _DURATION.fullmatch(raw) if isinstance(raw, str) else None
    if match is None:
        raise invalid(
            f"Invalid value at '{field_path}' (type.googleapis.com/google.protobuf.Duration), {raw!r}", field_path
        )
    fraction = (match.group(2) or "0").ljust(9, "0")
    return timedelta(seconds=int(match.group(1)), microseconds=int(fraction) // 1000)


def parse_enum(name: str, raw: Any, field_path: str) -> str:
    """An enum given as its name or (proto3 JSON allows both) as its integer."""
    values, proto = ENUM_FIELDS[name]
    if isinstance(raw, str) and raw in values:
        return raw
    if isinstance(raw, int) and not isinstance(raw, bool):
        for label, number in values.items():
            if number == raw:
                return label
    shown = f'"{raw}"' if isinstance(raw, str) else repr(raw)[:80]
    raise invalid(f"Invalid value at '{field_path}' (type.googleapis.com/{proto}), {shown[:80]}", field_path)


def enum_out(name: str, value: str, ints: bool) -> str | int:
    return ENUM_FIELDS[name][0][value] if ints else value


def decode_bytes(raw: Any, field_path: str) -> bytes:
    """proto3 JSON ``bytes``: standard or URL-safe base64, padding optional."""
    if not isinstance(raw, str) or _B64.fullmatch(raw) is None or len(raw) % 4 == 1:
        raise invalid(f"Invalid value at '{field_path}' (TYPE_BYTES), {str(raw)[:80]!r}", field_path)
    text = raw.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        if len(text) % 4 == 1:
            raise ValueError("one character past a multiple of four")
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError:  # binascii.Error included: e.g. "0=" is no base64 at all
        raise invalid(f"Invalid value at '{field_path}' (TYPE_BYTES), {raw[:80]!r}", field_path) from None


def encode_bytes(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def check_labels(raw: Any, field_path: str) -> dict[str, str]:
    if not isinstance(raw, dict) or len(raw) > 64:
        raise invalid(f"Invalid value at '{field_path}': expected a map of at most 64 labels.", field_path)
    for key, value in raw.items():
        if _LABEL_KEY.fullmatch(key) is None or not isinstance(value, str) or _LABEL_VALUE.fullmatch(value) is None:
            raise invalid(f"Invalid label {str(key)[:70]!r} in '{field_path}'.", field_path)
    return dict(raw)


def crc32c(data: bytes) -> int:
    """CRC32C (Castagnoli), as Google's ``*Crc32c`` integrity fields use."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


# -- resources ---------------------------------------------------------------------------------


@dataclass
class Version:
    key_name: str
    number: int
    protection_level: str
    algorithm: str
    create_time: datetime
    state: str = "ENABLED"
    material: bytes | None = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    destroy_time: datetime | None = None
    destroy_event_time: datetime | None = None

    @property
    def name(self) -> str:
        return f"{self.key_name}/cryptoKeyVersions/{self.number}"

    def settle(self, now: datetime) -> None:
        """A scheduled destruction completes once its time has come on the fake clock."""
        if self.state == "DESTROY_SCHEDULED" and self.destroy_time is not None and now >= self.destroy_time:
            self.state = "DESTROYED"
            self.destroy_event_time = self.destroy_time
            self.destroy_time = None
            self.material = None

    def to_json(self, ints: bool) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.name,
            "state": enum_out("state", self.state, ints),
            "createTime": rfc3339(self.create_time),
            "protectionLevel": enum_out("protectionLevel", self.protection_level, ints),
            "algorithm": enum_out("algorithm", self.algorithm, ints),
            "generateTime": rfc3339(self.create_time),
        }
        if self.destroy_time is not None:
            doc["destroyTime"] = rfc3339(self.destroy_time)
        if self.destroy_event_time is not None:
            doc["destroyEventTime"] = rfc3339(self.destroy_event_time)
        return doc


@dataclass
class CryptoKey:
    name: str
    purpose: str
    create_time: datetime
    protection_level: str
    algorithm: str
    destroy_scheduled: timedelta = DEFAULT_DESTROY_SCHEDULED
    labels: dict[str, str] = field(default_factory=dict)
    import_only: bool = False
    rotation_period: timedelta | None = None
    next_rotation_time: datetime | None = None
    versions: list[Version] = field(default_factory=list)
    primary: int | None = None

    def settle(self, now: datetime) -> CryptoKey:
        """Apply what the fake clock made due: scheduled destructions, then automatic rotations."""
        for version in self.versions:
            version.settle(now)
        self._rotate_due(now)
        return self

    def _rotate_due(self, now: datetime) -> None:
        """At ``nextRotationTime`` Cloud KMS makes a new version, marks it primary and advances
        ``nextRotationTime`` by ``rotationPeriod`` (ENCRYPT_DECRYPT keys only); each version the clock
        passed is made at its own rotation time."""
        if self.rotation_period is None or self.next_rotation_time is None or self.import_only:
            return
        for _ in range(MAX_CATCH_UP_ROTATIONS):
            if self.next_rotation_time > now:
                return
            self.primary = self.add_version(self.next_rotation_time).number
            self.next_rotation_time += self.rotation_period

    def version(self, version_id: str) -> Version:
        if version_id.isascii() and version_id.isdigit() and 1 <= int(version_id) <= len(self.versions):
            return self.versions[int(version_id) - 1]
        raise not_found("CryptoKeyVersion", f"{self.name}/cryptoKeyVersions/{version_id}")

    def add_version(self, now: datetime) -> Version:
        version = Version(self.name, len(self.versions) + 1, self.protection_level, self.algorithm, now)
        self.versions.append(version)
        return version

    def to_json(self, ints: bool) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name}
        if self.primary is not None:
            doc["primary"] = self.versions[self.primary - 1].to_json(ints)
        doc["purpose"] = enum_out("purpose", self.purpose, ints)
        doc["createTime"] = rfc3339(self.create_time)
        if self.next_rotation_time is not None:
            doc["nextRotationTime"] = rfc3339(self.next_rotation_time)
        if self.rotation_period is not None:
            doc["rotationPeriod"] = duration_text(self.rotation_period)
        doc["versionTemplate"] = {
            "protectionLevel": enum_out("protectionLevel", self.protection_level, ints),
            "algorithm": enum_out("algorithm", self.algorithm, ints),
        }
        if self.labels:
            doc["labels"] = dict(self.labels)
        if self.import_only:
            doc["importOnly"] = True
        doc["destroyScheduledDuration"] = duration_text(self.destroy_scheduled)
        return doc


@dataclass
class KeyRing:
    name: str
    create_time: datetime
    keys: dict[str, CryptoKey] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "createTime": rfc3339(self.create_time)}


# -- version state transitions (docs/providers.md §3.3) ----------------------------------------


def set_version_state(version: Version, target: str) -> None:
    """PATCH ``updateMask=state``: toggles ENABLED <-> DISABLED only (same state is a no-op)."""
    if target not in ("ENABLED", "DISABLED"):
        raise invalid(
            f"Invalid value at 'crypto_key_version.state': {target} cannot be set; use ENABLED or DISABLED.",
            "crypto_key_version.state",
        )
    if version.state not in ("ENABLED", "DISABLED"):
        raise precondition(version.name, version.state)
    version.state = target


def schedule_destroy(version: Version, now: datetime, window: timedelta) -> None:
    if version.state not in ("ENABLED", "DISABLED"):
        raise precondition(version.name, version.state)
    version.state = "DESTROY_SCHEDULED"
    version.destroy_time = now + window


def restore(version: Version) -> None:
    if version.state != "DESTROY_SCHEDULED":
        raise precondition(version.name, version.state)
    version.state = "DISABLED"
    version.destroy_time = None


def require_enabled(version: Version) -> bytes:
    if version.state != "ENABLED" or version.material is None:
        raise precondition(version.name, version.state)
    return version.material


def encrypt(version: Version, plaintext: bytes, aad: bytes) -> bytes:
    """Real AES-256-GCM. The opaque ciphertext carries the version number so decrypt finds it."""
    material = require_enabled(version)
    nonce = secrets.token_bytes(12)
    return version.number.to_bytes(4, "big") + nonce + AESGCM(material).encrypt(nonce, plaintext, aad)


def decrypt(key: CryptoKey, ciphertext: bytes, aad: bytes) -> tuple[Version, bytes]:
    failed = invalid("Decryption failed: verify that 'name' refers to the correct CryptoKey.")
    number = int.from_bytes(ciphertext[:4], "big")
    if len(ciphertext) < 4 + 12 + 16 or not 1 <= number <= len(key.versions):
        raise failed
    version = key.versions[number - 1]
    material = require_enabled(version)
    try:
        return version, AESGCM(material).decrypt(ciphertext[4:16], ciphertext[16:], aad)
    except InvalidTag as exc:
        raise failed from exc
