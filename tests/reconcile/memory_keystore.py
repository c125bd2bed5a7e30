"""An in-memory keystore implementing the client interface, with out-of-band changes and
transient faults, for fast property tests of the reconciler (the HTTP fakes are used end to end)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from keyorch.audit import Actor
from keyorch.domain.clock import FixedClock
from keyorch.domain.models import Keystore
from keyorch.domain.states import KeyState
from keyorch.providers import mutations
from keyorch.providers.base import Health, HealthStatus, KeyRef, KeySpec, KeystoreClient, KeyVersion, Observation
from keyorch.providers.errors import Conflict, NotFound, Unavailable
from keyorch.service import keystores, templates, vaults
from keyorch.service.context import ServiceContext
from keyorch.store.engine import migrate
from keyorch.store.repository import Store


@dataclass
class MemKey:
    kid: str
    managed: str
    state: str = "enabled"  # enabled | disabled | pending | destroyed
    #: version ids, oldest first; the last is the primary
    versions: list[str] = field(default_factory=lambda: ["v1"])


@dataclass
class MemoryKeystore(KeystoreClient):
    name: str
    fault_rate: float = 0.0
    seed: int = 0
    keys: dict[str, MemKey] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    illegal: list[str] = field(default_factory=list)
    _rng: random.Random = field(init=False)
    _serial: int = 0
    lose_rotation_answers: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def _maybe_fail(self, op: str) -> None:
        self.calls[op] += 1
        if self.fault_rate and self._rng.random() < self.fault_rate:
            raise Unavailable("injected 503", keystore=self.name, operation=op, status=503)

    def _find(self, ref: KeyRef) -> MemKey | None:
        if ref.key_id_in_keystore and ref.key_id_in_keystore in self.keys:
            return self.keys[ref.key_id_in_keystore]
        for key in self.keys.values():
            if key.managed == ref.managed_key_id:
                return key
        return None

    @staticmethod
    def observe(key: MemKey) -> Observation | None:
        if key.state == "destroyed":
            return None
        if key.state == "pending":
            until = datetime(2030, 1, 1, tzinfo=UTC) + timedelta(days=30)
            return Observation(key.kid, key.managed, KeyState.DEACTIVATED, True, until, "pending")
        state = KeyState.ACTIVE if key.state == "enabled" else KeyState.DEACTIVATED
        return Observation(key.kid, key.managed, state, raw_state=key.state)

    async def list_keys(self) -> AsyncIterator[Observation]:
        self._maybe_fail("list")
        for key in list(self.keys.values()):
            observation = self.observe(key)
            if observation is not None:
                yield observation

    async def get_key(self, ref: KeyRef) -> Observation | None:
        self._maybe_fail("get")
        key = self._find(ref)
        return self.observe(key) if key else None

    async def ensure_key(self, managed_key_id: str, spec: KeySpec, *, in_doubt: bool = False) -> Observation:
        self._maybe_fail("create")
        existing = self._find(KeyRef(None, managed_key_id))
        if existing is None:
            self._serial += 1
            existing = self.keys[f"{self.name}-{self._serial}"] = MemKey(f"{self.name}-{self._serial}", managed_key_id)
            self.calls["created"] += 1
        observation = self.observe(existing)
        if observation is None:
            raise Conflict("key destroyed", keystore=self.name, operation="create", status=409)
        return observation

    def _transition(self, op: str, ref: KeyRef, allowed: set[str], target: str) -> Observation:
        self._maybe_fail(op)
        key = self._find(ref)
        if key is None or key.state not in allowed | {target}:
            self.illegal.append(f"{op} on {key.state if key else 'missing'}")
            raise Conflict(f"{op} not allowed", keystore=self.name, operation=op, status=409)
        key.state = target
        observation = self.observe(key)
        assert observation is not None
        return observation

    async def enable(self, ref: KeyRef, *, older_versions: bool = True) -> Observation:
        return self._transition("enable", ref, {"disabled"}, "enabled")

    async def disable(self, ref: KeyRef) -> Observation:
        return self._transition("disable", ref, {"enabled"}, "disabled")

    async def schedule_destruction(self, ref: KeyRef, *, force: bool = False) -> Observation:
        return self._transition("schedule", ref, {"enabled", "disabled"}, "pending")

    async def list_versions(self, ref: KeyRef) -> list[KeyVersion]:
        self._maybe_fail("list_versions")
        key = self._find(ref)
        if key is None:
            raise NotFound("no such key", keystore=self.name, operation="list_versions", status=404)
        return [KeyVersion(v, None, primary=n == len(key.versions) - 1) for n, v in enumerate(key.versions)]

    async def rotate(self, ref: KeyRef, *, from_version: str) -> KeyVersion:
        """Rotates only while ``from_version`` is the primary; ``lose_rotation_answers`` makes the answer of
        the next rotations get lost after the rotation was made (as a cut connection would)."""
        key = self._find(ref)
        if key is None or key.state != "enabled":
            self.illegal.append(f"rotate on {key.state if key else 'missing'}")
            raise Conflict("rotate not allowed", keystore=self.name, operation="rotate", status=409)
        if key.versions[-1] != from_version:
            return KeyVersion(key.versions[-1], None, primary=True)
        self._maybe_fail("rotate")
        key.versions.append(f"v{len(key.versions) + 1}")
        mutations.note("rotate")  # as the HTTP transport notes a rotation request it sent
        self.calls["rotated"] += 1
        if self.lose_rotation_answers > 0:
            self.lose_rotation_answers -= 1
            raise Unavailable("answer lost after the rotation", keystore=self.name, operation="rotate", status=503)
        return KeyVersion(key.versions[-1], None, primary=True)

    async def validate(self) -> Health:
        return Health(HealthStatus.OK)

    async def aclose(self) -> None:
        return None

    # out-of-band changes ("someone changed it in the console")
    def tamper(self, managed_key_id: str, new_state: str) -> bool:
        key = self._find(KeyRef(None, managed_key_id))
        if key is None or key.state in ("pending", "destroyed"):
            return False
        if new_state == "destroyed":  # deleted and purged behind keyorch's back
            del self.keys[key.kid]
        else:
            key.state = new_state
        return True


def builder_for(stores: Mapping[str, MemoryKeystore]) -> Any:
    def build(keystore: Keystore, credentials: Mapping[str, Any] | None) -> KeystoreClient:
        return stores[keystore.name]

    return build


async def one_keystore_store(path: Path) -> ServiceContext:
    """A fresh SQLite store with vault ``v``, one keystore ``ks`` and a template ``t`` targeting it."""
    store = Store.from_url(f"sqlite:///{path / 'k.db'}")
    await migrate(store.engine)
    ctx = ServiceContext(store=store, actor=Actor("admin"), clock=FixedClock(datetime(2026, 5, 1, tzinfo=UTC)))
    await vaults.create_vault(ctx, "v")
    request = keystores.ConnectRequest(
        vault="v", name="ks", type="aws_kms", region="us-east-1", credentials_from_environment=True
    )
    await keystores.connect_keystore(ctx, request)
    await templates.create_template(ctx, vault="v", name="t", keystores=["ks"])
    return ctx
