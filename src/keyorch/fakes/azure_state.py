"""State and rules of the Azure Key Vault fake: live keys (versions with ``attributes.enabled``),
the soft-deleted collection, server-side asynchronous delete/recover/purge, and automatic purge
at ``scheduledPurgeDate``. Everything time-based reads the fake's clock lazily (``settle``)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

from keyorch.fakes.azure_crypto import DEFAULT_OPS, KEY_OPS, KeySpec, Material, bad_parameter, family, public_jwk
from keyorch.fakes.azure_rotation import RotationPolicy, default_policy
from keyorch.fakes.base import FakeError
from keyorch.fakes.clock import FakeClock
from keyorch.fakes.deadlines import Deadlines

MAX_TAGS = 15
FULL_RETENTION_DAYS = 90
InFlightKind = Literal["delete", "recover", "purge"]
#: Automatic rotations one key may catch up on in one settle (a clock moved decades ahead stops there).
MAX_CATCH_UP_ROTATIONS = 1000


def azure_error(status: int, code: str, message: str, inner: str | None = None) -> FakeError:
    """A FakeError whose code carries an optional ``innererror`` code after a colon."""
    return FakeError(status, f"{code}:{inner}" if inner else code, message)


def key_not_found(name: str, version: str | None = None) -> FakeError:
    ident = f"{name}/{version}" if version else name
    return azure_error(
        404,
        "KeyNotFound",
        f"A key with (name/id) {ident} was not found in this key vault. If you recently deleted this key you may be "
        "able to recover it using the correct recovery command. For help resolving this issue, please see "
        "https://go.microsoft.com/fwlink/?linkid=2125182",
    )


def deleted_key_not_found(name: str) -> FakeError:
    return azure_error(404, "KeyNotFound", f"Deleted Key not found: {name}")


def being_deleted(name: str) -> FakeError:
    return azure_error(409, "Conflict", f"Key {name} is currently being deleted.", "ObjectIsBeingDeleted")


@dataclass
class KeyVersion:
    version: str
    spec: KeySpec
    material: Material
    key_ops: list[str]
    enabled: bool
    nbf: int | None
    exp: int | None
    created: int
    updated: int
    tags: dict[str, str]
    exportable: bool = False


@dataclass
class VaultKey:
    name: str
    versions: list[KeyVersion] = field(default_factory=list)
    deleted_date: int | None = None
    scheduled_purge_date: int | None = None
    #: The policy set with PUT rotationpolicy (``None``: the service's default, which never rotates).
    rotation_policy: RotationPolicy | None = None

    @property
    def latest(self) -> KeyVersion:
        return self.versions[-1]

    def find(self, version: str) -> KeyVersion | None:
        wanted = version.lower()
        return next((v for v in self.versions if v.version == wanted), None)


@dataclass
class InFlight:
    kind: InFlightKind
    until: float
    key: VaultKey


@dataclass(frozen=True)
class Changes:
    """Validated optional fields of ``KeyCreateParameters`` / ``KeyUpdateParameters``."""

    enabled: bool | None = None
    nbf: int | None = None
    exp: int | None = None
    exportable: bool | None = None
    key_ops: list[str] | None = None
    tags: dict[str, str] | None = None
    given: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, doc: dict[str, Any]) -> Changes:
        given: set[str] = set()
        attrs = doc.get("attributes")
        if attrs is None:
            attrs = {}
        if not isinstance(attrs, dict):
            raise bad_parameter("Property attributes must be an object.")
        values: dict[str, Any] = {}
        for name in ("enabled", "exportable"):
            if attrs.get(name) is not None:
                if not isinstance(attrs[name], bool):
                    raise bad_parameter(f"Property attributes.{name} must be a boolean.")
                values[name] = attrs[name]
                given.add(name)
        for name in ("nbf", "exp"):
            if name in attrs:
                value = attrs[name]
                if value is not None and (type(value) is not int or not 0 <= value < 2**40):
                    raise bad_parameter(f"Property attributes.{name} must be a Unix time in seconds.")
                values[name] = value
                given.add(name)
        if doc.get("key_ops") is not None:
            ops = doc["key_ops"]
            if not isinstance(ops, list) or not all(isinstance(op, str) and op in KEY_OPS for op in ops):
                raise bad_parameter(f"Property key_ops must be a list of: {', '.join(KEY_OPS)}.")
            values["key_ops"] = list(dict.fromkeys(ops))
            given.add("key_ops")
        if doc.get("tags") is not None:
            tags = doc["tags"]
            if not isinstance(tags, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and len(k) <= 512 and len(v) <= 256 for k, v in tags.items()
            ):
                raise bad_parameter("Property tags must map names (<= 512 chars) to string values (<= 256 chars).")
            if len(tags) > MAX_TAGS:
                raise bad_parameter(f"A key can have at most {MAX_TAGS} tags.")
            values["tags"] = dict(tags)
            given.add("tags")
        return cls(**values, given=frozenset(given))


class KeyVault:
    """One vault's keys. Names are case-insensitive (stored under their lower-case form)."""

    def __init__(
        self,
        clock: FakeClock,
        *,
        retention_days: int,
        purge_protection: bool,
        settle_seconds: float,
        purge_block_seconds: float,
    ) -> None:
        self.clock = clock
        self.retention_days = retention_days
        self.purge_protection = purge_protection
        self.settle_seconds = settle_seconds
        self.purge_block_seconds = purge_block_seconds
        self.live: dict[str, VaultKey] = {}
        self.deleted: dict[str, VaultKey] = {}
        self.purges = Deadlines()
        #: when a key's automatic rotation falls due (hints: re-checked against the key's policy)
        self.rotations = Deadlines()
        self.in_flight: dict[str, InFlight] = {}
        self.purge_blocked: dict[str, float] = {}

    @property
    def recovery_level(self) -> str:
        base = "Recoverable" if self.retention_days == FULL_RETENTION_DAYS else "CustomizedRecoverable"
        return base if self.purge_protection else f"{base}+Purgeable"

    def now(self) -> int:
        return int(self.clock.now().timestamp())

    def clear(self) -> None:
        self.live.clear()
        self.deleted.clear()
        self.purges.clear()
        self.rotations.clear()
        self.in_flight.clear()
        self.purge_blocked.clear()

    def settle(self) -> None:
        """Apply everything whose time has come: finished async operations and automatic purges."""
        now = self.clock.now().timestamp()
        for lname, flight in list(self.in_flight.items()):
            if flight.until <= now:
                del self.in_flight[lname]
                self._land(lname, flight)
        for lname in self.purges.due(now):
            key = self.deleted.get(lname)
            if key is not None and key.scheduled_purge_date is not None and key.scheduled_purge_date <= now:
                del self.deleted[lname]
        for lname, until in list(self.purge_blocked.items()):
            if until <= now:
                del self.purge_blocked[lname]
        for lname in self.rotations.due(now):
            key = self.live.get(lname)
            if key is not None:
                self._rotate_due(key, int(now))

    def _rotate_due(self, key: VaultKey, now: int) -> None:
        """The automatic rotations the key's policy made due by ``now``, each version created at its due
        time (as the service would have made it then), then the next due time scheduled."""
        policy = key.rotation_policy
        for _ in range(MAX_CATCH_UP_ROTATIONS):
            due = policy.due(key.latest.created, key.latest.exp) if policy is not None else None
            if due is None:
                return
            if due > now:
                self.rotations.add(due, key.name.lower())
                return
            latest = key.latest
            changes = Changes(key_ops=list(latest.key_ops), tags=dict(latest.tags))
            self._add_version(key, latest.spec, latest.spec.generate(), changes, created=max(due, latest.created))

    def _schedule_rotation(self, key: VaultKey) -> None:
        policy = key.rotation_policy
        due = policy.due(key.latest.created, key.latest.exp) if policy is not None else None
        if due is not None:
            self.rotations.add(due, key.name.lower())

    def _land(self, lname: str, flight: InFlight) -> None:
        if flight.kind == "delete":
            self.deleted[lname] = flight.key
            if flight.key.scheduled_purge_date is not None:
                self.purges.add(flight.key.scheduled_purge_date, lname)
        elif flight.kind == "recover":
            flight.key.deleted_date = flight.key.scheduled_purge_date = None
            self.live[lname] = flight.key
            self._schedule_rotation(flight.key)
        elif self.purge_block_seconds > 0:
            self.purge_blocked[lname] = flight.until + self.purge_block_seconds

    def _start(self, lname: str, kind: InFlightKind, key: VaultKey) -> None:
        flight = InFlight(kind, self.clock.now().timestamp() + self.settle_seconds, key)
        if self.settle_seconds > 0:
            self.in_flight[lname] = flight
        else:
            self._land(lname, flight)

    def _refuse_in_flight(self, name: str) -> None:
        flight = self.in_flight.get(name.lower())
        if flight is not None and flight.kind in ("delete", "purge"):
            raise being_deleted(name)
        if flight is not None:
            raise azure_error(409, "Conflict", f"There is another operation in progress on key {name}.")

    # -- live keys ---------------------------------------------------------------------------

    def check_creatable(self, name: str) -> None:
        self.settle()
        lname = name.lower()
        if lname in self.deleted:
            raise azure_error(
                409,
                "Conflict",
                f"Key {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this "
                "state, the key can only be recovered or purged.",
                "ObjectIsDeletedButRecoverable",
            )
        if lname in self.purge_blocked:
            raise being_deleted(name)
        self._refuse_in_flight(name)

    def create(self, name: str, spec: KeySpec, material: Material, changes: Changes) -> tuple[VaultKey, KeyVersion]:
        self.check_creatable(name)
        key = self.live.setdefault(name.lower(), VaultKey(name))
        return key, self._add_version(key, spec, material, changes, created=self.now(), rotated=False)

    def rotate(self, name: str, material: Material) -> tuple[VaultKey, KeyVersion]:
        """``POST /keys/{name}/rotate``: a new version like the latest (type, size, operations, tags),
        expiring ``expiryTime`` after its creation when the key's rotation policy sets one."""
        key, latest = self.get(name)
        changes = Changes(key_ops=list(latest.key_ops), tags=dict(latest.tags))
        return key, self._add_version(key, latest.spec, material, changes, created=self.now())

    def _add_version(
        self, key: VaultKey, spec: KeySpec, material: Material, changes: Changes, *, created: int, rotated: bool = True
    ) -> KeyVersion:
        """A new latest version; one made by a rotation expires as the key's rotation policy says."""
        policy = key.rotation_policy if rotated else None
        exp = policy.new_version_exp(created) if policy is not None else changes.exp
        version = KeyVersion(
            version=secrets.token_hex(16),
            spec=spec,
            material=material,
            key_ops=changes.key_ops if changes.key_ops is not None else _default_ops(spec.kty),
            enabled=True if changes.enabled is None else changes.enabled,
            nbf=changes.nbf,
            exp=exp,
            created=created,
            updated=created,
            tags=changes.tags or {},
            exportable=bool(changes.exportable),
        )
        key.versions.append(version)
        self._schedule_rotation(key)
        return version

    def rotation_policy(self, name: str) -> tuple[VaultKey, RotationPolicy]:
        key, _ = self.get(name)
        return key, key.rotation_policy if key.rotation_policy is not None else default_policy()

    def set_rotation_policy(self, name: str, policy: RotationPolicy) -> tuple[VaultKey, RotationPolicy]:
        key, _ = self.get(name)
        now = self.now()
        policy.created = key.rotation_policy.created if key.rotation_policy is not None else now
        policy.updated = now
        key.rotation_policy = policy
        self._schedule_rotation(key)
        self._rotate_due(key, now)
        return key, policy

    def get(self, name: str, version: str | None = None) -> tuple[VaultKey, KeyVersion]:
        self.settle()
        key = self.live.get(name.lower())
        if key is None:
            raise key_not_found(name, version)
        if not version:
            return key, key.latest
        found = key.find(version)
        if found is None:
            raise key_not_found(name, version)
        return key, found

    def update(self, name: str, version: str | None, changes: Changes) -> tuple[VaultKey, KeyVersion]:
        key, target = self.get(name, version)
        if "enabled" in changes.given and changes.enabled is not None:
            target.enabled = changes.enabled
        if "nbf" in changes.given:
            target.nbf = changes.nbf
        if "exp" in changes.given:
            target.exp = changes.exp
        if changes.key_ops is not None:
            target.key_ops = changes.key_ops
        if changes.tags is not None:
            target.tags = changes.tags
        target.updated = self.now()
        return key, target

    def list_live(self) -> list[VaultKey]:
        self.settle()
        return [self.live[n] for n in sorted(self.live)]

    def delete(self, name: str) -> VaultKey:
        self.settle()
        lname = name.lower()
        key = self.live.pop(lname, None)
        if key is None:
            raise key_not_found(name)
        now = self.now()
        key.deleted_date = now
        key.scheduled_purge_date = now + self.retention_days * 86400
        self._start(lname, "delete", key)
        return key

    # -- deleted keys ------------------------------------------------------------------------

    def get_deleted(self, name: str) -> VaultKey:
        self.settle()
        key = self.deleted.get(name.lower())
        if key is None:
            raise deleted_key_not_found(name)
        return key

    def list_deleted(self) -> list[VaultKey]:
        self.settle()
        return [self.deleted[n] for n in sorted(self.deleted)]

    def _take_deleted(self, name: str) -> VaultKey:
        self.settle()
        lname = name.lower()
        self._refuse_in_flight(name)
        key = self.deleted.get(lname)
        if key is None:
            raise deleted_key_not_found(name)
        return key

    def recover(self, name: str) -> VaultKey:
        key = self._take_deleted(name)
        lname = name.lower()
        del self.deleted[lname]
        self._start(lname, "recover", key)
        return key

    def purge(self, name: str) -> None:
        key = self._take_deleted(name)
        if self.purge_protection:
            raise azure_error(
                403,
                "Forbidden",
                'Operation "purge" is not allowed because purge protection is enabled for this vault. Key Vault '
                "service will automatically purge it after the retention period has passed.",
            )
        lname = name.lower()
        del self.deleted[lname]
        self._start(lname, "purge", key)

    # -- views -------------------------------------------------------------------------------

    def attributes(self, version: KeyVersion) -> dict[str, Any]:
        attrs: dict[str, Any] = {"enabled": version.enabled}
        if version.nbf is not None:
            attrs["nbf"] = version.nbf
        if version.exp is not None:
            attrs["exp"] = version.exp
        attrs |= {
            "created": version.created,
            "updated": version.updated,
            "recoveryLevel": self.recovery_level,
            "recoverableDays": self.retention_days,
            "exportable": version.exportable,
        }
        return attrs

    def key_bundle(self, base: str, key: VaultKey, version: KeyVersion) -> dict[str, Any]:
        jwk = {"kid": f"{base}/keys/{key.name}/{version.version}", "kty": version.spec.kty, "key_ops": version.key_ops}
        doc: dict[str, Any] = {"key": jwk | public_jwk(version.spec.kty, version.material)}
        doc["attributes"] = self.attributes(version)
        if version.tags:
            doc["tags"] = version.tags
        return doc

    def key_item(self, base: str, key: VaultKey, version: KeyVersion, *, with_version: bool) -> dict[str, Any]:
        kid = f"{base}/keys/{key.name}" + (f"/{version.version}" if with_version else "")
        doc: dict[str, Any] = {"kid": kid, "attributes": self.attributes(version)}
        if version.tags:
            doc["tags"] = version.tags
        return doc

    def deleted_fields(self, base: str, key: VaultKey) -> dict[str, Any]:
        return {
            "recoveryId": f"{base}/deletedkeys/{key.name}",
            "deletedDate": key.deleted_date,
            "scheduledPurgeDate": key.scheduled_purge_date,
        }

    def snapshot(self) -> dict[str, Any]:
        self.settle()

        def versions(key: VaultKey) -> list[dict[str, Any]]:
            return [
                {"version": v.version, "kty": v.spec.kty, "key_ops": v.key_ops, "tags": v.tags}
                | {k: val for k, val in self.attributes(v).items() if k not in ("recoveryLevel", "recoverableDays")}
                | {"primary": v is key.latest}
                for v in key.versions
            ]

        def policy(key: VaultKey) -> dict[str, Any] | None:
            if key.rotation_policy is None:
                return None
            doc = key.rotation_policy.to_json(f"keys/{key.name}/rotationpolicy")
            due = key.rotation_policy.due(key.latest.created, key.latest.exp)
            return doc | {"next_rotation": due}

        return {
            "vault": {
                "retention_days": self.retention_days,
                "purge_protection": self.purge_protection,
                "recovery_level": self.recovery_level,
            },
            "keys": [
                {"name": k.name, "collection": "keys", "versions": versions(k), "rotation_policy": policy(k)}
                for k in self.list_live()
            ],
            "deleted_keys": [
                {"name": k.name, "collection": "deletedkeys", "versions": versions(k)}
                | {"deletedDate": k.deleted_date, "scheduledPurgeDate": k.scheduled_purge_date}
                for k in self.list_deleted()
            ],
            "in_flight": [
                {"name": f.key.name, "operation": f.kind, "completes_at": f.until, "versions": versions(f.key)}
                for f in self.in_flight.values()
            ],
        }


def _default_ops(kty: str) -> list[str]:
    return list(DEFAULT_OPS[family(kty)])
