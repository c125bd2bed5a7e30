"""Chaos: 100 active keys rotated on the four fakes while 30% of the fakes' answers are faults.

Every fake serves, for 30% of its requests (seeded), one of: HTTP 500 or 503, throttling, a hang (a timeout:
the keystores' read timeout is 0.5 s), a dropped connection, or one of the faults that come after the fake
acted, so the client cannot tell whether it did: a truncated answer, a 500 in place of the answer
(``error_500_after``), an answer held past the read timeout (``hold_after``). The keys are made and brought in
sync without faults, then the faults start, a pass starts, and the 100 rotations arrive (as through the API)
while it runs; passes follow (bounded) until one reports every key in sync. In-process (the service layer and
the :class:`~keyorch.reconcile.controller.Controller`) over real HTTP to the fakes and a real SQLite file.

The promises, each a test against the one scenario:
* every key rotated exactly once in every keystore: each fake's state holds exactly two versions of it, the
  new one primary, and its request log exactly one rotation carried out per key; keyorch's record of each
  target names that version; no provider refused a second rotation (Key Protect's once-an-hour limit);
* the reconciler converges: every target in sync at version 2;
* the faults really met the rotations, and ``keyorch_rotations_total`` says so (rotations in doubt, found
  made afterwards).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.harness import (
    CHAOS_FAULTS,
    KINDS,
    ROTATE_OPERATION,
    VERSION_READERS,
    accepted_rotations,
    chaos_context,
    clear_faults,
    configure_faults,
    start_world_fakes,
)

from keyorch import metrics
from keyorch.domain.models import SyncFlag
from keyorch.reconcile.clients import ClientPool
from keyorch.reconcile.controller import Controller
from keyorch.reconcile.queue import Backoff
from keyorch.service import keys, rotation, templates
from keyorch.store.repository import Store

pytestmark = pytest.mark.slow

KEYS = 100
SEED = 20261204
MAX_PASSES = 12
#: the chaos tests' faults, and two more that come after the fake acted: a 500 in place of its answer, and its
#: answer held past the keystores' read timeout (0.5 s)
ROTATION_FAULTS: list[Any] = [*CHAOS_FAULTS, "error_500_after", {"kind": "hold_after", "hang_seconds": 2}]
FAULT_RULES: list[dict[str, Any]] = [{"operation": "*", "rate": 0.3, "faults": ROTATION_FAULTS}]
#: the answers of the providers' rotation limits: a second rotation of a key would meet one
SECOND_ROTATION_REFUSED = ("KEY_ROTATION_NOT_PERMITTED", "LimitExceededException")


@dataclass
class RotationChaos:
    key_ids: list[str]
    #: per key, per fake: its versions (version id, primary) before the rotations and after
    before: dict[str, dict[str, list[tuple[str, bool]]]] = field(default_factory=dict)
    after: dict[str, dict[str, list[tuple[str, bool]]]] = field(default_factory=dict)
    #: per key, per keystore: (sync flag, key version, primary version id) as keyorch recorded it
    recorded: dict[str, dict[str, tuple[str, int, str | None]]] = field(default_factory=dict)
    passes: int = 0
    accepted: dict[str, int] = field(default_factory=dict)
    faults_on_rotations: dict[str, dict[str, int]] = field(default_factory=dict)
    counted: dict[tuple[str, str], float] = field(default_factory=dict)
    refusals: list[str] = field(default_factory=list)
    seconds: float = 0.0


def counted_rotations() -> dict[tuple[str, str], float]:
    return {
        (kind, outcome): metrics.REGISTRY.get_sample_value(
            "keyorch_rotations_total", {"keystore": kind, "outcome": outcome}
        )
        or 0.0
        for kind in KINDS
        for outcome in metrics.ROTATION_OUTCOMES
    }


async def converge(controller: Controller) -> int:
    for attempt in range(1, MAX_PASSES + 1):
        summary = await controller.run_once()
        if summary.exit_code == 0 and summary.flagged == 0:
            return attempt
    return MAX_PASSES + 1


async def run_rotation_chaos(workdir: Path) -> RotationChaos:
    started = time.monotonic()
    cluster, credentials, recorder = await start_world_fakes(workdir)
    store = Store.from_url(f"sqlite:///{workdir / 'chaos.db'}")
    pool: ClientPool | None = None
    try:
        ctx = await chaos_context(store, cluster, credentials, "rot")
        await templates.create_template(ctx, vault="rot", name="everywhere", keystores=list(KINDS))
        made = [
            await keys.create_key(ctx, template="everywhere", label=f"r{i:03d}", state="active") for i in range(KEYS)
        ]
        result = RotationChaos([k.id for k in made])
        pool = ClientPool(store, ctx.master_key)
        controller = Controller(
            store, pool, ctx.clock, workers=96, attempts=4, backoff=Backoff(base_seconds=0.05, max_seconds=1.0)
        )
        assert await converge(controller) <= MAX_PASSES, "the keys did not come in sync without faults"

        def versions() -> dict[str, dict[str, list[tuple[str, bool]]]]:
            snapshots = {kind: cluster[kind].fake.state_snapshot() for kind in KINDS}
            return {k: {kind: VERSION_READERS[kind](snapshots[kind], k) for kind in KINDS} for k in result.key_ids}

        result.before = versions()
        counted_before = counted_rotations()
        for kind in KINDS:
            cluster[kind].fake.log.clear()

        configure_faults(cluster, SEED, FAULT_RULES)
        running = asyncio.create_task(controller.run_once())  # the rotations arrive while a pass works
        for key_id in result.key_ids:
            await rotation.rotate_key(ctx, key_id)
            await asyncio.sleep(0.005)
        await running
        result.passes = await converge(controller)
        clear_faults(cluster)

        result.after = versions()
        async with store.read() as tx:
            names = {ks.id: ks.name for ks in await tx.list_keystores()}
            for key in await tx.list_keys():
                result.recorded[key.id] = {
                    names[t.keystore_id]: (t.sync_flag.value, t.key_version, t.primary_version_id) for t in key.targets
                }
        for kind in KINDS:
            fake = cluster[kind].fake
            assert len(fake.log.entries) == sum(fake.log.counts.values()), "the request log dropped entries"
            result.accepted[kind] = accepted_rotations(kind, fake)
            served: dict[str, int] = {}
            for entry in fake.log.entries:
                if entry.operation == ROTATE_OPERATION[kind] and entry.fault is not None:
                    served[entry.fault] = served.get(entry.fault, 0) + 1
            result.faults_on_rotations[kind] = served
        now = counted_rotations()
        result.counted = {k: now[k] - counted_before[k] for k in now if now[k] != counted_before[k]}
        result.refusals = [
            f"{r.kind} {r.operation} {r.status} {r.body[:200]}"
            for r in recorder.rejections
            if any(code in r.body for code in SECOND_ROTATION_REFUSED)
        ]
        result.seconds = time.monotonic() - started
        return result
    finally:
        if pool is not None:
            await pool.aclose()
        await cluster.stop(grace_seconds=0.2)
        await store.close()


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> RotationChaos:
    result = asyncio.run(run_rotation_chaos(tmp_path_factory.mktemp("rotation-chaos")))
    print(  # the figures, for the CI log (-s or -rA)
        f"\nrotation chaos: {KEYS} keys in {result.seconds:.1f} s; passes {result.passes}; faults on rotations "
        f"{result.faults_on_rotations}; rotations counted {result.counted}"
    )
    return result


@pytest.mark.parametrize("kind", KINDS)
def test_every_key_is_rotated_exactly_once_in_every_keystore(chaos: RotationChaos, kind: str) -> None:
    wrong = []
    for key_id in chaos.key_ids:
        [(original, _)] = chaos.before[key_id][kind]
        found = chaos.after[key_id][kind]
        if len(found) != 2 or found[0] != (original, False) or not found[1][1]:
            wrong.append(f"{key_id}: {chaos.before[key_id][kind]} -> {found}")
        elif chaos.recorded[key_id][kind][1:] != (2, found[1][0]):
            wrong.append(f"{key_id}: keyorch recorded {chaos.recorded[key_id][kind]}, the fake holds {found}")
    assert wrong == [], wrong[:10]
    assert chaos.accepted[kind] == KEYS, chaos.accepted  # one rotation carried out per key, no more
    assert [r for r in chaos.refusals if r.startswith(kind)] == []


def test_the_reconciler_converges(chaos: RotationChaos) -> None:
    assert chaos.passes <= MAX_PASSES, chaos.passes
    behind = [
        f"{key_id} in {kind}: {record}"
        for key_id, targets in chaos.recorded.items()
        for kind, record in targets.items()
        if record[0] != SyncFlag.IN_SYNC.value or record[1] != 2
    ]
    assert behind == [], behind[:10]


def test_the_faults_met_the_rotations_and_the_metric_counts_them(chaos: RotationChaos) -> None:
    for kind in KINDS:
        served = chaos.faults_on_rotations[kind]
        assert sum(served.values()) > 0, (kind, served)
        rotated = chaos.counted.get((kind, "rotated"), 0)
        recognised = chaos.counted.get((kind, "recognised"), 0)
        # a rotation counted as made now is a version made: never more than the keys; the others were found made
        assert rotated <= KEYS and rotated + recognised >= KEYS, (kind, chaos.counted)
    after_doubt = sum(chaos.counted.get((kind, outcome), 0) for kind in KINDS for outcome in ("in_doubt", "failed"))
    assert after_doubt > 0, chaos.counted
    assert sum(chaos.counted.get((kind, "recognised"), 0) for kind in KINDS) > 0, chaos.counted
    assert {outcome for _, outcome in chaos.counted} <= set(metrics.ROTATION_OUTCOMES)
