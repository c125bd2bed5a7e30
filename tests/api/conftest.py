"""The API on a real socket (aiohttp's TestServer) over a real SQLite file, with tokens for each role."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from keyorch.api.app import create_api_app
from keyorch.api.auth import token_hash
from keyorch.audit import Actor, Source
from keyorch.crypto import MasterKey
from keyorch.domain.clock import FixedClock
from keyorch.domain.models import ManagedKey, SyncFlag, SyncReason, TargetStatus
from keyorch.service import keys, keystores, templates, vaults
from keyorch.service.context import ServiceContext
from keyorch.settings import ApiSettings, ApiToken, EnvironmentCredentialsSettings
from keyorch.store.engine import migrate
from keyorch.store.repository import Store

START = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
MASTER_KEY = MasterKey(b"k" * 32)
API = "/api/v4"

#: user → (token, roles). "payments" is the vault scoped tokens are limited to.
USERS: dict[str, dict[str, str]] = {
    "admin": {"*": "vault_administrator"},
    "admin2": {"*": "vault_administrator"},
    "creator": {"*": "key_custodian_creator"},
    "deployer": {"*": "key_custodian_deployer"},
    "deployer2": {"*": "key_custodian_deployer"},
    "reader": {"*": "reader"},
    "carol": {"payments": "key_custodian_deployer"},
    "scoped_admin": {"*": "reader", "payments": "vault_administrator"},
    "payments_admin": {"payments": "vault_administrator"},
}


def pass_counts(keys_checked: int = 0, in_sync: int = 0) -> dict[str, Any]:
    """The counts of a reconcile pass that found everything in sync (as ``PassSummary.as_json`` writes them)."""
    return {
        "keys_checked": keys_checked,
        "in_sync": in_sync,
        "flagged": 0,
        "actions_taken": 0,
        "errors": 0,
        "keystores_down": {},
        "exit_code": 0,
    }


def token_of(user: str) -> str:
    return f"token-of-{user}-0123456789"


def auth(user: str | None, etag: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token_of(user)}"} if user else {}
    if etag is not None:
        headers["If-Match"] = etag
    return headers


@dataclass
class Api:
    client: TestClient[Any, Any]
    store: Store
    clock: FixedClock
    changed: list[str] = field(default_factory=list)
    synced: list[str] = field(default_factory=list)
    _n: itertools.count[int] = field(default_factory=itertools.count)
    _shared: dict[bool, tuple[str, str]] = field(default_factory=dict)
    master_key: MasterKey | None = MASTER_KEY

    def ctx(self, user: str = "setup", source: Source = "cli-direct") -> ServiceContext:
        """The service as a test's setup acts on it (``source="api"``: as an authenticated user would)."""
        return ServiceContext(store=self.store, actor=Actor(user, source), clock=self.clock, master_key=self.master_key)

    def unique(self, prefix: str) -> str:
        return f"{prefix}{next(self._n)}"

    async def vault(self, name: str | None = None, dual_auth: bool = False) -> str:
        name = name or self.unique("v")
        try:
            return (await vaults.get_vault(self.ctx(), name)).id
        except Exception:
            return (await vaults.create_vault(self.ctx(), name, dual_auth)).id

    async def keystore(self, vault: str) -> str:
        req = keystores.ConnectRequest(
            vault=vault, name=self.unique("ks"), type="aws_kms", region="us-east-1", credentials_from_environment=True
        )
        return (await keystores.connect_keystore(self.ctx(), req)).id

    async def template(self, vault: str, keystore: str | None = None) -> str:
        keystore = keystore or await self.keystore(vault)
        return (
            await templates.create_template(self.ctx(), vault=vault, name=self.unique("t"), keystores=[keystore])
        ).id

    async def shared(self, dual_auth: bool = False) -> tuple[str, str]:
        """(vault, template) shared by the keys of a test, one pair per dual-auth setting."""
        if dual_auth not in self._shared:
            vault = await self.vault(dual_auth=dual_auth)
            self._shared[dual_auth] = (vault, await self.template(vault))
        return self._shared[dual_auth]

    async def key(
        self, vault: str | None = None, state: str = "pre_active", template: str | None = None, dual_auth: bool = False
    ) -> ManagedKey:
        """A key in the given state, via the service (not the API)."""
        if vault is None and template is None:
            vault, template = await self.shared(dual_auth)
        vault = vault or await self.vault()
        template = template or await self.template(vault)
        ctx = self.ctx()
        key = await keys.create_key(ctx, template=template, label=self.unique("k"), state="pre_active")
        steps = {
            "pre_active": [],
            "active": [keys.activate_key],
            "deactivated": [keys.activate_key, keys.deactivate_key],
            "destroyed": [keys.destroy_key],
            "removable": [keys.destroy_key],
        }[state]
        for step in steps:
            key = await step(ctx, key.id)
        if state == "removable":
            key = await self.confirm_gone(key)
        return key

    async def confirm_gone(self, key: ManagedKey) -> ManagedKey:
        """Record what a reconciler that found the destroyed key in no keystore would: every target
        not present, in sync at the key's generation (removal needs every keystore's confirmation)."""
        gone = [
            t.with_changes(
                status=TargetStatus.NOT_PRESENT,
                sync_flag=SyncFlag.IN_SYNC,
                reason=SyncReason.DESTROYED_KEY_IS_NOT_PRESENT_IN_KEYSTORE,
                synced_generation=key.generation,
            )
            for t in key.targets
        ]
        async with self.store.transaction() as tx:
            assert await tx.update_targets(key.id, key.generation, gone)
            return await tx.key(key.id)

    async def etag(self, path: str, user: str = "admin") -> str:
        resp = await self.client.get(API + path, headers=auth(user))
        assert resp.status == 200, await resp.text()
        return resp.headers["ETag"]

    def request(self, method: str, path: str, user: str | None = "admin", **kwargs: Any) -> Any:
        headers = {**auth(user), **kwargs.pop("headers", {})}
        return self.client.request(method, API + path, headers=headers, **kwargs)


def aws_connect_body(vault: str, name: str, **extra: Any) -> dict[str, Any]:
    """keyorch's POST /keystores body for an AWS keystore on credentials from the environment."""
    return {
        "vault": vault,
        "name": name,
        "type": "aws_kms",
        "region": "us-east-1",
        "credentials_from_environment": True,
        **extra,
    }


def check_uko_error(doc: Any, status: int, trace_header: str | None) -> None:
    """``doc`` is UKO's ApiError exactly (IBM's UKO v4 SDK): status_code, trace (the answer's
    X-Correlation-Id), errors of code, message, more_info, message_params and an optional target
    ``{"type": field|parameter|header, "name"}``."""
    assert isinstance(doc, dict) and set(doc) == {"status_code", "trace", "errors"}, doc
    assert doc["status_code"] == status, doc
    assert isinstance(doc["trace"], str) and len(doc["trace"]) == 36 and doc["trace"] == trace_header, doc
    assert isinstance(doc["errors"], list) and doc["errors"], doc
    for e in doc["errors"]:
        assert set(e) in (
            {"code", "message", "more_info", "message_params"},
            {"code", "message", "more_info", "message_params", "target"},
        ), e
        assert all(isinstance(e[k], str) and e[k] for k in ("code", "message", "more_info")), e
        assert isinstance(e["message_params"], list) and all(isinstance(p, str) for p in e["message_params"]), e
        if "target" in e:
            target = e["target"]
            assert isinstance(target, dict) and set(target) == {"type", "name"}, e
            assert target["type"] in ("field", "parameter", "header") and isinstance(target["name"], str), e


async def error_of(resp: ClientResponse) -> dict[str, Any]:
    doc = await resp.json()
    check_uko_error(doc, resp.status, resp.headers.get("X-Correlation-Id"))
    return doc


def target_of(err: dict[str, Any]) -> tuple[str, str] | None:
    """An error entry's target as (type, name), or None when it has none."""
    target = err.get("target")
    return None if target is None else (target["type"], target["name"])


@pytest.fixture
def db_dir(tmp_path: Path) -> Iterator[Path]:
    """A fresh folder for the SQLite file: in memory-backed /dev/shm where there is one (fsync costs nothing)."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir=shm, prefix="keyorch-api-test-") as folder:
        yield Path(folder)


ApiFactory = Callable[..., Awaitable[Api]]


@pytest.fixture
def api_db_url(db_dir: Path) -> str:
    """The API's database: a SQLite file (a test module can override this fixture, e.g. with ``db_url``)."""
    return f"sqlite:///{db_dir / 'keyorch.db'}"


@pytest.fixture
async def api_factory(api_db_url: str) -> AsyncIterator[ApiFactory]:
    """Start the API app over one migrated database; keyword arguments replace create_api_app's."""
    store = Store.from_url(api_db_url)
    await migrate(store.engine)
    clients: list[TestClient[Any, Any]] = []

    async def start(**overrides: Any) -> Api:
        clock = FixedClock(START)
        tokens = [ApiToken(user=u, sha256=token_hash(token_of(u)), roles=roles) for u, roles in USERS.items()]  # type: ignore[arg-type]
        changed: list[str] = []
        synced: list[str] = []

        async def sync_key(key_id: str) -> dict[str, Any]:
            synced.append(key_id)
            return {"targets": [], **pass_counts(keys_checked=1, in_sync=1)}

        async def reconcile_once() -> dict[str, Any]:
            return {"flagged_keys": [], **pass_counts()}

        async def plan(refs: Any) -> dict[str, Any]:
            return {"steps": [], "keystores_down": {}, "rotations": []}

        options: dict[str, Any] = {
            "store": store,
            "settings": ApiSettings(tokens=tokens),
            "clock": clock,
            "master_key": MASTER_KEY,
            "on_change": changed.append,
            "sync_key": sync_key,
            "reconcile_once": reconcile_once,
            "plan": plan,
            # most tests connect keystores with credentials from the environment (tests of the rule pass their own)
            "environment_credentials": EnvironmentCredentialsSettings(vaults=["*"]),
            **overrides,
        }
        client: TestClient[Any, Any] = TestClient(TestServer(create_api_app(**options)))
        await client.start_server()
        clients.append(client)
        return Api(
            client=client, store=store, clock=clock, changed=changed, synced=synced, master_key=options["master_key"]
        )

    try:
        yield start
    finally:
        for client in clients:
            await client.close()
        await store.close()


@pytest.fixture
async def api(api_factory: ApiFactory) -> Api:
    return await api_factory()
