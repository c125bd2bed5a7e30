"""End to end through the CLI as a real subprocess, against the four fakes on loopback.

The fakes run in this test's event loop; every ``keyorch`` call is a child process started with
``asyncio.create_subprocess_exec`` so the loop keeps serving the fakes while the CLI talks to them.
After each ``sync-key`` each fake must show the provider-native state of the key's desired state.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.harness import (
    EXPECTED,
    KINDS,
    AsyncCli,
    FakeWorld,
    aws_keys,
    duplicates,
    fake_world,
    provider_states,
)

from keyorch.fakes.aws_input import Members
from keyorch.fakes.aws_ops import OPERATIONS as AWS_OPERATIONS
from keyorch.fakes.registry import FakeCluster

World = FakeWorld


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with fake_world(tmp_path) as made:
        yield made


async def sync_key(world: World, key_id: str, expected_state: str) -> dict[str, Any]:
    """``sync-key`` exits 0, reports the four targets in sync, and each fake shows the state."""
    result = await world.cli("sync-key", key_id)
    assert result.code == 0, str(result)
    doc: dict[str, Any] = result.json()
    assert sorted(t["keystore_name"] for t in doc["targets"]) == sorted(KINDS), doc
    assert all(t["sync_flag"] == "in_sync" for t in doc["targets"]), doc
    assert provider_states(world.cluster, key_id) == EXPECTED[expected_state]
    return doc


def enable_behind_keyorchs_back(cluster: FakeCluster, managed_key_id: str) -> None:
    """Out-of-band change: the AWS fake's own ``EnableKey`` operation run on its store.

    That is the fake's state-table code a wire call would run (same ``require_state`` check), but
    called directly, so the request log keeps only keyorch's own calls.
    """
    fake = cluster["aws_kms"].fake
    [key] = aws_keys(fake.state_snapshot(), managed_key_id)
    AWS_OPERATIONS["EnableKey"](fake.store, Members({"KeyId": key["KeyId"]}))  # type: ignore[attr-defined]


async def plan_changes_nothing(world: World, key_id: str) -> list[dict[str, Any]]:
    before = provider_states(world.cluster, key_id)
    world.clear_logs()
    doc = await world.cli.ok("plan", key_id)
    assert world.mutating() == {kind: [] for kind in KINDS}, "plan made a mutating call"
    assert sum(len(world.cluster[k].fake.log.entries) for k in KINDS) > 0, "plan observed nothing"
    assert provider_states(world.cluster, key_id) == before
    steps: list[dict[str, Any]] = doc["steps"]
    assert sorted(s["keystore_name"] for s in steps) == sorted(KINDS)
    return steps


async def test_key_lifecycle_on_four_fakes_through_the_cli(world: World) -> None:
    cli = world.cli
    key = await cli.ok("key", "create", "--template", "everywhere", "--label", "payments")
    key_id = key["id"]
    assert key["state"] == "pre_activation"

    # pre_active: not installed anywhere
    await sync_key(world, key_id, "pre_active")

    # active: created and enabled in all four
    await cli.ok("key", "activate", key_id)
    doc = await sync_key(world, key_id, "active")
    assert all(t["actions_taken"] == ["create"] for t in doc["targets"]), doc

    # the rule: a keystore with an active key cannot be disconnected (exit 3, naming the key)
    for kind in ("aws_kms", "ibm_key_protect"):
        refused = await cli("keystore", "disconnect", kind)
        assert refused.code == 3, str(refused)
        assert key_id in refused.err and "payments" in refused.err, str(refused)
        assert not refused.out.strip(), str(refused)
    assert provider_states(world.cluster, key_id) == EXPECTED["active"]

    # deactivated: plan first (nothing changes, disable planned and undoable), then sync
    await cli.ok("key", "deactivate", key_id)
    steps = await plan_changes_nothing(world, key_id)
    assert all(s["actions"] == ["disable"] for s in steps), steps
    assert all(s["undo"] == ["yes: enable it again"] for s in steps), steps
    await sync_key(world, key_id, "deactivated")

    # drift: someone enables the key in AWS; reconcile --once flags it and leaves it alone
    enable_behind_keyorchs_back(world.cluster, key_id)
    flagged = await cli("reconcile", "--once")
    assert flagged.code == 1, str(flagged)
    report = flagged.json()
    reasons = {(t["keystore_name"], t["reason"]) for t in report["flagged_keys"] if t["key"] == key_id}
    assert reasons == {("aws_kms", "deactivated_key_is_not_deactivated_in_keystore")}, report
    assert provider_states(world.cluster, key_id)["aws_kms"] == "Enabled", "drift was overwritten"
    listed = await cli.ok("key", "list", "--out-of-sync")
    assert [k["id"] for k in listed] == [key_id], listed
    aws_target = next(t for t in listed[0]["targets"] if t["keystore"] == world.keystores["aws_kms"])
    assert aws_target["reason"] == "deactivated_key_is_not_deactivated_in_keystore", listed
    doc = await sync_key(world, key_id, "deactivated")  # the AWS fake shows Disabled again
    aws_result = next(t for t in doc["targets"] if t["keystore_name"] == "aws_kms")
    assert aws_result["actions_taken"] == ["disable"], doc
    assert await cli.ok("key", "list", "--out-of-sync") == []

    # destroyed: plan shows the irreversible step and until when it can be undone in the provider
    await cli.ok("key", "destroy", key_id)
    steps = await plan_changes_nothing(world, key_id)
    assert all(s["actions"] == ["schedule_destruction"] for s in steps), steps
    assert all(s["undo"][0].startswith("not by keyorch") for s in steps), steps
    assert all(s["destroy_undo_until"] for s in steps), steps
    doc = await sync_key(world, key_id, "destroyed")
    assert all(t["pending_destruction_until"] for t in doc["targets"]), doc

    # removing it from the vault is refused while the providers keep it pending destruction
    refused = await cli("key", "remove", key_id)
    assert refused.code == 3, str(refused)
    assert "pending destruction until" in refused.err, str(refused)

    assert duplicates(world.cluster, [key_id]) == {kind: {} for kind in KINDS}
    assert world.recorder.invalid_state() == []


async def test_a_compromised_key_is_disabled_everywhere_kept_disabled_and_destroyed(world: World) -> None:
    cli = world.cli
    key_id = (await cli.ok("key", "create", "--template", "everywhere", "--label", "leaked", "--state", "active"))["id"]
    await sync_key(world, key_id, "active")

    compromised = await cli.ok("key", "compromise", key_id)
    assert (compromised["state"], compromised["state_code"]) == ("compromised", 4), compromised
    doc = await sync_key(world, key_id, "deactivated")  # every provider holds it disabled
    assert all(t["actions_taken"] == ["disable"] for t in doc["targets"]), doc

    # never used again: neither activation nor reactivation, and its keystores cannot be disconnected
    for verb in ("activate", "reactivate"):
        refused = await cli("key", verb, key_id)
        assert refused.code == 3 and "it is compromised" in refused.err, str(refused)
    refused = await cli("keystore", "disconnect", "google_kms")
    assert refused.code == 3 and key_id in refused.err, str(refused)
    assert (await cli.ok("key", "list", "--state", "compromised"))[0]["id"] == key_id

    # someone re-enables it in AWS: a push puts it back to disabled
    enable_behind_keyorchs_back(world.cluster, key_id)
    doc = await sync_key(world, key_id, "deactivated")
    assert next(t for t in doc["targets"] if t["keystore_name"] == "aws_kms")["actions_taken"] == ["disable"], doc

    destroyed = await cli.ok("key", "destroy", key_id)
    assert (destroyed["state"], destroyed["state_code"]) == ("destroyed_compromised", 6), destroyed
    doc = await sync_key(world, key_id, "destroyed")
    assert all(t["pending_destruction_until"] for t in doc["targets"]), doc
    assert duplicates(world.cluster, [key_id]) == {kind: {} for kind in KINDS}
    assert world.recorder.invalid_state() == []


async def test_demo_runs_as_a_subprocess(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "keyorch",
        "demo",
        cwd=tmp_path,
        env={**AsyncCli(tmp_path).env(), "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    text = out.decode() + err.decode()
    assert proc.returncode == 0, text[-3000:]
    assert "Traceback" not in text
    for title in (
        "1. start the four fake providers",
        "2. connect one keystore of each provider",
        "3. activate the keys",
        "4. someone disables 'payments' in AWS KMS",
        "5. keyorch sync-key payments",
        "6. deactivate and destroy 'archive'",
        "7. the rules",
    ):
        assert title in text, f"step {title!r} missing from the demo's output"
    assert "PendingDeletion" in text and "refused:" in text
