"""Property: for random desired states, out-of-band changes and transient faults, repeated passes
with remediation reach in-sync; without remediation exactly the drifted targets are flagged with
the right reason. Runs the real engine, queue and controller on a real SQLite file."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.reconcile.memory_keystore import MemoryKeystore, builder_for

from keyorch.audit import Actor
from keyorch.domain.clock import FixedClock
from keyorch.domain.errors import KeyorchError
from keyorch.domain.models import SyncFlag, SyncReason
from keyorch.domain.states import KeyState
from keyorch.providers.base import KeyRef
from keyorch.reconcile.clients import ClientPool
from keyorch.reconcile.controller import Controller
from keyorch.reconcile.queue import Backoff
from keyorch.service import keys, keystores, templates, vaults
from keyorch.service.context import ServiceContext
from keyorch.store.engine import migrate
from keyorch.store.repository import Store

KEYSTORES = ("ks-a", "ks-b")
PATHS: dict[KeyState, list[str]] = {
    KeyState.PRE_ACTIVE: [],
    KeyState.ACTIVE: ["activate"],
    KeyState.DEACTIVATED: ["activate", "deactivate"],
    KeyState.DESTROYED: ["activate", "deactivate", "destroy"],
}  # the compromised states: tests/e2e/test_lifecycle_cli.py and tests/reconcile/test_planner.py
EXPECTED_DRIFT_REASON = {
    KeyState.ACTIVE: SyncReason.ACTIVE_KEY_IS_NOT_ACTIVE_IN_KEYSTORE,
    KeyState.DEACTIVATED: SyncReason.DEACTIVATED_KEY_IS_NOT_DEACTIVATED_IN_KEYSTORE,
}


@dataclass(frozen=True)
class Scenario:
    desired: tuple[KeyState, ...]
    tampers: tuple[tuple[int, int, str], ...]  # (key index, keystore index, new provider state)
    fault_rate: float
    seed: int


scenarios = st.builds(
    Scenario,
    st.lists(st.sampled_from(list(PATHS)), min_size=1, max_size=4).map(tuple),
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 1), st.sampled_from(["enabled", "disabled", "destroyed"])),
        max_size=4,
    ).map(tuple),
    st.sampled_from([0.0, 0.3]),
    st.integers(0, 10_000),
)


async def _setup(db: Path, remediate: bool, scenario: Scenario) -> tuple[Store, Controller, dict[str, MemoryKeystore]]:
    store = Store.from_url(f"sqlite:///{db}")
    await migrate(store.engine)
    ctx = ServiceContext(store=store, actor=Actor("admin"), clock=FixedClock(datetime(2026, 5, 1, tzinfo=UTC)))
    await vaults.create_vault(ctx, "v")
    for name in KEYSTORES:
        await keystores.connect_keystore(
            ctx,
            keystores.ConnectRequest(
                vault="v",
                name=name,
                type="aws_kms",
                region="us-east-1",
                credentials_from_environment=True,
                drift_policy="remediate" if remediate else "flag",
            ),
        )
    await templates.create_template(ctx, vault="v", name="t", keystores=list(KEYSTORES))
    mem = {
        name: MemoryKeystore(name, fault_rate=scenario.fault_rate, seed=scenario.seed + i)
        for i, name in enumerate(KEYSTORES)
    }
    pool = ClientPool(store, None, builder=builder_for(mem))
    controller = Controller(store, pool, ctx.clock, workers=3, attempts=6, backoff=Backoff(0.001, 0.01))
    for index, state in enumerate(scenario.desired):
        await keys.create_key(ctx, template="t", label=f"k{index}")
        for action in PATHS[state]:
            await getattr(keys, f"{action}_key")(ctx, f"k{index}")
    return store, controller, mem


async def _converge(controller: Controller, mem: dict[str, MemoryKeystore], passes: int = 8) -> None:
    for attempt in range(passes):
        if attempt == passes - 1:
            for store in mem.values():
                store.fault_rate = 0.0
        summary = await controller.run_once()
        if summary.flagged == 0 and summary.exit_code == 0:
            return
    raise AssertionError(f"not converged: {summary.as_json()}")


async def _check_in_sync(store: Store, mem: dict[str, MemoryKeystore]) -> None:
    async with store.transaction() as tx:
        all_keys = await tx.list_keys()
        ks_names = {k.id: k.name for k in await tx.list_keystores()}
    for key in all_keys:
        for target in key.targets:
            assert target.sync_flag is SyncFlag.IN_SYNC, (key.state, target)
            memkey = mem[ks_names[target.keystore_id]]._find(KeyRef(None, key.id))
            expected = {
                KeyState.PRE_ACTIVE: None,
                KeyState.ACTIVE: "enabled",
                KeyState.DEACTIVATED: "disabled",
                KeyState.DESTROYED: "pending",
            }[key.state.in_keystores]
            assert (memkey.state if memkey else None) in (
                {expected, "destroyed", None} if key.state.in_keystores is KeyState.DESTROYED else {expected}
            )
    for m in mem.values():
        assert not m.illegal, m.illegal
        managed = [k.managed for k in m.keys.values()]
        assert len(managed) == len(set(managed)), "a key was created twice in one keystore"


async def _scenario(scenario: Scenario, remediate: bool, db: Path) -> None:
    store, controller, mem = await _setup(db, remediate, scenario)
    try:
        await _converge(controller, mem)
        await _check_in_sync(store, mem)
        async with store.transaction() as tx:
            all_keys = await tx.list_keys()
        drifted: dict[tuple[str, str], KeyState] = {}
        for key_index, ks_index, new_state in scenario.tampers:
            if key_index >= len(all_keys):
                continue
            key = all_keys[key_index]
            if key.state not in EXPECTED_DRIFT_REASON:
                continue
            in_line = "enabled" if key.state is KeyState.ACTIVE else "disabled"
            if new_state != in_line and mem[KEYSTORES[ks_index]].tamper(key.id, new_state):
                drifted[(key.id, KEYSTORES[ks_index])] = key.state
        for m in mem.values():
            m.fault_rate = 0.0
        summary = await controller.run_once()
        async with store.transaction() as tx:
            names = {k.id: k.name for k in await tx.list_keystores()}
            after = await tx.list_keys()
        flagged = {
            (k.id, names[t.keystore_id]): t.reason
            for k in after
            for t in k.targets
            if t.sync_flag is SyncFlag.OUT_OF_SYNC
        }
        if remediate:
            assert flagged == {} and summary.flagged == 0
            await _check_in_sync(store, mem)
        else:
            assert flagged == {target: EXPECTED_DRIFT_REASON[state] for target, state in drifted.items()}
            assert summary.actions == 0, "drift must not be overwritten under the flag policy"
    finally:
        await controller.pool.aclose()
        await store.close()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios, remediate=st.booleans())
def test_passes_converge_or_flag_exactly_the_drift(scenario: Scenario, remediate: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            asyncio.run(_scenario(scenario, remediate, Path(tmp) / "k.db"))
        except KeyorchError as exc:  # pragma: no cover - shows the domain message on failure
            raise AssertionError(exc.message) from exc
