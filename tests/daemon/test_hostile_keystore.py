"""``keyorch serve`` with two hostile keystores beside the four healthy fakes: one trickles every
answer a byte at a time, the other answers JSON nested 100,000 deep (see :mod:`tests.e2e.hostile`).

Issue 11, point 8: the trickling keystore's health check never ended, so no resync pass ever
finished: drift made in a *healthy* keystore was never flagged, and ``/readyz`` and ``/metrics``
showed nothing wrong. Now each call has a total deadline and each keystore's health check and
listing their own (1 s and 2 s here, through the settings file), so a pass skips the hostile
keystores, flags their keys ``connection_error``, and keeps every other keystore in line: an
out-of-band change made through a healthy fake's own API (boto3 against the AWS fake) is flagged
by the periodic resync. ``/readyz`` stays 200 (the daemon itself works) and names the keystores
that do not answer; ``/metrics`` has ``keyorch_keystore_up`` 0 for them and 1 for the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest
from botocore.config import Config
from prometheus_client.parser import text_string_to_metric_families

from keyorch.fakes.registry import AWS_REGION, FakeCluster
from tests.daemon.harness import ApiClient, DaemonProcess, eventually, setup_world_via_api, write_config
from tests.e2e.harness import KINDS, aws_keys, start_world_fakes
from tests.e2e.hostile import CREDENTIALS, HostileKeystore

RESYNC_SECONDS = 3.0
#: short deadlines so the test stays fast: each call 1 s, each keystore's check and listing 2 s
DEADLINES = {"call_timeout_seconds": 1, "listing_timeout_seconds": 2}
#: a liveness bound for what the periodic resync must achieve (several resync intervals)
WITHIN_SECONDS = 30.0


@dataclass
class World:
    workdir: Path
    cluster: FakeCluster
    credentials: dict[str, Path]
    hostile: dict[str, HostileKeystore]
    session: aiohttp.ClientSession


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    cluster, credentials, _ = await start_world_fakes(tmp_path)
    hostile = {"trickling": await HostileKeystore("trickle").start(), "nested": await HostileKeystore("nested").start()}
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        yield World(tmp_path, cluster, credentials, hostile, session)
    finally:
        await session.close()
        for keystore in hostile.values():
            await keystore.close()
        await cluster.stop()


@pytest.fixture
async def daemon(world: World) -> AsyncIterator[DaemonProcess]:
    config = write_config(
        world.workdir / "keyorch.yaml",
        f"sqlite:///{world.workdir / 'keyorch.db'}",
        resync_seconds=RESYNC_SECONDS,
        reconcile=DEADLINES,
    )
    process = await DaemonProcess.start(world.workdir, config)
    try:
        yield process
    finally:
        await process.kill()


def disable_in_aws_behind_keyorchs_back(world: World, managed_key_id: str) -> None:
    """The out-of-band change, through the AWS fake's own API with the official SDK."""
    running = world.cluster["aws_kms"]
    [key] = aws_keys(running.fake.state_snapshot(), managed_key_id)
    creds = running.fake.credentials(running.url)
    kms = boto3.session.Session().client(
        "kms",
        endpoint_url=running.url,
        region_name=AWS_REGION,
        aws_access_key_id=creds["access_key_id"],
        aws_secret_access_key=creds["secret_access_key"],
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )
    try:
        kms.disable_key(KeyId=key["KeyId"])
    finally:
        kms.close()


async def test_hostile_keystores_are_confined_and_shown_while_drift_elsewhere_is_flagged(
    world: World, daemon: DaemonProcess
) -> None:
    client = ApiClient(world.session, daemon.url)
    await eventually(lambda: _status(client, "/readyz"), 20, "/readyz 200")
    template, keystores = await setup_world_via_api(client, world.cluster.running, world.credentials)
    vault = (await client.api("GET", f"/keystores/{keystores['aws_kms']}")).ok()["vault"]["id"]
    for name, keystore in world.hostile.items():
        body = {
            "vault": vault,
            "name": name,
            "type": "aws_kms",
            "endpoint": keystore.url,
            "region": AWS_REGION,
            "allow_insecure_http": True,
            "credentials": CREDENTIALS,
            "provider_quotas": False,
            "rate_per_second": 0,
        }
        keystores[name] = (await client.api("POST", "/keystores", json_body=body)).ok(201)["id"]
    body = {"vault": vault, "name": "mixed", "keystores": [keystores[k] for k in ("aws_kms", *world.hostile)]}
    mixed = (await client.api("POST", "/templates", json_body=body)).ok(201)["id"]

    healthy = await client.create_key(template, "healthy")
    exposed = await client.create_key(mixed, "exposed")
    for key in (healthy, exposed):
        (await client.activate(key["id"], key["etag"])).ok()

    async def targets_of(key_id: str) -> dict[str, dict[str, Any]]:
        return {t["keystore_name"]: t for t in await client.key_targets(key_id)}

    async def healthy_in_sync() -> bool | None:
        targets = await targets_of(healthy["id"])
        return (
            True if len(targets) == len(KINDS) and all(t["sync_flag"] == "in_sync" for t in targets.values()) else None
        )

    await eventually(healthy_in_sync, WITHIN_SECONDS, "the key on the four healthy fakes in sync")

    async def exposed_flagged() -> dict[str, dict[str, Any]] | None:
        targets = await targets_of(exposed["id"])
        hostile = [targets.get(name, {}).get("reason") for name in world.hostile]
        return targets if hostile == ["connection_error"] * 2 and targets["aws_kms"]["sync_flag"] == "in_sync" else None

    await eventually(exposed_flagged, WITHIN_SECONDS, "hostile targets flagged connection_error, AWS in sync")

    # drift in a healthy keystore, made through its own API: the periodic resync still flags it
    await asyncio.to_thread(disable_in_aws_behind_keyorchs_back, world, healthy["id"])

    async def drift_flagged() -> dict[str, Any] | None:
        aws = (await targets_of(healthy["id"]))["aws_kms"]
        return aws if aws["reason"] == "active_key_is_not_active_in_keystore" else None

    flagged = await eventually(drift_flagged, WITHIN_SECONDS, "drift in the AWS fake flagged by the resync")
    assert flagged["sync_flag"] == "out_of_sync", flagged
    assert all(keystore.requests > 0 for keystore in world.hostile.values())

    ready = await client.call("GET", "/readyz")
    assert ready.status == 200 and ready.doc["ready"] is True, ready.doc  # the daemon itself still works
    not_answering = ready.doc["keystores_not_answering"]
    assert set(not_answering) == set(world.hostile), ready.doc
    assert "call_timeout_seconds" in not_answering["trickling"], not_answering
    assert "nests deeper than 64 levels" in not_answering["nested"], not_answering

    scrape = await client.call("GET", "/metrics")
    families = {f.name: f for f in text_string_to_metric_families(scrape.doc)}
    up = {s.labels["keystore"]: s.value for s in families["keyorch_keystore_up"].samples}
    assert up == {**dict.fromkeys(KINDS, 1.0), **dict.fromkeys(world.hostile, 0.0)}, up


async def _status(client: ApiClient, path: str) -> bool | None:
    try:
        return True if await client.status(path) == 200 else None
    except aiohttp.ClientError:
        return None
