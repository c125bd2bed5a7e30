"""``keyorch migrate uko`` as a real subprocess, over the four fakes: a UKO managed-key export (the v4 ManagedKey
list as UKO's API and SDK return it) of keys seeded UKO-style migrates with UKO's labels, states, tags and templates;
an entry whose key is missing is reported and skipped while the rest goes on; a dry run sends reads only; a full
reconcile afterwards changes nothing in any provider; a second run adopts nothing twice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.e2e.harness import KINDS, AsyncCli, mutating_calls, setup_world, start_world_fakes
from tests.e2e.test_adopt import MARKER_CALLS, state_by_id
from tests.e2e.test_scan_unmanaged import READS, _seed

UKO_TYPES = {"aws_kms": "aws_kms", "azure_key_vault": "azure_key_vault", "google_kms": "google_kms"}
UKO_TYPES["ibm_key_protect"] = "ibm_cloud_kms"
#: UKO's keystores by name, and the keyorch keystore each became
UKO_KEYSTORES = {f"UKO-{kind}": kind for kind in KINDS}
#: label -> (UKO id, state, keystores)
KEYS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    f"pay-{i}": (f"0b1c2d3e-0000-4000-8000-{i:012d}", "deactivated" if i % 3 == 2 else "active", where)
    for i, where in enumerate(
        [("aws_kms", "azure_key_vault"), ("google_kms",), ("ibm_key_protect",), ("aws_kms", "google_kms")] * 3
    )
}


def _export_entry(label: str, uko_id: str, state: str, where: tuple[str, ...]) -> dict[str, Any]:
    return {
        "id": uko_id,
        "label": label,
        "state": state,
        "algorithm": "aes",
        "size": "256",
        "description": f"UKO key {label}",
        "tags": [{"name": "team", "value": "payments"}],
        "vault": {"id": "4a0b-uko-vault", "name": "UKO-Vault"},
        "template": {"id": "7e1f-uko-template", "name": "uko-payroll-template"},
        "referenced_keystores": [{"id": f"ks-{k}", "name": f"UKO-{k}", "type": UKO_TYPES[k]} for k in where],
        "instances": [
            {
                "id": f"inst-{label}-{k}",
                "label_in_keystore": label,
                "type": "secret_key",
                "keystore": {"group": "Production", "type": UKO_TYPES[k]},
            }
            for k in where
        ],
    }


async def test_a_uko_export_migrates_and_a_missing_key_is_reported_and_skipped(tmp_path: Path) -> None:
    cluster, credentials, _ = await start_world_fakes(tmp_path)
    try:
        cli = AsyncCli(tmp_path)
        await setup_world(cli, cluster, credentials)
        seeded: dict[tuple[str, str], str] = {}
        for kind in KINDS:
            keys = [
                {"name": label, "uko": uko_id, "state": "disabled" if state == "deactivated" else "active"}
                for label, (uko_id, state, where) in KEYS.items()
                if kind in where
            ]
            for made in await _seed(cluster[kind].url, keys):
                seeded[(kind, made["name"].removeprefix("alias/"))] = made["id"]
        entries = [_export_entry(label, *spec) for label, spec in KEYS.items()]
        entries.insert(3, _export_entry("ghost", "0b1c2d3e-dead-4000-8000-000000000000", "active", ("aws_kms",)))
        export = tmp_path / "uko-export.json"
        export.write_text(json.dumps({"managed_keys": entries, "total_count": len(entries)}), encoding="utf-8")
        args = ["migrate", "uko", "--export", str(export), "--vault", "main"]
        args += [f"--keystore-map={uko}={ours}" for uko, ours in UKO_KEYSTORES.items()]
        args += ["--template-map", "uko-payroll-template=everywhere"]
        for kind in KINDS:
            cluster[kind].fake.log.clear()

        dry = await cli(*args, "--dry-run")
        assert dry.code == 3 and "ghost" in dry.err, dry
        for kind in KINDS:
            assert set(cluster[kind].fake.log.counts) <= READS[kind], kind
        assert dry.json()["counts"] == {"adopted": 0, "planned": len(KEYS), "refused": 0, "skipped": 1}
        assert await cli.ok("key", "list") == []

        run = await cli(*args)
        doc = run.json()
        assert run.code == 3 and doc["counts"]["adopted"] == len(KEYS), doc["counts"]
        ghost = next(e for e in doc["entries"] if e["label"] == "ghost")
        assert ghost["outcome"] == "skipped" and "aws_kms holds no unmanaged key named 'ghost'" in ghost["problem"]
        for kind in KINDS:
            assert set(mutating_calls(kind, cluster[kind].fake)) <= MARKER_CALLS[kind], kind
        listed = {k["label"]: k for k in await cli.ok("key", "list")}
        assert set(listed) == set(KEYS)
        for label, (_, state, where) in KEYS.items():
            key = listed[label]
            assert key["state"] == state, key
            shown = await cli.ok("key", "show", key["id"])
            assert (
                shown["tags"] == [{"name": "team", "value": "payments"}] and shown["description"] == f"UKO key {label}"
            )
            assert {t["keystore_name"]: t["key_id_in_keystore"] for t in shown["targets"]} == {
                k: seeded[(k, label)] for k in where
            }

        for kind in KINDS:
            cluster[kind].fake.log.clear()
        assert (await cli("reconcile", "--once")).code == 0
        for kind in KINDS:
            assert mutating_calls(kind, cluster[kind].fake) == [], kind
        again = (await cli(*args)).json()
        assert again["counts"]["adopted"] == 0  # nothing adopted twice: the keys are managed now

        first = listed["pay-0"]  # active in AWS and Azure
        assert (await cli("key", "deactivate", first["id"])).code == 0
        assert (await cli("sync-key", first["id"])).code == 0
        assert state_by_id(cluster, "aws_kms", seeded[("aws_kms", "pay-0")]) == "Disabled"
        assert state_by_id(cluster, "azure_key_vault", seeded[("azure_key_vault", "pay-0")]) == "disabled"
    finally:
        await cluster.stop()
