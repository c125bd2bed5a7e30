"""The keystore resource as UKO v4 (IBM's Go SDK) has it, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from keyorch.service import keystores
from tests.uko.contract import validate_uko, violations

from .conftest import API, Api, auth, aws_connect_body, error_of, target_of

SECRETS = ("wJalrXUtnFEMI-SECRET-9", "azure-client-SECRET-77", "ibm-apikey-SECRET-31")

PER_TYPE: dict[str, dict[str, Any]] = {
    "aws_kms": {"region": "us-east-1"},
    "azure_key_vault": {"endpoint": "https://kv-uko.vault.azure.net"},
    "google_kms": {"project": "my-project-1", "location": "europe-west3", "key_ring": "ring"},
    "ibm_key_protect": {"region": "us-south", "instance_id": "0a1b2c3d-inst"},
}


@pytest.fixture
def api_db_url(db_url: str) -> str:
    return db_url


async def _connect(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    resp = await api.request("POST", "/keystores", json=body)
    assert resp.status == 201, await resp.text()
    doc: dict[str, Any] = await resp.json()
    return doc


async def test_connect_takes_groups_description_and_location(api: Api) -> None:
    vault = await api.vault()
    uko = {"groups": ["payments", "eu"], "description": "cards", "location": "Frankfurt"}
    made = await _connect(api, aws_connect_body(vault, api.unique("ks"), **uko))
    assert (made["groups"], made["description"], made["location"]) == (["payments", "eu"], "cards", "Frankfurt")
    assert (made["created_by"], made["updated_by"]) == ("admin", "admin")
    got = await (await api.request("GET", f"/keystores/{made['id']}", user="reader")).json()
    assert (got["groups"], got["description"], got["location"]) == (["payments", "eu"], "cards", "Frankfurt")

    plain = await _connect(api, aws_connect_body(vault, api.unique("ks")))
    assert (plain["groups"], plain["description"], plain["location"]) == ([], "", "")


async def test_bad_groups_and_location_are_refused_naming_the_field(api: Api) -> None:
    vault = await api.vault()
    for extra, field, says in (
        ({"groups": ["has space"]}, "groups", "group 'has space' is not valid"),
        ({"groups": ["a", "a"]}, "groups", "listed twice"),
        ({"location": "x" * 129}, "location", "at most 128"),
        ({"description": "bell\x07"}, "description", "control character"),
    ):
        resp = await api.request("POST", "/keystores", json=aws_connect_body(vault, api.unique("bad"), **extra))
        assert resp.status == 400, (extra, await resp.text())
        err = (await error_of(resp))["errors"][0]
        assert target_of(err) == ("field", field) and says in err["message"], err
    listed = await (await api.request("GET", "/keystores", params={"vault": vault})).json()
    assert listed["keystores"] == []


def _body(vault: str, name: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"vault": vault, "name": name, "type": kind, **PER_TYPE[kind], **extra}


async def test_each_type_answers_as_uko_keystore_with_its_fields_and_no_secret(api: Api) -> None:
    vault = await api.vault()
    vault_name = (await (await api.request("GET", f"/vaults/{vault}")).json())["name"]
    stored = {
        "aws_kms": {"access_key_id": "AKIAEXAMPLE", "secret_access_key": SECRETS[0]},
        "azure_key_vault": {"tenant_id": "tenant-1", "client_id": "client-1", "client_secret": SECRETS[1]},
        "ibm_key_protect": {"apikey": SECRETS[2], "iam_url": "https://iam.test.cloud.ibm.com/identity/token"},
    }
    made: dict[str, dict[str, Any]] = {}
    for kind in PER_TYPE:
        creds = {"credentials": stored[kind]} if kind in stored else {"credentials_from_environment": True}
        made[kind] = await _connect(api, _body(vault, api.unique("ks"), kind, **creds, groups=["g1"]))
    # keyorch's own body has no field for UKO's azure_location (an enum): the answer leaves it out (which the
    # SDK decodes, though its struct declares the field required)
    assert violations("Keystore", made["azure_key_vault"]) == [
        "$: 'azure_location' is a required property",
    ]
    azure_facts = {"azure_location": "europe_west", "azure_resource_group": "rg-1", "azure_subscription_id": "sub-1"}
    request = keystores.ConnectRequest(
        vault=vault,
        name=api.unique("ks"),
        type="azure_key_vault",
        endpoint="https://kv-uko2.vault.azure.net",
        credentials_from_environment=True,
        groups=("g1",),
        uko_fields=azure_facts,
    )
    azure_uko = await keystores.connect_keystore(api.ctx(), request)
    made["azure_uko"] = await (await api.request("GET", f"/keystores/{azure_uko.id}")).json()
    assert {k: made["azure_uko"][k] for k in azure_facts} == azure_facts

    for kind, doc in made.items():
        got = await api.request("GET", f"/keystores/{doc['id']}", user="reader")
        text = await got.text()
        assert all(secret not in text for secret in SECRETS), text
        assert "AKIAEXAMPLE" not in text  # an access key id is a credential too
        answer = await got.json()
        if kind != "azure_key_vault":
            validate_uko("Keystore", answer)
        assert answer == doc
        assert answer["vault"] == {"id": vault, "name": vault_name, "href": f"{API}/vaults/{vault}"}
        assert answer["href"] == f"{API}/keystores/{doc['id']}"
        assert (answer["groups"], answer["credentials"], answer["status"]) == (
            ["g1"],
            "stored" if kind in stored else "environment",
            "connected",
        )

    aws, azure, google, ibm = (made[k] for k in PER_TYPE)
    assert (made["azure_uko"]["azure_tenant"], made["azure_uko"]["azure_service_name"]) == ("", "kv-uko2")
    assert (aws["type"], aws["aws_region"], aws["aws_access_key_id"]) == ("aws_kms", "us_east_1", "[redacted]")
    assert aws["aws_secret_access_key"] == "[redacted]"
    assert (azure["azure_service_name"], azure["azure_environment"]) == ("kv-uko", "azure")
    assert (azure["azure_tenant"], azure["azure_service_principal_client_id"]) == ("tenant-1", "client-1")
    assert (azure["azure_resource_group"], azure["azure_subscription_id"]) == ("", "")  # not given
    assert azure["azure_service_principal_password"] == "[redacted]"
    assert (google["google_project_id"], google["google_location"], google["google_key_ring"]) == (
        "my-project-1",
        "europe-west3",
        "ring",
    )
    assert google["location"] == "europe-west3" and google["google_credentials"] == "[redacted]"
    assert (ibm["type"], ibm["ibm_variant"], ibm["ibm_instance_id"]) == (
        "ibm_cloud_kms",
        "key_protect",
        "0a1b2c3d-inst",
    )
    assert ibm["ibm_api_endpoint"] == "https://us-south.kms.cloud.ibm.com"
    assert (ibm["ibm_iam_endpoint"], ibm["ibm_api_key"]) == ("https://iam.test.cloud.ibm.com", "[redacted]")


async def test_the_list_is_uko_keystore_list_and_each_filter_filters(api: Api) -> None:
    mine, other = await api.vault(), await api.vault()
    ks: dict[str, dict[str, Any]] = {}
    for name, kind, vault, extra in (
        ("alpha-pay", "aws_kms", mine, {"groups": ["pay", "eu"], "description": "cards", "location": "Frankfurt"}),
        ("beta-pay", "ibm_key_protect", mine, {"groups": ["pay"], "description": "loans", "location": "Dallas"}),
        ("gamma-ops", "google_kms", mine, {"groups": ["ops"], "location": "Frankfurt"}),
        ("alpha-other", "aws_kms", other, {"groups": ["pay"], "description": "cards", "location": "Frankfurt"}),
    ):
        body = _body(vault, f"{name}{api.unique('')}", kind, credentials_from_environment=True, **extra)
        ks[name] = await _connect(api, body)

    async def listed(**params: str) -> list[str]:
        """The keystores listed, by name unless ``sort`` says otherwise (the test clock makes all at once)."""
        params.setdefault("sort", "name")
        resp = await api.request("GET", "/keystores", user="reader", params=params)
        assert resp.status == 200, (params, await resp.text())
        doc = await resp.json()
        validate_uko("KeystoreList", doc)
        by_id = {v["id"]: k for k, v in ks.items()}
        return [by_id[k["id"]] for k in doc["keystores"] if k["id"] in by_id]

    assert await listed(**{"vault.id": mine}) == ["alpha-pay", "beta-pay", "gamma-ops"]
    assert await listed(**{"vault.id": other}) == ["alpha-other"]  # another vault's keystores never appear
    assert await listed(**{"vault.id": mine, "type": "aws_kms"}) == ["alpha-pay"]
    assert await listed(**{"vault.id": mine, "type": "ibm_cloud_kms,google_kms"}) == ["beta-pay", "gamma-ops"]
    assert await listed(**{"vault.id": mine, "type": "ibm_key_protect"}) == ["beta-pay"]  # keyorch's name
    assert await listed(**{"vault.id": mine, "name": "alpha"}) == ["alpha-pay"]
    assert await listed(**{"vault.id": mine, "description": "loan"}) == ["beta-pay"]
    assert await listed(**{"vault.id": mine, "group": "pay"}) == ["alpha-pay", "beta-pay"]
    assert await listed(**{"vault.id": mine, "groups[]": "eu,ops"}) == ["alpha-pay", "gamma-ops"]
    assert await listed(**{"vault.id": mine, "location": "Frankfurt"}) == ["alpha-pay", "gamma-ops"]
    assert await listed(**{"vault.id": mine, "sort": "-name"}) == ["gamma-ops", "beta-pay", "alpha-pay"]
    assert await listed(**{"vault.id": mine, "sort": "location,-name"}) == ["beta-pay", "gamma-ops", "alpha-pay"]
    assert await listed(**{"vault.id": f"{mine},{other}", "name": "alpha"}) == ["alpha-other", "alpha-pay"]
    assert await listed(group="pay") == ["alpha-other", "alpha-pay", "beta-pay"]

    for params, parameter in (
        ({"type": "hsm"}, "type"),
        ({"group": "pay", "groups[]": "eu"}, "groups[]"),
        ({"groups[]": "no spaces"}, "groups[]"),
        ({"sort": "colour"}, "sort"),
        ({"status.health_status": "ok"}, "status.health_status"),
    ):
        resp = await api.request("GET", "/keystores", user="reader", params=params)
        assert resp.status == 400, (params, await resp.text())
        err = (await error_of(resp))["errors"][0]
        assert target_of(err) == ("parameter", parameter), err


async def test_the_list_pages_walk_every_keystore_once(api: Api) -> None:
    vault = await api.vault()
    made = {(await _connect(api, aws_connect_body(vault, api.unique("pg"))))["id"] for _ in range(5)}
    seen: list[str] = []
    path: str | None = f"{API}/keystores?vault.id={vault}&limit=2"
    while path is not None:
        resp = await api.client.get(path, headers=auth("reader"))
        doc = await resp.json()
        validate_uko("KeystoreList", doc)
        assert doc["total_count"] == 5
        seen.extend(k["id"] for k in doc["keystores"])
        path = doc["next"]["href"] if doc.get("next") else None
    assert sorted(seen) == sorted(made)
