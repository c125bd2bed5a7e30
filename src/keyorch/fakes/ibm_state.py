"""What the IBM Key Protect fake holds, and the state rules it enforces.

States are Key Protect's integers: 0 pre-active, 1 active, 2 suspended, 3 deactivated (expired),
5 destroyed (deleted; restorable for 30 days). Every time rule reads the fake's clock and is
evaluated lazily whenever a key is read: expiry moves a key to 3, restore is refused after 30 days,
purge is allowed 4 hours after deletion, and a deleted key disappears (404) after 90 days.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from keyorch.fakes.clock import FakeClock
from keyorch.fakes.deadlines import Deadlines
from keyorch.fakes.ibm_wire import KEY_TYPE, IbmError, b64, b64decode, iso, parse_time

PRE_ACTIVE, ACTIVE, SUSPENDED, DEACTIVATED, DESTROYED = 0, 1, 2, 3, 5

RESTORE_WINDOW = timedelta(days=30)
PURGE_DELAY = timedelta(hours=4)
AUTO_PURGE = timedelta(days=90)
DUAL_AUTH_WINDOW = timedelta(days=7)
ENABLE_RESTORE_WAIT = timedelta(seconds=30)
ROTATE_WAIT = timedelta(hours=1)
#: A rotation policy's month on the fake clock (Key Protect counts calendar months; the fake, 30 days).
ROTATION_MONTH = timedelta(days=30)
MAX_ALIASES = 5
ALIAS_RE = re.compile(r"^[a-zA-Z0-9_-]{2,90}$")
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
RESERVED_ALIASES = frozenset(
    {"allowed_ip", "key", "keys", "metadata", "policy", "policies", "registration", "registrations", "ring", "rings",
     "rotate", "wrap", "unwrap", "rewrap", "version", "versions", "purge", "restore", "actions"}
)  # fmt: skip

#: action -> key states in which Key Protect accepts it (error catalogue, docs/providers.md §4.3)
ACTION_STATES: dict[str, frozenset[int]] = {
    "disable": frozenset({ACTIVE}),
    "enable": frozenset({SUSPENDED}),
    "setKeyForDeletion": frozenset({ACTIVE}),
    "unsetKeyForDeletion": frozenset({ACTIVE}),
    "rotate": frozenset({ACTIVE, DEACTIVATED}),
    "wrap": frozenset({ACTIVE}),
    "unwrap": frozenset({ACTIVE, DEACTIVATED}),
    "rewrap": frozenset({ACTIVE, DEACTIVATED}),
    "sync": frozenset({PRE_ACTIVE, ACTIVE, SUSPENDED, DEACTIVATED, DESTROYED}),
}
ROOT_ONLY = frozenset({"disable", "enable", "rotate", "wrap", "unwrap", "rewrap"})
ACTION_VERBS = {
    "disable": "disabled",
    "enable": "enabled",
    "rotate": "rotated",
    "wrap": "wrapped",
    "unwrap": "unwrapped",
    "rewrap": "rewrapped",
}


@dataclass
class KeyVersion:
    id: str
    created: datetime
    material: bytes

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "creationDate": iso(self.created)}


@dataclass
class Registration:
    key_id: str
    resource_crn: str
    prevent_key_deletion: bool
    description: str
    created_by: str
    created: datetime
    key_version: str

    def as_json(self, key_name: str) -> dict[str, Any]:
        return {
            "keyId": self.key_id,
            "keyName": key_name,
            "resourceCrn": self.resource_crn,
            "createdBy": self.created_by,
            "creationDate": iso(self.created),
            "updatedBy": self.created_by,
            "lastUpdated": iso(self.created),
            "description": self.description,
            "preventKeyDeletion": self.prevent_key_deletion,
            "keyVersion": {"id": self.key_version, "creationDate": iso(self.created)},
        }


@dataclass
class Policy:
    data: dict[str, Any]
    created_by: str
    created: datetime
    updated_by: str
    updated: datetime


@dataclass
class IbmKey:
    id: str
    name: str
    description: str
    extractable: bool
    imported: bool
    key_ring: str
    created: datetime
    created_by: str
    crn: str
    versions: list[KeyVersion]
    expiration: datetime | None = None
    state: int = ACTIVE  # 0, 1 or 2; 3 and 5 are derived (expiry, deletion) unless forced
    forced_deactivated: bool = False
    aliases: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    last_update: datetime | None = None
    last_rotate: datetime | None = None
    #: the due date of the policy's last rotation, made or skipped (a skipped one changes no lastRotateDate)
    rotation_anchor: datetime | None = None
    last_action: datetime | None = None
    dual_auth: Policy | None = None
    rotation: Policy | None = None
    auth_by: str | None = None
    auth_expires: datetime | None = None
    deleted_at: datetime | None = None
    deleted_by: str | None = None

    def effective_state(self, now: datetime) -> int:
        if self.deleted_at is not None:
            return DESTROYED
        if self.forced_deactivated or (self.expiration is not None and now >= self.expiration):
            return DEACTIVATED
        return self.state

    def expired(self, now: datetime) -> bool:
        return self.expiration is not None and now >= self.expiration

    def dual_auth_enabled(self) -> bool:
        return self.dual_auth is not None and bool(self.dual_auth.data.get("enabled"))

    def live_authorization(self, now: datetime) -> bool:
        return self.auth_expires is not None and now < self.auth_expires

    def as_json(self, now: datetime, *, payload: bool = False) -> dict[str, Any]:
        latest = self.versions[-1]
        state = self.effective_state(now)
        doc: dict[str, Any] = {
            "type": KEY_TYPE,
            "id": self.id,
            "name": self.name,
            "aliases": list(self.aliases),
            "description": self.description,
            "state": state,
            "expirationDate": iso(self.expiration),
            "extractable": self.extractable,
            "crn": self.crn,
            "imported": self.imported,
            "keyRingID": self.key_ring,
            "creationDate": iso(self.created),
            "createdBy": self.created_by,
            "algorithmType": "AES",
            "algorithmMetadata": {"bitLength": str(len(latest.material) * 8), "mode": "CBC_PAD"},
            "algorithmBitSize": len(latest.material) * 8,
            "algorithmMode": "CBC_PAD",
            "lastUpdateDate": iso(self.last_update or self.created),
            "lastRotateDate": iso(self.last_rotate),
            "keyVersion": latest.as_json(),
            "dualAuthDelete": {"enabled": self.dual_auth_enabled()},
            "deleted": self.deleted_at is not None,
        }
        if self.tags:
            doc["tags"] = list(self.tags)
        if self.expiration is None:
            del doc["expirationDate"]
        if self.last_rotate is None:
            del doc["lastRotateDate"]
        if self.dual_auth_enabled():
            live = self.live_authorization(now)
            doc["dualAuthDelete"]["keySetForDeletion"] = live
            if live:
                doc["dualAuthDelete"]["authExpiration"] = iso(self.auth_expires)
        if self.rotation is not None:
            doc["rotation"] = dict(self.rotation.data)
        if state in (DEACTIVATED,) and self.expired(now):
            doc["nonactiveStateReason"] = 2  # key expired
        if self.deleted_at is not None:
            doc.update(
                {
                    "deletionDate": iso(self.deleted_at),
                    "deletedBy": self.deleted_by,
                    "restoreAllowed": self.restore_allowed(now),
                    "restoreExpirationDate": iso(self.deleted_at + RESTORE_WINDOW),
                    "purgeAllowed": now >= self.deleted_at + PURGE_DELAY,
                    "purgeAllowedFrom": iso(self.deleted_at + PURGE_DELAY),
                    "purgeScheduledOn": iso(self.deleted_at + AUTO_PURGE),
                }
            )
        elif payload and self.extractable:
            doc["payload"] = b64(latest.material)
        return doc

    def restore_allowed(self, now: datetime) -> bool:
        return self.deleted_at is not None and now < self.deleted_at + RESTORE_WINDOW and not self.expired(now)


def new_material(size: int = 32) -> bytes:
    return os.urandom(size)


def check_alias(alias: Any, context: str) -> str:
    if not isinstance(alias, str) or not ALIAS_RE.match(alias) or UUID_RE.match(alias):
        raise IbmError(
            "INVALID_FIELD_ERR",
            context,
            detail="The field `aliases` must be: 2 to 90 characters of letters, digits, '-' or '_', not a UUID",
            target="aliases",
        )
    if alias.lower() in RESERVED_ALIASES:
        raise IbmError("INVALID_FIELD_ERR", context, detail=f"`{alias}` is a reserved word", target="aliases")
    return alias


@dataclass
class KeyProtectState:
    """All keys, aliases and registrations of the single fake instance."""

    clock: FakeClock
    instance_id: str
    account_id: str
    region: str = "us-south"
    keys: dict[str, IbmKey] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    registrations: list[Registration] = field(default_factory=list)
    instance_policies: dict[str, Policy] = field(default_factory=dict)
    purges: Deadlines = field(default_factory=Deadlines)
    rotations: Deadlines = field(default_factory=Deadlines)

    def clear(self) -> None:
        self.keys.clear()
        self.purges.clear()
        self.rotations.clear()
        self.aliases.clear()
        self.registrations.clear()
        self.instance_policies.clear()

    # -- lookup -----------------------------------------------------------------------------
    def sweep(self) -> None:
        """Keys deleted 90 days ago are purged automatically; rotation policies that fell due rotate."""
        now = self.clock.now()
        for key_id in self.purges.due(now.timestamp()):
            key = self.keys.get(key_id)
            if key is not None and key.deleted_at is not None and now >= key.deleted_at + AUTO_PURGE:
                self.forget(key)
        for key_id in self.rotations.due(now.timestamp()):
            key = self.keys.get(key_id)
            if key is not None:
                self._rotate_due(key, now)

    @staticmethod
    def next_rotation(key: IbmKey) -> datetime | None:
        """When the key's rotation policy rotates it next: ``interval_month`` months (of 30 days on the
        fake clock) after its last rotation, its creation or the policy's last change, whichever is
        latest. ``None`` when the policy is off or the key cannot be rotated without a payload."""
        policy = key.rotation
        if policy is None or not policy.data.get("enabled") or key.extractable or key.imported:
            return None
        anchor = max(key.last_rotate or key.created, key.rotation_anchor or key.created, policy.updated)
        return anchor + ROTATION_MONTH * int(policy.data.get("interval_month", 1))

    def schedule_rotation(self, key: IbmKey) -> None:
        due = self.next_rotation(key)
        if due is not None:
            self.rotations.add(due.timestamp(), key.id)

    def _rotate_due(self, key: IbmKey, now: datetime) -> None:
        """Every rotation the policy made by ``now``, each dated when it fell due; none while the key is
        not active (suspended, deactivated, deleted): those are skipped and the schedule moves on."""
        due = self.next_rotation(key)
        while due is not None and due <= now:
            if key.effective_state(due) == ACTIVE:
                key.versions.append(KeyVersion(str(uuid.uuid4()), due, new_material()))
                key.last_rotate = key.last_update = due
            key.rotation_anchor = due
            due = self.next_rotation(key)
        self.schedule_rotation(key)

    def forget(self, key: IbmKey) -> None:
        self.keys.pop(key.id, None)
        for alias in key.aliases:
            self.aliases.pop(alias.lower(), None)
        self.registrations = [r for r in self.registrations if r.key_id != key.id]

    def find(self, id_or_alias: str, context: str) -> IbmKey:
        self.sweep()
        key = self.keys.get(id_or_alias.lower()) or self.keys.get(self.aliases.get(id_or_alias.lower(), ""))
        if key is None:
            raise IbmError("KEY_NOT_FOUND_ERR", context)
        return key

    def registrations_of(self, key: IbmKey) -> list[Registration]:
        return [r for r in self.registrations if r.key_id == key.id]

    # -- create -----------------------------------------------------------------------------
    def create_key(self, resource: dict[str, Any], user: str, key_ring: str, *, overrides: bool) -> IbmKey:
        context = "Key could not be created"
        allowed = {"type", "name", "aliases", "description", "expirationDate", "extractable", "payload", "tags",
                   "encryptedNonce", "iv", "encryptionAlgorithm", "keyRingID"}  # fmt: skip
        if overrides:
            allowed |= {"dualAuthDelete", "rotation"}
        unknown = sorted(set(resource) - allowed)
        if unknown:
            raise IbmError("BAD_BODY_ERR", context, detail=f'json: unknown field "{unknown[0][:64]}"')
        name = resource.get("name")
        if not isinstance(name, str) or not 2 <= len(name) <= 90:
            raise IbmError(
                "INVALID_FIELD_ERR", context, detail="The field `name` must be: 2 to 90 characters", target="name"
            )
        description = resource.get("description", "")
        if not isinstance(description, str) or len(description) > 240:
            raise IbmError("INVALID_FIELD_ERR", context, detail="The field `description` must be: up to 240 characters")
        extractable = resource.get("extractable", False)
        if not isinstance(extractable, bool):
            raise IbmError("INVALID_FIELD_ERR", context, detail="The field `extractable` must be: a boolean")
        tags = resource.get("tags", [])
        if not isinstance(tags, list) or len(tags) > 30 or not all(isinstance(t, str) and len(t) <= 30 for t in tags):
            raise IbmError("INVALID_FIELD_ERR", context, detail="The field `tags` must be: a list of short strings")
        now = self.clock.now()
        expiration = None
        if resource.get("expirationDate") is not None:
            expiration = parse_time(resource["expirationDate"], "expirationDate", context)
            if expiration <= now:
                raise IbmError("INVALID_FIELD_ERR", context, detail="The field `expirationDate` must be: in the future")
        raw_aliases = resource.get("aliases", [])
        if not isinstance(raw_aliases, list):
            raise IbmError("INVALID_FIELD_ERR", context, detail="The field `aliases` must be: a list of strings")
        if len(raw_aliases) > MAX_ALIASES:
            raise IbmError("KEY_ALIAS_QUOTA_ERR", context)
        aliases = [check_alias(a, context) for a in raw_aliases]
        if len({a.lower() for a in aliases}) != len(aliases):
            raise IbmError("INVALID_FIELD_ERR", context, detail="aliases must be unique", target="aliases")
        for alias in aliases:
            if alias.lower() in self.aliases:
                raise IbmError("KEY_ALIAS_NOT_UNIQUE_ERR", context)
        imported = "payload" in resource
        material = self._initial_material(resource, extractable, context)
        key_id = str(uuid.uuid4())
        key = IbmKey(
            id=key_id,
            name=name,
            description=description,
            extractable=extractable,
            imported=imported,
            key_ring=key_ring,
            created=now,
            created_by=user,
            crn=f"crn:v1:bluemix:public:kms:{self.region}:a/{self.account_id}:{self.instance_id}:key:{key_id}",
            versions=[KeyVersion(key_id, now, material)],
            expiration=expiration,
            aliases=aliases,
            tags=list(tags),
            last_update=now,
        )
        instance_dual = self.instance_policies.get("dualAuthDelete")
        if instance_dual is not None and instance_dual.data.get("enabled"):
            key.dual_auth = Policy({"enabled": True}, user, now, user, now)
        if overrides:
            self._apply_overrides(key, resource, user, context)
        self.keys[key_id] = key
        for alias in aliases:
            self.aliases[alias.lower()] = key_id
        return key

    @staticmethod
    def _initial_material(resource: dict[str, Any], extractable: bool, context: str) -> bytes:
        if "payload" not in resource:
            return new_material()
        material = b64decode(resource["payload"], "payload", context, "a base64 encoded key material")
        if not extractable and len(material) not in (16, 24, 32):
            raise IbmError(
                "INVALID_FIELD_ERR", context, detail="a root key payload must be 128, 192 or 256 bits", target="payload"
            )
        if extractable and len(material) > 7500:
            raise IbmError("INVALID_FIELD_ERR", context, detail="payload is too large", target="payload")
        return material

    def _apply_overrides(self, key: IbmKey, resource: dict[str, Any], user: str, context: str) -> None:
        now = self.clock.now()
        dual = resource.get("dualAuthDelete")
        if dual is not None:
            if not isinstance(dual, dict) or not isinstance(dual.get("enabled"), bool):
                raise IbmError("INVALID_FIELD_ERR", context, detail="`dualAuthDelete.enabled` must be a boolean")
            key.dual_auth = Policy({"enabled": dual["enabled"]}, user, now, user, now)
        rotation = resource.get("rotation")
        if rotation is not None:
            key.rotation = Policy(check_rotation(rotation, context), user, now, user, now)
            self.schedule_rotation(key)

    # -- aliases ----------------------------------------------------------------------------
    def add_alias(self, key: IbmKey, alias: str) -> None:
        context = "Key alias could not be created"
        check_alias(alias, context)
        owner = self.aliases.get(alias.lower())
        if owner == key.id:
            return
        if owner is not None:
            raise IbmError("KEY_ALIAS_NOT_UNIQUE_ERR", context)
        if key.deleted_at is not None:
            raise IbmError("KEY_ACTION_INVALID_STATE_ERR", context)
        if len(key.aliases) >= MAX_ALIASES:
            raise IbmError("KEY_ALIAS_QUOTA_ERR", context)
        key.aliases.append(alias)
        self.aliases[alias.lower()] = key.id

    def remove_alias(self, key: IbmKey, alias: str) -> None:
        if self.aliases.get(alias.lower()) != key.id:
            raise IbmError("KEY_NOT_FOUND_ERR", "Key alias could not be deleted", detail="alias not found")
        del self.aliases[alias.lower()]
        key.aliases = [a for a in key.aliases if a.lower() != alias.lower()]

    # -- actions ----------------------------------------------------------------------------
    def check_action(self, key: IbmKey, action: str) -> None:
        now = self.clock.now()
        context = f"Key could not be {ACTION_VERBS.get(action, 'changed')}"
        if action in ROOT_ONLY and key.extractable:
            raise IbmError("KEY_ROOT_REQ_ERR", context)
        state = key.effective_state(now)
        if state not in ACTION_STATES[action]:
            raise IbmError("KEY_ACTION_INVALID_STATE_ERR", f"Key is not in a valid state: {context}")
        if action in ("setKeyForDeletion", "unsetKeyForDeletion") and not key.dual_auth_enabled():
            raise IbmError("NOT_DUAL_AUTH_ERR", "Action could not be performed on key")
        if action == "enable" and key.last_action and now < key.last_action + ENABLE_RESTORE_WAIT:
            raise IbmError("REQ_TOO_EARLY_ERR", context)
        if action == "rotate" and key.last_rotate and now < key.last_rotate + ROTATE_WAIT:
            raise IbmError("KEY_ROTATION_NOT_PERMITTED", "Action could not be performed on key")

    def simple_action(self, key: IbmKey, action: str, user: str) -> None:
        """disable, enable, setKeyForDeletion, unsetKeyForDeletion, sync (no body, 204)."""
        self.check_action(key, action)
        now = self.clock.now()
        if action == "disable":
            key.state = SUSPENDED
        elif action == "enable":
            key.state = ACTIVE
        elif action == "setKeyForDeletion":
            key.auth_by, key.auth_expires = user, now + DUAL_AUTH_WINDOW
        elif action == "unsetKeyForDeletion":
            key.auth_by, key.auth_expires = None, None
        if action != "sync":
            key.last_action = key.last_update = now

    def rotate(self, key: IbmKey, body: dict[str, Any] | None) -> None:
        self.check_action(key, "rotate")
        context = "Action could not be performed on key"
        payload = check_fields(body, {"payload", "encryptedNonce", "iv", "encryptionAlgorithm"}, context).get("payload")
        if key.imported and payload is None:
            raise IbmError("KEY_PAYLOAD_REQ_ERR", context, target="payload")
        if not key.imported and payload is not None:
            raise IbmError(
                "INVALID_FIELD_ERR",
                context,
                detail="a generated root key is rotated without a payload",
                target="payload",
            )
        material = new_material() if payload is None else b64decode(payload, "payload", context, "base64 key material")
        if len(material) not in (16, 24, 32):
            raise IbmError(
                "INVALID_FIELD_ERR", context, detail="payload must be 128, 192 or 256 bits", target="payload"
            )
        now = self.clock.now()
        key.versions.append(KeyVersion(str(uuid.uuid4()), now, material))
        key.last_rotate = key.last_action = key.last_update = now

    def delete(self, key: IbmKey, user: str, *, force: bool) -> None:
        now = self.clock.now()
        context = "Key could not be deleted"
        if key.deleted_at is not None:
            raise IbmError("KEY_DELETED_ERR", context)
        registrations = self.registrations_of(key)
        if any(r.prevent_key_deletion for r in registrations):
            raise IbmError("PREV_KEY_DEL_ERR", context)
        if key.dual_auth_enabled() and not (key.live_authorization(now) and key.auth_by != user):
            raise IbmError("AUTHORIZATIONS_NOT_MET", f"1 prior authorization(s) are required for deletion: {context}")
        if registrations and not force:
            raise IbmError("PROTECTED_RESOURCE_ERR", context)
        if force:
            self.registrations = [r for r in self.registrations if r.key_id != key.id]
        key.deleted_at, key.deleted_by = now, user
        self.purges.add((now + AUTO_PURGE).timestamp(), key.id)
        key.auth_by = key.auth_expires = None
        key.last_action = key.last_update = now

    def restore(self, key: IbmKey) -> None:
        now = self.clock.now()
        context = "Key could not be restored"
        if key.deleted_at is None:
            raise IbmError("KEY_ACTION_INVALID_STATE_ERR", f"Key is not in a valid state: {context}")
        if now >= key.deleted_at + RESTORE_WINDOW:
            raise IbmError("KEY_RESTORE_EXPIRED", context)
        if key.expired(now):
            raise IbmError("KEY_EXPIRED_ERR", f"The key expired on {iso(key.expiration)}: {context}")
        if key.last_action and now < key.last_action + ENABLE_RESTORE_WAIT:
            raise IbmError("REQ_TOO_EARLY_ERR", context)
        key.deleted_at = key.deleted_by = None
        key.state, key.forced_deactivated = ACTIVE, False
        key.last_action = key.last_update = now

    def purge(self, key: IbmKey) -> None:
        now = self.clock.now()
        context = "Key could not be purged"
        if key.deleted_at is None:
            raise IbmError("KEY_ACTION_INVALID_STATE_ERR", f"Key is not in a valid state: {context}")
        if now < key.deleted_at + PURGE_DELAY:
            raise IbmError("REQ_TOO_EARLY_ERR", f"Purge operation is allowed 4h0m0s after key is deleted: {context}")
        self.forget(key)


def check_fields(body: dict[str, Any] | None, allowed: set[str], context: str) -> dict[str, Any]:
    """The body, refused with ``BAD_BODY_ERR`` when it carries a field the action does not know."""
    unknown = sorted(set(body or {}) - allowed)
    if unknown:
        raise IbmError("BAD_BODY_ERR", context, detail=f'json: unknown field "{unknown[0][:64]}"')
    return body or {}


def check_rotation(rotation: Any, context: str) -> dict[str, Any]:
    if not isinstance(rotation, dict) or not isinstance(rotation.get("enabled", True), bool):
        raise IbmError("INVALID_FIELD_ERR", context, detail="`rotation` must be an object", target="rotation")
    interval = rotation.get("interval_month", 1)
    if type(interval) is not int or not 1 <= interval <= 12:
        raise IbmError("INVALID_FIELD_ERR", context, detail="`interval_month` must be 1 to 12", target="interval_month")
    return {"enabled": rotation.get("enabled", True), "interval_month": interval}
