"""Issue 11, point 2, on `keyorch serve` (a real subprocess) through its API.

`POST /managed_keys/{id}/destroy` followed at once by `DELETE /managed_keys/{id}` used to answer 204
before the reconciler had scheduled any deletion: the key's AWS key stayed Disabled with no deletion
date and keyorch no longer knew it. A key leaves the vault only once every keystore was reconciled
since the destroy and reports it gone or past its pending window; until then the DELETE is refused
and names the keystores, and the reconciler goes on to schedule the destruction everywhere.
"""

from __future__ import annotations

from typing import Any

from tests.daemon.harness import DaemonProcess, eventually, slow_every_call
from tests.daemon.world import World, in_sync, serving_world
from tests.e2e.harness import EXPECTED, KINDS, clear_faults, provider_states


async def test_a_key_destroyed_and_removed_at_once_stays_until_every_keystore_destroyed_it(
    world: World, daemons: list[DaemonProcess]
) -> None:
    _, client, template = await serving_world(world, daemons, world.config())
    key = await client.create_key(template, "short-lived")

    async def targets_seen() -> list[dict[str, Any]] | None:
        targets = await client.key_targets(key["id"])
        return targets if in_sync(targets) else None

    await eventually(targets_seen, 20, "the pre-active key reconciled (not present anywhere)")
    slow_every_call(world.cluster, 300)  # the reconciler is still at work when the DELETE arrives

    etag = key["etag"]
    for action in ("activate", "deactivate", "destroy"):
        answer = await client.api("POST", f"/managed_keys/{key['id']}/{action}", if_match=etag)
        etag = answer.headers["ETag"]
        answer.ok()
    removed = await client.api("DELETE", f"/managed_keys/{key['id']}", if_match=etag)
    assert removed.status == 409, removed.doc
    message = removed.doc["errors"][0]["message"]
    assert "cannot remove" in message and any(kind in message for kind in KINDS), message

    clear_faults(world.cluster)
    await eventually(targets_seen, 60, "every target in line with destroyed")
    states = provider_states(world.cluster, key["id"])
    # a keystore the create reached holds it pending destruction; one it never reached holds nothing
    assert all(states[kind] in (EXPECTED["destroyed"][kind], None) for kind in KINDS), states
    assert (await client.api("GET", f"/managed_keys/{key['id']}")).status == 200  # still tracked
