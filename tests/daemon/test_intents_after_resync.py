"""Issue 11, point 1: an observation older than an intent decides nothing.

`keyorch serve` (a real subprocess) lists every keystore when it starts. A change made through the
API right after that listing used to be planned against it: when the old listing happened to match
the *new* desired state, the target was recorded in sync and no call was made, so keyorch showed the
key deactivated while every provider still had it enabled (and likewise for reactivate and destroy).
Each case below arranges for the start-up listing to show exactly the state the last change asks
for, then checks what the four fakes themselves hold once keyorch says the key is in sync.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.daemon.harness import ApiClient, DaemonProcess, eventually
from tests.daemon.world import World, in_sync, serving, serving_world
from tests.e2e.harness import EXPECTED, provider_states

SECONDS = 30.0


def _resyncs(daemon: DaemonProcess) -> int:
    return sum(1 for r in daemon.logs() if r.get("event") == "resync listed")


async def _act(world: World, client: ApiClient, key_id: str, action: str) -> None:
    # Key Protect enables a key only 30 s after its last action (REQ_TOO_EARLY_ERR): let that pass
    world.cluster["ibm_key_protect"].fake.clock.advance(31)
    etag = (await client.api("GET", f"/managed_keys/{key_id}")).headers["ETag"]
    route = "activate" if action == "reactivate" else action  # UKO's API reactivates with activate
    (await client.api("POST", f"/managed_keys/{key_id}/{route}", if_match=etag)).ok()


async def _providers_show(world: World, key_id: str, state: str) -> None:
    async def shown() -> bool | None:
        return True if provider_states(world.cluster, key_id) == EXPECTED[state] else None

    await eventually(shown, SECONDS, f"every fake shows the key {state}")


async def _keyorch_in_sync(client: ApiClient, key_id: str) -> list[dict[str, Any]]:
    async def synced() -> list[dict[str, Any]] | None:
        targets = await client.key_targets(key_id)
        return targets if in_sync(targets) else None

    return await eventually(synced, SECONDS, "keyorch shows every target in sync")


#: per case: the steps before the restart (and the state they leave in every provider), then the
#: steps after it; the start-up listing shows the state the last step asks for.
CASES = {
    "deactivate": (["activate", "deactivate"], "deactivated", ["reactivate", "deactivate"]),
    "reactivate": (["activate"], "active", ["deactivate", "reactivate"]),
    "destroy": ([], "pre_active", ["activate", "deactivate", "destroy"]),
}
AFTER = {"activate": "active", "deactivate": "deactivated", "reactivate": "active", "destroy": "destroyed"}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_change_right_after_a_resync_reaches_every_provider(
    world: World, daemons: list[DaemonProcess], case: str
) -> None:
    before, listed, after = CASES[case]
    daemon, client, template = await serving_world(world, daemons, world.config())
    key = await client.create_key(template, f"k-{case}")
    for step in before:
        await _act(world, client, key["id"], step)
        await _providers_show(world, key["id"], AFTER[step])
    await _keyorch_in_sync(client, key["id"])

    daemon.signal()
    assert await daemon.wait(30) == 0
    daemon, client = await serving(world, daemons, world.config())
    await eventually(lambda: _resynced(daemon), SECONDS, "the start-up resync listed every keystore")
    assert provider_states(world.cluster, key["id"]) == EXPECTED[listed]

    for step in after[:-1]:
        await _act(world, client, key["id"], step)
        await _providers_show(world, key["id"], AFTER[step])
    await _act(world, client, key["id"], after[-1])
    targets = await _keyorch_in_sync(client, key["id"])

    assert provider_states(world.cluster, key["id"]) == EXPECTED[AFTER[after[-1]]], targets


async def _resynced(daemon: DaemonProcess) -> bool | None:
    return True if _resyncs(daemon) >= 1 else None
