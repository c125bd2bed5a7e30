"""Issue 12: a daemon that cannot do its job says so (``keyorch serve`` as a subprocess, the four fakes).

Started without the master key on a database whose audit chain is sealed with it, or with another key,
it exits 2 with one sentence naming KEYORCH_MASTER_KEY_FILE instead of answering /readyz 200 while every
write fails; its keys are never flagged out of sync for it. A key rotated under a running daemon makes it
unready and stops its reconciling, again without recording drift. The database files it creates are 0600.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from pathlib import Path
from typing import Any

import yaml

from keyorch.crypto import generate_master_key
from tests.daemon.harness import DaemonProcess, clean_env, eventually
from tests.daemon.world import World, in_sync, serving, serving_world

CONVERGE_SECONDS = 20.0


def without_master_key(config: Path, target: Path, **extra: Any) -> Path:
    doc = yaml.safe_load(config.read_text(encoding="utf-8"))
    doc.pop("master_key", None)
    doc.update(extra)
    target.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return target


async def converged_key(world: World, daemons: list[DaemonProcess], config: Path) -> tuple[DaemonProcess, str]:
    daemon, client, template = await serving_world(world, daemons, config)
    key = await client.create_key(template, "mk-startup")
    await client.activate(key["id"])

    async def synced() -> bool | None:
        return True if in_sync(await client.key_targets(key["id"])) else None

    await eventually(synced, CONVERGE_SECONDS, "the key in sync in all four fakes")
    return daemon, key["id"]


async def stop(daemon: DaemonProcess) -> None:
    daemon.signal()
    assert await daemon.wait(30) == 0


async def test_a_daemon_without_the_databases_master_key_refuses_to_start(
    world: World, daemons: list[DaemonProcess]
) -> None:
    daemon, key_id = await converged_key(world, daemons, world.config())
    await stop(daemon)

    no_key = without_master_key(world.config(), world.workdir / "no-key.yaml")
    other_key = without_master_key(world.config(), world.workdir / "other-key.yaml", master_key=generate_master_key())
    for config, words in ((no_key, "which is not configured"), (other_key, "is not this database's")):
        refused = await DaemonProcess.start(world.workdir, config, wait=False)
        daemons.append(refused)
        assert await refused.wait(30) == 2, refused.output[-3000:]
        errors = [line for line in refused.lines if line.startswith("error: ")]
        assert len(errors) == 1 and words in errors[0] and "KEYORCH_MASTER_KEY_FILE" in errors[0], refused.output

    _, client = await serving(world, daemons, world.config())  # with its key, nothing was flagged meanwhile
    targets = await client.key_targets(key_id)
    assert in_sync(targets), targets


async def test_a_key_rotated_under_a_running_daemon_stops_it_without_recording_drift(
    world: World, daemons: list[DaemonProcess]
) -> None:
    daemon, key_id = await converged_key(world, daemons, world.config(resync_seconds=1.0))
    client = world.client(daemon)
    new_key = world.workdir / "new.key"
    new_key.write_text(generate_master_key() + "\n", encoding="ascii")
    new_key.chmod(0o600)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "keyorch", "--db", world.db_url, "master-key", "rotate", "--new-key-file", str(new_key),
        cwd=world.workdir, env=clean_env(world.workdir, KEYORCH_MASTER_KEY=world.master_key),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()

    async def unready() -> dict[str, Any] | None:
        # 503 for the master key (under load a slow database check can make it 503 for a moment too)
        answer = await client.call("GET", "/readyz")
        return answer.doc if answer.status == 503 and answer.doc["master_key"] != "usable" else None

    readiness = await eventually(unready, CONVERGE_SECONDS, "/readyz 503 for the master key after the rotation")
    assert "is not this database's" in readiness["master_key"], readiness
    await asyncio.sleep(1.5)  # three resync intervals
    assert in_sync(await client.key_targets(key_id))  # its own configuration error is no drift
    await stop(daemon)

    rotated = without_master_key(world.config(), world.workdir / "rotated.yaml", master_key_file=str(new_key))
    _, client = await serving(world, daemons, rotated)
    assert in_sync(await client.key_targets(key_id))


async def test_the_daemon_creates_its_database_files_private(world: World, daemons: list[DaemonProcess]) -> None:
    old = os.umask(0o022)
    try:
        daemon, _ = await serving(world, daemons, world.config())
    finally:
        os.umask(old)
    db = world.workdir / "keyorch.db"
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600, (path, oct(path.stat().st_mode))
    await stop(daemon)
