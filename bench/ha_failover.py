"""Benchmark: how long a dead replica's keys wait before another replica acts on them.

Three `keyorch serve` replicas on one PostgreSQL database (default settings: heartbeat 5 s, lease 30 s)
against the four fakes, N managed keys in sync. Then, R times: a live replica is killed (SIGKILL),
at once a key of its share is deactivated through another replica's API, and this measures the time
from the API's 2xx answer to the Key Protect disable call in the fake's request log (the takeover),
then restarts the killed replica and waits until the cluster counts three members again.

    .venv/bin/python bench/ha_failover.py --admin-url postgresql://USER@HOST:PORT/postgres
    .venv/bin/python bench/ha_failover.py --admin-url ... --heartbeat 1 --rounds 3

A key idle at the kill holds no lease, so its takeover is bounded by membership: the dead replica
drops out after three missed heartbeats and its share moves. A key the dead replica was acting on
also waits for its lease (``reconcile.lease_seconds``); the daemon test
``tests/daemon/test_replicas.py`` covers that case for correctness, this prints the idle-key figure.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import aiohttp
import asyncpg
import yaml

from keyorch.crypto import generate_master_key
from keyorch.logs import configure_logging
from keyorch.reconcile.cluster import owner

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ha_scale import TOKEN, drop_database, fresh_database, not_in_sync, record_keys, start_replica, wait_ready
from reconcile_pass import start_fakes


def pid_of(replica_id: str) -> int:
    """The process id in a replica's id (``host:pidns:pid:random``)."""
    return int(replica_id.split(":")[2])


async def members(db: asyncpg.Connection) -> list[str]:
    rows = await db.fetch("SELECT id FROM replicas WHERE expires_at > now() ORDER BY id")
    return [r["id"] for r in rows]


async def wait_members(db: asyncpg.Connection, count: int) -> list[str]:
    for _ in range(1200):
        found = await members(db)
        if len(found) == count:
            return found
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the cluster did not reach {count} members")


async def provider_call_after(session: aiohttp.ClientSession, ibm: str, wanted: str, answered: float) -> float:
    for _ in range(2400):
        async with session.get(f"{ibm}/_fake/requests") as response:
            entries = (await response.json())["entries"]
        hit = [e for e in entries if e["path"].endswith(wanted)]
        if hit:
            return datetime.fromisoformat(hit[0]["time"]).timestamp() - answered
        await asyncio.sleep(0.05)
    raise RuntimeError(f"no call to {wanted} within 120 s")


async def run(options: argparse.Namespace) -> None:
    name = "keyorch_bench_ha_failover"
    url = await fresh_database(options.admin_url, name)
    with tempfile.TemporaryDirectory(prefix="keyorch-bench-failover-") as tmp:
        workdir = Path(tmp)
        fakes, described = start_fakes(workdir)
        procs: dict[int, tuple[subprocess.Popen[bytes], str]] = {}
        try:
            master_key = generate_master_key()
            await record_keys(url, master_key, described, options.keys)
            config = workdir / "ha.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "database_url": url,
                        "master_key": master_key,
                        "log": {"format": "json", "level": "warning"},
                        "api": {
                            "tokens": [
                                {
                                    "user": "bench",
                                    "sha256": hashlib.sha256(TOKEN.encode()).hexdigest(),
                                    "roles": {"*": "vault_administrator"},
                                }
                            ]
                        },
                        "reconcile": {
                            "resync_interval_seconds": 3600,
                            "heartbeat_seconds": options.heartbeat,
                            "lease_seconds": options.lease,
                        },
                    }
                )
            )
            db = await asyncpg.connect(url)
            for _ in range(3):
                proc, base = start_replica(workdir, config)
                procs[proc.pid] = (proc, base)
            headers = {"Authorization": f"Bearer {TOKEN}"}
            ibm = described["ibm_key_protect"]["endpoint"]
            async with aiohttp.ClientSession() as session:
                for _, base in procs.values():
                    await wait_ready(session, base)
                while True:
                    if not await not_in_sync(db):
                        break
                    await asyncio.sleep(0.5)
                ids = [r["id"] for r in await db.fetch("SELECT id FROM managed_keys ORDER BY id")]
                used: set[str] = set()
                takeovers = []
                print(
                    f"3 replicas, {options.keys} keys in sync; heartbeat {options.heartbeat} s "
                    f"(a member is gone after {3 * options.heartbeat} s), lease {options.lease} s"
                )
                for round_no in range(options.rounds):
                    live = await wait_members(db, 3)
                    victim = live[round_no % 3]
                    key_id = next(k for k in ids if k not in used and owner(k, live) == victim)
                    used.add(key_id)
                    in_keystore = await db.fetchval(
                        "SELECT t.key_id_in_keystore FROM key_targets t JOIN keystores k ON k.id = t.keystore_id "
                        "WHERE k.type = 'ibm_key_protect' AND t.key_id = $1",
                        key_id,
                    )
                    victim_proc, _ = procs.pop(pid_of(victim))
                    os.kill(victim_proc.pid, signal.SIGKILL)
                    victim_proc.wait()
                    base = next(iter(procs.values()))[1]
                    path = f"{base}/api/v4/managed_keys/{key_id}"
                    async with session.get(path, headers=headers) as response:
                        etag = response.headers["ETag"]
                    async with session.post(f"{path}/deactivate", headers={**headers, "If-Match": etag}) as response:
                        assert response.status == 200, await response.text()
                        answered = time.time()
                    took = await provider_call_after(session, ibm, f"/keys/{in_keystore}/actions/disable", answered)
                    takeovers.append(took)
                    print(f"  round {round_no + 1}: killed a replica; its key reached Key Protect {took:.1f} s later")
                    proc, base = start_replica(workdir, config)
                    procs[proc.pid] = (proc, base)
                    await wait_ready(session, base)
                print(
                    f"  takeover of a dead replica's key: median {statistics.median(takeovers):.1f} s, "
                    f"max {max(takeovers):.1f} s over {len(takeovers)} kills"
                )
            await db.close()
        finally:
            for proc, _ in procs.values():
                proc.terminate()
            for proc, _ in procs.values():
                try:
                    proc.wait(timeout=40)
                except subprocess.TimeoutExpired:
                    proc.kill()
            fakes.terminate()
            fakes.wait(timeout=30)
            await drop_database(options.admin_url, name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default=os.environ.get("KEYORCH_BENCH_POSTGRES_URL"), required=False)
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--heartbeat", type=float, default=5.0)
    parser.add_argument("--lease", type=float, default=30.0)
    options = parser.parse_args()
    if not options.admin_url:
        parser.error("give --admin-url postgresql://USER@HOST:PORT/postgres (or KEYORCH_BENCH_POSTGRES_URL)")
    configure_logging("console", "warning")
    asyncio.run(run(options))
