"""The naming scheme through the reconciler, against each provider's fake over loopback (its own state decides):
a key of template ``app-{label}`` is created under that name, once, even when the create's answer is lost and the
engine replays it in doubt; a key made under keyorch's old ``keyorch-<id>`` identity (a target as the migration
left it) is found and kept, never made again; a name a keystore type cannot hold, or one another key holds there,
is refused when the key is made."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import update
from tests.providers.contract_env import PROVIDERS, ContractEnv, contract_env
from tests.providers.test_naming_contract import held, migration, of
from tests.reconcile.memory_keystore import builder_for

from keyorch.audit import Actor
from keyorch.crypto import MasterKey
from keyorch.domain.clock import FixedClock
from keyorch.domain.errors import Conflict, InvalidInput
from keyorch.domain.models import KeystoreType, ManagedKey, SyncFlag
from keyorch.providers.base import KeySpec
from keyorch.providers.identity import label_in_keystore
from keyorch.reconcile.clients import ClientPool
from keyorch.reconcile.controller import Controller
from keyorch.reconcile.queue import Backoff
from keyorch.service import keys, keystores, templates, vaults
from keyorch.service.context import ServiceContext
from keyorch.store.engine import migrate
from keyorch.store.repository import Store
from keyorch.store.schema import key_targets

MASTER_KEY = MasterKey(b"n" * 32)
_CONNECT_FIELDS = ("region", "project", "location", "key_ring", "instance_id")


@dataclass
class World:
    env: ContractEnv
    ctx: ServiceContext
    controller: Controller

    @property
    def kind(self) -> KeystoreType:
        return self.env.provider.kind

    async def key(self, label: str, template: str = "app") -> ManagedKey:
        return await keys.create_key(self.ctx, template=template, label=label, state="active")

    async def reread(self, key: ManagedKey) -> ManagedKey:
        async with self.ctx.store.read() as tx:
            return await tx.key(key.id)


@pytest.fixture(params=PROVIDERS, ids=[p.name for p in PROVIDERS])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    async with contract_env(request.param) as env:
        store = Store.from_url(f"sqlite:///{tmp_path / 'k.db'}")
        await migrate(store.engine)
        clock = FixedClock(datetime(2026, 5, 1, tzinfo=UTC))
        ctx = ServiceContext(store=store, actor=Actor("admin"), clock=clock, master_key=MASTER_KEY)
        credentials = tmp_path / "credentials.json"
        credentials.write_text(json.dumps(env.credentials))
        await vaults.create_vault(ctx, "v")
        fields = {k: v for k, v in env.provider.settings(env.fake).items() if k in _CONNECT_FIELDS}
        connect = keystores.ConnectRequest(
            vault="v",
            name="ks",
            type=env.provider.kind.value,
            endpoint=env.url,
            allow_insecure_http=True,
            credentials_file=str(credentials),
            **fields,
        )
        await keystores.connect_keystore(ctx, connect)
        await templates.create_template(ctx, vault="v", name="app", keystores=["ks"], naming_scheme="app-{label}")
        pool = ClientPool(store, MASTER_KEY, builder=builder_for({"ks": env.client}))  # type: ignore[dict-item]
        controller = Controller(store, pool, ctx.clock, workers=1, attempts=3, backoff=Backoff(0.001, 0.01))
        try:
            yield World(env, ctx, controller)
        finally:
            await store.close()


def expected(world: World, key: ManagedKey, name: str) -> list[list[str]]:
    if world.kind is KeystoreType.AWS_KMS:
        return [sorted([name, f"alias/keyorch/{key.id}"])]
    return [[name]]


async def test_a_lost_create_answer_is_replayed_into_the_one_named_key(world: World) -> None:
    env = world.env
    key = await world.key("db")
    name = "alias/app-db" if world.kind is KeystoreType.AWS_KMS else "app-db"
    assert [t.label_in_keystore for t in key.targets] == [name]  # fixed (and recorded) before any create is sent
    env.faults(env.provider.create_operation, "truncate")  # the create happens; its answer is cut off

    summary = await world.controller.run_once()
    assert summary.exit_code == 0, summary.as_json()
    assert of(env, key.id) == expected(world, key, name)
    assert len(held(env)) == 1  # the replay found the key: no second one
    if world.kind in (KeystoreType.AWS_KMS, KeystoreType.AZURE_KEY_VAULT):  # where a second create makes a second
        assert env.count(env.provider.create_operation) == 1  # key (AWS) or version (Azure), none was sent
    target = (await world.reread(key)).targets[0]
    assert target.sync_flag is SyncFlag.IN_SYNC and target.key_id_in_keystore
    assert label_in_keystore(world.kind, key.id, key.name, target.label_in_keystore) == name

    again = await world.controller.run_once()  # a later pass (with a listing) finds it by its tag or label
    assert again.exit_code == 0 and again.actions == 0, again.as_json()
    assert len(of(env, key.id)) == 1


@pytest.mark.parametrize("migrated", [True, False], ids=["named-by-migration", "left-unnamed"])
async def test_a_key_made_under_the_old_identity_is_kept(world: World, migrated: bool) -> None:
    env = world.env
    key = await world.key("old")
    made = await env.client.ensure_key(key.id, KeySpec(key.algorithm, key.size, key.name))  # as keyorch did
    legacy = migration().legacy_name(world.kind.value, key.id, key.name) if migrated else None
    async with world.ctx.store.transaction() as tx:
        await tx.conn.execute(
            update(key_targets).where(key_targets.c.key_id == key.id).values(label_in_keystore=legacy)
        )
    creates = env.count(env.provider.create_operation)

    summary = await world.controller.run_once()
    assert summary.exit_code == 0, summary.as_json()
    assert env.count(env.provider.create_operation) == creates  # found, not made again
    assert len(of(env, key.id)) == 1
    target = (await world.reread(key)).targets[0]
    assert target.key_id_in_keystore == made.key_id_in_keystore and target.sync_flag is SyncFlag.IN_SYNC
    shown = label_in_keystore(world.kind, key.id, key.name, target.label_in_keystore)
    assert shown == migration().legacy_name(world.kind.value, key.id, key.name)
    assert shown in of(env, key.id)[0]


async def test_a_name_the_type_cannot_hold_or_another_key_holds_is_refused(world: World) -> None:
    bad = "a" if world.kind is KeystoreType.IBM_KEY_PROTECT else "db.eu"  # Key Protect: 2-50; others: no '.'
    await templates.create_template(world.ctx, vault="v", name="plain", keystores=["ks"])
    with pytest.raises(InvalidInput) as refused:
        await world.key(bad, template="plain")
    assert refused.value.target == "label" and world.kind.value in refused.value.message
    assert repr(bad) in refused.value.message and "ks" in refused.value.message

    first = await world.key("app-x", template="plain")  # named app-x; template "app" would name label x the same
    if world.kind is KeystoreType.IBM_KEY_PROTECT:
        assert (await world.key("x")).targets[0].label_in_keystore == "app-x"  # names are not unique there
        return
    with pytest.raises(Conflict) as taken:
        await world.key("x")
    assert taken.value.target == "label" and first.id in taken.value.message and "app-x" in taken.value.message
    assert world.env.count(world.env.provider.create_operation) == 0  # refused before anything was sent
