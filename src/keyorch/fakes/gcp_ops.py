"""The Cloud KMS v1 operations the fake serves, over its in-memory key rings.

One method per RPC (``handlers()`` maps Google's method names to them); each takes a bound
:class:`~keyorch.fakes.gcp_request.Call` and returns the response message as JSON.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from keyorch.fakes.clock import FakeClock
from keyorch.fakes.gcp_model import (
    ID_PATTERN,
    MAX_CRYPTO_BYTES,
    MAX_DESTROY_SCHEDULED,
    MIN_DESTROY_SCHEDULED,
    CryptoKey,
    GoogleError,
    KeyRing,
    Version,
    check_labels,
    crc32c,
    decode_bytes,
    decrypt,
    encode_bytes,
    encrypt,
    enum_out,
    invalid,
    not_found,
    parse_duration,
    parse_enum,
    precondition,
    restore,
    schedule_destroy,
    set_version_state,
)
from keyorch.fakes.gcp_request import Call, camel, message, paginate

KEY_RING_FIELDS = ("name", "createTime")
CRYPTO_KEY_FIELDS = (
    "name", "primary", "purpose", "createTime", "nextRotationTime", "rotationPeriod", "versionTemplate", "labels",
    "importOnly", "destroyScheduledDuration", "cryptoKeyBackend", "keyAccessJustificationsPolicy",
)  # fmt: skip
VERSION_FIELDS = (
    "name", "state", "protectionLevel", "algorithm", "attestation", "createTime", "generateTime", "destroyTime",
    "destroyEventTime", "importJob", "importTime", "importFailureReason", "generationFailureReason",
    "externalDestructionFailureReason", "externalProtectionLevelOptions", "reimportEligible",
)  # fmt: skip
VIEWS = {"CRYPTO_KEY_VERSION_VIEW_UNSPECIFIED", "FULL", "0", "1"}
MIN_ROTATION_SECONDS = 24 * 3600
MAX_ROTATION_SECONDS = 876_000 * 3600
OpHandler = Callable[[Call], Awaitable[dict[str, Any]]]


def _split(name: str, collection: str) -> tuple[str, str]:
    parent, _, child = name.rpartition(f"/{collection}/")
    return parent, child


class KmsService:
    """Key rings, keys and versions of one fake, and the operations on them."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.rings: dict[str, KeyRing] = {}

    def handlers(self) -> dict[str, OpHandler]:
        return {
            "CreateKeyRing": self._create_key_ring,
            "ListKeyRings": self._list_key_rings,
            "GetKeyRing": self._get_key_ring,
            "CreateCryptoKey": self._create_crypto_key,
            "ListCryptoKeys": self._list_crypto_keys,
            "GetCryptoKey": self._get_crypto_key,
            "UpdateCryptoKey": self._update_crypto_key,
            "UpdateCryptoKeyPrimaryVersion": self._update_primary,
            "Encrypt": self._encrypt,
            "Decrypt": self._decrypt,
            "CreateCryptoKeyVersion": self._create_version,
            "ListCryptoKeyVersions": self._list_versions,
            "GetCryptoKeyVersion": self._get_version,
            "UpdateCryptoKeyVersion": self._update_version,
            "DestroyCryptoKeyVersion": self._destroy_version,
            "RestoreCryptoKeyVersion": self._restore_version,
        }

    # -- lookups ------------------------------------------------------------------------------

    def _ring(self, name: str) -> KeyRing:
        ring = self.rings.get(name)
        if ring is None:
            raise not_found("KeyRing", name)
        return ring

    def _key(self, name: str) -> CryptoKey:
        ring_name, key_id = _split(name, "cryptoKeys")
        key = self._ring(ring_name).keys.get(key_id)
        if key is None:
            raise not_found("CryptoKey", name)
        return key.settle(self.clock.now())

    def _version(self, name: str) -> tuple[CryptoKey, Version]:
        key_name, version_id = _split(name, "cryptoKeyVersions")
        key = self._key(key_name)
        return key, key.version(version_id)

    # -- key rings ----------------------------------------------------------------------------

    async def _create_key_ring(self, call: Call) -> dict[str, Any]:
        ring_id = call.param("keyRingId")
        if not ring_id or ID_PATTERN.fullmatch(ring_id) is None:
            raise invalid("key_ring_id must match [a-zA-Z0-9_-]{1,63}.", "key_ring_id")
        await call.body("key_ring", KEY_RING_FIELDS)
        name = f"{call.groups['parent']}/keyRings/{ring_id}"
        if name in self.rings:
            raise GoogleError("ALREADY_EXISTS", f"KeyRing {name} already exists.")
        ring = self.rings[name] = KeyRing(name, self.clock.now())
        return ring.to_json()

    async def _list_key_rings(self, call: Call) -> dict[str, Any]:
        prefix = call.groups["parent"] + "/keyRings/"
        rings = [ring for name, ring in self.rings.items() if name.startswith(prefix)]
        return paginate(call, rings, lambda ring, _: ring.to_json(), "keyRings")

    async def _get_key_ring(self, call: Call) -> dict[str, Any]:
        return self._ring(call.groups["name"]).to_json()

    # -- crypto keys --------------------------------------------------------------------------

    async def _create_crypto_key(self, call: Call) -> dict[str, Any]:
        ring = self._ring(call.groups["parent"])
        key_id = call.param("cryptoKeyId")
        if not key_id or ID_PATTERN.fullmatch(key_id) is None:
            raise invalid("crypto_key_id must match [a-zA-Z0-9_-]{1,63}.", "crypto_key_id")
        skip = call.bool_param("skipInitialVersionCreation", "skip_initial_version_creation")
        doc = await call.body("crypto_key", CRYPTO_KEY_FIELDS)
        name = f"{ring.name}/cryptoKeys/{key_id}"
        if key_id in ring.keys:
            raise GoogleError("ALREADY_EXISTS", f"CryptoKey {name} already exists.")
        purpose = parse_enum("purpose", doc.get("purpose", 0), "crypto_key.purpose")
        if purpose != "ENCRYPT_DECRYPT":
            raise invalid(
                f"crypto_key.purpose {purpose} is not supported (this fake serves ENCRYPT_DECRYPT).",
                "crypto_key.purpose",
            )
        template = message(
            doc.get("versionTemplate", {}), "crypto_key.version_template", ("protectionLevel", "algorithm")
        )
        level = parse_enum(
            "protectionLevel", template.get("protectionLevel", 0), "crypto_key.version_template.protection_level"
        )
        level = "SOFTWARE" if level == "PROTECTION_LEVEL_UNSPECIFIED" else level
        if level not in ("SOFTWARE", "HSM"):
            raise invalid(
                f"Protection level {level} is not supported by this fake.",
                "crypto_key.version_template.protection_level",
            )
        algorithm = parse_enum("algorithm", template.get("algorithm", 0), "crypto_key.version_template.algorithm")
        if algorithm not in ("CRYPTO_KEY_VERSION_ALGORITHM_UNSPECIFIED", "GOOGLE_SYMMETRIC_ENCRYPTION"):
            raise invalid(
                f"Algorithm {algorithm} is not compatible with purpose ENCRYPT_DECRYPT.",
                "crypto_key.version_template.algorithm",
            )
        key = CryptoKey(name, purpose, self.clock.now(), level, "GOOGLE_SYMMETRIC_ENCRYPTION")
        if "destroyScheduledDuration" in doc:
            window = parse_duration(doc["destroyScheduledDuration"], "crypto_key.destroy_scheduled_duration")
            if not MIN_DESTROY_SCHEDULED <= window <= MAX_DESTROY_SCHEDULED:
                raise invalid(
                    "destroy_scheduled_duration must be between 24 hours and 120 days.",
                    "crypto_key.destroy_scheduled_duration",
                )
            key.destroy_scheduled = window
        self._apply_key_settings(key, doc, set(doc) & {"labels", "rotationPeriod", "nextRotationTime"})
        if not isinstance(doc.get("importOnly", False), bool):
            raise invalid("Invalid value at 'crypto_key.import_only' (TYPE_BOOL).", "crypto_key.import_only")
        key.import_only = doc.get("importOnly", False)
        if key.import_only and not skip:
            raise invalid(
                "import_only CryptoKeys must set skip_initial_version_creation.", "skip_initial_version_creation"
            )
        if not skip:
            key.primary = key.add_version(key.create_time).number
        ring.keys[key_id] = key
        return key.to_json(call.ints)

    def _apply_key_settings(self, key: CryptoKey, doc: dict[str, Any], fields: set[str]) -> None:
        """Labels and rotation schedule, as create and PATCH (updateMask) set them."""
        if "labels" in fields:
            key.labels = check_labels(doc.get("labels", {}), "crypto_key.labels")
        if "rotationPeriod" in fields:
            raw = doc.get("rotationPeriod")
            period = parse_duration(raw, "crypto_key.rotation_period") if raw else None
            if period is not None and not MIN_ROTATION_SECONDS <= period.total_seconds() <= MAX_ROTATION_SECONDS:
                raise invalid(
                    "rotation_period must be between 24 hours and 876000 hours.", "crypto_key.rotation_period"
                )
            rotation_period = period
        else:
            rotation_period = key.rotation_period
        if "nextRotationTime" in fields:
            raw = doc.get("nextRotationTime")
            try:
                when = datetime.fromisoformat(str(raw)) if raw else None
            except ValueError as exc:
                raise invalid(
                    f"Invalid value at 'crypto_key.next_rotation_time': {str(raw)[:60]!r}",
                    "crypto_key.next_rotation_time",
                ) from exc
            if when is not None and when.tzinfo is None:
                raise invalid("next_rotation_time must carry a time zone.", "crypto_key.next_rotation_time")
            next_rotation = when.astimezone(UTC) if when is not None else None
        else:
            next_rotation = key.next_rotation_time
        if (rotation_period is not None or next_rotation is not None) and key.purpose != "ENCRYPT_DECRYPT":
            raise invalid(
                "Only CryptoKeys with purpose ENCRYPT_DECRYPT support automatic rotation; omit rotation_period and "
                "next_rotation_time.",
                "crypto_key.rotation_period",
            )
        if rotation_period is not None and next_rotation is None:
            raise invalid(
                "next_rotation_time must be set when rotation_period is set.", "crypto_key.next_rotation_time"
            )
        key.rotation_period, key.next_rotation_time = rotation_period, next_rotation

    async def _list_crypto_keys(self, call: Call) -> dict[str, Any]:
        ring = self._ring(call.groups["parent"])
        self._check_view(call, "versionView")
        now = self.clock.now()
        keys = [key.settle(now) for key in ring.keys.values()]
        return paginate(call, keys, CryptoKey.to_json, "cryptoKeys")

    async def _get_crypto_key(self, call: Call) -> dict[str, Any]:
        return self._key(call.groups["name"]).to_json(call.ints)

    async def _update_crypto_key(self, call: Call) -> dict[str, Any]:
        key = self._key(call.groups["name"])
        fields = self._update_mask(call, {"labels", "rotationPeriod", "nextRotationTime"})
        doc = await call.body("crypto_key", CRYPTO_KEY_FIELDS)
        self._apply_key_settings(key, doc, fields)
        return key.settle(self.clock.now()).to_json(call.ints)

    async def _update_primary(self, call: Call) -> dict[str, Any]:
        key = self._key(call.groups["name"])
        doc = await call.body("update_crypto_key_primary_version_request", ("name", "cryptoKeyVersionId"))
        version_id = doc.get("cryptoKeyVersionId")
        if not isinstance(version_id, str) or not version_id:
            raise invalid("crypto_key_version_id is required.", "crypto_key_version_id")
        version = key.version(version_id)
        if version.state != "ENABLED":
            raise precondition(version.name, version.state)
        key.primary = version.number
        return key.to_json(call.ints)

    async def _encrypt(self, call: Call) -> dict[str, Any]:
        name = call.groups["name"]
        fields = (
            "name",
            "plaintext",
            "additionalAuthenticatedData",
            "plaintextCrc32c",
            "additionalAuthenticatedDataCrc32c",
        )
        doc = await call.body("encrypt_request", fields)
        if "/cryptoKeyVersions/" in name:
            key, version = self._version(name)
        else:
            key = self._key(name)
            if key.primary is None:
                raise GoogleError(
                    "FAILED_PRECONDITION", f"The request cannot be fulfilled. {name} has no primary version."
                )
            version = key.versions[key.primary - 1]
        plaintext = self._crypto_bytes(doc, "plaintext", required=True)
        aad = self._crypto_bytes(doc, "additionalAuthenticatedData", required=False)
        ciphertext = encrypt(version, plaintext, aad)
        response: dict[str, Any] = {"name": version.name, "ciphertext": encode_bytes(ciphertext)}
        response["ciphertextCrc32c"] = str(crc32c(ciphertext))
        if self._crc_matches(doc, "plaintextCrc32c", plaintext):
            response["verifiedPlaintextCrc32c"] = True
        if self._crc_matches(doc, "additionalAuthenticatedDataCrc32c", aad):
            response["verifiedAdditionalAuthenticatedDataCrc32c"] = True
        response["protectionLevel"] = enum_out("protectionLevel", key.protection_level, call.ints)
        return response

    async def _decrypt(self, call: Call) -> dict[str, Any]:
        key = self._key(call.groups["name"])
        fields = (
            "name",
            "ciphertext",
            "additionalAuthenticatedData",
            "ciphertextCrc32c",
            "additionalAuthenticatedDataCrc32c",
        )
        doc = await call.body("decrypt_request", fields)
        ciphertext = self._crypto_bytes(doc, "ciphertext", required=True, limit=2 * MAX_CRYPTO_BYTES)
        aad = self._crypto_bytes(doc, "additionalAuthenticatedData", required=False)
        self._crc_matches(doc, "ciphertextCrc32c", ciphertext)
        self._crc_matches(doc, "additionalAuthenticatedDataCrc32c", aad)
        version, plaintext = decrypt(key, ciphertext, aad)
        response: dict[str, Any] = {"plaintext": encode_bytes(plaintext), "plaintextCrc32c": str(crc32c(plaintext))}
        if version.number == key.primary:
            response["usedPrimary"] = True
        response["protectionLevel"] = enum_out("protectionLevel", key.protection_level, call.ints)
        return response

    @staticmethod
    def _crypto_bytes(doc: dict[str, Any], field: str, *, required: bool, limit: int = MAX_CRYPTO_BYTES) -> bytes:
        data = decode_bytes(doc.get(field, ""), field)
        if required and not data:
            raise invalid(f"{field} is required.", field)
        if len(data) > limit:
            raise invalid(f"{field} exceeds the limit of {limit} bytes.", field)
        return data

    @staticmethod
    def _crc_matches(doc: dict[str, Any], field: str, data: bytes) -> bool:
        """Check an optional ``*Crc32c`` (int64, as a JSON string or number) the caller sent."""
        raw = doc.get(field)
        if raw is None:
            return False
        if isinstance(raw, bool) or not isinstance(raw, int | str) or not (str(raw).isascii() and str(raw).isdigit()):
            raise invalid(f"Invalid value at '{field}' (TYPE_INT64), {str(raw)[:40]!r}", field)
        if int(raw) != crc32c(data):
            raise invalid(f"The checksum in field {field} did not match the data.", field)
        return True

    # -- versions -----------------------------------------------------------------------------

    async def _create_version(self, call: Call) -> dict[str, Any]:
        key = self._key(call.groups["parent"])
        await call.body("crypto_key_version", VERSION_FIELDS)
        if key.import_only:
            raise GoogleError("FAILED_PRECONDITION", f"CryptoKey {key.name} is import-only; versions must be imported.")
        return key.add_version(self.clock.now()).to_json(call.ints)

    async def _list_versions(self, call: Call) -> dict[str, Any]:
        key = self._key(call.groups["parent"])
        self._check_view(call, "view")
        return paginate(call, key.versions, Version.to_json, "cryptoKeyVersions")

    async def _get_version(self, call: Call) -> dict[str, Any]:
        return self._version(call.groups["name"])[1].to_json(call.ints)

    async def _update_version(self, call: Call) -> dict[str, Any]:
        _, version = self._version(call.groups["name"])
        self._update_mask(call, {"state"})
        doc = await call.body("crypto_key_version", VERSION_FIELDS)
        if "state" not in doc:
            raise invalid("crypto_key_version.state is required when update_mask is state.", "crypto_key_version.state")
        set_version_state(version, parse_enum("state", doc["state"], "crypto_key_version.state"))
        return version.to_json(call.ints)

    async def _destroy_version(self, call: Call) -> dict[str, Any]:
        key, version = self._version(call.groups["name"])
        await call.body("destroy_crypto_key_version_request", ("name",))
        schedule_destroy(version, self.clock.now(), key.destroy_scheduled)
        return version.to_json(call.ints)

    async def _restore_version(self, call: Call) -> dict[str, Any]:
        _, version = self._version(call.groups["name"])
        await call.body("restore_crypto_key_version_request", ("name",))
        restore(version)
        return version.to_json(call.ints)

    # -- small checks -------------------------------------------------------------------------

    @staticmethod
    def _update_mask(call: Call, allowed: set[str]) -> set[str]:
        raw = call.param("updateMask") or ""
        fields = {camel(part.strip()) for part in raw.split(",") if part.strip()}
        if not fields:
            raise invalid("update_mask is required.", "update_mask")
        if not fields <= allowed:
            bad = ", ".join(sorted(fields - allowed))[:200]
            raise invalid(f"update_mask may only name {', '.join(sorted(allowed))}; got {bad}.", "update_mask")
        return fields

    @staticmethod
    def _check_view(call: Call, param: str) -> None:
        view = call.param(param)
        if view is not None and view not in VIEWS:
            raise invalid(f"Invalid value at '{param}', \"{view[:60]}\"", param)
