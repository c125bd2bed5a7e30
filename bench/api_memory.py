"""Benchmark: the memory of `keyorch serve` under many concurrent big pages.

Seeds a SQLite database with N keys, starts the daemon as a subprocess, reads its RSS (/proc), sends C
concurrent `GET /api/v4/managed_keys?limit=L` at once, and prints the answers (200 / 503 past the cap) and
the daemon's RSS before, after, and at its peak (VmHWM).

    .venv/bin/python bench/api_memory.py                          # 1,000 keys, 500 pages of 1,000, cap 64
    .venv/bin/python bench/api_memory.py --max-concurrent 10000   # in effect no cap: every page at once

The keys' keystore is disconnected after the keys are made, so the daemon calls no provider at all; every
request goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import yaml

from keyorch.api.auth import token_hash
from keyorch.audit import Actor
from keyorch.crypto import MasterKey, generate_master_key
from keyorch.domain.clock import SystemClock
from keyorch.service import keys, keystores, templates, vaults
from keyorch.service.context import ServiceContext
from keyorch.store.engine import migrate
from keyorch.store.repository import Store

TOKEN = "bench-api-memory-token-0123456789"


async def seed(workdir: Path, db_url: str, master_key: str, count: int) -> None:
    credentials = workdir / "aws.json"  # made up: the keystore is disconnected before anything could use them
    credentials.write_text('{"access_key_id": "AKIABENCHEXAMPLE0000", "secret_access_key": "bench-not-a-secret"}')
    credentials.chmod(0o600)
    store = Store.from_url(db_url)
    await migrate(store.engine)
    ctx = ServiceContext(store, Actor("bench"), SystemClock(), MasterKey.from_base64(master_key))
    vault = await vaults.create_vault(ctx, "bench", False)
    request = keystores.ConnectRequest(
        vault=vault.id,
        name="ks",
        type="aws_kms",
        region="us-east-1",
        endpoint="http://127.0.0.1:9",
        allow_insecure_http=True,
        credentials_file=str(credentials),
    )
    keystore = await keystores.connect_keystore(ctx, request)
    template = await templates.create_template(ctx, vault=vault.id, name="t", keystores=[keystore.id])
    for i in range(count):
        await keys.create_key(ctx, template=template.id, label=f"key-{i:06d}", state="pre_active")
    current = await keystores.get_keystore(ctx, keystore.id)
    await keystores.disconnect_keystore(ctx, keystore.id, current.version)
    await store.close()


def rss_mib(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="keyorch-bench-api-"))
    db_url = f"sqlite:///{workdir / 'keyorch.db'}"
    master_key = generate_master_key()
    started = time.monotonic()
    await seed(workdir, db_url, master_key, args.keys)
    print(f"seeded {args.keys} keys in {time.monotonic() - started:.1f} s")
    config = {
        "database_url": db_url,
        "master_key": master_key,
        "log": {"format": "json", "level": "warning"},
        "api": {
            "tokens": [{"user": "bench", "sha256": token_hash(TOKEN), "roles": {"*": "reader"}}],
            "max_concurrent_requests": args.max_concurrent,
        },
    }
    (workdir / "keyorch.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "keyorch",
        "--config",
        str(workdir / "keyorch.yaml"),
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HOME": str(workdir)},
    )
    assert proc.stderr is not None
    while b"keyorch serving on" not in await asyncio.wait_for(proc.stderr.readline(), 60):
        pass
    drain = asyncio.create_task(proc.stderr.read())
    url = f"http://127.0.0.1:{port}/api/v4/managed_keys?limit={args.limit}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:
        async with session.get(url, headers=headers) as resp:  # one page first: caches and pools warmed up
            assert resp.status == 200, await resp.text()
            size = len(await resp.read())
        before = rss_mib(proc.pid)

        async def one() -> int:
            async with session.get(url, headers=headers) as resp:
                await resp.read()
                return resp.status

        started = time.monotonic()
        statuses = Counter(await asyncio.gather(*(one() for _ in range(args.concurrency))))
        seconds = time.monotonic() - started
        after = rss_mib(proc.pid)
    proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(proc.wait(), 60)
    errors = [line for line in (await drain).decode(errors="replace").splitlines() if "api.internal_error" in line]
    if errors:  # the last line of the first one's traceback says why
        print(f"{len(errors)} api.internal_error records; the first: {errors[0][-300:]}")
    print(
        f"{args.concurrency} concurrent pages of {args.limit} keys ({size / 1e6:.1f} MB each), "
        f"api.max_concurrent_requests={args.max_concurrent}: answers {dict(sorted(statuses.items()))} "
        f"in {seconds:.1f} s"
    )
    print(f"daemon RSS before {before['VmRSS']:.0f} MiB, after {after['VmRSS']:.0f} MiB, peak {after['VmHWM']:.0f} MiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=500)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--max-concurrent", type=int, default=64, help="the daemon's api.max_concurrent_requests")
    asyncio.run(main(parser.parse_args()))
