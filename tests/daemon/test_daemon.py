"""``keyorch serve`` as a real subprocess against the four fakes running in this test's event loop.

Acceptance of issue 6 for the daemon: a key created and activated through the API is reconciled
into all four fakes at once (long before the periodic resync); /readyz follows the database;
/metrics parses with the Prometheus text parser; SIGTERM during a burst takes no further request,
exits 0 within the grace period (also when provider calls outlast it) and a restart converges with
nothing lost and nothing done twice; a second signal exits at once; an unusable configuration or
listen address exits 2 with one sentence.

The keystores are connected through the API with ``provider_quotas: false`` and ``rate_per_second: 0``
(the fakes enforce no quotas), as ``keyorch keystore connect`` connects them in the other suites.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from keyorch.fakes.registry import FakeCluster
from tests.daemon.harness import (
    ApiClient,
    DaemonProcess,
    clean_env,
    eventually,
    hang_creates,
    slow_every_call,
    write_config,
)
from tests.daemon.world import World, in_sync, is_ready, run_keyorch, serving, serving_world
from tests.e2e.harness import (
    CREATE_OPERATION,
    EXPECTED,
    KINDS,
    clear_faults,
    duplicates,
    provider_states,
    successful_creates,
)

#: the operation names keyorch's adapters give a create in the provider-call metrics
ADAPTER_CREATE = {**CREATE_OPERATION, "google_kms": "cryptoKeys.create"}

#: how long a daemon may take to converge a handful of keys (the resync interval is 300 s)
CONVERGE_SECONDS = 20.0


async def test_key_created_and_activated_through_the_api_is_enabled_in_all_four_fakes(
    world: World, daemons: list[DaemonProcess]
) -> None:
    _, client, template = await serving_world(world, daemons, world.config())

    key = await client.create_key(template, "payments")
    assert key["state"] == "pre_activation"
    started = time.monotonic()
    activated = await client.activate(key["id"], key["etag"])
    assert activated.ok()["state"] == "active"

    async def converged() -> list[dict[str, Any]] | None:
        targets = await client.key_targets(key["id"])
        return targets if in_sync(targets) else None

    # converged well inside the 300 s resync interval: the API change itself was reconciled (no time asserted)
    targets = await eventually(converged, CONVERGE_SECONDS, "all four targets in sync")
    took = time.monotonic() - started
    assert {t["keystore_name"] for t in targets} == set(KINDS)
    assert provider_states(world.cluster, key["id"]) == EXPECTED["active"]
    assert duplicates(world.cluster, [key["id"]]) == {kind: {} for kind in KINDS}
    print(f"API activate -> four fakes in sync: {took:.2f} s (resync interval 300 s)")


async def test_readyz_is_503_until_the_database_is_migrated_then_200(
    world: World, daemons: list[DaemonProcess]
) -> None:
    db = world.workdir / "fresh" / "keyorch.db"
    db.parent.mkdir()
    config = write_config(world.workdir / "fresh.yaml", f"sqlite:///{db}")
    daemon = await DaemonProcess.start(world.workdir, config, "--no-migrate")
    daemons.append(daemon)
    client = world.client(daemon)

    assert (await client.call("GET", "/healthz")).ok() == {"status": "alive"}
    not_ready = await client.call("GET", "/readyz")
    assert not_ready.status == 503, not_ready.doc
    assert not_ready.doc["ready"] is False
    assert not_ready.doc["migrations_current"] is False
    assert not_ready.doc["workers_running"] is False
    await asyncio.sleep(1.0)  # still not ready a while later: nothing migrates behind our back
    assert await client.status("/readyz") == 503

    code, out, err = await run_keyorch(world, "--db", f"sqlite:///{db}", "init")
    assert code == 0, out + err
    started = time.monotonic()
    await eventually(lambda: is_ready(client), 15, "/readyz 200 after keyorch init")
    took = time.monotonic() - started
    ready = (await client.call("GET", "/readyz")).ok()
    assert ready["ready"] is True and ready["migrations_current"] is True and ready["workers_running"] is True
    assert await client.status("/healthz") == 200
    print(f"/readyz 503 -> 200 after init: {took:.2f} s")


async def test_sigterm_while_the_schema_is_being_created_exits_0(world: World) -> None:
    """A signal that lands while the daemon still creates its schema (right after it listens) ends that
    migration and exits 0; the daemon once hung here for ever (a cancelled migration never awaited)."""
    for attempt in range(3):
        db = world.workdir / f"migrating-{attempt}" / "keyorch.db"
        db.parent.mkdir()
        config = write_config(world.workdir / f"migrating-{attempt}.yaml", f"sqlite:///{db}")
        daemon = await DaemonProcess.start(world.workdir, config)
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait(30) == 0, daemon.output
        assert "Traceback" not in daemon.output


async def test_metrics_parse_and_count_the_work_done(world: World, daemons: list[DaemonProcess]) -> None:
    # resync every 300 s: its first pass ran before any keystore existed
    _, client, template = await serving_world(world, daemons, world.config("metrics"))
    keys = [await client.create_key(template, f"m{i}") for i in range(3)]
    for key in keys:
        (await client.activate(key["id"], key["etag"])).ok()

    async def all_in_sync() -> bool | None:
        return True if all([in_sync(await client.key_targets(k["id"])) for k in keys]) else None

    await eventually(all_in_sync, CONVERGE_SECONDS, "three keys in sync")

    async def scraped() -> dict[str, Any] | None:
        answer = await client.call("GET", "/metrics")
        assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(answer.doc)}
        gauge = families.get("keyorch_out_of_sync_keys")
        # both are current at each scrape, not as of the last resync
        published = gauge is not None and {s.labels["keystore"] for s in gauge.samples} >= set(KINDS)
        idle = [s.value for s in families["keyorch_queue_depth"].samples] == [0.0]
        return families if published and idle else None

    families = await eventually(scraped, 10, "out-of-sync gauge for all four keystores, queue empty", interval=0.3)

    reconciles = {s.labels["outcome"]: s.value for s in families["keyorch_reconciles"].samples}
    assert reconciles.get("in_sync", 0) >= len(keys), reconciles
    calls = families["keyorch_provider_calls"]
    assert families["keyorch_provider_calls"].type == "counter"
    assert all(set(s.labels) == {"keystore", "operation", "status"} for s in calls.samples)
    assert {s.labels["keystore"] for s in calls.samples} >= set(KINDS)
    created = {
        s.labels["keystore"]: s.value
        for s in calls.samples
        if s.labels["operation"] == ADAPTER_CREATE[s.labels["keystore"]] and s.labels["status"].startswith("2")
    }
    # what keyorch counted is what the fakes carried out: one create per key and keystore
    assert created == {kind: float(successful_creates(kind, world.cluster[kind].fake)) for kind in KINDS}
    assert created == dict.fromkeys(KINDS, float(len(keys)))
    assert [s.value for s in families["keyorch_queue_depth"].samples] == [0.0]
    assert families["keyorch_queue_depth"].type == "gauge"
    out_of_sync = {s.labels["keystore"]: s.value for s in families["keyorch_out_of_sync_keys"].samples}
    assert out_of_sync == dict.fromkeys(KINDS, 0.0)
    histogram = families["keyorch_reconcile_duration_seconds"]
    assert histogram.type == "histogram"
    count = next(s.value for s in histogram.samples if s.name.endswith("_count"))
    buckets = [s for s in histogram.samples if s.name.endswith("_bucket")]
    assert count >= len(keys) and buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == count
    print(f"metrics: reconciles {reconciles}, provider call series {len(calls.samples)}, histogram count {count}")


#: (what is wrong, the config file's bytes (None: no file; "DIR": a directory), serve arguments, part of the message)
UNUSABLE: list[tuple[str, bytes | str | None, list[str], str]] = [
    ("missing config", None, [], "cannot be read: No such file or directory"),
    ("config is a directory", "DIR", [], "cannot be read: Is a directory"),
    ("config not YAML", "api: [unclosed\n", [], "not valid YAML at line"),
    ("invalid setting", "reconcile:\n  workers: 0\n", [], "reconcile.workers"),
    ("bad token hash", "api:\n  tokens: [{user: a, sha256: nothex, roles: {'*': reader}}]\n", [], "api.tokens"),
    ("listen without port", "", ["--listen", "localhost"], "HOST:PORT"),
    ("listen port in use", "", ["--listen", "127.0.0.1:{busy}"], "127.0.0.1:{busy}: the address is already in use"),
    ("listen in config bad", "api:\n  listen: nowhere\n", [], "is 'nowhere': it is not HOST:PORT"),
    ("listen port out of range", "", ["--listen", "127.0.0.1:70000"], "a port from 1 to 65535"),
    ("listen port not a number", "", ["--listen", "127.0.0.1:http"], "has the port 'http'"),
    ("listen host unresolvable", "", ["--listen", "no-such-host.invalid:8080"], "cannot be resolved"),
    ("listen host malformed", "", ["--listen", "[::1:8080"], "IPv6 host goes in brackets"),
]


async def test_unusable_configuration_or_listen_exits_2_with_one_sentence(tmp_path: Path) -> None:
    """Each case in its own child process, all at once; each must exit 2 with one line and no traceback."""
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]

    async def run(n: int, config_doc: bytes | str | None, serve_args: list[str]) -> tuple[int | None, str, str]:
        folder = tmp_path / f"case{n}"
        folder.mkdir()
        config = folder / "keyorch.yaml"
        if config_doc == "DIR":
            config.mkdir()
        elif config_doc is not None:
            config.write_bytes(config_doc if isinstance(config_doc, bytes) else config_doc.encode())
        args = [a.format(busy=port) for a in serve_args]
        db = f"sqlite:///{folder / 'keyorch.db'}"
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "keyorch", "--db", db, "--config", str(config), "serve", *args),
            cwd=folder,
            env=clean_env(folder),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 60)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return None, "", "still running after 60 s"
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    try:
        results = await asyncio.gather(*(run(n, doc, args) for n, (_, doc, args, _) in enumerate(UNUSABLE)))
    finally:
        busy.close()
    wrong = []
    for (case, _, _, message), (code, out, err) in zip(UNUSABLE, results, strict=True):
        lines = err.strip().splitlines()
        good = len(lines) == 1 and lines[0].startswith("error: ") and message.format(busy=port) in lines[0]
        if code != 2 or out or "Traceback" in err or not good:
            wrong.append(f"{case}: exit {code}, stdout {out!r}, stderr {err!r}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
async def test_serve_on_a_port_in_use_exits_2_naming_the_address(tmp_path: Path, family: socket.AddressFamily) -> None:
    """Another process listens on the port: one line naming the address and saying it is in use, exit 2."""
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    try:
        busy = socket.socket(family, socket.SOCK_STREAM)
        busy.bind((host, 0))
    except OSError:
        pytest.skip(f"no {host} on this machine")
    busy.listen()
    port = busy.getsockname()[1]
    address = f"{host}:{port}" if family == socket.AF_INET else f"[{host}]:{port}"
    config = write_config(tmp_path / "keyorch.yaml", f"sqlite:///{tmp_path / 'keyorch.db'}")
    try:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "keyorch", "--config", str(config), "serve", "--listen", address),
            cwd=tmp_path,
            env=clean_env(tmp_path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 60)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError(f"keyorch serve --listen {address} still running after 60 s") from None
    finally:
        busy.close()
    text = err.decode(errors="replace")
    assert proc.returncode == 2, text
    assert out == b"" and "Traceback" not in text and "OSError" not in text and "Errno" not in text
    assert text.strip().splitlines() == [
        f"error: cannot listen on {address}: the address is already in use (another process listens there); "
        "choose another with --listen HOST:PORT or the setting api.listen"
    ]


BURST_KEYS = 30
BURST_PARALLEL = 5
GRACE_SECONDS = 10.0


async def converged_world(client: ApiClient, cluster: FakeCluster, key_ids: list[str]) -> dict[str, str]:
    """Wait until every key's targets are in sync and each fake shows its desired state; key id -> state."""
    behind: list[Any] = []

    async def check() -> dict[str, str] | None:
        states: dict[str, str] = {}
        for key_id in key_ids:
            doc = (await client.api("GET", f"/managed_keys/{key_id}/status_in_keystores")).ok()
            found = provider_states(cluster, key_id)
            synced = all(t["keystore_sync_flag"] == "ok" for t in doc["status_in_keystores"])
            if found != EXPECTED[doc["state"]] or not synced:
                behind[:] = [doc, found]
                return None
            states[key_id] = doc["state"]
        return states

    try:
        return await eventually(check, 45, "every key in sync in every keystore", interval=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; still behind: {behind}") from None


def assert_nothing_done_twice(cluster: FakeCluster, states: dict[str, str]) -> None:
    """Each fake holds exactly one key per installed managed key and carried out exactly one create for it."""
    installed = [key_id for key_id, state in states.items() if state not in ("pre_active", "pre_activation")]
    assert duplicates(cluster, installed) == {kind: {} for kind in KINDS}
    creates = {kind: successful_creates(kind, cluster[kind].fake) for kind in KINDS}
    assert creates == dict.fromkeys(KINDS, len(installed)), creates


async def test_sigterm_during_a_burst_exits_0_and_a_restart_converges_with_nothing_lost_or_done_twice(
    world: World, daemons: list[DaemonProcess]
) -> None:
    config = world.config("burst", grace_seconds=GRACE_SECONDS)
    first, client, template = await serving_world(world, daemons, config)
    keys = [await client.create_key(template, f"burst{i}") for i in range(BURST_KEYS)]
    slow_every_call(world.cluster, 100)  # so that provider calls are in flight when the signal comes

    accepted: dict[str, str] = {}  # key id -> the state the API answered
    failed: dict[str, str] = {}  # key id -> why the request failed
    late: list[str] = []  # keys whose activation was sent once the daemon had begun to stop
    signalled_at: list[float] = []
    gate = asyncio.Semaphore(BURST_PARALLEL)

    async def stopping() -> bool | None:
        return True if any(r.get("event") == "stopping" for r in first.logs()) else None

    async def activate(key: dict[str, Any]) -> None:
        async with gate:
            if signalled_at:  # the burst goes on after the signal, against a daemon that is stopping
                await eventually(stopping, 10, "the daemon logs that it is stopping", interval=0.02)
                late.append(key["id"])
            try:
                answer = await client.activate(key["id"], key["etag"])
            except aiohttp.ClientError as exc:
                failed[key["id"]] = type(exc).__name__
                return
            if answer.status != 200:
                failed[key["id"]] = f"HTTP {answer.status}"
                return
            accepted[key["id"]] = answer.doc["state"]
            if len(accepted) == BURST_KEYS // 3 and not signalled_at:
                first.signal(signal.SIGTERM)
                signalled_at.append(time.monotonic())

    await asyncio.gather(*(activate(k) for k in keys))
    code = await first.wait(GRACE_SECONDS + 10)
    stopped_in = time.monotonic() - signalled_at[0]
    assert code == 0, first.output[-3000:]
    assert stopped_in < GRACE_SECONDS + 2, f"exit took {stopped_in:.1f} s (grace {GRACE_SECONDS} s)"
    assert "Traceback" not in first.output
    stopped = next(r for r in first.logs() if r.get("event") == "stopped")
    assert set(accepted.values()) == {"active"} and len(accepted) >= BURST_KEYS // 3
    # a stopping daemon takes no request, also not on a connection its client kept open
    assert late and set(late) <= set(failed), {key_id: failed.get(key_id, "accepted") for key_id in late}

    clear_faults(world.cluster)
    restarted = time.monotonic()
    second, client = await serving(world, daemons, config)
    states = await converged_world(client, world.cluster, [k["id"] for k in keys])
    converged_in = time.monotonic() - restarted
    # nothing lost: every activation the API accepted stands; the others did not happen, or did in full
    assert all(states[key_id] == "active" for key_id in accepted), states
    assert set(states.values()) <= {"pre_activation", "active"}
    assert_nothing_done_twice(world.cluster, states)
    in_doubt = sum(1 for key_id in failed if states[key_id] == "active")

    second.signal(signal.SIGTERM)
    assert await second.wait(GRACE_SECONDS + 10) == 0
    print(
        f"burst: {len(accepted)} activations accepted, {len(failed)} failed ({len(late)} sent while stopping, "
        f"{in_doubt} failed ones applied anyway); exit 0 {stopped_in:.2f} s after SIGTERM "
        f"(clean={stopped.get('clean')}, left pending {stopped.get('left_pending')}); "
        f"restart converged {len(states)} keys in {converged_in:.2f} s"
    )


async def start_with_hung_creates(
    world: World, daemons: list[DaemonProcess], grace_seconds: float, name: str
) -> tuple[DaemonProcess, ApiClient, list[str]]:
    """A daemon whose reconciles of two freshly activated keys hang in the providers' create calls."""
    daemon, client, template = await serving_world(world, daemons, world.config(name, grace_seconds=grace_seconds))
    keys = [await client.create_key(template, f"{name}{i}") for i in range(2)]
    hang_creates(world.cluster, CREATE_OPERATION)
    for key in keys:
        (await client.activate(key["id"], key["etag"])).ok()

    async def hanging() -> bool | None:
        counts = [world.cluster[kind].fake.log.fault_counts.get("hang", 0) for kind in KINDS]
        return True if all(counts) else None

    await eventually(hanging, 10, "a create call hanging in every fake")
    return daemon, client, [k["id"] for k in keys]


async def restart_and_converge(world: World, daemons: list[DaemonProcess], key_ids: list[str]) -> float:
    """Restart on the same settings with healthy fakes: everything converges, nothing twice; the time taken."""
    clear_faults(world.cluster)
    started = time.monotonic()
    _, client = await serving(world, daemons, world.config("restart"))
    states = await converged_world(client, world.cluster, key_ids)
    assert set(states.values()) == {"active"}
    assert_nothing_done_twice(world.cluster, states)
    return time.monotonic() - started


async def test_calls_outlasting_the_grace_period_exit_0_at_its_end(world: World, daemons: list[DaemonProcess]) -> None:
    grace = 2.0
    daemon, _, key_ids = await start_with_hung_creates(world, daemons, grace, "outlast")
    signalled = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait(grace + 10) == 0, daemon.output[-3000:]
    took = time.monotonic() - signalled  # printed, not asserted: the log says what the grace period did
    assert "Traceback" not in daemon.output
    stopped = next(r for r in daemon.logs() if r.get("event") == "stopped")
    assert stopped["clean"] is False and stopped["left_pending"] == len(key_ids)
    converged_in = await restart_and_converge(world, daemons, key_ids)
    print(f"hung calls: exit 0 {took:.2f} s after SIGTERM (grace {grace} s); restart converged in {converged_in:.2f} s")


async def test_a_second_signal_during_shutdown_exits_at_once(world: World, daemons: list[DaemonProcess]) -> None:
    daemon, _, key_ids = await start_with_hung_creates(world, daemons, 60.0, "twice")
    daemon.signal(signal.SIGTERM)
    await asyncio.sleep(1.0)
    assert daemon.proc.returncode is None, "the first signal waits for the calls in flight (grace 60 s)"
    signalled = time.monotonic()
    daemon.signal(signal.SIGTERM)
    code = await daemon.wait(10)  # long before the 60 s grace period would end
    took = time.monotonic() - signalled
    assert code != 0, f"exit {code} {took:.2f} s after the second signal"
    assert "Traceback" not in daemon.output
    converged_in = await restart_and_converge(world, daemons, key_ids)
    print(f"second signal: exit {code} {took:.2f} s after it; restart converged in {converged_in:.2f} s")
