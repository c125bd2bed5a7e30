"""``Retry-After`` is the least wait before a throttled call is sent again, whoever sends it again.

``keyorch sync-key`` runs as a real subprocess against the fakes. Each phase makes calls of the
key's lifecycle answer "throttled, retry after 1 s" once (the fakes' fault injection, in each
provider's own form; AWS throttles without a ``Retry-After``, so it is not among them). The fake's
request log holds the time each request arrived: the resend of the throttled call must arrive at
least the ``Retry-After`` after the throttled attempt did. That is an ordering between two receive
times the server took itself, not a speed measure; nothing here depends on how fast the machine is.

Issue 11, point 5: a throttled Azure ``CreateKey`` (not idempotent, so the transport left it to the
reconciler) was sent again after about 0.2 s, the pass's own backoff. It is throttled alone: the
pass requeues a key only once all its targets are done, so a target that waited out its own
``Retry-After`` in the transport would hold the Azure resend back too and hide the fault. The
other phases cover the calls that go through ``retry.call_checked`` (Key Protect's actions and
delete, Cloud KMS's destroy) and the idempotent ones, in three providers at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.harness import (
    EXPECTED,
    AsyncCli,
    configure_faults,
    provider_states,
    setup_world,
    start_world_fakes,
)

from keyorch.fakes.registry import FakeCluster

RETRY_AFTER_SECONDS = 1

#: per phase, the call of each provider that is throttled once (as the fakes name it in their logs)
PHASES: dict[str, dict[str, str]] = {
    "active": {"azure_key_vault": "CreateKey"},
    "deactivated": {
        "azure_key_vault": "UpdateKey",
        "google_kms": "UpdateCryptoKeyVersion",
        "ibm_key_protect": "DisableKey",
    },
    "destroyed": {
        "azure_key_vault": "DeleteKey",
        "google_kms": "DestroyCryptoKeyVersion",
        "ibm_key_protect": "DeleteKey",
    },
}
CHANGE = {"active": "activate", "deactivated": "deactivate", "destroyed": "destroy"}


@dataclass
class World:
    cli: AsyncCli
    cluster: FakeCluster


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    cluster, credentials, _ = await start_world_fakes(tmp_path)
    try:
        cli = AsyncCli(tmp_path)
        await setup_world(cli, cluster, credentials)
        yield World(cli, cluster)
    finally:
        await cluster.stop()


def throttle_once(cluster: FakeCluster, operations: dict[str, str]) -> None:
    throttle = {"kind": "throttle", "retry_after_seconds": RETRY_AFTER_SECONDS}
    for kind, operation in operations.items():
        configure_faults(cluster, 0, [{"operation": operation, "sequence": [throttle]}], kind)


def resend_gap(cluster: FakeCluster, kind: str, operation: str) -> tuple[timedelta, list[dict[str, Any]]]:
    """The time between the throttled request's arrival and the arrival of the next one of that call."""
    calls = [e for e in cluster[kind].fake.log.entries if e.operation == operation]
    shown = [e.as_json() for e in calls]
    assert len(calls) >= 2 and calls[0].fault == "throttle", f"{kind} {operation}: {shown}"
    assert calls[1].fault is None and calls[1].status is not None and calls[1].status < 300, shown
    return calls[1].time - calls[0].time, shown


async def test_a_throttled_call_is_resent_no_sooner_than_its_retry_after(world: World) -> None:
    cli = world.cli
    key_id = (await cli.ok("key", "create", "--template", "everywhere", "--label", "throttled"))["id"]
    for phase, operations in PHASES.items():
        await cli.ok("key", CHANGE[phase], key_id)
        for kind in world.cluster:
            world.cluster[kind].fake.log.clear()
        throttle_once(world.cluster, operations)

        result = await cli("sync-key", key_id)

        assert result.code == 0, str(result)
        assert provider_states(world.cluster, key_id) == EXPECTED[phase]
        for kind in operations:
            gap, calls = resend_gap(world.cluster, kind, operations[kind])
            assert gap >= timedelta(seconds=RETRY_AFTER_SECONDS), (
                f"{phase}: {kind} {operations[kind]} was sent again {gap.total_seconds():.3f} s after the keystore "
                f"answered Retry-After: {RETRY_AFTER_SECONDS}; requests: {calls}"
            )
