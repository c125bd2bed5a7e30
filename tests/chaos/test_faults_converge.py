"""Chaos: 200 keys through the whole lifecycle on the four fakes while 30% of calls fail.

Every fake serves, for 30% of its requests (seeded, so the fault stream repeats), one of: HTTP 500,
HTTP 503, throttling, a hang (the adapters' read timeout is lowered to 0.5 s through the keystore
setting ``read_timeout_seconds``, so it becomes a timeout quickly), a dropped connection, or a
truncated answer (the fake acted, the client cannot read the result). The lifecycle runs in-process
(service layer + :class:`~keyorch.reconcile.controller.Controller`) for speed: create → activate →
reconcile → deactivate → reconcile → destroy → reconcile, each reconcile repeated (bounded) until a
pass reports every key in sync. Each phase's changes arrive one by one while a pass is already
running (as API changes do), so passes meet keys before, during and after their change.

The scenario runs once per module (``chaos``); each test below checks one promise against it:
* every target in sync in keyorch's store, and each fake shows the desired provider-native state;
* no duplicate key: per managed key exactly one key in each fake's snapshot (AWS counted by the
  ``keyorch:managed-key-id`` tag, so an orphan left by a lost ``CreateKey`` answer counts);
* no call the fake's state table rejected: the error bodies the fakes sent (recorded below the
  fakes' middleware, see :class:`tests.e2e.harness.RejectionRecorder`) carry none of the providers'
  invalid-state codes. The request log keeps only statuses, and a status alone cannot tell AWS's
  ``KMSInvalidStateException`` from ``NotFoundException`` (both 400) or Google's
  ``FAILED_PRECONDITION`` from ``INVALID_ARGUMENT``; the body's code can, and no injected fault
  ever produces one of those codes, so the criterion needs no fault bookkeeping.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.harness import (
    CHAOS_FAULTS,
    EXPECTED,
    KINDS,
    STATE_READERS,
    Rejection,
    chaos_context,
    configure_faults,
    duplicates,
    start_world_fakes,
    successful_creates,
)

from keyorch.domain.models import SyncFlag
from keyorch.reconcile.clients import ClientPool
from keyorch.reconcile.controller import Controller, PassSummary
from keyorch.reconcile.queue import Backoff
from keyorch.service import keys, templates
from keyorch.store.repository import Store

pytestmark = pytest.mark.slow

KEYS = 200
SEED = 20260328
MAX_PASSES = 12
FAULT_RULES: list[dict[str, Any]] = [{"operation": "*", "rate": 0.3, "faults": CHAOS_FAULTS}]


@dataclass
class ChaosResult:
    key_ids: list[str]
    passes: dict[str, int] = field(default_factory=dict)
    last_summary: dict[str, dict[str, object]] = field(default_factory=dict)
    not_in_sync: list[str] = field(default_factory=list)
    provider_mismatches: list[str] = field(default_factory=list)
    duplicates: dict[str, dict[str, int]] = field(default_factory=dict)
    creates: dict[str, int] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    faults: dict[str, dict[str, int]] = field(default_factory=dict)
    invalid_state: list[Rejection] = field(default_factory=list)
    error_answers: Counter[str] = field(default_factory=Counter)
    truncated_destroys: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


async def converge(controller: Controller, result: ChaosResult, phase: str) -> PassSummary:
    summary = PassSummary()
    for attempt in range(1, MAX_PASSES + 1):
        summary = await controller.run_once()
        result.passes[phase] = attempt
        if summary.exit_code == 0 and summary.flagged == 0:
            break
    result.last_summary[phase] = summary.as_json()
    return summary


async def run_chaos(workdir: Path) -> ChaosResult:
    started = time.monotonic()
    cluster, credentials, recorder = await start_world_fakes(workdir)
    store = Store.from_url(f"sqlite:///{workdir / 'chaos.db'}")
    pool: ClientPool | None = None
    try:
        ctx = await chaos_context(store, cluster, credentials, "chaos")
        await templates.create_template(
            ctx, vault="chaos", name="everywhere", keystores=list(KINDS), naming_scheme="CHAOS-{label}"
        )
        key_ids = [(await keys.create_key(ctx, template="everywhere", label=f"k{i:03d}")).id for i in range(KEYS)]
        result = ChaosResult(key_ids)

        configure_faults(cluster, SEED, FAULT_RULES)  # every operation of every fake, the orphan search too
        pool = ClientPool(store, ctx.master_key)
        controller = Controller(
            store, pool, ctx.clock, workers=96, attempts=4, backoff=Backoff(base_seconds=0.05, max_seconds=1.0)
        )
        for phase, change in (
            ("active", keys.activate_key),
            ("deactivated", keys.deactivate_key),
            ("destroyed", keys.destroy_key),
        ):
            # the changes arrive (as through the API) while a pass is already at work on the keys: each
            # key is met before, during or after its change, with the pass's listing older than it
            running = asyncio.create_task(controller.run_once())
            for key_id in key_ids:
                await change(ctx, key_id)
                await asyncio.sleep(0.005)
            await running
            await converge(controller, result, phase)

        async with store.transaction() as tx:
            for key in await tx.list_keys():
                result.not_in_sync += [
                    f"{key.label} on {t.keystore_id}: {t.sync_flag.value} {t.reason} {t.last_error}"
                    for t in key.targets
                    if t.sync_flag is not SyncFlag.IN_SYNC
                ]
        snapshots = {kind: cluster[kind].fake.state_snapshot() for kind in KINDS}
        for key_id in key_ids:
            for kind in KINDS:
                shown = STATE_READERS[kind](snapshots[kind], key_id)
                if shown != EXPECTED["destroyed"][kind]:
                    result.provider_mismatches.append(f"{key_id} in {kind}: {shown!r}")
        result.duplicates = duplicates(cluster, key_ids)
        for kind in KINDS:
            fake = cluster[kind].fake
            total = sum(fake.log.counts.values())
            assert len(fake.log.entries) == total, "the request log dropped entries; counts would be wrong"
            result.requests[kind] = total
            result.faults[kind] = dict(fake.log.fault_counts)
            result.creates[kind] = successful_creates(kind, fake)
            result.truncated_destroys[kind] = sum(
                1 for e in fake.log.entries if e.operation == DESTROY_OPERATION[kind] and e.fault == "truncate"
            )
        result.invalid_state = recorder.invalid_state()
        result.error_answers = recorder.codes()
        result.seconds = time.monotonic() - started
        return result
    finally:
        if pool is not None:
            await pool.aclose()
        await cluster.stop(grace_seconds=0.2)
        await store.close()


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> ChaosResult:
    result = asyncio.run(run_chaos(tmp_path_factory.mktemp("chaos")))
    print(  # the figures, for the CI log (-s or -rA)
        f"\nchaos: {KEYS} keys in {result.seconds:.1f} s; passes {result.passes}; requests {result.requests}; "
        f"faults served {result.faults}; successful creates {result.creates}"
    )
    return result


def test_every_target_converges_in_sync(chaos: ChaosResult) -> None:
    assert chaos.not_in_sync == [], chaos.not_in_sync[:20]
    assert all(n < MAX_PASSES for n in chaos.passes.values()) or all(
        s["flagged"] == 0 for s in chaos.last_summary.values()
    ), chaos.last_summary
    assert chaos.provider_mismatches == [], chaos.provider_mismatches[:20]


def test_faults_were_really_served(chaos: ChaosResult) -> None:
    for kind in KINDS:
        served = sum(chaos.faults[kind].values())
        share = served / chaos.requests[kind]
        assert 0.2 < share < 0.4, (kind, served, chaos.requests[kind])
        assert set(chaos.faults[kind]) == {"error_500", "error_503", "throttle", "hang", "drop", "truncate"}


@pytest.mark.parametrize("kind", KINDS)
def test_no_duplicate_key(chaos: ChaosResult, kind: str) -> None:
    assert chaos.duplicates[kind] == {}, chaos.duplicates[kind]
    assert chaos.creates[kind] <= KEYS, chaos.creates


#: the operation whose repetition a provider refuses once it succeeded (destruction already scheduled)
DESTROY_OPERATION = {
    "aws_kms": "ScheduleKeyDeletion",
    "azure_key_vault": "DeleteKey",
    "google_kms": "DestroyCryptoKeyVersion",
    "ibm_key_protect": "DeleteKey",
}


def test_no_planned_call_is_illegal(chaos: ChaosResult) -> None:
    """The reconciler never plans a transition a provider forbids.

    The only invalid-state refusals allowed here are an adapter's transparent retry of a destroy
    whose first answer was lost (a ``truncate`` fault: the fake acted, the client could not read
    it), so at most one per truncated destroy answer; see the strict test below for those.
    """
    for kind in KINDS:
        refused = Counter(r.operation for r in chaos.invalid_state if r.kind == kind)
        assert set(refused) <= {DESTROY_OPERATION[kind]}, (kind, refused)
        lost = chaos.truncated_destroys.get(kind, 0)
        assert refused[DESTROY_OPERATION[kind]] <= lost, (kind, refused, lost)


@pytest.mark.parametrize("kind", KINDS)
def test_no_call_rejected_by_a_state_table(chaos: ChaosResult, kind: str) -> None:
    refused = [f"{r.operation} {r.status} {r.body[:160]}" for r in chaos.invalid_state if r.kind == kind]
    assert refused == []
