"""Issue 16's adoption through the CLI as a real subprocess, against the four fakes on loopback.

The fakes hold the 50 keys the scan test seeds (UKO's and people's, some disabled, one pending destruction, three
UKO labels in two clouds each, UKO's Azure import key) and two orphans keyorch made. A dry run writes nothing and
sends reads only; the adoption makes one managed key per label (the two-cloud labels one key with two targets), adds
only keyorch's marker, refuses what it must (pending destruction, an orphan whose name cannot be a label) naming why;
a full reconcile then makes no call that changes anything; a second run adopts nothing; deactivate and destroy
reach the adopted keys in the providers' own state. Keys that disagree (enabled in AWS, disabled in Azure) are
refused naming both states, and adopted with ``--state``; ``--no-marker`` leaves a key untouched even by a tag.
"""

from __future__ import annotations

from pathlib import Path

from tests.e2e.harness import KINDS, AsyncCli, FakeCluster, mutating_calls, setup_world, start_world_fakes
from tests.e2e.test_scan_unmanaged import READS, TWO_CLOUDS, _seed, _seeds

#: the only calls adoption may make that change a provider: keyorch's marker
MARKER_CALLS = {
    "aws_kms": {"TagResource"},
    "azure_key_vault": {"UpdateKey"},
    "google_kms": {"UpdateCryptoKey"},
    "ibm_key_protect": {"CreateKeyAlias"},
}


def state_by_id(cluster: FakeCluster, kind: str, key_id: str) -> str:
    """The provider's own state of the key ``key_id`` (the id a scan reports), read from the fake's state."""
    snap = cluster[kind].fake.state_snapshot()
    if kind == "aws_kms":
        return next(str(k["KeyState"]) for k in snap["keys"] if k["KeyId"] == key_id)
    if kind == "azure_key_vault":
        for k in snap["keys"]:
            if k["name"].lower() == key_id.lower():
                return "enabled" if all(v["enabled"] for v in k["versions"]) else "disabled"
        return "deleted" if any(k["name"].lower() == key_id.lower() for k in snap["deleted_keys"]) else "absent"
    if kind == "google_kms":
        for ring in snap["keyRings"]:
            for k in ring["cryptoKeys"]:
                if k["name"] == key_id:
                    states = {str(v["state"]) for v in k.get("cryptoKeyVersions", [])}
                    return states.pop() if len(states) == 1 else ",".join(sorted(states))
        return "absent"
    return str(next(int(k["state"]) for k in snap["keys"] if k["id"] == key_id))


def _all(*kinds: str) -> list[str]:
    return [arg for kind in kinds for arg in ("--keystore", kind)]


async def test_adopt_fifty_keys_as_they_are_then_manage_them_like_keyorchs_own(tmp_path: Path) -> None:
    cluster, credentials, _ = await start_world_fakes(tmp_path)
    try:
        cli = AsyncCli(tmp_path)
        await setup_world(cli, cluster, credentials)
        made = {kind: await _seed(cluster[kind].url, _seeds(kind, "no-such-key")) for kind in KINDS}
        for kind in KINDS:
            cluster[kind].fake.log.clear()
        bulk = [*_all(*KINDS), "--all-unmanaged", "--vault", "main", "--template", "everywhere"]

        dry = await cli("key", "adopt", *bulk, "--dry-run")
        plan = dry.json()
        assert dry.code == 3, dry.err  # some keys cannot be adopted; the plan still lists all
        for kind in KINDS:
            log = cluster[kind].fake.log
            assert mutating_calls(kind, cluster[kind].fake) == [], kind
            assert set(log.counts) <= READS[kind], (kind, set(log.counts) - READS[kind])
        keys = await cli.ok("key", "list")
        assert keys == [] and plan["adopted"] == 0 and plan["dry_run"] is True
        by_label = {k["label"]: k for k in plan["managed_keys"]}
        for label, (_, where) in TWO_CLOUDS.items():
            shared = by_label[label]
            assert shared["outcome"] == "planned" and shared["state"] == "active", shared
            assert sorted(i["keystore"]["name"] for i in shared["instances"]) == sorted(where)
        refused = {k["label"]: k["conflict"] for k in plan["managed_keys"] if k["outcome"] == "refused"}
        assert any("pending destruction" in why for why in refused.values()), refused
        assert "EKMF-BYOK-KEK-FOR-IMPORT" not in by_label  # UKO's import key is not a managed key

        for kind in KINDS:
            cluster[kind].fake.log.clear()
        run = await cli("key", "adopt", *bulk)
        outcome = run.json()
        assert run.code == 3 and outcome["adopted"] == plan["planned"] > 40, (run.err, outcome["adopted"])
        for kind in KINDS:
            assert set(mutating_calls(kind, cluster[kind].fake)) <= MARKER_CALLS[kind], kind
        adopted = [k for k in outcome["managed_keys"] if k["outcome"] == "adopted"]
        assert all(i["marker"].startswith(("tag", "label", "alias")) for k in adopted for i in k["instances"]), [
            i["marker"] for k in adopted for i in k["instances"]
        ]

        for kind in KINDS:
            cluster[kind].fake.log.clear()
        assert (await cli("reconcile", "--once")).code == 0
        for kind in KINDS:
            assert mutating_calls(kind, cluster[kind].fake) == [], kind  # nothing created, enabled or disabled
        listed = await cli.ok("key", "list")
        assert len(listed) == len(adopted)
        assert all(t["sync_flag"] == "in_sync" for k in listed for t in k["targets"]), [
            (k["label"], t) for k in listed for t in k["targets"] if t["sync_flag"] != "in_sync"
        ]

        again = await cli("key", "adopt", *bulk)
        assert again.json()["adopted"] == 0 and again.json()["planned"] == 0  # nothing adopted twice

        payroll = next(k for k in adopted if k["label"] == "payroll-prod")
        key_id = payroll["managed_key"]["id"]
        ids = {i["keystore"]["name"]: i["key_id_in_keystore"] for i in payroll["instances"]}
        assert (await cli("key", "deactivate", key_id)).code == 0
        assert (await cli("sync-key", key_id)).code == 0
        assert state_by_id(cluster, "aws_kms", ids["aws_kms"]) == "Disabled"
        assert state_by_id(cluster, "azure_key_vault", ids["azure_key_vault"]) == "disabled"
        assert (await cli("key", "destroy", key_id)).code == 0
        assert (await cli("sync-key", key_id)).code == 0
        assert state_by_id(cluster, "aws_kms", ids["aws_kms"]) == "PendingDeletion"
        assert state_by_id(cluster, "azure_key_vault", ids["azure_key_vault"]) == "deleted"
        assert made  # the seeds were made
    finally:
        await cluster.stop()


async def test_keys_that_disagree_are_refused_naming_each_state(tmp_path: Path) -> None:
    cluster, credentials, _ = await start_world_fakes(tmp_path)
    try:
        cli = AsyncCli(tmp_path)
        await setup_world(cli, cluster, credentials)
        aws = (await _seed(cluster["aws_kms"].url, [{"name": "orders"}]))[0]["id"]
        azure = (await _seed(cluster["azure_key_vault"].url, [{"name": "orders", "state": "disabled"}]))[0]["id"]
        args = [
            *_all("aws_kms", "azure_key_vault"),
            "--id-in-keystore",
            f"aws_kms={aws}",
            "--id-in-keystore",
            f"azure_key_vault={azure}",
            "--vault",
            "main",
            "--template",
            "everywhere",
            "--label",
            "orders",
        ]
        refused = await cli("key", "adopt", *args)
        assert refused.code == 3
        assert "aws_kms: Enabled" in refused.err and "azure_key_vault: enabled=false" in refused.err, refused.err
        assert await cli.ok("key", "list") == []

        for kind in KINDS:
            cluster[kind].fake.log.clear()
        taken = await cli("key", "adopt", *args, "--state", "deactivated", "--no-marker")
        assert taken.code == 0, taken.err
        for kind in KINDS:
            assert mutating_calls(kind, cluster[kind].fake) == [], kind  # --no-marker: not even a tag
        key_id = taken.json()["managed_keys"][0]["managed_key"]["id"]
        assert (await cli("sync-key", key_id)).code == 0  # the named state is then made, like any desired state
        assert state_by_id(cluster, "aws_kms", aws) == "Disabled"
        assert state_by_id(cluster, "azure_key_vault", azure) == "disabled"
        doc = await cli.ok("key", "show", key_id)
        assert {t["key_id_in_keystore"] for t in doc["targets"]} >= {aws}
    finally:
        await cluster.stop()
