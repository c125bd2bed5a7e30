"""A connect's dry run keeps every rule a connect has, before anything reaches the keystore: the operator's rule
for credentials from keyorch's environment, the unique name, the caller's role; keyorch's own body is tried too;
a disconnected keystore's status is not checked."""

from __future__ import annotations

from keyorch.settings import EnvironmentCredentialsSettings

from .conftest import Api, ApiFactory, error_of
from .uko_keystore_bodies import running, uko_body


async def test_a_dry_run_refuses_what_a_connect_refuses_before_any_request_leaves(api_factory: ApiFactory) -> None:
    api = await api_factory(environment_credentials=EnvironmentCredentialsSettings(vaults=["*"]))
    vault = await api.vault()
    async with running("aws_kms") as aws:
        from_environment = {
            "vault": vault,
            "name": "env",
            "type": "aws_kms",
            "region": "us-east-1",
            "endpoint": aws.url,  # not an official endpoint, nor one the operator listed
            "allow_insecure_http": True,
            "credentials_from_environment": True,
        }
        resp = await api.request("POST", "/keystores", params={"dry_run": "true"}, json=from_environment)
        assert resp.status == 403, await resp.text()
        assert "environment_credentials.endpoints" in (await error_of(resp))["errors"][0]["message"]

        made = await api.request("POST", "/keystores", json=uko_body(vault, "taken", "aws_kms", aws))
        assert made.status == 201, await made.text()
        again = await api.request(
            "POST", "/keystores", params={"dry_run": "true"}, json=uko_body(vault, "taken", "aws_kms", aws)
        )
        assert again.status == 409, await again.text()

        reader = await api.request(
            "POST", "/keystores", user="reader", params={"dry_run": "true"}, json=uko_body(vault, "r", "aws_kms", aws)
        )
        assert reader.status == 403, await reader.text()
        assert aws.fake.log.counts["ListKeys"] == 0  # none of them reached the keystore

        own = {
            "vault": vault,
            "name": "own-body",
            "type": "aws_kms",
            "region": "us-east-1",
            "endpoint": aws.url,
            "allow_insecure_http": True,
            "credentials": aws.fake.credentials(aws.url),
        }
        tried = await api.request("POST", "/keystores", params={"dry_run": "true"}, json=own)
        assert tried.status == 200, await tried.text()
        assert (await tried.json())["health_status"] == "ok" and aws.fake.log.counts["ListKeys"] == 1
    async with api.store.read() as tx:
        assert [k.name for k in await tx.list_keystores(include_disconnected=True)] == ["taken"]


async def test_a_disconnected_keystores_status_says_so_without_a_check(api: Api) -> None:
    vault = await api.vault()
    async with running("aws_kms") as aws:
        made = await api.request("POST", "/keystores", json=uko_body(vault, "gone", "aws_kms", aws))
        keystore = (await made.json())["id"]
        path = f"/keystores/{keystore}"
        gone = await api.request("DELETE", path, headers={"If-Match": made.headers["ETag"]})
        assert gone.status < 300, await gone.text()
        probes = aws.fake.log.counts["ListKeys"]
        doc = await (await api.request("GET", f"{path}/status")).json()
        assert (doc["health_status"], doc["status"]) == ("configuration_error", "disconnected"), doc
        assert "disconnected" in doc["message"] and "last_heartbeat" not in doc
        assert aws.fake.log.counts["ListKeys"] == probes
