"""``keyorch serve`` as a real subprocess, driven through its REST API, against the four fakes in this loop.

* :func:`write_config` writes the daemon's YAML settings (database, master key, one admin token,
  grace period, workers, resync interval); :class:`DaemonProcess` starts
  ``python -m keyorch --config FILE serve --listen 127.0.0.1:PORT`` with ``asyncio`` (so the fakes
  keep serving), waits for its "keyorch serving on" line and keeps draining its output.
* :class:`ApiClient` is an aiohttp client of ``/api/v4`` with the admin's bearer token;
  :func:`setup_world_via_api` makes a vault, one keystore per fake (inline credentials, from
  ``connect_args``) and a template over all four, all through the API.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import yaml

from keyorch.api.auth import token_hash
from keyorch.crypto import generate_master_key
from keyorch.fakes.base import RunningFake
from keyorch.fakes.faults import ProviderFaults
from keyorch.fakes.registry import FakeCluster, connect_args

T = TypeVar("T")

API = "/api/v4"
ADMIN = "admin"
ADMIN_TOKEN = "daemon-test-admin-token-0123456789"
START_TIMEOUT_SECONDS = 30.0
READY_LINE = "keyorch serving on "

#: `keystore connect` options → keystore-connect body fields (a flag without a value → True; --no-… → False)
_CONNECT_FIELDS = {
    "--type": "type",
    "--endpoint": "endpoint",
    "--region": "region",
    "--project": "project",
    "--location": "location",
    "--key-ring": "key_ring",
    "--instance-id": "instance_id",
}
_CONNECT_FLAGS = {"--allow-insecure-http": "allow_insecure_http", "--no-provider-quotas": "provider_quotas"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(workdir: Path, **extra: str) -> dict[str, str]:
    """No KEYORCH_* of the developer's shell leaks into the daemon."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        **extra,
    }


def write_config(
    path: Path,
    db_url: str,
    *,
    master_key: str | None = None,
    grace_seconds: float = 10.0,
    resync_seconds: float = 300.0,
    workers: int = 4,
    reconcile: Mapping[str, Any] | None = None,
    users: Mapping[str, tuple[str, Mapping[str, str]]] | None = None,
    extra: Mapping[str, Any] | None = None,
    api: Mapping[str, Any] | None = None,
) -> Path:
    """The daemon's settings file; ``reconcile`` and ``api`` add settings of those groups (e.g.
    call_timeout_seconds, max_concurrent_requests), ``users`` more API users (name → (token, roles per vault)),
    ``extra`` more top-level settings."""
    tokens = [{"user": ADMIN, "sha256": token_hash(ADMIN_TOKEN), "roles": {"*": "vault_administrator"}}]
    for user, (token, roles) in (users or {}).items():
        tokens.append({"user": user, "sha256": token_hash(token), "roles": dict(roles)})
    doc = {
        "database_url": db_url,
        "master_key": master_key or generate_master_key(),
        "log": {"format": "json", "level": "info"},
        "api": {
            "listen": "127.0.0.1:1",  # every test passes --listen
            "grace_period_seconds": grace_seconds,
            "tokens": tokens,
            **(api or {}),
        },
        "reconcile": {"workers": workers, "resync_interval_seconds": resync_seconds, **(reconcile or {})},
        **(extra or {}),
    }
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll ``check`` until it returns something other than None (or fail after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = await check()
        if last is not None:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(interval)


@dataclass
class DaemonProcess:
    """One ``keyorch serve`` child process; its stdout and stderr are drained into ``lines``."""

    proc: asyncio.subprocess.Process
    url: str = ""
    lines: list[str] = field(default_factory=list)
    drains: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def start(
        cls,
        workdir: Path,
        config: Path,
        *serve_args: str,
        port: int | None = None,
        wait: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> DaemonProcess:
        """``env``: more environment variables for the daemon (e.g. the credentials it resolves at run time)."""
        listen = ["--listen", f"127.0.0.1:{port or free_port()}"]
        argv = [sys.executable, "-m", "keyorch", "--config", str(config), "serve", *listen, *serve_args]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=workdir,
            env=clean_env(workdir, **(env or {})),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        daemon = cls(proc)
        assert proc.stdout is not None and proc.stderr is not None
        daemon.drains = [asyncio.create_task(daemon._drain(s)) for s in (proc.stdout, proc.stderr)]
        if wait:
            daemon.url = await eventually(daemon._announced, START_TIMEOUT_SECONDS, f"daemon announces {argv}")
        return daemon

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        async for raw in stream:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    async def _announced(self) -> str | None:
        for line in self.lines:
            if line.startswith(READY_LINE):
                return line[len(READY_LINE) :].strip()
        if self.proc.returncode is not None:
            await asyncio.gather(*self.drains)
            raise AssertionError(f"daemon exited {self.proc.returncode} before listening:\n{self.output}")
        return None

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def logs(self) -> list[dict[str, Any]]:
        """The structured log records (JSON lines) written so far."""
        records = []
        for line in self.lines:
            if line.startswith("{"):
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return records

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    async def wait(self, timeout: float) -> int:
        """The exit code; fails (and kills the process) if it does not exit within ``timeout``."""
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            await self.kill()
            raise AssertionError(f"daemon still running after {timeout} s:\n{self.output[-3000:]}") from None
        await asyncio.gather(*self.drains)
        return code

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        await asyncio.gather(*self.drains, return_exceptions=True)


@dataclass
class Answer:
    status: int
    doc: Any
    headers: Mapping[str, str]

    def ok(self, *expected: int) -> Any:
        assert self.status in (expected or (200,)), f"HTTP {self.status}: {self.doc}"
        return self.doc


@dataclass
class ApiClient:
    session: aiohttp.ClientSession
    base: str

    async def call(self, method: str, path: str, *, json_body: Any = None, if_match: str | None = None) -> Answer:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        if if_match is not None:
            headers["If-Match"] = if_match
        async with self.session.request(method, self.base + path, json=json_body, headers=headers) as resp:
            text = await resp.text()
            doc = json.loads(text) if text and resp.content_type == "application/json" else text
            return Answer(resp.status, doc, resp.headers.copy())

    async def api(self, method: str, path: str, **kwargs: Any) -> Answer:
        return await self.call(method, API + path, **kwargs)

    async def status(self, path: str) -> int:
        return (await self.call("GET", path)).status

    async def create_key(self, template: str, label: str) -> dict[str, Any]:
        answer = await self.api("POST", "/managed_keys", json_body={"template": template, "label": label})
        return {**answer.ok(201), "etag": answer.headers["ETag"]}

    async def activate(self, key_id: str, etag: str | None = None) -> Answer:
        if etag is None:
            etag = (await self.api("GET", f"/managed_keys/{key_id}")).headers["ETag"]
        return await self.api("POST", f"/managed_keys/{key_id}/activate", if_match=etag)

    async def key_targets(self, key_id: str) -> list[dict[str, Any]]:
        """keyorch's record of the key in each keystore (``targets``: keyorch's statuses, sync flags, retries)."""
        doc = (await self.api("GET", f"/managed_keys/{key_id}")).ok()
        targets: list[dict[str, Any]] = doc["targets"]
        return targets


def connect_body(vault: str, name: str, kind: str, running: RunningFake, credentials: Path) -> dict[str, Any]:
    """The keystore-connect body the fakes' ``connect_args`` describe, with the credentials inline.

    ``--rate-per-second`` and ``--no-provider-quotas`` become ``rate_per_second`` and
    ``provider_quotas: false`` (the fakes enforce no quotas), as the CLI would send them.
    """
    args = connect_args(kind, running, credentials)
    body: dict[str, Any] = {"vault": vault, "name": name}
    i = 0
    while i < len(args):
        flag = args[i]
        if flag in _CONNECT_FIELDS:
            body[_CONNECT_FIELDS[flag]] = args[i + 1]
            i += 2
        elif flag == "--credentials-file":
            body["credentials"] = json.loads(Path(args[i + 1]).read_text(encoding="utf-8"))
            i += 2
        elif flag == "--ca-file":
            body["ca_pem"] = Path(args[i + 1]).read_text(encoding="ascii")
            i += 2
        elif flag == "--rate-per-second":
            body["rate_per_second"] = float(args[i + 1])
            i += 2
        elif flag == "--max-concurrency":
            body["max_concurrency"] = int(args[i + 1])
            i += 2
        elif flag in _CONNECT_FLAGS:
            body[_CONNECT_FLAGS[flag]] = _CONNECT_FLAGS[flag] != "provider_quotas"
            i += 1
        else:
            raise AssertionError(f"connect_body does not know the connect option {flag!r}")
    return body


async def setup_world_via_api(
    client: ApiClient, cluster: Mapping[str, RunningFake], credentials: Mapping[str, Path]
) -> tuple[str, dict[str, str]]:
    """A vault, one keystore per fake and a template over all four, through the API.

    Returns the template id and, per keystore type, the keystore id.
    """
    vault = (await client.api("POST", "/vaults", json_body={"name": "main"})).ok(201)["id"]
    keystores: dict[str, str] = {}
    for kind, running in cluster.items():
        body = connect_body(vault, kind, kind, running, credentials[kind])
        keystores[kind] = (await client.api("POST", "/keystores", json_body=body)).ok(201)["id"]
    body = {"vault": vault, "name": "everywhere", "keystores": list(keystores.values()), "naming_scheme": "D-{label}"}
    template = (await client.api("POST", "/templates", json_body=body)).ok(201)["id"]
    return template, keystores


def slow_every_call(cluster: FakeCluster, delay_ms: int) -> None:
    """Every provider request answers ``delay_ms`` late (it reaches the fake's handler)."""
    rule = {"operation": "*", "rate": 1.0, "faults": [{"kind": "latency", "delay_ms": delay_ms}]}
    for kind in cluster:
        cluster[kind].fake.faults.configure(ProviderFaults.model_validate({"rules": [rule]}))


def hang_creates(cluster: FakeCluster, create_operations: Mapping[str, str], seconds: float = 120) -> None:
    """Every create request hangs before it reaches the fake's handler (so it never creates anything)."""
    for kind in cluster:
        rule = {
            "operation": create_operations[kind],
            "rate": 1.0,
            "faults": [{"kind": "hang", "hang_seconds": seconds}],
        }
        cluster[kind].fake.faults.configure(ProviderFaults.model_validate({"rules": [rule]}))
