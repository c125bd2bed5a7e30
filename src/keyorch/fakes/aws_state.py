"""What the AWS KMS fake holds: keys, aliases and the key-state rules of docs/providers.md §1.3.

Every read goes through :meth:`KmsStore.sweep` first, so a key whose ``DeletionDate`` has passed
on the fake clock is gone (``NotFoundException``) the moment anyone looks, together with its
aliases, as AWS deletes them. The state table lives in :data:`ALLOWED_STATES` and
:meth:`KmsStore.require_state` and nowhere else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from keyorch.fakes.base import FakeError
from keyorch.fakes.clock import FakeClock
from keyorch.fakes.deadlines import Deadlines

ENABLED = "Enabled"
DISABLED = "Disabled"
PENDING_IMPORT = "PendingImport"
PENDING_DELETION = "PendingDeletion"

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "111122223333"

_LIFECYCLE = frozenset({ENABLED, DISABLED})
_NOT_PENDING_DELETION = frozenset({ENABLED, DISABLED, PENDING_IMPORT})

#: operation -> key states in which it succeeds (docs/providers.md §1.3, AWS's key-state table)
ALLOWED_STATES: dict[str, frozenset[str]] = {
    "EnableKey": _LIFECYCLE,
    "DisableKey": _LIFECYCLE,
    "ScheduleKeyDeletion": _NOT_PENDING_DELETION,
    "CancelKeyDeletion": frozenset({PENDING_DELETION}),
    "Encrypt": frozenset({ENABLED}),
    "Decrypt": frozenset({ENABLED}),
    "CreateAlias": _NOT_PENDING_DELETION,
    "TagResource": _NOT_PENDING_DELETION,
    "UntagResource": _NOT_PENDING_DELETION,
    # rotation (AWS's key-state table): changes need an enabled key, reads work until deletion
    "RotateKeyOnDemand": frozenset({ENABLED}),
    "EnableKeyRotation": frozenset({ENABLED}),
    "DisableKeyRotation": frozenset({ENABLED}),
    "GetKeyRotationStatus": frozenset({ENABLED, DISABLED, PENDING_DELETION}),
    "ListKeyRotations": frozenset({ENABLED, DISABLED, PENDING_DELETION}),
}

_CRYPTO = frozenset({"Encrypt", "Decrypt"})
#: operations a disabled key refuses with ``DisabledException`` rather than ``KMSInvalidStateException``
_DISABLED_REFUSES = _CRYPTO | {"RotateKeyOnDemand", "EnableKeyRotation", "DisableKeyRotation"}
#: RotateKeyOnDemand's lifetime quota per key (API reference: "a maximum of 25 times per KMS key"; it was
#: 10 until 2025; not adjustable, ``LimitExceededException`` beyond it)
MAX_ON_DEMAND_ROTATIONS = 25
#: ``ConflictException``: an automatic rotation is in progress or due within the next 20 minutes
ROTATION_CONFLICT_WINDOW = timedelta(minutes=20)
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_MRK = re.compile(r"mrk-[0-9a-f]{32}")
_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:([a-z0-9-]+):(\d{12}):key/(.+)$")
_ALIAS_ARN = re.compile(r"^arn:aws[a-z-]*:kms:([a-z0-9-]+):(\d{12}):(alias/.+)$")


@dataclass
class KeyMaterial:
    """One key material of a key: the first one (``rotation_type`` ``None``) or a rotation's."""

    material: bytes
    #: the key's creation date for the first material, the ``RotationDate`` for a rotation's
    created: datetime
    rotation_type: str | None = None

    @property
    def material_id(self) -> str:
        return hashlib.sha256(self.material).hexdigest()


@dataclass
class KmsKey:
    key_id: str
    arn: str
    created: datetime
    seq: int
    description: str
    key_usage: str
    key_spec: str
    origin: str
    state: str
    multi_region: bool
    #: every key material, oldest first; the last one encrypts. Empty: no material the fake can use.
    materials: list[KeyMaterial]
    tags: dict[str, str] = field(default_factory=dict)
    deletion_date: datetime | None = None
    pending_window_days: int | None = None
    #: automatic rotation: its period (``None``: off), next date, and the date the period counts from
    rotation_period_days: int | None = None
    next_rotation: datetime | None = None
    rotation_anchor: datetime | None = None
    on_demand_rotations: int = 0
    #: when the on-demand rotation in progress started (``GetKeyRotationStatus.OnDemandRotationStartDate``)
    on_demand_started: datetime | None = None

    @property
    def material(self) -> bytes | None:
        """The current key material (what Encrypt uses)."""
        return self.materials[-1].material if self.materials else None

    @property
    def has_material(self) -> bool:
        return self.material is not None or self.origin != "EXTERNAL"

    @property
    def rotatable(self) -> bool:
        """Symmetric encryption keys with KMS-made material rotate; the fake makes no others rotatable."""
        return self.key_spec == "SYMMETRIC_DEFAULT" and self.origin == "AWS_KMS" and self.material is not None


@dataclass
class KmsAlias:
    name: str
    arn: str
    target_key_id: str
    created: datetime
    updated: datetime
    seq: int


def encode_marker(kind: str, position: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{position}".encode()).decode()


def decode_marker(kind: str, marker: str | None) -> int:
    """The position a ``Marker`` points at; a marker this fake did not hand out is refused."""
    if marker is None:
        return 0
    try:
        prefix, _, number = base64.urlsafe_b64decode(marker.encode("ascii")).decode().partition(":")
        position = int(number)
    except (binascii.Error, ValueError, UnicodeError) as exc:
        raise FakeError(400, "InvalidMarkerException", "The request contains an invalid marker.") from exc
    if prefix != kind or position < 0:
        raise FakeError(400, "InvalidMarkerException", "The request contains an invalid marker.")
    return position


def is_key_id(text: str) -> bool:
    """A key ID as KMS makes them: a UUID, or ``mrk-`` and 32 hex digits for multi-Region keys."""
    return bool(_UUID.fullmatch(text) or _MRK.fullmatch(text))


class KmsStore:
    """Keys and aliases of one account in one region, on the fake's clock."""

    def __init__(self, clock: FakeClock, region: str = DEFAULT_REGION, account: str = DEFAULT_ACCOUNT) -> None:
        self.clock = clock
        self.region = region
        self.account = account
        self.keys: dict[str, KmsKey] = {}
        self.aliases: dict[str, KmsAlias] = {}
        self.deletions = Deadlines()
        self.rotations = Deadlines()
        self.max_on_demand_rotations = MAX_ON_DEMAND_ROTATIONS
        #: how long an on-demand rotation runs on the fake clock before its material is listed (0: at once)
        self.on_demand_duration = timedelta(0)
        self._seq = 0

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def clear(self) -> None:
        self.keys.clear()
        self.aliases.clear()
        self.deletions.clear()
        self.rotations.clear()

    def schedule_deletion(self, key: KmsKey, when: datetime) -> None:
        key.deletion_date = when
        self.deletions.add(when.timestamp(), key.key_id)

    def sweep(self) -> None:
        """Forget keys whose deletion date has passed, and their aliases (lazy deletion)."""
        now = self.clock.now().timestamp()
        gone: list[str] = []
        for key_id in self.deletions.due(now):
            key = self.keys.get(key_id)
            if key is not None and key.deletion_date is not None and key.deletion_date.timestamp() <= now:
                del self.keys[key_id]
                gone.append(key_id)
        if gone:
            dead = set(gone)
            for name in [a.name for a in self.aliases.values() if a.target_key_id in dead]:
                del self.aliases[name]
        self._rotate_due(now)

    def _rotate_due(self, now: float) -> None:
        """On-demand rotations that have run their course and automatic rotations whose date has passed
        on the fake clock, each dated when it completed or fell due. While a key is not enabled (disabled,
        pending deletion) KMS does not rotate it automatically: those rotations are skipped and the
        schedule moves on."""
        for key_id in self.rotations.due(now):
            key = self.keys.get(key_id)
            if key is None:
                continue
            started = key.on_demand_started
            if started is not None and (started + self.on_demand_duration).timestamp() <= now:
                self.complete_on_demand(key, started + self.on_demand_duration)
            if key.rotation_period_days is None or key.next_rotation is None:
                continue
            period = timedelta(days=key.rotation_period_days)
            while key.next_rotation.timestamp() <= now:
                if key.state == ENABLED and key.rotatable:
                    key.materials.append(KeyMaterial(os.urandom(32), key.next_rotation, "AUTOMATIC"))
                key.rotation_anchor = key.next_rotation
                key.next_rotation = key.next_rotation + period
            self.rotations.add(key.next_rotation.timestamp(), key.key_id)

    def start_on_demand(self, key: KmsKey) -> None:
        """An on-demand rotation: complete at once, or after ``on_demand_duration`` on the fake clock."""
        now = self.clock.now()
        key.on_demand_rotations += 1
        if not self.on_demand_duration:
            self.complete_on_demand(key, now)
            return
        key.on_demand_started = now
        self.rotations.add((now + self.on_demand_duration).timestamp(), key.key_id)

    def complete_on_demand(self, key: KmsKey, when: datetime) -> None:
        key.materials.append(KeyMaterial(os.urandom(32), when, "ON_DEMAND"))
        key.on_demand_started = None

    def set_rotation(self, key: KmsKey, period_days: int | None) -> None:
        """Automatic rotation on with ``period_days`` (the next date counts from the last automatic
        rotation, or from now when it was off), or off (``None``)."""
        now = self.clock.now()
        if period_days is None:
            key.rotation_period_days = key.next_rotation = key.rotation_anchor = None
            return
        if key.rotation_period_days is None or key.rotation_anchor is None:
            key.rotation_anchor = now
        key.rotation_period_days = period_days
        key.next_rotation = max(key.rotation_anchor + timedelta(days=period_days), now)
        self.rotations.add(key.next_rotation.timestamp(), key.key_id)

    # -- names and lookups -------------------------------------------------------------------

    def key_arn(self, key_id: str) -> str:
        return f"arn:aws:kms:{self.region}:{self.account}:key/{key_id}"

    def alias_arn(self, name: str) -> str:
        return f"arn:aws:kms:{self.region}:{self.account}:{name}"

    def new_key_id(self, multi_region: bool) -> str:
        return f"mrk-{uuid.uuid4().hex}" if multi_region else str(uuid.uuid4())

    def _not_found(self, key_id: str) -> FakeError:
        return FakeError(400, "NotFoundException", f"Key '{self.key_arn(key_id[:128])}' does not exist")

    def _by_id(self, key_id: str, shown: str) -> KmsKey:
        if not is_key_id(key_id):
            raise FakeError(400, "NotFoundException", f"Invalid keyId '{shown[:256]}'")
        key = self.keys.get(key_id)
        if key is None:
            raise self._not_found(key_id)
        return key

    def _by_alias(self, name: str) -> KmsKey:
        alias = self.aliases.get(name)
        if alias is None or alias.target_key_id not in self.keys:
            raise FakeError(400, "NotFoundException", f"Alias '{self.alias_arn(name[:256])}' is not found.")
        return self.keys[alias.target_key_id]

    def resolve(self, ref: str, *, allow_alias: bool = False) -> KmsKey:
        """Find a key by key ID or key ARN (and, where allowed, alias name or alias ARN)."""
        self.sweep()
        if ref.startswith("arn:"):
            return self._resolve_arn(ref, allow_alias)
        if ref.startswith("alias/"):
            if not allow_alias:
                raise FakeError(400, "NotFoundException", f"Invalid keyId '{ref[:256]}'")
            return self._by_alias(ref)
        return self._by_id(ref, ref)

    def _resolve_arn(self, ref: str, allow_alias: bool) -> KmsKey:
        key_match = _KEY_ARN.match(ref)
        alias_match = _ALIAS_ARN.match(ref)
        if key_match is None and alias_match is None:
            raise FakeError(400, "InvalidArnException", f"ARN '{ref[:256]}' is not a valid KMS key or alias ARN.")
        if key_match is not None:
            region, account, key_id = key_match.groups()
            if (region, account) != (self.region, self.account):
                raise self._not_found(key_id)
            return self._by_id(key_id, ref)
        assert alias_match is not None
        region, account, name = alias_match.groups()
        if not allow_alias:
            raise FakeError(400, "NotFoundException", f"Invalid keyId '{ref[:256]}'")
        if (region, account) != (self.region, self.account):
            raise FakeError(400, "NotFoundException", f"Alias '{ref[:256]}' is not found.")
        return self._by_alias(name)

    # -- the state table ----------------------------------------------------------------------

    def require_state(self, key: KmsKey, operation: str) -> None:
        """Raise the error AWS gives for ``operation`` on a key in its current state, if any."""
        if key.state in ALLOWED_STATES[operation]:
            return
        if operation == "CancelKeyDeletion":
            raise FakeError(400, "KMSInvalidStateException", f"{key.arn} is not pending deletion.")
        if key.state == DISABLED and operation in _DISABLED_REFUSES:
            raise FakeError(400, "DisabledException", f"{key.arn} is disabled.")
        wording = {PENDING_DELETION: "pending deletion", PENDING_IMPORT: "pending import"}
        raise FakeError(400, "KMSInvalidStateException", f"{key.arn} is {wording.get(key.state, key.state)}.")

    # -- views ---------------------------------------------------------------------------------

    def metadata(self, key: KmsKey) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "AWSAccountId": self.account,
            "KeyId": key.key_id,
            "Arn": key.arn,
            "CreationDate": key.created.timestamp(),
            "Enabled": key.state == ENABLED,
            "Description": key.description,
            "KeyUsage": key.key_usage,
            "KeyState": key.state,
            "Origin": key.origin,
            "KeyManager": "CUSTOMER",
            "CustomerMasterKeySpec": key.key_spec,
            "KeySpec": key.key_spec,
            "MultiRegion": key.multi_region,
        }
        doc.update(algorithms(key.key_spec, key.key_usage))
        if key.deletion_date is not None:
            doc["DeletionDate"] = key.deletion_date.timestamp()
        if key.materials:
            doc["CurrentKeyMaterialId"] = key.materials[-1].material_id
        if key.multi_region:
            doc["MultiRegionConfiguration"] = {
                "MultiRegionKeyType": "PRIMARY",
                "PrimaryKey": {"Arn": key.arn, "Region": self.region},
                "ReplicaKeys": [],
            }
        return doc

    def alias_entry(self, alias: KmsAlias) -> dict[str, Any]:
        return {
            "AliasName": alias.name,
            "AliasArn": alias.arn,
            "TargetKeyId": alias.target_key_id,
            "CreationDate": alias.created.timestamp(),
            "LastUpdatedDate": alias.updated.timestamp(),
        }

    def snapshot(self) -> dict[str, Any]:
        self.sweep()
        keys = []
        for key in sorted(self.keys.values(), key=lambda k: k.seq):
            keys.append(
                {
                    "KeyId": key.key_id,
                    "Arn": key.arn,
                    "KeyState": key.state,
                    "Enabled": key.state == ENABLED,
                    "Origin": key.origin,
                    "KeySpec": key.key_spec,
                    "KeyUsage": key.key_usage,
                    "Description": key.description,
                    "CreationDate": key.created.isoformat(),
                    "DeletionDate": key.deletion_date.isoformat() if key.deletion_date else None,
                    "PendingWindowInDays": key.pending_window_days,
                    "Tags": [{"TagKey": k, "TagValue": v} for k, v in key.tags.items()],
                    "Aliases": sorted(a.name for a in self.aliases.values() if a.target_key_id == key.key_id),
                    "KeyMaterials": [
                        {
                            "KeyMaterialId": m.material_id,
                            "CreationDate": m.created.isoformat(),
                            "RotationType": m.rotation_type,
                            "Current": index == len(key.materials) - 1,
                        }
                        for index, m in enumerate(key.materials)
                    ],
                    "KeyRotationEnabled": key.rotation_period_days is not None,
                    "RotationPeriodInDays": key.rotation_period_days,
                    "NextRotationDate": key.next_rotation.isoformat() if key.next_rotation else None,
                    "OnDemandRotations": key.on_demand_rotations,
                    "OnDemandRotationStartDate": key.on_demand_started.isoformat() if key.on_demand_started else None,
                }
            )
        return {"region": self.region, "account": self.account, "now": self.clock.now().isoformat(), "keys": keys}


_SIGNING = {
    "RSA": [f"RSASSA_{pad}_SHA_{bits}" for pad in ("PSS", "PKCS1_V1_5") for bits in (256, 384, 512)],
    "ECC_NIST_P256": ["ECDSA_SHA_256"],
    "ECC_NIST_P384": ["ECDSA_SHA_384"],
    "ECC_NIST_P521": ["ECDSA_SHA_512"],
    "ECC_SECG_P256K1": ["ECDSA_SHA_256"],
    "ECC_NIST_EDWARDS25519": ["ED25519_SHA_512", "ED25519_PH_SHA_512"],
    "SM2": ["SM2DSA"],
    "ML_DSA": ["ML_DSA_SHAKE_256"],
}

#: key spec -> key usages it allows (CreateKey refuses other pairs with ValidationException)
SPEC_USAGES: dict[str, frozenset[str]] = {
    "SYMMETRIC_DEFAULT": frozenset({"ENCRYPT_DECRYPT"}),
    **{f"RSA_{n}": frozenset({"ENCRYPT_DECRYPT", "SIGN_VERIFY"}) for n in (2048, 3072, 4096)},
    **{f"ECC_NIST_P{n}": frozenset({"SIGN_VERIFY", "KEY_AGREEMENT"}) for n in (256, 384, 521)},
    "ECC_SECG_P256K1": frozenset({"SIGN_VERIFY"}),
    "ECC_NIST_EDWARDS25519": frozenset({"SIGN_VERIFY"}),
    **{f"HMAC_{n}": frozenset({"GENERATE_VERIFY_MAC"}) for n in (224, 256, 384, 512)},
    "SM2": frozenset({"ENCRYPT_DECRYPT", "SIGN_VERIFY", "KEY_AGREEMENT"}),
    **{f"ML_DSA_{n}": frozenset({"SIGN_VERIFY"}) for n in (44, 65, 87)},
    **{f"ML_KEM_{n}": frozenset({"ENCAPSULATE_DECAPSULATE"}) for n in (512, 768, 1024)},
}


def algorithms(spec: str, usage: str) -> dict[str, list[str]]:
    """The algorithm lists KeyMetadata carries for a key spec and usage."""
    family = "RSA" if spec.startswith("RSA_") else "ML_DSA" if spec.startswith("ML_DSA") else spec
    if usage == "ENCRYPT_DECRYPT":
        if spec == "SYMMETRIC_DEFAULT":
            return {"EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"]}
        return {"EncryptionAlgorithms": ["SM2PKE"] if spec == "SM2" else ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]}
    if usage == "SIGN_VERIFY":
        return {"SigningAlgorithms": list(_SIGNING.get(family, []))}
    if usage == "GENERATE_VERIFY_MAC":
        return {"MacAlgorithms": [f"HMAC_SHA_{spec.removeprefix('HMAC_')}"]}
    if usage == "KEY_AGREEMENT":
        return {"KeyAgreementAlgorithms": ["ECDH"]}
    return {}
