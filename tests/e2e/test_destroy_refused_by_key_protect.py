"""Issue 11, point 6, through the CLI as a real subprocess against the four fakes.

Key Protect refuses to delete a key that protects registered resources (``PROTECTED_RESOURCE_ERR``)
unless the delete is forced, and a key under its own dual-authorization policy until a second user
authorized it (``AUTHORIZATIONS_NOT_MET``). Both refusals are shown on the Key Protect target with
what the user can do. ``key destroy --force`` on a key already destroyed adds force, and the
reconciler retries with it (it used to be refused: destroy is not allowed from destroyed).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.e2e.harness import EXPECTED, KINDS, AsyncCli, provider_states, setup_world, start_world_fakes

from keyorch.fakes.ibm_iam import APIKEY_GRANT
from keyorch.fakes.registry import FakeCluster

IBM = "ibm_key_protect"


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[AsyncCli, FakeCluster]]:
    cluster, credentials, _ = await start_world_fakes(tmp_path)
    try:
        cli = AsyncCli(tmp_path)
        await setup_world(cli, cluster, credentials)
        yield cli, cluster
    finally:
        await cluster.stop()


async def _active_key(cli: AsyncCli, cluster: FakeCluster, label: str) -> tuple[str, str]:
    """A key made active everywhere; returns its id and its Key Protect key id."""
    key = await cli.ok("key", "create", "--template", "everywhere", "--label", label, "--state", "active")
    assert (await cli("sync-key", key["id"])).code == 0
    cluster[IBM].fake.clock.advance(31)  # Key Protect's wait between actions on a key
    shown = await cli.ok("key", "show", key["id"])
    ibm_id = next(t["key_id_in_keystore"] for t in shown["targets"] if t["keystore_name"] == IBM)
    return key["id"], ibm_id


async def _ibm(cluster: FakeCluster, method: str, path: str, body: Any) -> int:
    running = cluster[IBM]
    async with aiohttp.ClientSession() as session:
        if path.startswith("/_fake/"):
            headers: dict[str, str] = {}
        else:
            form = {"grant_type": APIKEY_GRANT, "apikey": running.fake.credentials(running.url)["apikey"]}
            async with session.post(running.url + "/identity/token", data=form) as response:
                token = (await response.json())["access_token"]
            headers = {"Authorization": f"Bearer {token}", "bluemix-instance": running.fake.instance_id}
        async with session.request(method, running.url + path, json=body, headers=headers) as response:
            await response.read()
            return response.status


async def _ibm_target(cli: AsyncCli, key_id: str) -> dict[str, Any]:
    shown = await cli.ok("key", "show", key_id)
    target: dict[str, Any] = next(t for t in shown["targets"] if t["keystore_name"] == IBM)
    return target


async def test_force_added_after_destroy_deletes_a_key_protecting_resources(
    world: tuple[AsyncCli, FakeCluster],
) -> None:
    cli, cluster = world
    key_id, ibm_id = await _active_key(cli, cluster, "registered")
    crn = "crn:v1:bluemix:public:cloud-object-storage:global:a/1:bucket:data"
    assert await _ibm(cluster, "POST", "/_fake/ibm/registrations", {"keyId": ibm_id, "resourceCrn": crn}) == 201
    await cli.ok("key", "deactivate", key_id)
    await cli.ok("key", "destroy", key_id)
    cluster[IBM].fake.clock.advance(31)

    refused = await cli("sync-key", key_id)
    assert refused.code == 1, str(refused)
    target = await _ibm_target(cli, key_id)
    assert target["sync_flag"] == "out_of_sync" and "PROTECTED_RESOURCE_ERR" in target["last_error"]
    assert "destroy with force" in target["last_error"]
    states = provider_states(cluster, key_id)
    assert {k: states[k] for k in KINDS if k != IBM} == {k: EXPECTED["destroyed"][k] for k in KINDS if k != IBM}
    assert states[IBM] == EXPECTED["deactivated"][IBM]

    forced = await cli.ok("key", "destroy", key_id, "--force")
    assert forced["state"] == "destroyed" and forced["destroy_force"] is True
    again = await cli("key", "destroy", key_id, "--force")
    assert again.code == 3 and "already" in again.err
    synced = await cli("sync-key", key_id)
    assert synced.code == 0, str(synced)
    assert provider_states(cluster, key_id) == EXPECTED["destroyed"]


async def test_key_protect_dual_authorization_refusal_says_what_to_do(world: tuple[AsyncCli, FakeCluster]) -> None:
    cli, cluster = world
    key_id, ibm_id = await _active_key(cli, cluster, "two-person")
    policy = {"type": "application/vnd.ibm.kms.policy+json", "dualAuthDelete": {"enabled": True}}
    body = {"metadata": {"collectionType": policy["type"], "collectionTotal": 1}, "resources": [policy]}
    assert await _ibm(cluster, "PUT", f"/api/v2/keys/{ibm_id}/policies?policy=dualAuthDelete", body) == 200
    await cli.ok("key", "deactivate", key_id)
    await cli.ok("key", "destroy", key_id)
    cluster[IBM].fake.clock.advance(31)

    refused = await cli("sync-key", key_id)
    assert refused.code == 1, str(refused)
    target = await _ibm_target(cli, key_id)
    assert target["sync_flag"] == "out_of_sync" and "AUTHORIZATIONS_NOT_MET" in target["last_error"]
    assert "a different user of Key Protect must first authorize its deletion there" in target["last_error"]
    assert target["reason"] == "destroyed_key_is_present_in_keystore"
