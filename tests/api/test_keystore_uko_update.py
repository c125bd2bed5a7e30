"""PATCH /keystores/{id} with UKO's KeystoreUpdateRequest of the keystore's type, against the fakes on loopback:
a new secret alone keeps the stored identity it belongs to, is tried live before it is saved, and a refused one
leaves the old credentials in use."""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
from typing import Any

from keyorch.fakes.azure import AzureKeyVaultFake
from keyorch.fakes.gcp import GoogleKmsFake
from keyorch.fakes.ibm import KeyProtectFake
from tests.uko.contract import validate_uko

from .conftest import Api, ApiFactory, error_of
from .uko_keystore_bodies import api_settings, running, uko_body


async def _uncached(api_factory: ApiFactory) -> Api:
    limits = {"keystore_status_cache_seconds": 0.0, "keystore_check_timeout_seconds": 2.0}
    return await api_factory(settings=api_settings(**limits))


async def _connected(api: Api, body: dict[str, Any]) -> tuple[str, str]:
    resp = await api.request("POST", "/keystores", json=body)
    assert resp.status == 201, await resp.text()
    return (await resp.json())["id"], resp.headers["ETag"]


async def _health(api: Api, keystore: str) -> str:
    doc = await (await api.request("GET", f"/keystores/{keystore}/status")).json()
    validate_uko("KeystoreStatus", doc)
    return str(doc["health_status"])


async def test_an_azure_password_alone_is_rotated_with_the_stored_service_principal(api_factory: ApiFactory) -> None:
    api = await _uncached(api_factory)
    async with running("azure_key_vault") as azure:
        fake = azure.fake
        assert isinstance(fake, AzureKeyVaultFake)
        keystore, etag = await _connected(api, uko_body(await api.vault(), "kv", "azure_key_vault", azure))
        assert await _health(api, keystore) == "ok"
        fake.app_registration = dataclasses.replace(fake.app_registration, client_secret="rotated-" + "x" * 30)
        assert await _health(api, keystore) == "configuration_error"  # the stored secret is no longer valid

        path = f"/keystores/{keystore}"
        wrong = await api.request(
            "PATCH", path, json={"azure_service_principal_password": "not-it"}, headers={"If-Match": etag}
        )
        assert wrong.status == 400 and "not-it" not in await wrong.text()
        assert (await error_of(wrong))["errors"][0]["code"] == "keystore_configuration_error"
        right = {"azure_service_principal_password": fake.app_registration.client_secret, "description": "rotated"}
        saved = await api.request("PATCH", path, json=right, headers={"If-Match": etag})
        text = await saved.text()
        assert saved.status == 200, text
        assert fake.app_registration.client_secret not in text
        doc = await saved.json()
        validate_uko("Keystore", doc)
        assert (doc["azure_tenant"], doc["description"]) == (fake.app_registration.tenant_id, "rotated")
        assert await _health(api, keystore) == "ok"
        tokens = [e.status for e in fake.log.entries if e.operation == "Token"]
        assert tokens.count(200) >= 3 and {400, 401} & set(tokens), tokens  # refused secrets, then the new one


async def test_a_key_protect_api_key_alone_is_exchanged_where_the_stored_one_was(api_factory: ApiFactory) -> None:
    api = await _uncached(api_factory)
    async with running("ibm_cloud_kms") as ibm:
        fake = ibm.fake
        assert isinstance(fake, KeyProtectFake)
        keystore, etag = await _connected(api, uko_body(await api.vault(), "kp", "ibm_cloud_kms", ibm))
        path = f"/keystores/{keystore}"
        for refused, field in (({"ibm_variant": "hpcs"}, "ibm_variant"), ({"aws_region": "us_east_1"}, "aws_region")):
            resp = await api.request("PATCH", path, json=refused, headers={"If-Match": etag})
            assert resp.status == 400, await resp.text()
            assert (await error_of(resp))["errors"][0]["target"]["name"] == field

        old = fake.apikey
        new = fake.iam.add_apikey("IBMid-fake-user-1")
        del fake.iam.apikeys[old]  # the old API key was deleted in IBM Cloud
        assert await _health(api, keystore) == "configuration_error"
        bogus = await api.request("PATCH", path, json={"ibm_api_key": "bogus-key"}, headers={"If-Match": etag})
        assert bogus.status == 400 and "bogus-key" not in await bogus.text()
        saved = await api.request("PATCH", path, json={"ibm_api_key": new}, headers={"If-Match": etag})
        assert saved.status == 200, await saved.text()
        assert new not in await saved.text() and await _health(api, keystore) == "ok"
        assert (await saved.json())["ibm_iam_endpoint"] == ibm.url


async def test_a_google_service_account_key_is_replaced_by_its_successor(api_factory: ApiFactory) -> None:
    api = await _uncached(api_factory)
    async with running("google_kms") as google:
        fake = google.fake
        assert isinstance(fake, GoogleKmsFake)
        body = uko_body(await api.vault(), "gcp", "google_kms", google)
        keystore, etag = await _connected(api, body)
        path = f"/keystores/{keystore}"
        assert await _health(api, keystore) == "ok"
        fake.account._key, fake.account.private_key_id = None, secrets.token_hex(20)  # the old key was deleted
        assert await _health(api, keystore) == "configuration_error"

        successor = fake.credentials(google.url)
        encoded = base64.b64encode(json.dumps(successor).encode()).decode()
        mismatch = {"google_credentials": encoded, "google_private_key_id": body["google_private_key_id"]}
        refused = await api.request("PATCH", path, json=mismatch, headers={"If-Match": etag})
        assert refused.status == 400 and encoded not in await refused.text()
        assert (await error_of(refused))["errors"][0]["target"]["name"] == "google_private_key_id"
        change = {"google_credentials": encoded, "google_private_key_id": successor["private_key_id"]}
        saved = await api.request("PATCH", path, json=change, headers={"If-Match": etag})
        text = await saved.text()
        assert saved.status == 200, text
        assert successor["private_key"] not in text and encoded not in text
        assert (await saved.json())["google_private_key_id"] == successor["private_key_id"]
        assert await _health(api, keystore) == "ok"
