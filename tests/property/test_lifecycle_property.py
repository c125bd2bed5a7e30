"""Random sequences of operator actions never leave the store in a state the table forbids,
and every accepted change has exactly one audit record (every refusal exactly one too)."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyorch.audit import Actor
from keyorch.domain.clock import FixedClock
from keyorch.domain.errors import KeyorchError
from keyorch.domain.states import KeyState, allowed_transitions
from keyorch.service import keys, keystores, templates, vaults
from keyorch.service.context import ServiceContext
from keyorch.store.engine import migrate
from keyorch.store.repository import Store

LABELS = ["k0", "k1", "k2"]
USERS = ["alice", "bob"]
OPS = [
    "create",
    "create_active",
    "activate",
    "deactivate",
    "reactivate",
    "compromise",
    "destroy",
    "remove",
    "authorize",
    "withdraw",
    "wait",
    "disconnect",
]


@dataclass(frozen=True)
class Step:
    op: str
    label: str
    user: str
    days: int


steps = st.lists(
    st.builds(Step, st.sampled_from(OPS), st.sampled_from(LABELS), st.sampled_from(USERS), st.integers(0, 9)),
    min_size=1,
    max_size=40,
)


async def _run(sequence: list[Step], dual_auth: bool, db: Path) -> None:
    store = Store.from_url(f"sqlite:///{db}")
    await migrate(store.engine)
    clock = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    setup = ServiceContext(store=store, actor=Actor("admin"), clock=clock)
    await vaults.create_vault(setup, "v", dual_auth)
    await keystores.connect_keystore(
        setup,
        keystores.ConnectRequest(
            vault="v", name="ks", type="aws_kms", region="us-east-1", credentials_from_environment=True
        ),
    )
    await templates.create_template(setup, vault="v", name="t", keystores=["ks"])
    accepted, refused = 3, 0
    states: dict[str, KeyState] = {}
    legal = allowed_transitions()
    try:
        for step in sequence:
            ctx = ServiceContext(store=store, actor=Actor(step.user, "api"), clock=clock)  # authenticated: dual auth
            if step.op == "wait":
                clock.advance(days=step.days)
                continue
            try:
                await _apply(ctx, step)
            except KeyorchError:
                refused += 1
            else:
                accepted += 1
            async with store.transaction() as tx:
                current = {k.label: k.state for k in await tx.list_keys()}
                records = await tx.list_audit(limit=100_000)
            for label, state in current.items():
                before = states.get(label)
                assert before is None or before == state or (before, state) in legal, (before, state)
            for label in set(states) - set(current):
                assert states[label].in_keystores is KeyState.DESTROYED, f"{label} removed while {states[label]}"
            states = current
            assert sum(r.outcome == "accepted" for r in records) == accepted
            assert sum(r.outcome == "refused" for r in records) == refused
    finally:
        await store.close()


async def _apply(ctx: ServiceContext, step: Step) -> None:
    match step.op:
        case "create" | "create_active":
            await keys.create_key(
                ctx, template="t", label=step.label, state="active" if step.op == "create_active" else None
            )
        case "activate":
            await keys.activate_key(ctx, step.label)
        case "deactivate":
            await keys.deactivate_key(ctx, step.label)
        case "reactivate":
            await keys.reactivate_key(ctx, step.label)
        case "compromise":
            await keys.compromise_key(ctx, step.label)
        case "destroy":
            await keys.destroy_key(ctx, step.label)
        case "remove":
            await keys.remove_key(ctx, step.label)
        case "authorize":
            await keys.authorize_deletion(ctx, step.label)
        case "withdraw":
            await keys.withdraw_authorization(ctx, step.label)
        case "disconnect":
            await keystores.disconnect_keystore(ctx, "ks")
        case _:
            raise AssertionError(step.op)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequence=steps, dual_auth=st.booleans())
def test_random_action_sequences_keep_the_invariants(sequence: list[Step], dual_auth: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_run(sequence, dual_auth, Path(tmp) / "k.db"))
