"""One daemon's part in a cluster of daemons sharing a PostgreSQL database (docs/ha.md).

* **Members.** Each daemon heartbeats a row of ``replicas``; the live rows are the members.
* **Shares.** A key belongs to the member that ranks highest for it (rendezvous hashing over the
  members' ids): every member computes the same owner from the same member list, and when a member
  comes or goes only the keys it owned move. The owner's periodic work covers its share only.
* **Changes.** A change accepted by any daemon is announced with ``NOTIFY`` (the key's id); the
  key's owner queues it at once. The daemon that accepted it also queues it when it cannot count on
  the announcement (it owns the key, or it is not listening).
* **The listing** of every keystore is a cluster job: one member claims it per interval, lists, stores
  the listings (``keystore_listings``) and announces them; every member plans its share from them.

None of this is what keeps a key from being acted on twice: only a key's lease does
(store/leases.py), so a member's stale view of the others costs some duplicate reads, never a
duplicate provider call. On SQLite there is one daemon (a file lock says so) and nothing is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg

from keyorch.domain.states import KeyState
from keyorch.logs import get_logger
from keyorch.providers.base import Observation
from keyorch.reconcile.engine import KeystoreListing, Listing
from keyorch.store import cluster as db
from keyorch.store.leases import new_holder
from keyorch.store.repository import Store

CHANGES_CHANNEL = "keyorch_changes"
LISTING_CHANNEL = "keyorch_listing"
LISTING_JOB = "listing"
#: How long a lost database connection keeps the listener down before it tries again.
RECONNECT_SECONDS = 1.0


def _rank(member: str, key_id: str) -> bytes:
    return hashlib.sha256(f"{member}\0{key_id}".encode()).digest()


def owner(key_id: str, members: list[str]) -> str:
    """The member whose share ``key_id`` is (rendezvous hashing)."""
    return max(members, key=lambda member: _rank(member, key_id))


def encode_listing(found: dict[str, Observation]) -> str:
    entries = {
        mk: [
            o.key_id_in_keystore,
            o.state.value,
            o.destruction_pending,
            o.pending_until.isoformat() if o.pending_until else None,
            o.raw_state,
        ]
        for mk, o in found.items()
    }
    return json.dumps(entries, separators=(",", ":"))


def decode_listing(text: str) -> dict[str, Observation]:
    found: dict[str, Observation] = {}
    for mk, (key_id, state, pending, until, raw) in json.loads(text).items():
        found[mk] = Observation(
            key_id_in_keystore=str(key_id),
            managed_key_id=mk,
            state=KeyState(str(state)),
            destruction_pending=bool(pending),
            pending_until=datetime.fromisoformat(until) if until else None,
            raw_state=str(raw),
        )
    return found


class Cluster:
    """Membership, shares and announcements for one daemon."""

    def __init__(
        self,
        store: Store,
        *,
        heartbeat_seconds: float,
        on_key_changed: Callable[[str], None],
        on_members_changed: Callable[[], None],
        on_listing: Callable[[], None],
    ) -> None:
        self.store = store
        self.replica_id = new_holder()
        self.shared = store.engine.dialect.name == "postgresql"
        self.heartbeat_seconds = heartbeat_seconds
        self.members: list[str] = [self.replica_id]
        self.listening = False
        self._on_key_changed = on_key_changed
        self._on_members_changed = on_members_changed
        self._on_listing = on_listing
        self._tasks: set[asyncio.Task[None]] = set()
        self._listing_run: int | None = None  # the listing job's last run this daemon took
        self.log = get_logger(component="cluster", replica=self.replica_id)

    @property
    def member_ttl(self) -> float:
        """A member that missed three heartbeats is gone."""
        return 3 * self.heartbeat_seconds

    def owns(self, key_id: str) -> bool:
        return not self.shared or owner(key_id, self.members) == self.replica_id

    # --- membership ----------------------------------------------------------------------------

    async def beat(self) -> None:
        if not self.shared:
            return
        async with self.store.transaction() as tx:
            members = await db.heartbeat(tx.conn, self.replica_id, self.member_ttl)
        if self.replica_id not in members:  # expired and deleted between our two statements: count us in
            members = sorted([*members, self.replica_id])
        if members != self.members:
            self.log.info(
                "members changed",
                members=len(members),
                joined=sorted(set(members) - set(self.members)),
                left=sorted(set(self.members) - set(members)),
            )
            self.members = members
            self._on_members_changed()

    async def leave(self) -> None:
        if self.shared:
            async with self.store.transaction() as tx:
                await db.leave(tx.conn, self.replica_id)

    async def run(self, stopping: asyncio.Event) -> None:
        """Heartbeat and listen until ``stopping``; then leave the cluster."""
        if not self.shared:
            return
        listener = asyncio.create_task(self._listen(stopping))
        try:
            while not stopping.is_set():
                try:
                    await self.beat()
                except Exception as exc:  # the database is away: keep the last view; leases stay the guard
                    self.log.warning("heartbeat failed", error=f"{type(exc).__name__}: {exc}"[:300])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), timeout=self.heartbeat_seconds)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener
            with contextlib.suppress(Exception):
                await self.leave()

    # --- announcements -------------------------------------------------------------------------

    def announce_change(self, key_id: str) -> None:
        """Tell the other members (the key's owner) that ``key_id`` changed; fire and forget."""
        if self.shared:
            self._spawn(self._notify(CHANGES_CHANNEL, f"{key_id} {self.replica_id}"))

    def announce_listing(self) -> None:
        if self.shared:
            self._spawn(self._notify(LISTING_CHANNEL, self.replica_id))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify(self, channel: str, payload: str) -> None:
        from sqlalchemy import func, select

        try:
            async with self.store.transaction() as tx:
                await tx.conn.execute(select(func.pg_notify(channel, payload)))
        except Exception as exc:  # the owner still gets the key at its next listing
            self.log.warning("announcement failed", channel=channel, error=f"{type(exc).__name__}: {exc}"[:300])

    def _received(self, channel: str, payload: str) -> None:
        if channel == LISTING_CHANNEL:
            if payload != self.replica_id:
                self._on_listing()
            return
        key_id, _, sender = payload.partition(" ")
        if sender != self.replica_id and key_id and self.owns(key_id):
            self._on_key_changed(key_id)

    async def _listen(self, stopping: asyncio.Event) -> None:
        """LISTEN on a connection of its own, reconnecting when it drops. While it is down, changes
        accepted here are queued here too (``listening`` is False), and the owner of a change accepted
        elsewhere gets it at the next listing."""
        while not stopping.is_set():
            try:
                await self._listen_until_lost(stopping)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log.warning("listener down", error=f"{type(exc).__name__}: {exc}"[:300])
            finally:
                self.listening = False
            if not stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), timeout=RECONNECT_SECONDS)

    async def _listen_until_lost(self, stopping: asyncio.Event) -> None:
        lost = asyncio.Event()

        def deliver(_conn: Any, _pid: int, channel: str, payload: str) -> None:
            self._received(channel, payload)

        # A connection of its own, outside the pool and never inside a transaction (a pooled one would
        # count as idle in a transaction and be ended by the server's limit, store/engine.py).
        dsn = self.store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        conn = await asyncpg.connect(dsn)
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            for channel in (CHANGES_CHANNEL, LISTING_CHANNEL):
                await conn.add_listener(channel, deliver)
            self.listening = True
            self._on_members_changed()  # what was announced while not listening: queue the share again
            waits = [asyncio.create_task(e.wait()) for e in (lost, stopping)]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
        finally:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)

    # --- the shared listing -----------------------------------------------------------------------

    async def claim_listing(self, ttl: float) -> db.JobClaim | None:
        async with self.store.transaction() as tx:
            return await db.claim_job(tx.conn, LISTING_JOB, self.replica_id, ttl)

    async def keep_listing(self, job: db.JobClaim, ttl: float) -> bool:
        async with self.store.transaction() as tx:
            return await db.renew_job(tx.conn, job, ttl)

    async def publish_listing(self, job: db.JobClaim, listing: Listing, next_in: float) -> bool:
        """Store every keystore's listing and free the job until ``next_in`` seconds from now, in one
        transaction that commits only while the claim is still ours; then announce it."""
        async with self.store.transaction() as tx:
            if not await db.renew_job(tx.conn, job, next_in):
                return False
            await db.drop_listings(tx.conn, keep=list(listing))
            for keystore_id, listed in listing.items():
                await db.save_listing(tx.conn, keystore_id, listed.taken_at, encode_listing(listed.found), job.holder)
            await db.finish_job(tx.conn, job, next_in)
        self._listing_run = job.epoch
        self.announce_listing()
        return True

    async def release_listing(self, job: db.JobClaim, retry_in: float) -> None:
        with contextlib.suppress(Exception):
            async with self.store.transaction() as tx:
                await db.finish_job(tx.conn, job, retry_in)

    async def newer_listing(self, keystore_ids: list[str]) -> Listing | None:
        """The listings stored by a run of the listing job this daemon has not taken yet, else None. A
        keystore whose listing failed in that run has none stored: its keys are observed one by one."""
        async with self.store.read() as tx:
            run = await db.finished_runs(tx.conn, LISTING_JOB)
            if run is None or run == self._listing_run:
                return None
            stored = await db.load_listings(tx.conn, keystore_ids)
        self._listing_run = run
        return {ks: KeystoreListing(taken_at, decode_listing(text)) for ks, (taken_at, text) in stored.items()}
