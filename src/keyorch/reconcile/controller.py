"""A full pass: health-check every keystore (floodgate), list each healthy one page by page, then
reconcile every key with N workers from a deduplicating work queue, retrying transient failures
with per-key backoff. Used by ``reconcile --once``, ``sync-key`` and the daemon's periodic resync.

A keystore's failure stays that keystore's: its health check and its listing each run within
``listing_timeout_seconds`` (and each call within its own deadline), and an error of any kind
closes its floodgate rather than ending the pass. A keystore that did not answer in time (or
answered nonsense to its health check) is marked down: its keys are flagged ``connection_error``
without being read one by one, while every other keystore's keys are reconciled on time. The
``keyorch_keystore_up`` gauge and :meth:`Controller.keystores_not_answering` show which.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from keyorch import metrics
from keyorch.audit import Actor
from keyorch.domain import rotation
from keyorch.domain.clock import Clock
from keyorch.domain.models import Keystore
from keyorch.logs import get_logger
from keyorch.providers.base import Observation
from keyorch.providers.errors import DeadlineExceeded, ProviderError
from keyorch.providers.limits import DEFAULT_LISTING_TIMEOUT_SECONDS
from keyorch.reconcile.batches import DEFAULT_BATCH, KeyBatches
from keyorch.reconcile.clients import ClientPool
from keyorch.reconcile.engine import LEASE_SECONDS, KeyOutcome, KeystoreListing, Listing, Reconciler
from keyorch.reconcile.queue import Backoff, WorkQueue, run_workers
from keyorch.service import rotation as rotations
from keyorch.service.context import ServiceContext
from keyorch.store.repository import Store

EXIT_IN_SYNC, EXIT_OUT_OF_SYNC, EXIT_UNREACHABLE = 0, 1, 4

ProgressHook = Callable[[int, int], None]


@dataclass
class PassSummary:
    outcomes: dict[str, KeyOutcome] = field(default_factory=dict)
    keystores_down: dict[str, str] = field(default_factory=dict)
    requests_listing: int = 0

    @property
    def keys_checked(self) -> int:
        return len(self.outcomes)

    @property
    def in_sync(self) -> int:
        return sum(1 for o in self.outcomes.values() if o.in_sync)

    @property
    def flagged(self) -> int:
        return self.keys_checked - self.in_sync

    @property
    def actions(self) -> int:
        return sum(o.actions for o in self.outcomes.values())

    @property
    def errors(self) -> int:
        return sum(o.errors for o in self.outcomes.values())

    @property
    def exit_code(self) -> int:
        if self.keystores_down or any(o.unreachable for o in self.outcomes.values()):
            return EXIT_UNREACHABLE
        return EXIT_IN_SYNC if self.flagged == 0 else EXIT_OUT_OF_SYNC

    def as_json(self) -> dict[str, object]:
        return {
            "keys_checked": self.keys_checked,
            "in_sync": self.in_sync,
            "flagged": self.flagged,
            "actions_taken": self.actions,
            "errors": self.errors,
            "keystores_down": self.keystores_down,
            "exit_code": self.exit_code,
        }


class Controller:
    def __init__(
        self,
        store: Store,
        pool: ClientPool,
        clock: Clock,
        *,
        workers: int = 8,
        attempts: int = 6,  # enough retries to outwait a dead holder's grace (store/leases.py)
        backoff: Backoff | None = None,
        batch_size: int = DEFAULT_BATCH,
        listing_timeout_seconds: float = DEFAULT_LISTING_TIMEOUT_SECONDS,
        lease_seconds: float = LEASE_SECONDS,
        rotation_min_interval: timedelta = rotation.DEFAULT_MIN_INTERVAL,
    ) -> None:
        self.store = store
        self.pool = pool
        self.clock = clock
        self.workers = workers
        self.attempts = attempts
        self.backoff = backoff or Backoff(base_seconds=0.2, max_seconds=5.0)
        self.batch_size = batch_size
        self.listing_timeout_seconds = listing_timeout_seconds
        #: a key rotates at most once in this long (setting keys.rotation_min_interval_seconds)
        self.rotation_min_interval = rotation_min_interval
        self.reconciler = Reconciler(store, pool, clock, lease_seconds=lease_seconds)
        self.log = get_logger(component="controller")
        self._checked: dict[str, str] = {}  # id -> name of the keystores the last health check saw
        #: who rotates keys on schedule: keyorch itself, audited as the scheduler
        self.scheduler = ServiceContext(
            store, Actor(rotation.SCHEDULER, "reconciler"), clock, master_key=pool.master_key
        )

    async def rotate_due(self, owns: Callable[[str], bool] = lambda _key_id: True) -> list[str]:
        """Rotate the keys whose scheduled rotation is due (those ``owns`` gives this actor), each in the audited
        transaction an on-demand rotation makes; the ids rotated. The reconcile that follows makes each rotation in
        every keystore of the key. A failure here is logged and leaves the keys due for the next pass."""
        try:
            done = await rotations.rotate_due(self.scheduler, owns, self.rotation_min_interval)
        except Exception as exc:  # the pass goes on; the keys stay due and overdue counts them
            self.log.error("scheduled rotations failed", error=f"{type(exc).__name__}: {exc}"[:500])
            return []
        for key_id, why in done.skipped.items():
            self.log.info("scheduled rotation left to the next pass", key_id=key_id, reason=why[:300])
        if done.rotated:
            self.log.info("scheduled rotations made", keys=len(done.rotated), overdue=done.overdue)
        return done.rotated

    async def keystores(self) -> list[Keystore]:
        async with self.store.read() as tx:
            return await tx.list_keystores()

    async def check_keystores(self, keystores: Sequence[Keystore]) -> dict[str, str]:
        """The floodgate: health-check every keystore at once, each within the listing deadline;
        return the ones that are down."""
        await asyncio.gather(*(self._check(ks) for ks in keystores))
        self._checked = {ks.id: ks.name for ks in keystores}
        self._publish_health()
        return {ks.id: reason for ks in keystores if (reason := self.pool.down_reason(ks.id)) is not None}

    async def _check(self, keystore: Keystore) -> None:
        try:
            async with asyncio.timeout(self.listing_timeout_seconds):
                await self.pool.check(keystore)
        except TimeoutError:
            self._mark_down(keystore, f"its health check did not finish within {self._listing_deadline}")
        except Exception as exc:  # a broken adapter closes its own floodgate, not the pass
            self.log.error("health check failed", keystore=keystore.name, error=f"{type(exc).__name__}: {exc}"[:300])
            self._mark_down(keystore, f"its health check failed ({type(exc).__name__})")

    @property
    def _listing_deadline(self) -> str:
        return f"{self.listing_timeout_seconds:g} s (reconcile.listing_timeout_seconds)"

    def _mark_down(self, keystore: Keystore, why: str) -> None:
        reason = f"keystore {keystore.name} not_responding: {why}"
        self.log.warning("keystore marked down for this pass", keystore=keystore.name, reason=reason)
        self.pool.mark_down(keystore.id, reason)

    def keystores_not_answering(self) -> dict[str, str]:
        """Name -> reason of every keystore the last health check or listing found down."""
        return {name: reason for ks, name in self._checked.items() if (reason := self.pool.down_reason(ks))}

    def _publish_health(self) -> None:
        metrics.set_keystores_up({name: self.pool.down_reason(ks) is None for ks, name in self._checked.items()})

    async def list_keystore(self, keystore: Keystore) -> dict[str, Observation] | None:
        """Every key of one keystore, page by page, by managed key id, within the listing deadline;
        None if the listing failed. A keystore that did not list in time is marked down."""
        try:
            async with asyncio.timeout(self.listing_timeout_seconds):
                client = await self.pool.client(keystore)
                found: dict[str, Observation] = {}
                async for observation in client.list_keys():
                    if observation.managed_key_id:
                        found[observation.managed_key_id] = observation
            return found
        except TimeoutError:
            self._mark_down(keystore, f"its listing did not finish within {self._listing_deadline}")
            return None
        except DeadlineExceeded as exc:  # it stopped answering: reading its keys one by one would stall too
            self._mark_down(keystore, f"its listing stopped: {exc.message}")
            return None
        except ProviderError as exc:
            # The keystore passed its health check, so one failed page is no reason to close the
            # floodgate: its keys are observed one by one instead (each read with its own retries).
            # A listing is all-or-nothing (AWS: one DescribeKey per key), so under a modest error
            # rate a large keystore's listing fails most passes; closing the floodgate then left
            # every key of that keystore unreconciled, pass after pass.
            self.log.warning("listing failed; observing keys one by one", keystore=keystore.name, error=exc.message)
            return None
        except Exception as exc:  # a broken adapter closes its own floodgate, not the pass
            self.log.error("listing failed", keystore=keystore.name, error=f"{type(exc).__name__}: {exc}"[:300])
            self._mark_down(keystore, f"its listing failed ({type(exc).__name__})")
            return None

    async def gather_listing(self, keystores: Sequence[Keystore], down: dict[str, str]) -> Listing:
        """Every healthy keystore listed at once, each within its own deadline and stamped with the time it
        started (the age of its observations); a keystore marked down meanwhile is added to ``down``."""
        healthy = [ks for ks in keystores if ks.id not in down]
        taken_at = self.clock.now()
        listed = await asyncio.gather(*(self.list_keystore(ks) for ks in healthy))
        for ks in healthy:
            if (reason := self.pool.down_reason(ks.id)) is not None:
                down[ks.id] = reason
        self._publish_health()
        return {
            ks.id: KeystoreListing(taken_at, found)
            for ks, found in zip(healthy, listed, strict=True)
            if found is not None
        }

    async def key_ids(self, refs: Sequence[str] | None = None) -> list[str]:
        async with self.store.read() as tx:
            if refs:
                return [(await tx.key(ref)).id for ref in refs]
            return await tx.key_ids_with_targets()

    async def run_once(
        self,
        *,
        refs: Sequence[str] | None = None,
        push: bool = False,
        use_listing: bool = True,
        progress: ProgressHook | None = None,
    ) -> PassSummary:
        """One pass over every key (or those of ``refs``); a full pass first rotates the keys due on schedule."""
        if not refs:
            await self.rotate_due()
        keystores = await self.keystores()
        down = await self.check_keystores(keystores)
        listing = await self.gather_listing(keystores, down) if use_listing else None
        summary = PassSummary(keystores_down=dict(down))
        ids = await self.key_ids(refs)
        queue = WorkQueue(backoff=self.backoff)
        tries: dict[str, int] = {}
        batches = KeyBatches(self.reconciler.load_many, ids, self.batch_size)

        async def handle(key_id: str) -> None:
            tries[key_id] = tries.get(key_id, 0) + 1
            first = tries[key_id] == 1
            try:
                # the first try works from the key's batch and the pass's listing; a retry reads afresh
                loaded = await batches.take(key_id) if first else None
                outcome = await self.reconciler.reconcile_key(
                    key_id, push=push, listing=listing if first else None, loaded=loaded
                )
            except Exception as exc:  # one bad key must not stop the pass
                self.log.error("reconcile failed", key_id=key_id, error=f"{type(exc).__name__}: {exc}"[:500])
                if tries[key_id] < self.attempts:
                    queue.retry(key_id)
                return
            summary.outcomes[key_id] = outcome
            retry = outcome.transient_failure and not self._only_floodgated(outcome, down)
            if retry and tries[key_id] < self.attempts:
                queue.retry(key_id)
                return
            queue.forget(key_id)
            if progress is not None:
                progress(len(summary.outcomes), len(ids))

        for key_id in ids:
            queue.add(key_id)
        workers = asyncio.create_task(run_workers(queue, self.workers, handle))
        try:
            await queue.join()
        finally:
            queue.close()
            await workers
        if progress is not None:
            progress(len(ids), len(ids))
        return summary

    @staticmethod
    def _only_floodgated(outcome: KeyOutcome, down: dict[str, str]) -> bool:
        """Targets on a keystore that failed its health check are not retried within this pass."""
        return (
            all(t.keystore_id in down for t in outcome.targets if t.unreachable)
            and not outcome.stale
            and all(t.unreachable or t.target.sync_flag.value != "pending" for t in outcome.targets)
        )
