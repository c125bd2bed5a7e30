"""``KeystoreClient.inventory`` (issue 16), against all four adapters on their fakes over loopback.

The fakes hold keys made outside keyorch (seeded as UKO or a person made them) next to keys keyorch made; the
inventory lists every one with its name, aliases, tags or labels, state, versions and creation date, across
provider pages of 2, sending reads only. A listing answer that is not the provider's shape, served by a few-line
``aiohttp.web`` handler in front of the fake, is a ``MalformedResponse`` naming what is wrong.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from tests.providers.contract_env import PROVIDERS, ContractEnv, Provider, contract_env
from tests.providers.test_http import keystore as keystore_record

from keyorch.domain.models import KeystoreType
from keyorch.domain.states import KeyState
from keyorch.domain.uko_markers import UKO_ID_TAG, uko_description
from keyorch.fakes.seed import parse_keys
from keyorch.providers.base import InventoryKey, KeySpec, factory_for
from keyorch.providers.errors import MalformedResponse

AES = KeySpec(algorithm="aes", size=256, name="made-by-keyorch", labels={"keyorch-label": "mine"})
CREATED = datetime(2023, 5, 17, 8, 30, tzinfo=UTC)
#: the operations each provider's inventory may send (all of them reads)
READS: dict[KeystoreType, frozenset[str]] = {
    KeystoreType.AWS_KMS: frozenset({"ListAliases", "ListKeys", "DescribeKey", "ListResourceTags", "ListKeyRotations"}),
    KeystoreType.AZURE_KEY_VAULT: frozenset({"Token", "ListKeys", "ListKeyVersions", "GetKey", "ListDeletedKeys"}),
    KeystoreType.GOOGLE_KMS: frozenset({"Token", "ListCryptoKeys", "ListCryptoKeyVersions"}),
    KeystoreType.IBM_KEY_PROTECT: frozenset({"Token", "ListKeys", "GetKeyMetadata", "ListKeyVersions"}),
}
#: the listing's operation in each fake's log (what pages)
LISTING = {
    KeystoreType.AWS_KMS: "ListKeys",
    KeystoreType.AZURE_KEY_VAULT: "ListKeys",
    KeystoreType.GOOGLE_KMS: "ListCryptoKeys",
    KeystoreType.IBM_KEY_PROTECT: "ListKeys",
}
GOOGLE_RING = "projects/keyorch-contract/locations/us-east1/keyRings/contract"


@pytest.fixture(params=PROVIDERS, ids=[p.name for p in PROVIDERS])
async def env(request: pytest.FixtureRequest) -> AsyncIterator[ContractEnv]:
    async with contract_env(request.param) as made:
        yield made


def seed_keys(kind: KeystoreType) -> list[dict[str, Any]]:
    """Five keys made outside keyorch: UKO's (active, two versions where the fake rotates such keys), one disabled,
    one pending destruction, and two a person made."""
    ring = {"key_ring": GOOGLE_RING} if kind is KeystoreType.GOOGLE_KMS else {}
    name = {KeystoreType.IBM_KEY_PROTECT: "kp {}"}.get(kind, "{}")
    uko_versions = 1 if kind is KeystoreType.AWS_KMS else 2  # UKO's AWS keys hold imported material
    return [
        {"name": name.format("uko-active"), "uko": "11111111-2222-4333-8444-555555555555", "versions": uko_versions,
         "created": CREATED.isoformat(), "tags": {"env": "prod"}, **ring},
        {"name": name.format("uko-disabled"), "uko": True, "state": "disabled", **ring},
        {"name": name.format("uko-pending"), "uko": True, "state": "destruction_pending", **ring},
        {"name": name.format("by-hand"), "versions": 3, "created": CREATED.isoformat(), **ring},
        {"name": name.format("by-hand-too"), **ring},
    ]  # fmt: skip


async def listed(env: ContractEnv) -> dict[str | None, InventoryKey]:
    found = [key async for key in env.client.inventory()]
    by_name = {key.name: key for key in found}
    assert len(by_name) == len(found), [k.name for k in found]
    return by_name


async def test_inventory_lists_every_key_with_its_fields_across_pages_and_reads_only(env: ContractEnv) -> None:
    kind = env.provider.kind
    managed = f"mk-{uuid.uuid4().hex[:12]}"
    mine = await env.client.ensure_key(managed, AES)
    made = env.fake.seed(parse_keys({"keys": seed_keys(kind)}))
    env.fake.log.clear()
    keys = await listed(env)
    assert len(keys) == 6, sorted(str(k) for k in keys)
    sent = set(env.fake.log.counts)
    assert sent <= READS[kind], f"the inventory sent {sent - READS[kind]}"
    assert env.count(LISTING[kind]) >= 3  # 6 keys on pages of 2

    prefix = "alias/" if kind is KeystoreType.AWS_KMS else ("kp " if kind is KeystoreType.IBM_KEY_PROTECT else "")
    uko = keys[prefix + "uko-active"]
    assert uko.key_id_in_keystore in {m["id"] for m in made}
    assert uko.state is KeyState.ACTIVE and not uko.destruction_pending
    assert uko.created_at == CREATED
    assert len(uko.versions) == (1 if kind is KeystoreType.AWS_KMS else 2)
    assert [v.primary for v in uko.versions][-1] and sum(v.primary for v in uko.versions) == 1
    assert uko.managed_key_id is None
    if kind is KeystoreType.IBM_KEY_PROTECT:
        assert uko.description == uko_description("11111111-2222-4333-8444-555555555555")
        assert uko.labels == {"env": "prod"}
    else:
        assert uko.labels[UKO_ID_TAG] == "11111111-2222-4333-8444-555555555555" and uko.labels["env"] == "prod"
    if kind is KeystoreType.AWS_KMS:
        assert uko.origin == "EXTERNAL" and keys["alias/by-hand"].origin == "AWS_KMS"

    assert keys[prefix + "uko-disabled"].state is KeyState.DEACTIVATED
    pending = keys[prefix + "uko-pending"]
    assert pending.state is KeyState.DEACTIVATED and pending.destruction_pending and pending.pending_until is not None
    by_hand = keys[prefix + "by-hand"]
    assert len(by_hand.versions) == 3 and by_hand.created_at == CREATED
    assert [v.created_at for v in by_hand.versions] == [CREATED + timedelta(days=i) for i in range(3)]

    own = next(k for k in keys.values() if k.key_id_in_keystore == mine.key_id_in_keystore)
    assert own.managed_key_id in (managed, managed.lower())
    assert own.state is KeyState.ACTIVE and len(own.versions) == 1


# -- malformed listing answers, from a handler in front of the fake --------------------------------

#: (is this the listing request?, a body of the wrong shape, what the error names)
MALFORMED: dict[KeystoreType, tuple[Any, dict[str, Any], str]] = {
    KeystoreType.AWS_KMS: (
        lambda r: r.headers.get("X-Amz-Target") == "TrentService.ListKeys",
        {"Keys": [{"KeyId": 7}], "Truncated": False},
        "KeyId",
    ),
    KeystoreType.AZURE_KEY_VAULT: (
        lambda r: r.method == "GET" and r.path == "/keys",
        {"value": [{"kid": "not a key id", "attributes": {"enabled": True}}]},
        "kid",
    ),
    KeystoreType.GOOGLE_KMS: (
        lambda r: r.method == "GET" and r.path.endswith("/cryptoKeys"),
        {"cryptoKeys": [{"name": "nonsense"}]},
        "cryptoKey name",
    ),
    KeystoreType.IBM_KEY_PROTECT: (
        lambda r: r.method == "GET" and r.path == "/api/v2/keys",
        {"metadata": {"collectionTotal": 1}, "resources": [{"id": "k-1", "state": "nine"}]},
        "state",
    ),
}


async def _front(fake_url: str, provider: Provider) -> tuple[web.AppRunner, str]:
    """A few-line handler in front of the fake: the listing gets a malformed body, everything else is forwarded."""
    is_listing, body, _ = MALFORMED[provider.kind]
    session = aiohttp.ClientSession(auto_decompress=False)

    async def handle(request: web.Request) -> web.StreamResponse:
        if is_listing(request):
            return web.json_response(body)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("content-length", "transfer-encoding")}
        async with session.request(
            request.method, fake_url + request.path_qs, headers=headers, data=await request.read()
        ) as answer:
            return web.Response(status=answer.status, body=await answer.read(), headers=dict(answer.headers))

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    app.on_cleanup.append(lambda _: session.close())
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("provider", PROVIDERS, ids=[p.name for p in PROVIDERS])
async def test_a_malformed_listing_is_a_malformed_response_naming_it(provider: Provider) -> None:
    async with contract_env(provider) as env:
        env.fake.seed(parse_keys({"keys": seed_keys(provider.kind)[:1]}))
        runner, url = await _front(env.url, provider)
        try:
            settings = {**env.keystore.settings, "endpoint": url}
            client = factory_for(provider.kind).create(keystore_record(provider.kind, settings), env.credentials)
            try:
                with pytest.raises(MalformedResponse) as caught:
                    _ = [key async for key in client.inventory()]
            finally:
                await client.aclose()
        finally:
            await runner.cleanup()
    assert MALFORMED[provider.kind][2] in caught.value.message, caught.value.message
