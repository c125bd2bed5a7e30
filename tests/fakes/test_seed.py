"""Keys made outside keyorch, held by the fakes (issue 16): ``fakes serve --seed FILE`` and ``POST /_fake/seed``.

A seeded key must read through the provider's own API exactly like a key made through it: the same fields in
its listing and its read (compared with a key made by the API next to it), with the seed's name, tags or
labels, state, number of versions and creation date.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest
from botocore.config import Config
from tests.fakes.test_serve import (
    AZURE_API,
    GOOGLE_RING_PATH,
    Served,
    assert_one_error_line,
    bearer_token,
    run_failing,
    start_serve,
)

from keyorch.domain.uko_markers import UKO_ID_TAG, uko_description
from keyorch.fakes.ibm import KeyProtectFake
from keyorch.fakes.registry import start_fakes
from keyorch.fakes.seed import parse_keys

CREATED = "2023-05-17T08:30:00Z"
SEED: dict[str, Any] = {
    "providers": {
        "aws_kms": [
            {"name": "akms-payroll-prod", "tags": {"Owner": "payroll"}, "state": "disabled", "created": CREATED,
             "uko": "5f0d3a34-7a43-4d68-9a0c-6a4f4f6a1c11", "description": "payroll data"},
            {"name": "alias/by-hand", "aliases": ["alias/by-hand-2"], "versions": 3, "created": CREATED},
        ],
        "azure_key_vault": [
            {"name": "akv-payroll-prod", "tags": {"env": "prod"}, "versions": 2, "created": CREATED, "uko": True},
        ],
        "google_kms": [
            {"name": "gkms-payroll-prod", "tags": {"env": "prod"}, "versions": 2, "created": CREATED,
             "state": "disabled", "uko": True},
        ],
        "ibm_key_protect": [
            {"name": "kp payroll prod", "aliases": ["kp-payroll"], "created": CREATED, "uko": "kp-uko-1",
             "state": "destruction_pending"},
        ],
    }
}  # fmt: skip


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("seeded")
    (tmp / "seed.json").write_text(json.dumps(SEED))
    running = start_serve(tmp, "--seed", str(tmp / "seed.json"), "--credentials-dir", str(tmp / "creds"))
    yield running
    assert running.stop() == 0


def _kms(served: Served) -> Any:
    creds = served.credentials("aws_kms")
    return boto3.client(
        "kms",
        endpoint_url=served.url("aws_kms"),
        region_name="us-east-1",
        aws_access_key_id=creds["access_key_id"],
        aws_secret_access_key=creds["secret_access_key"],
        config=Config(retries={"max_attempts": 1}),
    )


def test_aws_seeded_keys_read_like_native_ones_through_boto3(seeded: Served) -> None:
    kms = _kms(seeded)
    try:
        native = kms.create_key(Description="made through the API")["KeyMetadata"]
        aliases = {a["AliasName"]: a["TargetKeyId"] for a in kms.list_aliases()["Aliases"]}
        uko = kms.describe_key(KeyId="alias/akms-payroll-prod")["KeyMetadata"]
        assert set(uko) == set(native)
        assert uko["KeyState"] == "Disabled" and uko["Enabled"] is False
        assert uko["Origin"] == "EXTERNAL" and uko["Description"] == "payroll data"
        assert uko["CreationDate"] == datetime.fromisoformat(CREATED)
        tags = {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=uko["KeyId"])["Tags"]}
        assert tags == {"Owner": "payroll", UKO_ID_TAG: "5f0d3a34-7a43-4d68-9a0c-6a4f4f6a1c11"}
        by_hand = aliases["alias/by-hand"]
        assert aliases["alias/by-hand-2"] == by_hand
        assert by_hand in [k["KeyId"] for k in kms.list_keys()["Keys"]]
        rotations = kms.list_key_rotations(KeyId=by_hand)["Rotations"]
        assert len(rotations) == 2 and rotations[-1]["KeyMaterialState"] == "CURRENT"
        hand = kms.describe_key(KeyId=by_hand)["KeyMetadata"]
        assert set(hand) == set(native) and hand["KeyState"] == "Enabled" and hand["Origin"] == "AWS_KMS"
    finally:
        kms.close()


async def _get(session: aiohttp.ClientSession, url: str, token: str, **headers: str) -> Any:
    async with session.get(url, headers={"Authorization": f"Bearer {token}", **headers}) as response:
        body = await response.json()
        assert response.status == 200, body
        return body


async def _post(session: aiohttp.ClientSession, url: str, token: str, body: Any, **headers: str) -> Any:
    async with session.post(url, json=body, headers={"Authorization": f"Bearer {token}", **headers}) as response:
        doc = await response.json()
        assert response.status in (200, 201), doc
        return doc


async def test_azure_seeded_key_reads_like_a_native_one(seeded: Served) -> None:
    base = seeded.url("azure_key_vault")
    async with aiohttp.ClientSession() as session:
        token = await bearer_token(session, "azure_key_vault", seeded.credentials("azure_key_vault"))
        native = await _post(session, f"{base}/keys/native/create?{AZURE_API}", token, {"kty": "RSA"})
        listed = {
            i["kid"].rsplit("/", 1)[1]: i for i in (await _get(session, f"{base}/keys?{AZURE_API}", token))["value"]
        }
        seeded_key = await _get(session, f"{base}/keys/akv-payroll-prod?{AZURE_API}", token)
        versions = await _get(session, f"{base}/keys/akv-payroll-prod/versions?{AZURE_API}", token)
    assert set(listed["akv-payroll-prod"]) == set(listed["native"]) | {"tags"}
    assert set(seeded_key) == set(native) | {"tags"} and set(seeded_key["key"]) == set(native["key"])
    assert set(seeded_key["attributes"]) == set(native["attributes"])
    assert seeded_key["attributes"]["created"] == int(datetime.fromisoformat(CREATED).timestamp()) + 86400
    assert seeded_key["tags"]["env"] == "prod" and seeded_key["tags"][UKO_ID_TAG]
    assert len(versions["value"]) == 2
    created = sorted(v["attributes"]["created"] for v in versions["value"])
    assert created[0] == int(datetime.fromisoformat(CREATED).timestamp())


async def test_google_seeded_key_reads_like_a_native_one(seeded: Served) -> None:
    ring = seeded.url("google_kms") + GOOGLE_RING_PATH
    async with aiohttp.ClientSession() as session:
        token = await bearer_token(session, "google_kms", seeded.credentials("google_kms"))
        native = await _post(
            session,
            f"{ring}/cryptoKeys?cryptoKeyId=native",
            token,
            {"purpose": "ENCRYPT_DECRYPT", "labels": {"a": "b"}},
        )
        key = await _get(session, f"{ring}/cryptoKeys/gkms-payroll-prod", token)
        versions = await _get(session, f"{ring}/cryptoKeys/gkms-payroll-prod/cryptoKeyVersions", token)
    assert set(key) == set(native) and set(key["primary"]) == set(native["primary"])
    assert key["createTime"] == CREATED and key["labels"]["env"] == "prod" and key["labels"][UKO_ID_TAG]
    assert [v["state"] for v in versions["cryptoKeyVersions"]] == ["DISABLED", "DISABLED"]
    assert key["primary"]["name"].endswith("/cryptoKeyVersions/2")


async def test_ibm_seeded_key_reads_like_a_native_one(seeded: Served) -> None:
    base = seeded.url("ibm_key_protect") + "/api/v2/keys"
    instance = {"bluemix-instance": seeded.option("ibm_key_protect", "--instance-id")}
    async with aiohttp.ClientSession() as session:
        token = await bearer_token(session, "ibm_key_protect", seeded.credentials("ibm_key_protect"))
        body = {
            "metadata": {"collectionType": "application/vnd.ibm.kms.key+json", "collectionTotal": 1},
            "resources": [{"type": "application/vnd.ibm.kms.key+json", "name": "native", "extractable": False}],
        }
        await _post(session, base, token, body, **instance)
        listed = (await _get(session, f"{base}?state=0,1,2,3,5", token, **instance))["resources"]
    by_name = {k["name"]: k for k in listed}
    native, uko = by_name["native"], by_name["kp payroll prod"]
    assert set(native) <= set(uko) and set(uko) - set(native) <= {
        "deletionDate", "deletedBy", "restoreAllowed", "restoreExpirationDate", "purgeAllowed", "purgeAllowedFrom",
        "purgeScheduledOn",
    }  # fmt: skip
    assert uko["state"] == 5 and uko["restoreAllowed"] is True and uko["aliases"] == ["kp-payroll"]
    assert uko["description"] == uko_description("kp-uko-1") and uko["creationDate"] == CREATED


async def test_admin_route_seeds_and_a_refused_seed_changes_nothing() -> None:
    cluster = await start_fakes(["ibm_key_protect"])
    try:
        running = cluster["ibm_key_protect"]
        assert isinstance(running.fake, KeyProtectFake)
        async with aiohttp.ClientSession() as session:
            keys = [{"name": "first key", "aliases": ["first"]}, {"name": "second key", "versions": 2}]
            async with session.post(running.url + "/_fake/seed", json={"keys": keys}) as response:
                made = await response.json()
                assert response.status == 201, made
            assert [k["name"] for k in made["keys"]] == ["first key", "second key"]
            assert set(running.fake.state.keys) == {k["id"] for k in made["keys"]}
            before = running.fake.state_snapshot()
            for bad, fragment in (
                ({"keys": [{"name": "ok key"}, {"name": "taken", "aliases": ["first"]}]}, "keys[1].aliases"),
                ({"keys": [{"name": "x", "state": "gone"}]}, "keys[0].state"),
                ({"keys": [{"name": "late", "created": "2999-01-01T00:00:00Z"}]}, "keys[0].created"),
                ({"keys": [{"name": "odd", "colour": "red"}]}, "keys[0].colour"),
                ({"nothing": []}, "keys"),
            ):
                async with session.post(running.url + "/_fake/seed", json=bad) as response:
                    body = await response.json()
                    assert response.status == 400 and fragment in body["error"], (bad, body)
            async with session.post(running.url + "/_fake/seed", data=b"{not json") as response:
                assert response.status == 400
            assert running.fake.state_snapshot() == before
            assert running.fake.log.entries == []  # admin routes are never logged
    finally:
        await cluster.stop()


def test_bad_seed_files_exit_2_with_one_sentence_naming_the_field(tmp_path: Path) -> None:
    cases = [
        ({"providers": {"aws_kms": [{"name": "k", "versions": 0}]}}, "providers.aws_kms[0].versions"),
        ({"providers": {"nowhere": []}}, "providers.nowhere"),
        ({"providers": {"aws_kms": [{"name": "a"}, {"name": "alias/a"}]}}, "providers.aws_kms[1].name"),
        ({"providers": {"google_kms": [{"name": "g", "tags": {"Upper": "x"}}]}}, "providers.google_kms[0].tags"),
        ({"providers": {"aws_kms": [{"name": "k", "versions": 2, "uko": True}]}}, "providers.aws_kms[0].versions"),
    ]
    for index, (doc, fragment) in enumerate(cases):
        path = tmp_path / f"seed{index}.json"
        path.write_text(json.dumps(doc))
        assert_one_error_line(run_failing(tmp_path, "--seed", str(path)), fragment)
    (tmp_path / "broken.yaml").write_text("providers: [\n")
    assert_one_error_line(run_failing(tmp_path, "--seed", str(tmp_path / "broken.yaml")), "not valid YAML")
    seed = tmp_path / "only-aws.json"
    seed.write_text(json.dumps({"providers": {"azure_key_vault": [{"name": "k"}]}}))
    line = assert_one_error_line(run_failing(tmp_path, "--providers", "aws_kms", "--seed", str(seed)), "not served")
    assert "azure_key_vault" in line


def test_created_defaults_to_the_fake_clock() -> None:
    fake = KeyProtectFake()
    before = datetime.now(UTC)
    made = fake.seed(parse_keys({"keys": [{"name": "now"}]}))
    assert fake.state.keys[made[0]["id"]].created >= before
