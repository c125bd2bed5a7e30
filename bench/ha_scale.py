"""Benchmark: 1, 2 and 3 `keyorch serve` replicas on one PostgreSQL database against the four fakes.

For each replica count, on a fresh database: N managed keys (active, four keystores each) are recorded,
the replicas are started, and this prints

* the **first pass**: seconds from the replicas' start until every target is in sync (every key
  created in every keystore), and each replica's share (`keyorch_keys_reconciled_total`);
* a **steady pass**: the listing job made due, seconds until a new listing run is finished and every
  replica's queue is empty again;
* **change latency**: for M keys deactivated one by one through random replicas' APIs, the time from
  the API's 2xx answer to the fake's log entry of the Key Protect disable call (p50, p99).

    .venv/bin/python bench/ha_scale.py --admin-url postgresql://USER@HOST:PORT/postgres            # 10,000 keys
    .venv/bin/python bench/ha_scale.py --admin-url postgresql://USER@HOST:PORT/postgres --keys 1000

``--admin-url`` must be allowed to create databases (each run gets ``keyorch_bench_ha_<n>``, dropped
after). The fakes run in their own process (`keyorch fakes serve`); on a 2-core machine the replicas,
the fakes and PostgreSQL share the cores, which bounds what more replicas can add.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import yaml

from keyorch.audit import Actor
from keyorch.crypto import MasterKey, generate_master_key
from keyorch.domain.clock import SystemClock
from keyorch.logs import configure_logging
from keyorch.service import keys, keystores, templates, vaults
from keyorch.service.context import ServiceContext
from keyorch.store.engine import migrate
from keyorch.store.repository import Store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reconcile_pass import KINDS, connect_request, start_fakes

TOKEN = "bench-ha-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def fresh_database(admin_url: str, name: str) -> str:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin_url.rsplit("/", 1)[0] + "/" + name


async def drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def record_keys(url: str, master_key: str, described: dict[str, Any], count: int) -> None:
    store = Store.from_url(url)
    await migrate(store.engine)
    ctx = ServiceContext(store, Actor("bench"), SystemClock(), MasterKey.from_base64(master_key))
    await vaults.create_vault(ctx, "bench")
    for kind in KINDS:
        request = connect_request(kind, described[kind]["connect"])
        await keystores.connect_keystore(ctx, replace(request, max_concurrency=64))
    await templates.create_template(ctx, vault="bench", name="t", keystores=list(KINDS))
    for i in range(count):
        await keys.create_key(ctx, template="t", label=f"k{i:05d}", state="active")
    await store.close()


def start_replica(workdir: Path, config: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "keyorch", "--config", str(config), "serve", "--listen", f"127.0.0.1:{port}"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, f"http://127.0.0.1:{port}"


async def metric(session: aiohttp.ClientSession, base: str, name: str) -> float:
    async with session.get(f"{base}/metrics") as response:
        text = await response.text()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def wait_ready(session: aiohttp.ClientSession, base: str) -> None:
    for _ in range(600):
        try:
            async with session.get(f"{base}/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{base} not ready")


async def not_in_sync(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM key_targets WHERE sync_flag <> 'in_sync'"))


async def run(admin_url: str, replicas: int, count: int, changes: int, workers: int) -> None:
    name = f"keyorch_bench_ha_{replicas}"
    url = await fresh_database(admin_url, name)
    with tempfile.TemporaryDirectory(prefix="keyorch-bench-ha-") as tmp:
        workdir = Path(tmp)
        fakes, described = start_fakes(workdir)
        procs: list[subprocess.Popen[bytes]] = []
        try:
            master_key = generate_master_key()
            started = time.perf_counter()
            await record_keys(url, master_key, described, count)
            print(f"{replicas} replica(s): {count} keys recorded in {time.perf_counter() - started:.1f} s")
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
                        "reconcile": {"workers": workers, "resync_interval_seconds": 3600, "heartbeat_seconds": 1},
                    }
                )
            )
            db = await asyncpg.connect(url)
            started = time.perf_counter()
            bases = []
            for _ in range(replicas):
                proc, base = start_replica(workdir, config)
                procs.append(proc)
                bases.append(base)
            async with aiohttp.ClientSession() as session:
                for base in bases:
                    await wait_ready(session, base)
                while True:
                    if not await not_in_sync(db):
                        break
                    await asyncio.sleep(0.5)
                first = time.perf_counter() - started
                shares = [await metric(session, b, "keyorch_keys_reconciled_total") for b in bases]
                print(f"  first pass: {first:.1f} s ({count * 4 / first:,.0f} targets/s); shares {shares}")

                runs = int(await db.fetchval("SELECT epoch FROM cluster_jobs WHERE name = 'listing'") or 0)
                await db.execute("UPDATE cluster_jobs SET due_at = now() WHERE name = 'listing'")
                started = time.perf_counter()
                while True:
                    row = await db.fetchrow("SELECT epoch, holder FROM cluster_jobs WHERE name = 'listing'")
                    depths = [await metric(session, b, "keyorch_queue_depth") for b in bases]
                    if row and row["epoch"] > runs and row["holder"] is None and not any(depths):
                        break
                    await asyncio.sleep(0.2)
                steady = time.perf_counter() - started
                print(f"  steady pass: {steady:.1f} s ({steady * 1000 / count:.2f} ms per key)")

                ibm = described["ibm_key_protect"]["endpoint"]
                rows = await db.fetch(
                    "SELECT t.key_id, t.key_id_in_keystore FROM key_targets t JOIN keystores k ON k.id = t.keystore_id "
                    "WHERE k.type = 'ibm_key_protect' LIMIT $1",
                    changes,
                )
                headers = {"Authorization": f"Bearer {TOKEN}"}
                latencies = []
                rng = random.Random(1)
                for row in rows:
                    base = rng.choice(bases)
                    path = f"{base}/api/v4/managed_keys/{row['key_id']}"
                    async with session.get(path, headers=headers) as response:
                        etag = response.headers["ETag"]
                    async with session.post(f"{path}/deactivate", headers={**headers, "If-Match": etag}) as response:
                        assert response.status == 200, await response.text()
                        answered = time.time()
                    wanted = f"/keys/{row['key_id_in_keystore']}/actions/disable"
                    for _ in range(200):
                        async with session.get(f"{ibm}/_fake/requests") as response:
                            entries = (await response.json())["entries"]
                        hit = [e for e in entries if e["path"].endswith(wanted)]
                        if hit:
                            latencies.append(datetime.fromisoformat(hit[0]["time"]).timestamp() - answered)
                            break
                        await asyncio.sleep(0.05)
                if latencies:
                    latencies.sort()
                    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
                    print(
                        f"  change → provider call: p50 {statistics.median(latencies) * 1000:.0f} ms, "
                        f"p99 {p99 * 1000:.0f} ms over {len(latencies)} changes"
                    )
            await db.close()
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=40)
                except subprocess.TimeoutExpired:
                    proc.kill()
            fakes.terminate()
            fakes.wait(timeout=30)
            await drop_database(admin_url, name)


async def main(options: argparse.Namespace) -> None:
    configure_logging("console", "warning")
    for replicas in options.replicas:
        await run(options.admin_url, replicas, options.keys, options.changes, options.workers)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default=os.environ.get("KEYORCH_BENCH_POSTGRES_URL"), required=False)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--replicas", type=lambda v: [int(x) for x in v.split(",")], default=[1, 2, 3])
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--workers", type=int, default=32)
    options = parser.parse_args()
    if not options.admin_url:
        parser.error("give --admin-url postgresql://USER@HOST:PORT/postgres (or KEYORCH_BENCH_POSTGRES_URL)")
    asyncio.run(main(options))
