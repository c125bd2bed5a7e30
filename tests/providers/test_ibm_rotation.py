"""IBM Key Protect adapter: key versions and rotation against the Key Protect fake over loopback.

``list_versions`` (metadata + version pages), ``rotate`` (``actions/rotate``, never resent blindly,
once an hour), ``set_rotation_policy`` (``policies?policy=rotation`` in months); each case checks the
fake's own state (``/_fake/state``) and request log. Uses the fixtures of ``test_ibm_adapter``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from tests.providers import test_ibm_adapter as base
from tests.providers import test_ibm_adapter_wire as wire
from tests.providers.test_ibm_adapter import SPEC, MakeClient, faults
from tests.providers.test_ibm_adapter_wire import Handler, envelope

from keyorch.fakes.base import RunningFake
from keyorch.fakes.ibm import KeyProtectFake
from keyorch.providers.base import KeyRef
from keyorch.providers.errors import Conflict, InvalidRequest, MalformedResponse
from keyorch.providers.ibm import KeyProtectClient

adapter_env = base.adapter_env
make_client = base.make_client
running = base.running
sleeps = base.sleeps
tiny_server = wire.tiny_server

Env = tuple[KeyProtectClient, KeyProtectFake]
DAY = 86_400
HOUR = 3_600


def state_of(fake: KeyProtectFake, key_id: str | None) -> dict[str, Any]:
    return next(k for k in fake.state_snapshot()["keys"] if k["id"] == key_id)


async def rotated_times(client: KeyProtectClient, fake: KeyProtectFake, ref: KeyRef, times: int) -> list[str]:
    """Rotate ``times`` times an hour apart; the new primary version ids."""
    made = []
    for _ in range(times):
        current = made[-1] if made else str(ref.key_id_in_keystore)
        made.append((await client.rotate(ref, from_version=current)).version_id)
        fake.clock.advance(HOUR + 1)
    return made


async def test_a_new_key_has_one_primary_version(adapter_env: Env) -> None:
    client, _ = adapter_env
    ref = (await client.ensure_key("mk-rot", SPEC)).ref
    versions = await client.list_versions(ref)
    assert [(v.version_id, v.primary, v.enabled) for v in versions] == [(ref.key_id_in_keystore, True, True)]
    assert await client.list_versions(KeyRef(None, "mk-rot")) == versions  # found by alias too


async def test_rotate_makes_a_new_primary_in_the_keystore(adapter_env: Env) -> None:
    client, fake = adapter_env
    ref = (await client.ensure_key("mk-rot", SPEC)).ref
    new = await client.rotate(ref, from_version=str(ref.key_id_in_keystore))
    versions = state_of(fake, ref.key_id_in_keystore)["versions"]
    assert [v["primary"] for v in versions] == [False, True] and new.version_id == versions[1]["id"]
    listed = await client.list_versions(ref)
    assert [(v.version_id, v.primary) for v in listed] == [(versions[0]["id"], False), (new.version_id, True)]
    assert fake.log.counts["RotateKey"] == 1


async def test_versions_are_listed_oldest_first_across_pages(make_client: MakeClient, running: RunningFake) -> None:
    fake = running.fake
    assert isinstance(fake, KeyProtectFake)
    client = make_client(settings={"page_size": 2})
    ref = (await client.ensure_key("mk-rot", SPEC)).ref
    made = await rotated_times(client, fake, ref, 4)
    fake.log.clear()
    versions = await client.list_versions(ref)
    assert [v.version_id for v in versions] == [ref.key_id_in_keystore, *made]
    assert [v["id"] for v in state_of(fake, ref.key_id_in_keystore)["versions"]] == [v.version_id for v in versions]
    assert [v.primary for v in versions] == [False] * 4 + [True]
    assert fake.log.counts["ListKeyVersions"] == 3  # five versions, two a page


async def test_rotate_from_an_old_primary_sends_nothing(adapter_env: Env) -> None:
    client, fake = adapter_env
    ref = (await client.ensure_key("mk-rot", SPEC)).ref
    first = await client.rotate(ref, from_version=str(ref.key_id_in_keystore))
    again = await client.rotate(ref, from_version=str(ref.key_id_in_keystore))
    assert again == first and fake.log.counts["RotateKey"] == 1
    assert len(state_of(fake, ref.key_id_in_keystore)["versions"]) == 2


@pytest.mark.parametrize("fault", ["truncate", "error_500_after", "drop", "error_503"])
async def test_a_rotation_whose_answer_is_lost_is_read_not_resent(adapter_env: Env, fault: str) -> None:
    client, fake = adapter_env
    ref = (await client.ensure_key("mk-rot", SPEC)).ref
    faults(fake, {"operation": "RotateKey", "sequence": [fault]})
    new = await client.rotate(ref, from_version=str(ref.key_id_in_keystore))
    versions = state_of(fake, ref.key_id_in_keystore)["versions"]
    # drop and error_503 are served before the fake acts: nothing was rotated, the call is sent again
    assert len(versions) == 2 and new.version_id == versions[1]["id"] and new.primary
    assert fake.log.counts["RotateKey"] == (2 if fault in ("drop", "error_503") else 1)


async def test_once_an_hour_is_a_clear_permanent_error(adapter_env: Env) -> None:
    client, fake = adapter_env
    ref = (await client.ensure_key("mk-rot", SPEC)).ref
    first = await client.rotate(ref, from_version=str(ref.key_id_in_keystore))
    with pytest.raises(InvalidRequest) as refused:
        await client.rotate(ref, from_version=first.version_id)
    assert refused.value.provider_code == "KEY_ROTATION_NOT_PERMITTED" and not refused.value.transient
    assert "at most once an hour" in refused.value.message
    assert fake.log.counts["RotateKey"] == 2 and len(state_of(fake, ref.key_id_in_keystore)["versions"]) == 2
    fake.clock.advance(HOUR + 1)
    assert (await client.rotate(ref, from_version=first.version_id)).primary


async def test_a_suspended_key_is_not_rotated(adapter_env: Env) -> None:
    client, fake = adapter_env
    ref = (await client.ensure_key("mk-rot", SPEC)).ref
    await client.disable(ref)
    with pytest.raises(Conflict) as refused:
        await client.rotate(ref, from_version=str(ref.key_id_in_keystore))
    assert refused.value.provider_code == "KEY_ACTION_INVALID_STATE_ERR"
    assert len(state_of(fake, ref.key_id_in_keystore)["versions"]) == 1


async def test_rotation_policy_in_months_is_set_and_rotates_on_the_fake_clock(adapter_env: Env) -> None:
    client, fake = adapter_env
    ref = (await client.ensure_key("mk-rot", SPEC)).ref
    for bad in (365, 29, 0, 390, 45):
        with pytest.raises(InvalidRequest, match="every 1 to 12 months") as refused:
            await client.set_rotation_policy(ref, bad)
        assert not refused.value.sent
    assert fake.log.counts["PutKeyPolicies"] == 0
    await client.set_rotation_policy(ref, 90)
    assert state_of(fake, ref.key_id_in_keystore)["rotation_policy"] == {"enabled": True, "interval_month": 3}
    fake.clock.advance(365 * DAY)  # Key Protect rotates by itself: keyorch observes it
    versions = await client.list_versions(ref)
    assert len(versions) == 5 and versions[-1].primary
    await client.set_rotation_policy(ref, None)
    assert state_of(fake, ref.key_id_in_keystore)["rotation_policy"]["enabled"] is False
    await client.set_rotation_policy(ref, 360)
    assert state_of(fake, ref.key_id_in_keystore)["rotation_policy"] == {"enabled": True, "interval_month": 12}


VERSIONS = "application/vnd.ibm.kms.key.version+json"
KEY = {"id": "k-1", "state": 1, "aliases": ["keyorch-m-1"], "keyVersion": {"id": "v-2"}}


def versions_page(*resources: Any) -> dict[str, Any]:
    return {"metadata": {"collectionType": VERSIONS, "collectionTotal": len(resources)}, "resources": list(resources)}


MALFORMED_LISTINGS: list[tuple[str, Any]] = [
    ("no resources", {"metadata": {"collectionType": VERSIONS, "collectionTotal": 1}}),
    ("an array", [{"id": "v-2"}]),
    ("version not an object", versions_page("v-2")),
    ("version without id", versions_page({"creationDate": "2026-01-01T00:00:00Z"})),
    ("bad date", versions_page({"id": "v-2", "creationDate": "soon"})),
    ("no versions", versions_page()),
    ("current version missing", versions_page({"id": "v-1", "creationDate": "2026-01-01T00:00:00Z"})),
]


@pytest.mark.parametrize(("label", "body"), MALFORMED_LISTINGS, ids=[label for label, _ in MALFORMED_LISTINGS])
async def test_malformed_version_listings_are_malformed_responses(
    make_client: MakeClient, tiny_server: Callable[[Handler], Awaitable[str]], label: str, body: Any
) -> None:
    sent: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        sent.append(f"{request.method} {request.path}")
        if request.path.endswith("/metadata"):
            return web.json_response(envelope(KEY))
        return web.json_response(body)

    url = await tiny_server(handler)
    client = make_client({"apikey": "k" * 20, "iam_url": url + "/identity/token", "instance_id": "i-1"}, endpoint=url)
    with pytest.raises(MalformedResponse):
        await client.list_versions(KeyRef("k-1", None))
    with pytest.raises(MalformedResponse):
        await client.rotate(KeyRef("k-1", None), from_version="v-2")
    assert not [line for line in sent if line.startswith("POST")]  # nothing rotated on a listing it cannot read


async def test_a_version_listing_follows_the_pages_and_ignores_repeats(
    make_client: MakeClient, tiny_server: Callable[[Handler], Awaitable[str]]
) -> None:
    """Newest first, a rotation between pages shifts them: the repeat is dropped, the order is by date."""

    def made(version_id: str, month: int) -> dict[str, str]:
        return {"id": version_id, "creationDate": f"2026-0{month}-01T00:00:00Z"}

    pages = {"0": [made("v-3", 3), made("v-2", 2)], "2": [made("v-2", 2), made("k-1", 1)], "4": []}

    async def handler(request: web.Request) -> web.Response:
        if request.path.endswith("/metadata"):
            return web.json_response(envelope({**KEY, "keyVersion": {"id": "v-3"}}))
        return web.json_response(versions_page(*pages[request.query["offset"]]))

    url = await tiny_server(handler)
    client = make_client(
        {"apikey": "k" * 20, "iam_url": url + "/identity/token", "instance_id": "i-1"},
        endpoint=url,
        settings={"page_size": 2},
    )
    versions = await client.list_versions(KeyRef("k-1", None))
    assert [(v.version_id, v.primary) for v in versions] == [("k-1", False), ("v-2", False), ("v-3", True)]
