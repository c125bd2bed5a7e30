"""Credentials from keyorch's environment are the operator's, and a keystore's credentials stay with its endpoint
(issue 12, point 3), through the API.

Before: a vault administrator connected a keystore with ``credentials_from_environment`` to an endpoint
of their own (201) and received the daemon's bearer token there. Now that needs the vault in the setting
``environment_credentials.vaults`` and an official (or operator-listed) endpoint; and an endpoint cannot
be moved without entering the keystore's credentials again.
"""

from __future__ import annotations

from typing import Any

from keyorch.fakes.tls import generate_tls
from keyorch.settings import EnvironmentCredentialsSettings
from tests.api.conftest import Api, ApiFactory, error_of
from tests.api.uko_keystore_bodies import running

ATTACKER = "https://kv-capture.attacker.example"
OFFICIAL = "https://payments-kv.vault.azure.net"


def _azure(vault: str, name: str, endpoint: str, **extra: Any) -> dict[str, Any]:
    body = {"vault": vault, "name": name, "type": "azure_key_vault", "endpoint": endpoint}
    return {"credentials_from_environment": True, **body, **extra}


async def _refusal(resp: Any) -> tuple[int, str]:
    doc = await error_of(resp)
    return resp.status, doc["errors"][0]["message"]


async def test_a_vault_administrator_cannot_point_environment_credentials_anywhere(api_factory: ApiFactory) -> None:
    operator = EnvironmentCredentialsSettings(vaults=["payments"])
    api = await api_factory(environment_credentials=operator)
    await api.vault("payments")
    await api.vault("other")

    status, message = await _refusal(await api.request("POST", "/keystores", json=_azure("payments", "k1", ATTACKER)))
    assert status == 403
    assert "environment_credentials.endpoints" in message and "kv-capture.attacker.example" in message
    status, message = await _refusal(await api.request("POST", "/keystores", json=_azure("other", "k2", OFFICIAL)))
    assert status == 403 and "vault other" in message and "environment_credentials.vaults" in message

    connected = await api.request("POST", "/keystores", json=_azure("payments", "k3", OFFICIAL))
    assert connected.status == 201, await connected.text()
    keystore = await connected.json()
    moved = await api.request(
        "PATCH",
        f"/keystores/{keystore['id']}",
        json={"endpoint": ATTACKER},
        headers={"If-Match": connected.headers["ETag"]},
    )
    status, message = await _refusal(moved)
    assert status == 403 and "environment_credentials.endpoints" in message

    async with api.store.read() as tx:
        names = {k.name for k in await tx.list_keystores()}
        refused = [r for r in await tx.list_audit(limit=1000) if r.outcome == "refused"]
    assert names == {"k3"}  # nothing of the refused ones was written
    assert [(r.action, r.detail.split(":")[0] if r.detail else "") for r in refused] == [
        ("keystore.connect", "forbidden"),
        ("keystore.connect", "forbidden"),
        ("keystore.update", "forbidden"),
    ]


async def test_by_default_no_vault_uses_environment_credentials_through_the_api(api_factory: ApiFactory) -> None:
    api = await api_factory(environment_credentials=EnvironmentCredentialsSettings())
    await api.vault("payments")
    status, message = await _refusal(await api.request("POST", "/keystores", json=_azure("payments", "k", OFFICIAL)))
    assert status == 403 and "environment_credentials.vaults" in message


async def test_an_endpoint_moves_only_with_the_credentials_entered_again(api: Api) -> None:
    await api.vault("payments")
    creds = {"tenant_id": "t-1", "client_id": "c-1", "client_secret": "s3cret-value"}
    body = {
        "vault": "payments",
        "name": "stored",
        "type": "azure_key_vault",
        "endpoint": OFFICIAL,
        "credentials": creds,
    }
    connected = await api.request("POST", "/keystores", json=body)
    assert connected.status == 201, await connected.text()
    ks, etag = (await connected.json())["id"], connected.headers["ETag"]

    private_ca = generate_tls(["127.0.0.1"]).ca_pem.decode("ascii")  # who may answer there: moved as well
    for change in ({"endpoint": ATTACKER}, {"ca_pem": private_ca}):
        resp = await api.request("PATCH", f"/keystores/{ks}", json=change, headers={"If-Match": etag})
        status, message = await _refusal(resp)
        assert status == 409 and "give its credentials again" in message and "s3cret" not in message, change
    assert (await (await api.request("GET", f"/keystores/{ks}")).json())["settings"]["endpoint"] == OFFICIAL

    drift = await api.request(
        "PATCH", f"/keystores/{ks}", json={"drift_policy": "remediate"}, headers={"If-Match": etag}
    )
    assert drift.status == 200 and (await drift.json())["drift_policy"] == "remediate"
    async with running("azure_key_vault") as fake:  # a move with the credentials again is tried there first
        to_fake = {"endpoint": fake.url, "allow_insecure_http": True, "credentials": fake.fake.credentials(fake.url)}
        moved = await api.request(
            "PATCH", f"/keystores/{ks}", json=to_fake, headers={"If-Match": drift.headers["ETag"]}
        )
        assert moved.status == 200, await moved.text()
    doc = await moved.json()
    assert doc["settings"]["endpoint"] == fake.url and doc["credentials"] == "stored"
