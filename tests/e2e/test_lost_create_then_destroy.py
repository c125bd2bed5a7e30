"""Issue 11, point 3, through the CLI as a real subprocess against the four fakes.

A ``CreateKey`` whose answer is cut off still makes the AWS key (tagged with the managed key id) but
keyorch never learns its id, so no alias is bound: the intents journal marks the create in doubt.
When the key is then deactivated and destroyed before any further create is planned, the planner
used to see "absent" (the alias names nothing) and record the target in sync: the orphan stayed
Enabled forever. Whatever the desired state, an in-doubt create is resolved first (the key found by
its tag and adopted, or known absent), so the orphan is scheduled for deletion with its managed key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.e2e.harness import AsyncCli, aws_keys, clear_faults, configure_faults, setup_world, start_world_fakes

from keyorch.fakes.registry import FakeCluster


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[AsyncCli, FakeCluster]]:
    cluster, credentials, _ = await start_world_fakes(tmp_path)
    try:
        cli = AsyncCli(tmp_path)
        await setup_world(cli, cluster, credentials)
        yield cli, cluster
    finally:
        await cluster.stop()


async def test_an_orphan_of_a_lost_create_is_destroyed_with_its_key(world: tuple[AsyncCli, FakeCluster]) -> None:
    cli, cluster = world
    key = await cli.ok("key", "create", "--template", "everywhere", "--label", "orphaned", "--state", "active")
    # every CreateKey answer is cut off, and the search for the key it made fails for the whole run
    lost = [
        {"operation": "CreateKey", "rate": 1.0, "faults": ["truncate"]},
        {"operation": "ListResourceTags", "rate": 1.0, "faults": ["error_503"]},
    ]
    configure_faults(cluster, 7, lost, "aws_kms")
    first = await cli("sync-key", key["id"])
    assert first.code != 0, str(first)
    clear_faults(cluster)

    made = aws_keys(cluster["aws_kms"].fake.state_snapshot(), key["id"])
    assert [k["KeyState"] for k in made] == ["Enabled"] and not made[0].get("Aliases")  # an orphan, no alias

    await cli.ok("key", "deactivate", key["id"])
    await cli.ok("key", "destroy", key["id"])
    synced = await cli("sync-key", key["id"])
    assert synced.code == 0, str(synced)

    after = aws_keys(cluster["aws_kms"].fake.state_snapshot(), key["id"])
    assert [k["KeyState"] for k in after] == ["PendingDeletion"], after
    shown = await cli.ok("key", "show", key["id"])
    aws = next(t for t in shown["targets"] if t["keystore_name"] == "aws_kms")
    assert aws["status"] == "destruction_pending" and aws["key_id_in_keystore"] == after[0]["KeyId"]
    again = await cli("reconcile", "--once")  # settled: the next pass neither searches nor acts again
    assert again.code == 0, str(again)
