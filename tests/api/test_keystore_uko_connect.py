"""POST /keystores with UKO's per-type bodies as IBM's Go SDK sends them, against the four fakes on loopback."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from keyorch.domain.models import CredentialsMode
from keyorch.reconcile.clients import ClientPool
from tests.uko.contract import validate_uko

from .conftest import MASTER_KEY, Api, error_of, target_of
from .uko_keystore_bodies import KINDS, PROBE_OPERATION, SECRET_FIELD, running, uko_body


@pytest.mark.parametrize("kind", KINDS)
async def test_a_uko_body_connects_a_keystore_that_answers_with_its_credentials(api: Api, kind: str) -> None:
    vault = await api.vault()
    async with running(kind) as fake:
        body = uko_body(vault, api.unique("uko"), kind, fake)
        resp = await api.request("POST", "/keystores", json=body)
        assert resp.status == 201, await resp.text()
        text = await resp.text()
        assert body[SECRET_FIELD[kind]] not in text
        doc = json.loads(text)
        validate_uko("Keystore", doc)
        assert (doc["type"], doc["name"], doc["description"], doc["groups"]) == (
            kind,
            body["name"],
            "by the SDK",
            ["uko"],
        )
        assert doc["vault"]["id"] == vault and doc["credentials"] == "stored"
        match kind:
            case "aws_kms":
                assert doc["aws_region"] == "us_east_1" and doc["settings"]["region"] == "us-east-1"
            case "azure_key_vault":
                uko_given = {k: v for k, v in body.items() if k.startswith("azure_") and k != SECRET_FIELD[kind]}
                uko_given.pop("azure_authority_host")
                assert {k: doc[k] for k in uko_given} == uko_given
            case "google_kms":
                assert (doc["google_project_id"], doc["google_location"], doc["google_key_ring"]) == (
                    body["google_project_id"],
                    "europe-west3",
                    "uko-ring",
                )
                assert doc["google_private_key_id"] == body["google_private_key_id"]
            case _:
                assert (doc["ibm_api_endpoint"], doc["ibm_instance_id"], doc["ibm_variant"]) == (
                    fake.url,
                    body["ibm_instance_id"],
                    "key_protect",
                )

        # what was stored reaches the provider: the adapter's health check, with the stored credentials
        async with api.store.read() as tx:
            keystore = await tx.keystore(doc["id"])
        assert keystore.credentials_mode is CredentialsMode.STORED
        pool = ClientPool(api.store, MASTER_KEY)
        try:
            health = await pool.check(keystore)
        finally:
            await pool.aclose()
        assert health.ok, health
        assert fake.fake.log.counts[PROBE_OPERATION[kind]] >= 1


async def test_type_ibm_cloud_kms_without_a_variant_is_key_protect_and_its_fields_need_their_partners(
    api: Api,
) -> None:
    vault = await api.vault()
    async with running("ibm_cloud_kms") as fake:
        body = uko_body(vault, api.unique("uko"), "ibm_cloud_kms", fake)
        del body["ibm_variant"]
        resp = await api.request("POST", "/keystores", json=body)
        assert resp.status == 201, await resp.text()
        assert (await resp.json())["ibm_variant"] == "key_protect"


async def _refused(api: Api, body: dict[str, Any], field: str, says: str) -> None:
    resp = await api.request("POST", "/keystores", json=body)
    text = await resp.text()
    assert resp.status == 400, (field, text)
    for secret in ("aws_secret_access_key", "ibm_api_key", "azure_service_principal_password", "google_credentials"):
        if isinstance(body.get(secret), str):
            assert body[secret] not in text
    err = (await error_of(resp))["errors"][0]
    assert target_of(err) == ("field", field) and says in err["message"], err


async def test_what_keyorch_cannot_honour_is_refused_naming_the_field(api: Api) -> None:
    vault = await api.vault()
    async with running("aws_kms") as aws, running("ibm_cloud_kms") as ibm, running("azure_key_vault") as azure:
        a = uko_body(vault, "a1", "aws_kms", aws)
        i = uko_body(vault, "i1", "ibm_cloud_kms", ibm)
        z = uko_body(vault, "z1", "azure_key_vault", azure)
        await _refused(api, {**i, "ibm_variant": "hpcs"}, "ibm_variant", "not supported")
        await _refused(api, {**i, "ibm_key_ring": "ring-7"}, "ibm_key_ring", "default")
        await _refused(api, {**a, "aws_region": "aws_global"}, "aws_region", "partition")
        await _refused(api, {**a, "region": "us-east-1"}, "aws_region", "not both")
        await _refused(api, {**a, "azure_location": "europe_west"}, "azure_location", "does not apply")
        no_secret = {k: v for k, v in a.items() if k != "aws_secret_access_key"}
        await _refused(api, no_secret, "aws_secret_access_key", "needs aws_secret_access_key")
        await _refused(api, {**a, "credentials_from_environment": True}, "credentials_from_environment", "not both")
        no_region = {k: v for k, v in a.items() if k != "aws_region"}
        await _refused(api, no_region, "aws_region", "needs aws_region")
        await _refused(api, {**z, "azure_environment": "azure_mars"}, "azure_environment", "azure_china")
        await _refused(api, {**z, "azure_location": "mars_north"}, "azure_location", "Azure locations")
        await _refused(api, {**i, "ibm_instance_id": None}, "ibm_instance_id", "needs ibm_instance_id")
    google = {"type": "google_kms", "vault": {"id": vault}, "name": "g1", "google_location": "us-east1"}
    google |= {"google_key_ring": "r"}
    await _refused(api, {**google, "google_credentials": "not base64!"}, "google_credentials", "base64")
    account = base64.b64encode(
        json.dumps({"private_key_id": "k-1", "private_key": "x", "client_email": "a@b"}).encode()
    )
    mismatch = {**google, "google_credentials": account.decode(), "google_private_key_id": "k-2"}
    await _refused(api, mismatch, "google_private_key_id", "not the private key id")
    listed = await (await api.request("GET", "/keystores", params={"vault": vault})).json()
    assert listed["keystores"] == []


async def test_azure_location_with_keyorchs_own_body_is_kept_and_answered(api: Api) -> None:
    vault = await api.vault()
    body = {
        "vault": vault,
        "name": "kv-own",
        "type": "azure_key_vault",
        "endpoint": "https://kv-own.vault.azure.net",
        "credentials": {"tenant_id": "t-1", "client_id": "c-1", "client_secret": "s-1"},
        "azure_location": "europe_west",
        "azure_resource_group": "rg-1",
        "azure_subscription_id": "sub-1",
    }
    resp = await api.request("POST", "/keystores", json=body)
    assert resp.status == 201, await resp.text()
    doc = await resp.json()
    validate_uko("Keystore", doc)
    got = await (await api.request("GET", f"/keystores/{doc['id']}", user="reader")).json()
    assert (got["azure_location"], got["azure_resource_group"], got["azure_subscription_id"]) == (
        "europe_west",
        "rg-1",
        "sub-1",
    )
    assert (got["azure_tenant"], got["azure_service_principal_client_id"], got["azure_service_name"]) == (
        "t-1",
        "c-1",
        "kv-own",
    )
    await _refused(api, {**body, "name": "kv-2", "azure_location": "westeurope"}, "azure_location", "Azure locations")
