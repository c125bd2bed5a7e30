"""Benchmark: adapter throughput against each fake on loopback, next to the fake's raw request rate.

For each provider the fake runs in its own process (`keyorch fakes serve --providers KIND`), so that
its CPU is not charged to the client (on a 2-core machine the two still share the cores). In this
process, with 64 requests in flight:

* raw: a bare aiohttp client sends the very wire request the adapter's ``get_key`` sends (same
  method, URL, headers and body, with an auth header obtained once: a bearer token, or AWS's SigV4
  signature of that request) and reads each answer;
* adapter: the adapter's ``get_key`` of the same key (keystore settings ``provider_quotas: false``,
  ``rate_per_second: 0``, ``max_concurrency: 64``), which authenticates (or signs) every request,
  goes through the limiter and the retry policy, parses the JSON and maps it to an ``Observation``.

After a warm-up, raw and adapter runs alternate for several repetitions; the medians are printed,
with the adapter's figure as a share of the raw one (the median of the per-repetition ratios; the
acceptance asks for at least 80 %), and this process's CPU time per request for both clients.

    .venv/bin/python bench/adapter_throughput.py                     # 7 x 2 s each, asyncio loop
    .venv/bin/python bench/adapter_throughput.py --uvloop --seconds 2 --repeats 3
    .venv/bin/python bench/adapter_throughput.py --providers aws_kms --profile aws.prof
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

import keyorch.providers.adapters  # noqa: F401  (registers the four factories)
from keyorch.domain.models import CredentialsMode, DriftPolicy, Keystore, KeystoreStatus, KeystoreType
from keyorch.providers.base import KeyRef, KeySpec, KeystoreClient, factory_for
from keyorch.providers.http import HttpTransport

KINDS = ("aws_kms", "azure_key_vault", "google_kms", "ibm_key_protect")
IN_FLIGHT = 64
TARGET_SHARE = 0.80
SPEC = KeySpec(algorithm="aes", size=256, name="bench-key")


@dataclass(frozen=True)
class WireRequest:
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None


class FakeProcess:
    """``keyorch fakes serve --providers KIND`` in a child process; its description from the first line."""

    def __init__(self, kind: str, workdir: Path) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "keyorch",
                "fakes",
                "serve",
                "--providers",
                kind,
                "--credentials-dir",
                str(workdir / kind),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError(f"keyorch fakes serve --providers {kind} did not start")
        self.described: dict[str, Any] = json.loads(line)[kind]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def keystore_from_connect_args(kind: str, args: list[str]) -> tuple[Keystore, dict[str, Any]]:
    """The keystore record and credentials document the fake's ``connect`` options describe."""
    settings: dict[str, Any] = {}
    credentials: dict[str, Any] = {}
    i = 0
    while i < len(args):
        flag = args[i].lstrip("-").replace("-", "_")
        if flag in ("allow_insecure_http", "no_provider_quotas"):
            i += 1
            continue
        value = args[i + 1]
        if flag == "credentials_file":
            credentials = json.loads(Path(value).read_text())
        elif flag not in ("type", "rate_per_second"):
            settings[flag] = value
        i += 2
    settings |= {"allow_insecure_http": True, "provider_quotas": False, "rate_per_second": 0}
    settings["max_concurrency"] = IN_FLIGHT
    now = datetime.now(UTC)
    keystore = Keystore(
        id=str(uuid.uuid4()),
        vault_id=str(uuid.uuid4()),
        name=f"bench-{kind}",
        type=KeystoreType(kind),
        settings=settings,
        credentials_mode=CredentialsMode.STORED,
        drift_policy=DriftPolicy.FLAG,
        status=KeystoreStatus.CONNECTED,
        created_at=now,
        updated_at=now,
    )
    return keystore, credentials


def transport_of(client: KeystoreClient) -> HttpTransport:
    for name in ("transport", "http"):
        transport = getattr(client, name, None)
        if isinstance(transport, HttpTransport):
            return transport
    raise TypeError(f"{type(client).__name__} has no HttpTransport")


async def capture_wire_request(client: KeystoreClient, ref: KeyRef) -> WireRequest:
    """Run one ``get_key`` and record the (last) request it put on the wire."""
    transport = transport_of(client)
    sent: list[WireRequest] = []
    real_send = transport._send

    async def recording(
        method: str, url: str, headers: Mapping[str, str], body: bytes | None, operation: str
    ) -> tuple[int, Mapping[str, str], bytes]:
        sent.append(WireRequest(method, url, dict(headers), body))
        return await real_send(method, url, headers, body, operation)

    transport._send = recording  # type: ignore[method-assign]
    try:
        assert await client.get_key(ref) is not None
    finally:
        del transport._send  # back to the class's method
    if len(sent) != 1:
        raise RuntimeError(f"get_key sent {len(sent)} requests; this benchmark expects one")
    return sent[0]


@dataclass(frozen=True)
class Run:
    per_second: float
    cpu_us: float  # this process's CPU time per completed call


async def rate(call: Callable[[], Awaitable[None]], seconds: float, in_flight: int = IN_FLIGHT) -> Run:
    """Completed calls per second with ``in_flight`` concurrent callers for ``seconds``."""
    done = 0
    cpu_started = time.process_time()
    started = time.perf_counter()
    deadline = started + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call()
            done += 1

    await asyncio.gather(*(worker() for _ in range(in_flight)))
    elapsed = time.perf_counter() - started
    return Run(done / elapsed, (time.process_time() - cpu_started) / max(done, 1) * 1e6)


@dataclass
class Figures:
    """Alternating runs: ``raw[i]`` and ``adapter[i]`` were measured back to back."""

    kind: str
    raw: list[Run]
    adapter: list[Run]

    def median(self, runs: list[Run]) -> float:
        return statistics.median(r.per_second for r in runs)

    def cpu(self, runs: list[Run]) -> float:
        return statistics.median(r.cpu_us for r in runs)

    @property
    def share(self) -> float:
        """The median of the per-repetition ratios (robust against load that drifts between runs)."""
        return statistics.median(a.per_second / r.per_second for r, a in zip(self.raw, self.adapter, strict=True))


async def measure(kind: str, workdir: Path, seconds: float, repeats: int, profile: cProfile.Profile | None) -> Figures:
    fake = FakeProcess(kind, workdir)
    try:
        keystore, credentials = keystore_from_connect_args(kind, fake.described["connect"])
        factory = factory_for(keystore.type)
        factory.validate_settings(keystore)
        async with factory.create(keystore, credentials) as client:
            key = await client.ensure_key(f"bench-{uuid.uuid4().hex[:8]}", SPEC)
            wire = await capture_wire_request(client, key.ref)
            connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
            async with aiohttp.ClientSession(connector=connector) as session:

                async def raw_call() -> None:
                    async with session.request(
                        wire.method, wire.url, headers=wire.headers, data=wire.body, allow_redirects=False
                    ) as response:
                        await response.read()
                        if response.status != 200:
                            raise RuntimeError(f"raw request answered {response.status}")

                async def adapter_call() -> None:
                    await client.get_key(key.ref)

                await rate(raw_call, 1.0)  # warm-up: connections, caches, the fake's code paths
                await rate(adapter_call, 1.0)
                figures = Figures(kind, [], [])
                for _ in range(repeats):
                    figures.raw.append(await rate(raw_call, seconds))
                    if profile is not None:
                        profile.enable()
                    figures.adapter.append(await rate(adapter_call, seconds))
                    if profile is not None:
                        profile.disable()
                return figures
    finally:
        fake.stop()


async def main(kinds: list[str], seconds: float, repeats: int, profile_path: str | None) -> int:
    profile = cProfile.Profile() if profile_path else None
    results: list[Figures] = []
    with tempfile.TemporaryDirectory(prefix="keyorch-bench-") as tmp:
        for kind in kinds:
            results.append(await measure(kind, Path(tmp), seconds, repeats, profile))
            figures = results[-1]
            print(
                f"{kind:16} raw {figures.median(figures.raw):7,.0f} req/s  "
                f"adapter {figures.median(figures.adapter):7,.0f} req/s  "
                f"adapter/raw {figures.share:4.0%}  "
                f"client CPU/request raw {figures.cpu(figures.raw):4.0f} us, "
                f"adapter {figures.cpu(figures.adapter):4.0f} us",
                flush=True,
            )
            print(
                f"{'':16} runs raw: {', '.join(f'{r.per_second:,.0f}' for r in figures.raw)}; "
                f"adapter: {', '.join(f'{r.per_second:,.0f}' for r in figures.adapter)}",
                flush=True,
            )
    if profile is not None and profile_path:
        profile.dump_stats(profile_path)
        print(f"adapter profile written to {profile_path}")
    below = [f.kind for f in results if f.share < TARGET_SHARE]
    print(f"target: adapter >= {TARGET_SHARE:.0%} of raw; " + (f"below: {', '.join(below)}" if below else "all met"))
    return 1 if below else 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--providers", default=",".join(KINDS), help="comma-separated keystore types")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each measured run")
    parser.add_argument("--repeats", type=int, default=7, help="measured runs per client (median printed)")
    parser.add_argument("--uvloop", action="store_true", help="run this process on uvloop")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the adapter runs into FILE")
    return parser.parse_args()


if __name__ == "__main__":
    options = parse_args()
    chosen = [k.strip() for k in options.providers.split(",") if k.strip()]
    unknown = sorted(set(chosen) - set(KINDS))
    if unknown:
        sys.exit(f"unknown provider(s): {', '.join(unknown)}; choose from {', '.join(KINDS)}")
    print(
        f"adapter get_key vs a bare aiohttp client sending the same request; {IN_FLIGHT} in flight, "
        f"{options.repeats} x {options.seconds:g} s each after a warm-up; fakes in their own process; "
        f"client loop: {'uvloop' if options.uvloop else 'asyncio'}",
        flush=True,
    )
    runner = asyncio.run
    if options.uvloop:
        import uvloop

        runner = uvloop.run
    sys.exit(runner(main(chosen, options.seconds, options.repeats, options.profile)))
