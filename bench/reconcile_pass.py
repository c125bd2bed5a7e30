"""Benchmark: a full reconcile pass over N keys x 4 keystores against the four fakes on loopback.

Prints, for the first pass (which creates every key in every keystore) and for a steady-state pass
(everything already in sync: page-by-page listings plus one planning step per key): seconds,
requests per keystore, and peak memory of this process; next to the fakes' raw request rate measured
in the same run by a bare aiohttp client.

    .venv/bin/python bench/reconcile_pass.py            # 10,000 keys (several minutes on 2 cores)
    .venv/bin/python bench/reconcile_pass.py --keys 500

The fakes run in a separate process (`keyorch fakes serve`) so that their CPU is not charged to the
reconciler; on a 2-core machine both still share the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp

from keyorch.audit import Actor
from keyorch.crypto import MasterKey, generate_master_key
from keyorch.domain.clock import SystemClock
from keyorch.logs import configure_logging
from keyorch.reconcile.clients import ClientPool
from keyorch.reconcile.controller import Controller
from keyorch.service import keys, keystores, templates, vaults
from keyorch.service.context import ServiceContext
from keyorch.service.keystores import ConnectRequest
from keyorch.store.engine import migrate
from keyorch.store.repository import Store

KINDS = ("aws_kms", "azure_key_vault", "google_kms", "ibm_key_protect")


def start_fakes(workdir: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "keyorch", "fakes", "serve", "--credentials-dir", str(workdir / "creds")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, json.loads(line)


def connect_request(kind: str, args: list[str]) -> ConnectRequest:
    options: dict[str, Any] = {"vault": "bench", "name": kind}
    i = 0
    while i < len(args):
        flag = args[i].lstrip("-").replace("-", "_")
        if flag in ("allow_insecure_http", "no_provider_quotas"):
            options["provider_quotas" if flag.startswith("no_") else flag] = not flag.startswith("no_")
            i += 1
            continue
        value: Any = args[i + 1]
        if flag == "rate_per_second":
            value = float(value)
        elif flag == "max_concurrency":
            value = int(value)
        options[flag] = value
        i += 2
    return ConnectRequest(**options)


async def raw_rate(url: str, seconds: float = 3.0, in_flight: int = 64) -> float:
    """Requests/s of a bare aiohttp client against a fake's cheapest route (its admin clock)."""
    done = 0
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight)) as session:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                async with session.get(url + "/_fake/clock") as response:
                    await response.read()
                done += 1

        await asyncio.gather(*(worker() for _ in range(in_flight)))
    return done / seconds


async def fake_requests(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url + "/_fake/requests", params={"entries": "false"}) as response:
        return int((await response.json())["total"])


async def reset_counts(session: aiohttp.ClientSession, described: dict[str, Any]) -> None:
    for kind in KINDS:
        async with session.delete(described[kind]["endpoint"] + "/_fake/requests") as response:
            await response.read()


async def main(count: int, workers: int) -> None:
    configure_logging("console", "warning")
    with tempfile.TemporaryDirectory(prefix="keyorch-bench-") as tmp:
        workdir = Path(tmp)
        proc, described = start_fakes(workdir)
        try:
            store = Store.from_url(f"sqlite:///{workdir / 'bench.db'}")
            await migrate(store.engine)
            ctx = ServiceContext(store, Actor("bench"), SystemClock(), MasterKey.from_base64(generate_master_key()))
            await vaults.create_vault(ctx, "bench")
            for kind in KINDS:
                request = connect_request(kind, described[kind]["connect"])
                await keystores.connect_keystore(ctx, replace(request, max_concurrency=64))
            await templates.create_template(ctx, vault="bench", name="t", keystores=list(KINDS))
            t0 = time.perf_counter()
            for i in range(count):
                await keys.create_key(ctx, template="t", label=f"k{i:05d}", state="active")
            print(f"setup: {count} keys recorded in {time.perf_counter() - t0:.1f} s")

            rates = {kind: await raw_rate(described[kind]["endpoint"]) for kind in KINDS}
            print(
                "raw fake rate (bare aiohttp, 64 in flight): "
                + ", ".join(f"{k} {v:,.0f} req/s" for k, v in rates.items())
            )

            pool = ClientPool(store, ctx.master_key)
            controller = Controller(store, pool, ctx.clock, workers=workers)
            async with aiohttp.ClientSession() as session:
                for title in ("first pass (creates every key)", "steady-state pass"):
                    await reset_counts(session, described)
                    started = time.perf_counter()
                    summary = await controller.run_once()
                    seconds = time.perf_counter() - started
                    counts = {kind: await fake_requests(session, described[kind]["endpoint"]) for kind in KINDS}
                    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                    print(
                        f"{title}: {seconds:.1f} s for {count} keys x 4 keystores; "
                        f"{summary.in_sync} in sync, {summary.actions} actions; peak RSS {peak_mb:.0f} MiB"
                    )
                    print("  requests per keystore: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
                    print(
                        "  request rate per keystore: "
                        + ", ".join(f"{k} {v / seconds:,.0f}/s" for k, v in counts.items())
                    )
            await pool.aclose()
            await store.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("KEYORCH_RECONCILE__WORKERS", "32")))
    options = parser.parse_args()
    asyncio.run(main(options.keys, options.workers))
