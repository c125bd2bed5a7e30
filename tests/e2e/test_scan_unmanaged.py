"""Issue 16's scan through the CLI as a real subprocess, against the four fakes on loopback.

The fakes hold 50 keys made outside keyorch, seeded through their admin route as UKO made them (some active,
some disabled, one pending destruction, three labels in two clouds each, UKO's Azure import key) or as a person
did, an orphan keyorch made for a managed key that no longer exists, and the keys of two managed keys keyorch
made. ``keyorch keystore scan`` finds exactly the keys no managed key targets, with their fields and who made
them, pages through the Azure listing (more keys than its 25 a page), and sends reads only (the fakes' request
logs). A keystore whose listing answer is malformed (a few-line ``aiohttp.web`` handler) fails the scan with one
sentence, exit 4, no traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from tests.e2e.harness import KINDS, AsyncCli, mutating_calls, setup_world, start_world_fakes

from keyorch.domain.uko_markers import UKO_AZURE_IMPORT_KEK

CREATED = "2022-11-02T09:15:00+00:00"
#: what the inventory may send, per fake (all reads)
READS = {
    "aws_kms": {"ListAliases", "ListKeys", "DescribeKey", "ListResourceTags", "ListKeyRotations"},
    "azure_key_vault": {"Token", "ListKeys", "ListKeyVersions", "GetKey", "ListDeletedKeys"},
    "google_kms": {"Token", "ListCryptoKeys", "ListCryptoKeyVersions"},
    "ibm_key_protect": {"Token", "ListKeys", "GetKeyMetadata", "ListKeyVersions"},
}
#: three UKO managed keys in two clouds each: label -> (UKO id, the two keystores)
TWO_CLOUDS = {
    "payroll-prod": ("6a1d2a52-0f43-4c8e-9a51-1b2f8f0a7c01", ("aws_kms", "azure_key_vault")),
    "billing-prod": ("6a1d2a52-0f43-4c8e-9a51-1b2f8f0a7c02", ("google_kms", "ibm_key_protect")),
    "hr-prod": ("6a1d2a52-0f43-4c8e-9a51-1b2f8f0a7c03", ("aws_kms", "google_kms")),
}
#: keys per keystore made outside keyorch: UKO's, then a person's
COUNTS = {"aws_kms": (10, 2), "azure_key_vault": (26, 2), "google_kms": (4, 1), "ibm_key_protect": (4, 1)}


def _uko_keys(kind: str, count: int) -> list[dict[str, Any]]:
    shared = [label for label, (_, where) in TWO_CLOUDS.items() if kind in where]
    keys: list[dict[str, Any]] = [{"name": label, "uko": TWO_CLOUDS[label][0], "created": CREATED} for label in shared]
    for i in range(count - len(shared)):
        key: dict[str, Any] = {"name": f"uko-{kind.split('_')[0]}-{i:02d}", "uko": True, "tags": {"team": f"t{i % 3}"}}
        key["state"] = "disabled" if i % 4 == 3 else "active"
        if kind != "aws_kms":
            key["versions"] = 1 + i % 2  # UKO's AWS keys hold imported material, which the fake does not rotate
        if kind == "azure_key_vault":
            key["key_type"] = "oct-HSM"
        keys.append(key)
    if kind == "azure_key_vault":  # UKO's key-import key, made when UKO connected the vault
        keys[-1] = {"name": UKO_AZURE_IMPORT_KEK, "key_type": "RSA-HSM"}
    if kind == "google_kms":
        keys[-1]["state"] = "destruction_pending"
    return keys


def _seeds(kind: str, mine: str) -> list[dict[str, Any]]:
    uko, by_hand = COUNTS[kind]
    people = [{"name": f"by-hand-{i}", "versions": 3, "created": CREATED} for i in range(by_hand)]
    if kind == "aws_kms":  # orphans keyorch made: for a managed key removed long ago, and a second copy of ``mine``
        people.append({"name": "alias/keyorch/gone-1", "tags": {"keyorch:managed-key-id": "gone-1"}})
        people.append({"name": "alias/stray-copy", "tags": {"keyorch:managed-key-id": mine}})
    if kind == "azure_key_vault":
        for person in people:
            person["key_type"] = "oct-HSM"
    return _uko_keys(kind, uko) + people


async def _seed(url: str, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.post(url + "/_fake/seed", json={"keys": keys}) as answer:
        doc = await answer.json()
        assert answer.status == 201, doc
    made: list[dict[str, Any]] = doc["keys"]
    return made


async def test_scan_finds_exactly_the_keys_no_managed_key_targets_reading_only(tmp_path: Path) -> None:
    cluster, credentials, _ = await start_world_fakes(tmp_path)
    try:
        cli = AsyncCli(tmp_path)
        await setup_world(cli, cluster, credentials)
        mine = []
        for label in ("mine-1", "mine-2"):
            key = await cli.ok("key", "create", "--template", "everywhere", "--label", label, "--state", "active")
            assert (await cli("sync-key", key["id"])).code == 0
            mine.append(key["id"])
        made = {kind: await _seed(cluster[kind].url, _seeds(kind, mine[0])) for kind in KINDS}
        assert sum(len(keys) for keys in made.values()) == 52  # 50 UKO's and people's, and two orphans
        for kind in KINDS:
            cluster[kind].fake.log.clear()

        scans = {kind: await cli.ok("keystore", "scan", kind) for kind in KINDS}

        for kind in KINDS:
            log = cluster[kind].fake.log
            assert mutating_calls(kind, cluster[kind].fake) == [], kind
            assert set(log.counts) <= READS[kind], (kind, set(log.counts) - READS[kind])
            scan = scans[kind]
            found = {k["key_id_in_keystore"]: k for k in scan["unmanaged_keys"]}
            assert set(found) == {m["id"] for m in made[kind]}, kind
            assert (scan["keys_in_keystore"], scan["managed_in_keystore"]) == (len(made[kind]) + 2, 2), kind
            by_name = {k["label_in_keystore"].removeprefix("alias/"): k for k in found.values()}
            for label, (uko_id, where) in TWO_CLOUDS.items():
                if kind in where:
                    shared = by_name[label]
                    assert (shared["made_by"], shared["uko_managed_key_id"]) == ("uko", uko_id), shared
                    assert shared["created_at"] == CREATED and shared["state"] == "active"
            for name, key in by_name.items():
                if name.startswith("by-hand-"):
                    assert key["made_by"] == "unknown" and len(key["versions"]) == 3, key
                    assert [v["primary"] for v in key["versions"]] == [False, False, True]
                elif name.startswith("uko-"):
                    i = int(name.rsplit("-", 1)[1])
                    assert key["made_by"] == "uko" and key["tags"][0]["name"] == "team", key
                    pending = kind == "google_kms" and key is by_name[max(n for n in by_name if n.startswith("uko-"))]
                    expected = "deactivated" if i % 4 == 3 or pending else "active"
                    assert (key["state"], key["destruction_pending"]) == (expected, pending), key
                    assert len(key["versions"]) == (1 if kind == "aws_kms" else 1 + i % 2), key
        assert cluster["azure_key_vault"].fake.log.counts["ListKeys"] >= 2  # 30 keys on pages of 25
        aws = {k["label_in_keystore"]: k for k in scans["aws_kms"]["unmanaged_keys"]}
        assert aws["alias/payroll-prod"]["origin"] == "EXTERNAL"
        orphan = aws["alias/keyorch/gone-1"]
        assert (orphan["made_by"], orphan["managed_key_id"]) == ("keyorch", "gone-1")
        assert "no such managed key" in " ".join(orphan["evidence"])
        stray = aws["alias/stray-copy"]
        assert (stray["made_by"], stray["managed_key_id"]) == ("keyorch", mine[0])
        assert "holds another key in this keystore" in " ".join(stray["evidence"])
        kek = next(
            k for k in scans["azure_key_vault"]["unmanaged_keys"] if k["label_in_keystore"] == UKO_AZURE_IMPORT_KEK
        )
        assert kek["made_by"] == "uko" and "imports keys" in " ".join(kek["evidence"])

        named = await cli.ok("keystore", "scan", "aws_kms", "--uko-name", "by-hand-*", "--made-by", "uko")
        assert sorted(k["label_in_keystore"] for k in named["unmanaged_keys"]) == [
            "alias/by-hand-0", "alias/by-hand-1", "alias/hr-prod", "alias/payroll-prod",
            *sorted(f"alias/uko-aws-{i:02d}" for i in range(8)),
        ]  # fmt: skip
        assert all(k["made_by"] == "uko" for k in named["unmanaged_keys"])
        table = await cli("keystore", "scan", "ibm_key_protect", output_json=False)
        assert table.code == 0 and "no managed key targets: 5 (of 7; 2 managed)" in " ".join(table.out.split())
        assert all(mutating_calls(kind, cluster[kind].fake) == [] for kind in KINDS)
    finally:
        await cluster.stop()


async def test_a_malformed_listing_fails_the_scan_with_one_sentence(tmp_path: Path) -> None:
    """An "AWS KMS" that answers its key listing with ``Keys`` that is not a list (a few-line handler); an unknown
    keystore is bad input (exit 2) and a disconnected one is not asked (exit 3), each one sentence."""

    async def kms(request: web.Request) -> web.Response:
        target = request.headers.get("X-Amz-Target", "")
        body = await request.json()
        if target.endswith("ListAliases"):
            return web.json_response({"Aliases": [], "Truncated": False})
        if target.endswith("ListKeys") and body.get("Limit") == 1:  # the connection check
            return web.json_response({"Keys": [], "Truncated": False})
        return web.json_response({"Keys": {"not": "a list"}, "Truncated": False})

    app = web.Application()
    app.router.add_post("/", kms)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        cli = AsyncCli(tmp_path)
        assert (await cli("init")).code == 0
        await cli.ok("vault", "create", "main")
        creds = tmp_path / "aws.json"
        creds.write_text('{"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "example-secret-0123"}')
        connect = ["--type", "aws_kms", "--endpoint", url, "--region", "us-east-1", "--allow-insecure-http"]
        odd = await cli.ok(
            "keystore", "connect", "--vault", "main", "--name", "odd", *connect, "--credentials-file", str(creds)
        )
        result = await cli("keystore", "scan", "odd")
        assert result.code == 4, str(result)
        lines = [line for line in result.err.splitlines() if line.strip()]
        assert len(lines) == 1 and "Keys is missing or not a list" in lines[0], str(result)
        assert "example-secret" not in result.out + result.err
        unknown = await cli("keystore", "scan", "nowhere")
        assert unknown.code == 2 and "nowhere" in unknown.err, str(unknown)
        assert (await cli("keystore", "disconnect", "odd")).code == 0
        refused = await cli("keystore", "scan", odd["id"])  # by id: a disconnected keystore's name is free again
        assert refused.code == 3 and "disconnected" in refused.err and len(refused.err.strip().splitlines()) == 1
    finally:
        await runner.cleanup()
