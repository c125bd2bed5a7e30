"""Rotation end to end through a real daemon (``keyorch serve``) and the CLI with ``--server``, both subprocesses,
on the four fakes: the daemon alone brings every keystore to the new version after ``key rotate``; ``key
versions`` lists both versions with each keystore's id of its primary; ``key deactivate`` after the rotation
disables every version (Azure Key Vault's and Cloud KMS's each, AWS KMS's and Key Protect's one key state); a key
with ``deactivate_on_rotation`` has its older versions disabled after the rotation. Checked in the fakes' state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from keyorch.fakes.registry import connect_args
from tests.daemon.cli_server import Served, served_world
from tests.daemon.harness import eventually
from tests.e2e.harness import KINDS, aws_keys, azure_version_states, google_version_states, ibm_keys, primaries

#: the daemon reconciles on every change (and resyncs); this bounds a wait on a loaded CI machine
SETTLE_SECONDS = 90.0


async def _in_line(served: Served, key_id: str, version: int) -> list[dict[str, Any]]:
    """The key's targets once the daemon has brought every keystore in line at ``version``."""

    async def check() -> list[dict[str, Any]] | None:
        targets = await served.api.key_targets(key_id)
        done = len(targets) == len(KINDS) and all(
            t["sync_flag"] == "in_sync" and t["key_version"] == version for t in targets
        )
        return targets if done else None

    return await eventually(check, SETTLE_SECONDS, f"every keystore of key {key_id} in sync at version {version}")


async def test_the_daemon_rotates_every_keystore_and_deactivates_every_version(tmp_path: Path) -> None:
    async with served_world(tmp_path) as served:
        alice = served.remote("alice")
        await alice.ok("vault", "create", "main")
        for kind in KINDS:
            args = connect_args(kind, served.cluster[kind], served.credentials[kind])
            await alice.ok("keystore", "connect", "--vault", "main", "--name", kind, *args)
        stores = [arg for kind in KINDS for arg in ("--keystore", kind)]
        await alice.ok("template", "create", "--vault", "main", "--name", "everywhere", *stores, "--state", "active")
        plain = (await alice.ok("key", "create", "--template", "everywhere", "--label", "plain"))["id"]
        only_new = await alice.ok(
            "key", "create", "--template", "everywhere", "--label", "onlynew", "--deactivate-on-rotation"
        )
        assert only_new["deactivate_on_rotation"] is True
        for key_id in (plain, only_new["id"]):
            await _in_line(served, key_id, 1)
        first = {key_id: primaries(served.cluster, key_id) for key_id in (plain, only_new["id"])}

        for key_id in (plain, only_new["id"]):
            rotated = await alice.ok("key", "rotate", key_id)
            assert rotated["current_version"] == 2
        for key_id in (plain, only_new["id"]):
            targets = await _in_line(served, key_id, 2)
            now = primaries(served.cluster, key_id)
            for kind in KINDS:
                assert now[kind][0] != first[key_id][kind][0], (kind, first[key_id], now)
            assert {t["keystore_name"]: t["primary_version_id"] for t in targets} == {k: now[k][0] for k in KINDS}
            listed = await alice.ok("key", "versions", key_id)
            assert [(v["version"], v["current"]) for v in listed["versions"]] == [(1, False), (2, True)], listed
            serving = {k["keystore"]["name"]: k["version_id_in_keystore"] for k in listed["versions"][1]["keystores"]}
            assert serving == {kind: now[kind][0] for kind in KINDS}, listed
            assert listed["versions"][0]["keystores"] == [], listed  # no keystore serves version 1 any more

        # the older versions: still enabled for the plain key, disabled where they can be for the other
        assert [e for _, _, e in azure_version_states(served.cluster, plain)] == [True, True]
        assert [s for _, _, s in google_version_states(served.cluster, plain)] == ["ENABLED", "ENABLED"]
        assert [e for _, _, e in azure_version_states(served.cluster, only_new["id"])] == [False, True]
        assert [s for _, _, s in google_version_states(served.cluster, only_new["id"])] == ["DISABLED", "ENABLED"]

        # deactivated after the rotation: every version off in every keystore
        await alice.ok("key", "deactivate", plain)
        await _in_line(served, plain, 2)
        assert [e for _, _, e in azure_version_states(served.cluster, plain)] == [False, False]
        assert [s for _, _, s in google_version_states(served.cluster, plain)] == ["DISABLED", "DISABLED"]
        [aws] = aws_keys(served.cluster["aws_kms"].fake.state_snapshot(), plain)
        assert aws["KeyState"] == "Disabled" and len(aws["KeyMaterials"]) == 2
        [ibm] = ibm_keys(served.cluster["ibm_key_protect"].fake.state_snapshot(), plain)
        assert ibm["state"] == 2  # Key Protect: suspended, one state for every version
        assert "Traceback" not in served.daemon.output
