"""`keyorch plan` lists the rotations scheduled next, with their dates, as a user runs it (a real subprocess,
the four fakes on loopback): a template's ``P90D`` policy, a key's own ``P30D``; a pass before they are due
rotates nothing in any keystore."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from tests.e2e.harness import KINDS, ROTATE_OPERATION, AsyncCli, setup_world, start_world_fakes


async def test_plan_lists_the_next_rotations_with_their_dates(tmp_path: Path) -> None:
    cluster, credentials, _ = await start_world_fakes(tmp_path)
    try:
        cli = AsyncCli(tmp_path)
        await setup_world(cli, cluster, credentials, template_state="active")
        await cli.ok("template", "update", "everywhere", "--rotation-policy", "P90D")
        made = await cli.ok("key", "create", "--template", "everywhere", "--label", "payments")
        own = await cli.ok(
            "key", "create", "--template", "everywhere", "--label", "ledger", "--rotation-policy", "P30D"
        )
        waiting = await cli.ok("key", "create", "--template", "everywhere", "--label", "later", "--state", "pre_active")
        assert (await cli("reconcile", "--once")).code == 0  # made everywhere; none due yet

        doc = await cli.ok("plan")
        rotations = {r["label"]: r for r in doc["rotations"]}
        assert set(rotations) == {"payments", "ledger"}  # a pre-active key is on no schedule yet
        assert [r["label"] for r in doc["rotations"]] == ["ledger", "payments"]  # soonest first
        for key, days, source in ((made, 90, "template"), (own, 30, "key")):
            planned = rotations[key["label"]]
            assert (planned["key"], planned["version"], planned["overdue"]) == (key["id"], 2, False)
            assert (planned["rotation_policy"], planned["rotation_policy_from"]) == (f"P{days}D", source)
            due = datetime.fromisoformat(key["created_at"]) + timedelta(days=days)
            assert datetime.fromisoformat(planned["next_rotation_at"]) == due
        one = await cli.ok("plan", own["id"], waiting["id"])
        assert [r["key"] for r in one["rotations"]] == [own["id"]]

        table = await cli("plan", output_json=False)
        assert table.code == 0 and "rotations scheduled" in table.out and "P30D" in table.out, str(table)
        for kind in KINDS:
            assert cluster[kind].fake.log.counts.get(ROTATE_OPERATION[kind], 0) == 0, kind
    finally:
        await cluster.stop()
