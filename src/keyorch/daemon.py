"""`keyorch serve`: one asyncio process running the reconciler workers, the periodic resync, the
REST API and the health and metrics endpoints.

Shutdown on SIGTERM/SIGINT: stop taking requests, stop taking new work, let reconciles in flight
finish within the grace period, then exit 0. What is left stays recorded as pending (a target's
synced generation lags its key's generation, and open intents stay in the journal), so the next
start picks it up. A second signal exits at once. Every database change is one transaction, so
neither path leaves state half-written.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from aiohttp import web

from keyorch import metrics
from keyorch.api.errors import ServiceUnavailable
from keyorch.api.limits import GuardedAppRunner
from keyorch.crypto import MasterKey
from keyorch.domain.clock import Clock
from keyorch.domain.errors import ConfigurationError, InvalidInput, KeyorchError
from keyorch.domain.models import Keystore
from keyorch.domain.states import KeyAction
from keyorch.logs import get_logger
from keyorch.reconcile import report
from keyorch.reconcile.batches import KeyBatches
from keyorch.reconcile.clients import ClientPool
from keyorch.reconcile.cluster import Cluster
from keyorch.reconcile.controller import Controller, PassSummary
from keyorch.reconcile.engine import KeyOutcome, Listing
from keyorch.reconcile.queue import Backoff, WorkQueue, run_workers
from keyorch.settings import Settings
from keyorch.store.audit_keys import check_master_key
from keyorch.store.cluster import JobClaim
from keyorch.store.engine import schema_revisions
from keyorch.store.repository import Store

EXIT_NOW = 130
#: How long an API "Sync key" waits for its reconcile before answering 503 (the sync still happens).
SYNC_WAIT_SECONDS = 120.0


def listen_error(exc: OSError, host: str, port: int) -> InvalidInput:
    """One sentence for a listen address the daemon cannot bind: in use, not local, not resolvable."""
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    choose = "choose another with --listen HOST:PORT or the setting api.listen"
    if isinstance(exc, socket.gaierror):
        reason = exc.strerror or str(exc)
        text = f"cannot listen on {address}: the host {host!r} cannot be resolved ({reason}); {choose}"
    elif exc.errno == errno.EADDRINUSE:
        text = f"cannot listen on {address}: the address is already in use (another process listens there); {choose}"
    elif exc.errno == errno.EADDRNOTAVAIL:
        text = f"cannot listen on {address}: {host} is not an address of this machine; {choose}"
    elif exc.errno == errno.EACCES:
        text = (
            f"cannot listen on {address}: permission denied (ports below 1024 need privileges); "
            "choose a port of 1024 or more with --listen HOST:PORT"
        )
    else:
        reason = os.strerror(exc.errno) if exc.errno else (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        text = f"cannot listen on {address}: {reason}; {choose}"
    return InvalidInput(text, target="listen")


class Daemon:
    def __init__(self, settings: Settings, store: Store, clock: Clock, master_key: MasterKey | None) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.master_key = master_key
        cfg = settings.reconcile
        self.pool = ClientPool(
            store,
            master_key,
            call_timeout_seconds=cfg.call_timeout_seconds,
            environment_endpoints=tuple(settings.environment_credentials.endpoints),
        )
        self.controller = Controller(
            store,
            self.pool,
            clock,
            workers=cfg.workers,
            listing_timeout_seconds=cfg.listing_timeout_seconds,
            lease_seconds=cfg.lease_seconds,
            rotation_min_interval=settings.keys.rotation_min_interval,
        )
        self.listing_published = asyncio.Event()  # another replica stored a new listing
        self.cluster = Cluster(
            store,
            heartbeat_seconds=cfg.heartbeat_seconds,
            on_key_changed=self._queue_now,
            on_members_changed=self._share_moved,
            on_listing=self.listing_published.set,
        )
        self.cluster_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[int]] = set()
        self.queue = WorkQueue(backoff=Backoff(base_seconds=1.0, max_seconds=cfg.max_backoff_seconds))
        self.listing: Listing | None = None
        self.sync_waiters: dict[str, list[asyncio.Future[KeyOutcome]]] = {}  # API syncs awaiting a key's run
        self.push_requested: set[str] = set()  # keys whose next run pushes (a user's Sync key)
        self.batches: KeyBatches | None = None  # the latest resync's keys, read in batches
        self.workers_task: asyncio.Task[None] | None = None
        self.resync_task: asyncio.Task[None] | None = None
        self.in_flight = 0
        self.unfinished: set[str] = set()  # keys left pending by a shutdown (skipped, or cut off at the grace)
        self.log = get_logger(component="daemon")
        self.stopping = asyncio.Event()
        self.master_key_problem: str | None = None  # why this daemon's master key cannot be used, if it cannot

    # --- reconcile loop ---------------------------------------------------------------------

    def on_change(self, key_id: str) -> None:
        """A change made through the API: reconciled at once, ahead of the periodic resync, by the key's
        owner (announced to it), and here too when this daemon cannot count on the announcement."""
        self.cluster.announce_change(key_id)
        if self.cluster.owns(key_id) or not self.cluster.listening:
            self._queue_now(key_id)

    def _queue_now(self, key_id: str) -> None:
        if self.batches is not None:
            self.batches.discard(key_id)  # a copy read before this change would only come back stale
        self.queue.add(key_id, front=True)
        metrics.set_queue_depth(self.queue.depth)

    def _share_moved(self) -> None:
        """Members came or went (or announcements were missed): queue this daemon's share again."""
        if self.listing is not None and self.workers_running and not self.stopping.is_set():
            task = asyncio.create_task(self._queue_share())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def sync_key(self, key_id: str) -> dict[str, Any]:
        """A user's "Sync key" (API): queued ahead of everything else, reconciled by a worker with push,
        and awaited. Going through the queue is what keeps a key from being reconciled twice at once in
        this process (the key's lease does across processes): a sync that arrives while a worker is on
        the key runs right after it, from a fresh read."""
        if self.stopping.is_set() or not self.workers_running:
            raise ServiceUnavailable("the daemon's reconciler is not running (starting or stopping)", target="sync")
        waiter: asyncio.Future[KeyOutcome] = asyncio.get_running_loop().create_future()
        self.sync_waiters.setdefault(key_id, []).append(waiter)
        self.push_requested.add(key_id)
        self._queue_now(key_id)  # here, whoever owns the key: this daemon answers the sync
        try:
            outcome = await asyncio.wait_for(asyncio.shield(waiter), timeout=SYNC_WAIT_SECONDS)
        except TimeoutError:
            raise ServiceUnavailable(
                f"key {key_id} is queued for a sync but was not reconciled within {SYNC_WAIT_SECONDS:.0f} s "
                "(the reconciler is busy or the key's lease is held); it will still be synced",
                target="sync",
            ) from None
        summary = PassSummary(outcomes={outcome.key_id: outcome})
        return report.sync_document(summary)

    async def reconcile_once(self) -> dict[str, Any]:
        """The API's full pass (`keyorch --server … reconcile --once`)."""
        summary = await self.controller.run_once()
        for outcome in summary.outcomes.values():
            self._record(outcome, 0.0)
        return report.reconcile_document(summary)

    async def plan(self, refs: Sequence[str]) -> dict[str, Any]:
        return await report.plan_document(self.controller, refs, self.clock.now())

    async def plan_action(self, ref: str, action: KeyAction) -> dict[str, Any]:
        """What a state action on the key would do in each keystore (the console's confirmations)."""
        interval = self.settings.keys.rotation_min_interval  # as the API rotates (keys.rotation_min_interval_seconds)
        return await report.action_plan_document(self.controller, ref, action, self.clock.now(), interval)

    async def _handle(self, key_id: str) -> None:
        if self.stopping.is_set() or self.master_key_problem is not None:
            self.unfinished.add(key_id)
            self.queue.forget(key_id)
            return
        push = key_id in self.push_requested
        self.push_requested.discard(key_id)
        waiters = self.sync_waiters.pop(key_id, [])
        started = time.perf_counter()
        self.in_flight += 1
        try:
            loaded = await self.batches.take(key_id) if self.batches is not None else None
            # The latest resync's listing is offered; the planner uses it only for targets whose
            # records it is newer than (an observation older than an intent decides nothing).
            outcome = await self.controller.reconciler.reconcile_key(
                key_id, push=push, listing=self.listing, loaded=loaded
            )
        except asyncio.CancelledError:
            self.unfinished.add(key_id)
            self._fail_waiters(waiters, ServiceUnavailable("the daemon is stopping", target="sync"))
            raise
        except KeyorchError as exc:  # e.g. the key was removed meanwhile: the sync's answer
            self._fail_waiters(waiters, exc)
            self.log.info("reconcile ended", key_id=key_id, outcome=exc.code)
            return
        except Exception as exc:  # one key's failure never stops the workers
            self.log.error("reconcile failed", key_id=key_id, error=f"{type(exc).__name__}: {exc}"[:500])
            metrics.record_reconcile("error", time.perf_counter() - started)
            self._requeue_sync(key_id, push, waiters)
            self.queue.retry(key_id)
            return
        finally:
            self.in_flight -= 1
        self._record(outcome, time.perf_counter() - started)
        if outcome.stale:  # nothing was decided (the desired state moved, or another actor held the key)
            self._requeue_sync(key_id, push, waiters)
        else:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(outcome)
        if outcome.transient_failure and not self.stopping.is_set():
            self.queue.retry(key_id)
        else:
            self.queue.forget(key_id)
        metrics.set_queue_depth(self.queue.depth)

    def _requeue_sync(self, key_id: str, push: bool, waiters: list[asyncio.Future[KeyOutcome]]) -> None:
        """A sync whose run decided nothing waits for the key's next run."""
        if waiters:
            self.sync_waiters.setdefault(key_id, []).extend(waiters)
        if push:
            self.push_requested.add(key_id)

    @staticmethod
    def _fail_waiters(waiters: list[asyncio.Future[KeyOutcome]], exc: BaseException) -> None:
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(exc)

    def _record(self, outcome: KeyOutcome, seconds: float) -> None:
        result = "in_sync" if outcome.in_sync else ("unreachable" if outcome.unreachable else "out_of_sync")
        metrics.record_reconcile(result, seconds)
        if not outcome.stale:
            metrics.record_key_reconciled()

    async def master_key_usable(self) -> bool:
        """Whether this daemon's master key is still the database's (``master-key rotate`` may have changed it):
        a daemon that cannot record changes reconciles nothing, so its own configuration error is never taken
        for drift in the keystores."""
        try:
            async with self.store.read() as tx:
                await check_master_key(tx.conn, self.master_key, required=True)
        except ConfigurationError as exc:
            if self.master_key_problem != exc.message:
                self.log.error(
                    "master key unusable; reconciling stopped until restarted with the right key", reason=exc.message
                )
            self.master_key_problem = exc.message
            return False
        self.master_key_problem = None
        return True

    async def resync_once(self) -> bool:
        """List every keystore (on PostgreSQL: if this replica's turn came, else take the listing another
        replica stored), then queue this daemon's share of the keys. False if there was nothing new."""
        if not await self.master_key_usable():
            return False
        for key_id in await self.controller.rotate_due(self.cluster.owns):  # this replica's share of them
            self.on_change(key_id)
        keystores = await self.controller.keystores()
        down: dict[str, str] = {}
        if not self.cluster.shared:
            down = await self.controller.check_keystores(keystores)
            self.listing = await self.controller.gather_listing(keystores, down)
        elif (job := await self.cluster.claim_listing(self.settings.reconcile.lease_seconds)) is not None:
            down = await self.controller.check_keystores(keystores)
            self.listing = await self._list_holding(job, keystores, down)
        elif (stored := await self.cluster.newer_listing([k.id for k in keystores])) is not None:
            self.listing = stored
        else:
            return False
        keys = await self._queue_share()
        self.log.info(
            "resync listed",
            keystores_listed=len(self.listing or {}),
            keystores_down=len(down),
            keys=keys,
            members=len(self.cluster.members),
        )
        await self.publish_out_of_sync()
        return True

    async def _list_holding(self, job: JobClaim, keystores: list[Keystore], down: dict[str, str]) -> Listing:
        """The cluster's listing, made here: the claim renewed while listing, stored for the others."""
        ttl = self.settings.reconcile.lease_seconds

        async def keep() -> None:
            while await asyncio.sleep(ttl / 3, result=True) and await self.cluster.keep_listing(job, ttl):
                pass

        keeper = asyncio.create_task(keep())
        try:
            listing = await self.controller.gather_listing(keystores, down)
        except BaseException:
            await self.cluster.release_listing(job, 0.0)
            raise
        finally:
            keeper.cancel()
        if not await self.cluster.publish_listing(job, listing, self.settings.reconcile.resync_interval_seconds):
            self.log.warning("listing claim lost while listing: another replica's listing is used")
        return listing

    async def _queue_share(self) -> int:
        """Queue every key of this daemon's share (all keys when it is alone); how many."""
        ids = [key_id for key_id in await self.controller.key_ids() if self.cluster.owns(key_id)]
        self.batches = KeyBatches(self.controller.reconciler.load_many, ids, self.controller.batch_size)
        for key_id in ids:
            self.queue.add(key_id)
        metrics.set_queue_depth(self.queue.depth)
        metrics.set_cluster_members(len(self.cluster.members))
        return len(ids)

    async def publish_out_of_sync(self) -> None:
        async with self.store.read() as tx:
            names = {k.id: k.name for k in await tx.list_keystores()}
            flagged = await tx.out_of_sync_counts()
        metrics.set_out_of_sync({name: flagged.get(keystore_id, 0) for keystore_id, name in names.items()})

    async def _resync_loop(self) -> None:
        """Alone: list and queue every interval. In a cluster: look every heartbeat (or when another
        replica announces a listing) whether the listing is this replica's turn or a new one is stored."""
        cfg = self.settings.reconcile
        interval = min(cfg.resync_interval_seconds, cfg.heartbeat_seconds) if self.cluster.shared else None
        with contextlib.suppress(Exception):
            await self.cluster.beat()  # know the members before the first share is queued
        while not self.stopping.is_set():
            self.listing_published.clear()
            try:
                await self.resync_once()
            except Exception as exc:
                self.log.error("resync failed", error=f"{type(exc).__name__}: {exc}"[:500])
            wake = [asyncio.create_task(self.stopping.wait()), asyncio.create_task(self.listing_published.wait())]
            try:
                await asyncio.wait(wake, timeout=interval or cfg.resync_interval_seconds, return_when="FIRST_COMPLETED")
            finally:
                for task in wake:
                    task.cancel()

    def start_workers(self) -> None:
        self.workers_task = asyncio.create_task(run_workers(self.queue, self.settings.reconcile.workers, self._handle))
        self.resync_task = asyncio.create_task(self._resync_loop())
        self.cluster_task = asyncio.create_task(self.cluster.run(self.stopping))

    @property
    def workers_running(self) -> bool:
        return self.workers_task is not None and not self.workers_task.done()

    async def stop_workers(self, grace_seconds: float) -> bool:
        """Stop taking work; wait up to the grace period for reconciles in flight. True if all finished."""
        self.stopping.set()
        self.queue.close()
        for key_id in list(self.sync_waiters):
            self._fail_waiters(
                self.sync_waiters.pop(key_id), ServiceUnavailable("the daemon is stopping", target="sync")
            )
        tasks = [t for t in (self.workers_task, self.resync_task, self.cluster_task) if t is not None]
        _, pending = await asyncio.wait(tasks, timeout=grace_seconds) if tasks else (set(), set())
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        return not pending

    # --- health -----------------------------------------------------------------------------

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready: workers running, database reachable, migrations current. Keystores that stopped
        answering are listed (name -> reason) but do not make the daemon unready: it still serves
        the API and keeps every other keystore in line, and a restart would not make them answer."""
        checks: dict[str, Any] = {"workers_running": self.workers_running and not self.stopping.is_set()}
        checks["master_key"] = self.master_key_problem or "usable"
        checks["keystores_not_answering"] = self.controller.keystores_not_answering()
        try:
            current, head = await asyncio.wait_for(schema_revisions(self.store.engine), timeout=5)
            checks["database"] = "reachable"
            checks["migrations_current"] = current == head
            checks["schema"] = {"current": current, "required": head}
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
            checks["migrations_current"] = False
        ready = (
            checks["workers_running"]
            and checks["database"] == "reachable"
            and checks["migrations_current"]
            and self.master_key_problem is None
        )
        return bool(ready), checks


def health_routes(daemon: Daemon) -> list[web.RouteDef]:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_: web.Request) -> web.Response:
        ready, checks = await daemon.readiness()
        return web.json_response({"ready": ready, **checks}, status=200 if ready else 503)

    async def metrics_route(_: web.Request) -> web.Response:
        metrics.set_queue_depth(daemon.queue.depth)
        if daemon.workers_running:  # current out-of-sync counts, not those of the last resync
            try:
                await asyncio.wait_for(daemon.publish_out_of_sync(), timeout=5)
            except Exception as exc:  # the last published counts stay; the scrape still answers
                daemon.log.warning("out-of-sync counts not refreshed", error=f"{type(exc).__name__}: {exc}"[:300])
        return web.Response(body=metrics.render(), headers={"Content-Type": metrics.CONTENT_TYPE})

    return [web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", metrics_route)]


def build_app(daemon: Daemon, api_factory: Callable[..., web.Application] | None) -> web.Application:
    """The REST API application (its routes carry the /api/v4 prefix) plus health and metrics."""
    if api_factory is None:
        app = web.Application()
    else:
        app = api_factory(
            store=daemon.store,
            settings=daemon.settings,
            clock=daemon.clock,
            master_key=daemon.master_key,
            on_change=daemon.on_change,
            sync_key=daemon.sync_key,
            reconcile_once=daemon.reconcile_once,
            plan=daemon.plan,
            plan_action=daemon.plan_action,
        )
    app.add_routes(health_routes(daemon))
    return app


def stop_reading_requests(runner: web.AppRunner) -> None:
    """Take no further request on connections already open (``site.stop()`` only closes the listening
    socket; a keep-alive client could otherwise go on changing keys through the grace period). A request
    being handled finishes and gets its answer; then its connection closes."""
    if runner.server is not None:
        runner.server.pre_shutdown()


async def serve(
    settings: Settings,
    store: Store,
    clock: Clock,
    master_key: MasterKey | None,
    host: str,
    port: int,
    api_factory: Callable[..., web.Application] | None,
    announce: Callable[[str], None],
    wait_for_database: Callable[[], Coroutine[Any, Any, None]],
) -> int:
    """Run until SIGTERM/SIGINT; return the process exit code."""
    daemon = Daemon(settings, store, clock, master_key)
    loop = asyncio.get_running_loop()
    signals = asyncio.Event()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        if len(received) > 1:
            daemon.log.warning("second signal: exiting at once", signal=signum)
            os._exit(EXIT_NOW)
        signals.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)

    # header, body and idle bounds and the cap on requests at once: the api settings (keyorch.api.limits)
    runner = GuardedAppRunner(build_app(daemon, api_factory), settings.api, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:  # in use, not local, not resolvable: one sentence, exit 2
            raise listen_error(exc, host, port) from None
        except UnicodeError:  # a host name the IDNA codec refuses
            raise InvalidInput(
                f"cannot listen on {host}:{port}: {host!r} is not a host name", target="listen"
            ) from None
        bound = next((a for a in runner.addresses if isinstance(a, tuple)), (host, port))
        announce(f"http://{bound[0]}:{bound[1]}")
        daemon.log.info("listening", host=bound[0], port=bound[1])
        wait_db = asyncio.create_task(wait_for_database())
        done, _ = await asyncio.wait({wait_db, asyncio.create_task(signals.wait())}, return_when="FIRST_COMPLETED")
        if wait_db in done and wait_db.exception() is None and not signals.is_set():
            daemon.start_workers()
            await signals.wait()
        elif not wait_db.done():  # a signal while the schema is checked or migrated: end that first
            wait_db.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await wait_db
        elif isinstance(error := wait_db.exception(), KeyorchError):  # e.g. the database's master key is not here
            await site.stop()
            raise error
        grace = settings.api.grace_period_seconds
        daemon.log.info("stopping", grace_seconds=grace, in_flight=daemon.in_flight)
        await site.stop()
        stop_reading_requests(runner)
        finished = await daemon.stop_workers(grace)
        daemon.log.info(
            "stopped", clean=finished, left_in_queue=daemon.queue.depth, left_pending=len(daemon.unfinished)
        )
    finally:
        await runner.cleanup()
        await daemon.pool.aclose()
    return 0
