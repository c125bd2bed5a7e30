"""The template's naming scheme in every keystore, against the four adapters on their fakes over loopback, judged
by the fakes' own state: the key gets the name (AWS: the alias) it was given, a replay finds it instead of making a
second one, a key made as keyorch made them before (``keyorch-<id>``) is still found, and a name another key holds
is refused, never adopted."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from tests.providers.contract_env import PROVIDERS, ContractEnv, contract_env

from keyorch.domain.models import KeystoreType
from keyorch.domain.validation import check_label_in_keystore
from keyorch.providers.base import KeyRef, KeySpec
from keyorch.providers.errors import Conflict
from keyorch.providers.identity import label_in_keystore

AES = KeySpec(algorithm="aes", size=256, name="app-key", labels={"keyorch-label": "db"})
MIGRATION = Path(__file__).parents[2] / "src/keyorch/store/migrations/versions/0012_label_in_keystore.py"


@pytest.fixture(params=PROVIDERS, ids=[p.name for p in PROVIDERS])
async def env(request: pytest.FixtureRequest) -> AsyncIterator[ContractEnv]:
    async with contract_env(request.param) as made:
        yield made


def migration() -> ModuleType:
    spec = importlib.util.spec_from_file_location("migration_0012", MIGRATION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def held(env: ContractEnv) -> list[dict[str, Any]]:
    """Every key the fake holds (live or pending destruction), as (managed key id, what it is called there)."""
    snapshot = env.fake.state_snapshot()
    kind = env.provider.kind
    if kind is KeystoreType.AWS_KMS:
        return [
            {
                "managed": next((t["TagValue"] for t in k["Tags"] if t["TagKey"] == "keyorch:managed-key-id"), None),
                "names": sorted(k.get("Aliases", [])),
            }
            for k in snapshot["keys"]
        ]
    if kind is KeystoreType.AZURE_KEY_VAULT:
        return [
            {"managed": k["versions"][-1]["tags"].get("keyorch-managed-key-id"), "names": [k["name"]]}
            for k in snapshot["keys"] + snapshot["deleted_keys"]
        ]
    if kind is KeystoreType.GOOGLE_KMS:
        return [
            {"managed": k.get("labels", {}).get("keyorch-managed-key"), "names": [k["name"].rpartition("/")[2]]}
            for ring in snapshot["keyRings"]
            for k in ring["cryptoKeys"]
        ]
    return [
        {"managed": next((a[8:] for a in k.get("aliases", []) if a.startswith("keyorch-")), None), "names": [k["name"]]}
        for k in snapshot["keys"]
    ]


def of(env: ContractEnv, managed: str) -> list[list[str]]:
    return [k["names"] for k in held(env) if k["managed"] == managed]


def fresh() -> str:
    return str(uuid.uuid4())


async def test_the_scheme_names_the_key_and_a_replay_finds_it(env: ContractEnv) -> None:
    managed = fresh()
    kind = env.provider.kind
    name = check_label_in_keystore(kind, f"app-db{managed[:8]}", "ks")
    spec = replace(AES, name_in_keystore=name)
    made = await env.client.ensure_key(managed, spec)
    if kind is KeystoreType.AWS_KMS:  # the name is a second alias; the identity alias stays
        assert of(env, managed) == [sorted([name, f"alias/keyorch/{managed}"])]
    else:
        assert of(env, managed) == [[name]]
    assert label_in_keystore(kind, managed, spec.name, name) == name  # what the API shows

    creates = env.count(env.provider.create_operation)
    env.between_actions()
    again = await env.client.ensure_key(managed, spec, in_doubt=True)  # the replay after a lost answer
    assert again.key_id_in_keystore == made.key_id_in_keystore
    assert env.count(env.provider.create_operation) == creates
    assert len(of(env, managed)) == 1
    found = await env.client.get_key(KeyRef(None, managed, name))
    assert found is not None and found.key_id_in_keystore == made.key_id_in_keystore
    in_doubt = await env.client.find_in_doubt(managed, name)
    assert in_doubt is not None and in_doubt.key_id_in_keystore == made.key_id_in_keystore
    listed = {o.managed_key_id: o.key_id_in_keystore async for o in env.client.list_keys()}
    assert listed == {managed: made.key_id_in_keystore}  # the listing maps it by its tag, label or alias

    env.between_actions()
    await env.client.schedule_destruction(KeyRef(None, managed, name))
    pending = [o async for o in env.client.list_keys()]  # pending destruction, still mapped to the managed key
    assert [(o.managed_key_id, o.destruction_pending) for o in pending] == [(managed, True)]


async def test_a_key_made_as_before_is_found_not_duplicated(env: ContractEnv) -> None:
    managed = fresh()
    kind = env.provider.kind
    old = await env.client.ensure_key(managed, AES)  # as keyorch made keys before: no name given
    legacy = migration().legacy_name(kind.value, managed, AES.name)
    assert legacy == label_in_keystore(kind, managed, AES.name)  # the migration and the adapters agree
    assert legacy in of(env, managed)[0]
    creates = env.count(env.provider.create_operation)
    for recorded in (legacy, None):  # a migrated target, and one the migration left without a name
        again = await env.client.ensure_key(managed, replace(AES, name_in_keystore=recorded), in_doubt=True)
        assert again.key_id_in_keystore == old.key_id_in_keystore
        found = await env.client.get_key(KeyRef(None, managed, recorded))
        assert found is not None and found.key_id_in_keystore == old.key_id_in_keystore
    assert env.count(env.provider.create_operation) == creates
    assert len(of(env, managed)) == 1


async def test_a_name_another_key_holds_is_refused_not_adopted(env: ContractEnv) -> None:
    first, second = fresh(), fresh()
    kind = env.provider.kind
    name = check_label_in_keystore(kind, "shared-name", "ks")
    spec = replace(AES, name_in_keystore=name)
    made = await env.client.ensure_key(first, spec)
    env.between_actions()
    if kind is KeystoreType.IBM_KEY_PROTECT:  # names are not unique there: each key has its own alias
        other = await env.client.ensure_key(second, spec)
        assert other.key_id_in_keystore != made.key_id_in_keystore
        assert of(env, second) == [[name]]
        return
    with pytest.raises(Conflict) as refused:
        await env.client.ensure_key(second, spec, in_doubt=True)
    assert name.removeprefix("alias/") in refused.value.message and not refused.value.transient
    assert await env.client.get_key(KeyRef(None, second, name)) is None  # by name it is not the other's key
    assert of(env, second) == [] and len(of(env, first)) == 1
    assert len(held(env)) == 1
