"""Reconcile one managed key: observe every target, plan, act, record.

``reconcile_key`` is level-triggered: it reads the desired state and observes each keystore every
time, whatever triggered it. Before each mutating provider call the intent is journalled, after it
the result, so a process killed in between re-observes on restart and, thanks to the adapters'
deterministic identities, never repeats a side effect blindly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import NamedTuple

from keyorch import metrics
from keyorch.domain.clock import Clock
from keyorch.domain.models import Keystore, ManagedKey, SyncFlag, Target
from keyorch.logs import get_logger
from keyorch.providers import fence, mutations
from keyorch.providers.base import PER_VERSION_KINDS, KeyRef, KeySpec, KeystoreClient, Observation, primary_version
from keyorch.providers.errors import NotFound, ProviderError
from keyorch.reconcile.clients import ClientPool
from keyorch.reconcile.planner import Action, Observed, TargetPlan, listing_decides, plan_target
from keyorch.reconcile.provider_audit import ProviderCall, audit_provider_calls
from keyorch.store import leases
from keyorch.store.leases import Lease
from keyorch.store.repository import Store, Transaction

#: How long an actor's claim on a key lasts (store/leases.py); it is released as soon as the results
#: are recorded, so this bounds only how long a key stays blocked after its holder died.
LEASE_SECONDS = 30.0


@dataclass(frozen=True)
class KeystoreListing:
    """Every key one keystore listed, by managed key id, and when the listing started: each of its
    observations is at least that old (:func:`keyorch.reconcile.planner.listing_decides`)."""

    taken_at: datetime
    found: dict[str, Observation]


#: Observations gathered by a listing pass: keystore id -> its listing.
Listing = dict[str, KeystoreListing]


def _versions_unread(key: ManagedKey, keystore: Keystore, listed: Observation | None) -> bool:
    """Whether a listing's observation leaves a rotated key's older versions unjudged: the keystore keeps a state
    per version but the listing reported the primary's only (Key Vault's and Cloud KMS's key listings do). Such a
    key is read afresh, versions and all, so a re-enabled older version is seen on every pass."""
    return (
        listed is not None
        and listed.versions is None
        and key.current_version > 1
        and keystore.type in PER_VERSION_KINDS
    )


class Loaded(NamedTuple):
    """A key as read from the store, with the keystores its targets name (by id), and the keystores
    where its latest create attempt is in doubt (failed or interrupted: it may have made a key)."""

    key: ManagedKey
    keystores: dict[str, Keystore]
    creates_in_doubt: frozenset[str] = frozenset()
    #: keystores whose latest call was interrupted: only a fresh read (no listing) decides for them
    interrupted: frozenset[str] = frozenset()


RETRY_BASE = timedelta(seconds=5)
RETRY_MAX = timedelta(minutes=30)


@dataclass
class TargetOutcome:
    keystore_id: str
    keystore_name: str
    plan: TargetPlan
    actions_done: list[Action] = field(default_factory=list)
    error: str | None = None
    unreachable: bool = False

    @property
    def target(self) -> Target:
        return self.plan.target


@dataclass
class KeyOutcome:
    key_id: str
    label: str
    state: str
    targets: list[TargetOutcome]
    stale: bool = False  # the desired state moved while we worked: reconcile again

    @property
    def in_sync(self) -> bool:
        """Every target in line, and recorded so (a stale outcome decided nothing)."""
        return not self.stale and all(t.target.sync_flag is SyncFlag.IN_SYNC for t in self.targets)

    @property
    def unreachable(self) -> bool:
        return any(t.unreachable for t in self.targets)

    @property
    def actions(self) -> int:
        return sum(len(t.actions_done) for t in self.targets)

    @property
    def errors(self) -> int:
        return sum(1 for t in self.targets if t.error)

    @property
    def transient_failure(self) -> bool:
        """Worth retrying soon: something keyorch was asked to do is still pending."""
        return self.stale or any(t.target.sync_flag is SyncFlag.PENDING or t.unreachable for t in self.targets)


def _material(target: Target) -> Target:
    """A target record without its timestamps: what decides whether it needs writing."""
    return replace(target, updated_at=None, next_attempt_at=None)


class LeaseLost(ProviderError):
    """This actor's lease on the key ran out before a call: the call is not sent (fencing)."""

    transient = True

    def __init__(self, *, cut_off: bool = False) -> None:
        if cut_off:
            super().__init__(
                "this actor's lease on the key ran out during the call, which was cut off there (it may have been "
                "carried out; the key is observed again before anything else is done)",
                sent=True,
            )
        else:
            super().__init__(
                "this actor's lease on the key ran out before the call, which was not sent (another actor may "
                "hold the key now)",
                sent=False,
            )


class _Holding:
    """The lease an actor holds while it acts on one key: renewed before a call when half of it is
    spent, released (with the interrupted intents marked failed) when acting ends in an exception."""

    def __init__(self, store: Store, lease: Lease, seconds: float) -> None:
        self.store = store
        self.lease = lease
        self.seconds = seconds
        self._lock = asyncio.Lock()
        self.lost = False

    async def keep(self) -> bool:
        """Whether a call may be sent now: the lease is live here, renewed first if half spent."""
        async with self._lock:
            if self.lost or not self.lease.live_locally():
                self.lost = True
                return False
            if self.lease.remaining() > self.seconds / 2:
                return True
            async with self.store.transaction() as tx:
                renewed = await leases.renew(tx.conn, self.lease, self.seconds)
            if renewed is None:
                self.lost = True
                return False
            self.lease = renewed
            return True

    async def abandon(self, intent_ids: list[int], now: datetime) -> None:
        async with self.store.transaction() as tx:
            await tx.finish_intents([(i, "failed", "interrupted by an internal error") for i in intent_ids], now)
            await leases.release(tx.conn, self.lease)


def _rotation_failure(exc: ProviderError, sent: bool) -> str:
    """The outcome a failed rotation attempt is counted with (``keyorch_rotations_total``): ``refused`` when the
    provider said no (a 4xx that is not worth retrying soon) or the adapter refused before sending, ``in_doubt``
    when a rotation request went out and no answer says what became of it, ``failed`` when nothing was sent."""
    answered_no = not exc.transient and exc.status is not None and 400 <= exc.status < 500
    if answered_no:
        return "refused"
    if sent:
        return "in_doubt"
    return "failed" if exc.transient else "refused"


class Reconciler:
    def __init__(
        self, store: Store, clients: ClientPool, clock: Clock, *, lease_seconds: float = LEASE_SECONDS
    ) -> None:
        self.store = store
        self.clients = clients
        self.clock = clock
        self.lease_seconds = lease_seconds

    async def load(self, key_ref: str) -> Loaded:
        async with self.store.read() as tx:
            key = await tx.key(key_ref)
            keystores = await tx.keystores_by_id(t.keystore_id for t in key.targets)
            doubtful, interrupted = await tx.calls_in_doubt_many([key.id])
        return Loaded(key, keystores, frozenset(doubtful.get(key.id, ())), frozenset(interrupted.get(key.id, ())))

    async def load_many(self, key_ids: Sequence[str]) -> dict[str, Loaded]:
        """Several keys and their keystores in one read (a pass reads its keys in batches this way);
        a key removed meanwhile is left out."""
        async with self.store.read() as tx:
            found = await tx.keys_by_id(key_ids)
            keystores = await tx.keystores_by_id(t.keystore_id for key in found for t in key.targets)
            doubtful, interrupted = await tx.calls_in_doubt_many([key.id for key in found])
        return {
            key.id: Loaded(
                key,
                {t.keystore_id: keystores[t.keystore_id] for t in key.targets},
                frozenset(doubtful.get(key.id, ())),
                frozenset(interrupted.get(key.id, ())),
            )
            for key in found
        }

    async def observe(
        self, key: ManagedKey, target: Target, keystore: Keystore, listing: Listing | None, in_doubt: bool = False
    ) -> tuple[Observation | None, str | None]:
        """(observation or None if absent, connection error or None).

        A listing decides only for a target whose record it is newer than (see ``listing_decides``);
        any other target is read afresh. Where the target's latest create is in doubt and the
        keystore shows no key, the key that create may have made is looked for (and adopted by its
        deterministic identity) before "absent" can decide anything. An adopted target's key carries no keyorch
        identity, so no listing finds it: it is always read by its recorded id."""
        if listing is not None and keystore.id in listing and not in_doubt and not target.adopted:
            taken = listing[keystore.id]
            listed = taken.found.get(key.id)
            if listing_decides(target, taken.taken_at) and not _versions_unread(key, keystore, listed):
                return listed, None
        down = self.clients.down_reason(keystore.id)
        if down is not None:
            return None, down
        try:
            client = await self.clients.client(keystore)
            observation = await client.get_key(KeyRef(target.key_id_in_keystore, key.id, target.label_in_keystore))
            if observation is None and in_doubt:
                observation = await client.find_in_doubt(key.id, target.label_in_keystore)
            return observation, None
        except NotFound:
            return None, None
        except ProviderError as exc:
            if exc.transient or (exc.exit_code == 4 and exc.http_status in (502, 503)):
                return None, exc.message
            raise

    async def plan(self, key_ref: str, *, push: bool = False, listing: Listing | None = None) -> KeyOutcome:
        """Observe and plan without acting (``keyorch plan``)."""
        return await self.plan_loaded(await self.load(key_ref), push=push, listing=listing)

    async def plan_loaded(self, loaded: Loaded, *, push: bool = False, listing: Listing | None = None) -> KeyOutcome:
        """Observe and plan a key already read, without acting: ``loaded.key`` may be the key as an action would
        leave it (the console's confirmations plan what a deactivate or destroy would do in each keystore)."""
        return KeyOutcome(
            loaded.key.id, loaded.key.label, loaded.key.state.value, await self._plan_all(loaded, push, listing)
        )

    async def _plan_all(self, loaded: Loaded, push: bool, listing: Listing | None) -> list[TargetOutcome]:
        key, keystores, doubtful, interrupted = loaded
        return list(
            await asyncio.gather(
                *(
                    self._plan_one(
                        key,
                        t,
                        keystores[t.keystore_id],
                        push,
                        listing if t.keystore_id not in interrupted else None,
                        t.keystore_id in doubtful,
                    )
                    for t in key.targets
                )
            )
        )

    async def _plan_one(
        self, key: ManagedKey, target: Target, keystore: Keystore, push: bool, listing: Listing | None, in_doubt: bool
    ) -> TargetOutcome:
        now = self.clock.now()
        if not keystore.connected:
            return TargetOutcome(keystore.id, keystore.name, plan_target(key, target, keystore, None, now))
        try:
            observation, unreachable = await self.observe(key, target, keystore, listing, in_doubt)
        except ProviderError as exc:
            plan = plan_target(key, target, keystore, None, now, unreachable=exc.message)
            return TargetOutcome(keystore.id, keystore.name, plan, error=exc.message, unreachable=True)
        plan = plan_target(key, target, keystore, observation, now, push=push, unreachable=unreachable)
        return TargetOutcome(keystore.id, keystore.name, plan, unreachable=unreachable is not None)

    async def reconcile_key(
        self, key_ref: str, *, push: bool = False, listing: Listing | None = None, loaded: Loaded | None = None
    ) -> KeyOutcome:
        """Observe, plan and act for every target of one key, with at most three transactions:
        read the key (unless ``loaded`` brings it, read in a batch); claim the key's lease and journal
        the intents of every mutating call (before any is made); record the results, the targets' new
        status, the intents' outcome and the calls' audit records, and release the lease (after all
        are made).

        The journal's transaction first checks that the key's desired state is still the one read:
        when it moved meanwhile (someone activated, deactivated or destroyed the key), nothing is
        done and the outcome is ``stale``, to be reconciled again from a fresh read. So no provider
        call ever acts on a desired state that is no longer current. When another actor holds the
        key's lease (another worker, an API sync, a CLI one-shot, another replica), nothing is done
        either and the outcome is ``stale``: one actor at a time acts on a key. Results are recorded
        only while the lease is still live; a holder that lost it (paused, cut off, too slow) records
        nothing but the outcome of its calls, and starts no call once the lease's local deadline passed.
        """
        loaded = loaded if loaded is not None else await self.load(key_ref)
        key, keystores, _, _ = loaded
        outcomes = await self._plan_all(loaded, push, listing)
        before = {t.keystore_id: t for t in key.targets}
        acting = [o for o in outcomes if o.plan.actions]
        intents: dict[str, int] = {}
        lease: Lease | None = None
        if acting:

            async def journal(tx: Transaction) -> tuple[Lease, dict[str, int]] | None:
                if await tx.key_generation(key.id, lock=True) != key.generation:
                    return None  # the desired state moved since the key was read: act on nothing, read it again
                stamps = await tx.target_stamps(key.id)
                if any(stamps.get(o.keystore_id) != before[o.keystore_id].updated_at for o in acting):
                    # Another actor recorded a target since it was read (and observed): the observations
                    # this plan rests on may be older than what it recorded. Act on nothing, read again.
                    return None
                claimed = await leases.claim(tx.conn, key.id, self.lease_seconds)
                if claimed is None:
                    return None
                started = [
                    (o.keystore_id, "+".join(a.value for a in o.plan.actions), before[o.keystore_id].attempts + 1)
                    for o in acting
                ]
                return claimed, await tx.start_intents(key.id, key.generation, started, self.clock.now())

            journalled = await self.store.run(journal, what=f"the journal of key {key.id}")
            if journalled is None:
                return KeyOutcome(key.id, key.label, key.state.value, outcomes, stale=True)
            lease, intents = journalled
            calls: list[ProviderCall] = []
            holding = _Holding(self.store, lease, self.lease_seconds)
            try:
                await asyncio.gather(
                    *(
                        self._execute(key, before[o.keystore_id], keystores[o.keystore_id], o, holding, calls, loaded)
                        for o in acting
                    )
                )
            except Exception:
                await holding.abandon(list(intents.values()), self.clock.now())
                raise
            lease = holding.lease
        changed = [o for o in outcomes if _material(o.target) != _material(before[o.keystore_id])]
        # a create in doubt is settled once the target is in line (the key it may have made was found
        # and is in line, or the search found none), and so is an interrupted call (read afresh): the
        # journal says so even if the record is unchanged
        doubts = loaded.creates_in_doubt | loaded.interrupted
        settled = [o.keystore_id for o in outcomes if o.keystore_id in doubts and o.plan.in_sync]
        if not changed and not intents and not settled:
            return KeyOutcome(key.id, key.label, key.state.value, outcomes)
        now = self.clock.now()

        async def record(tx: Transaction) -> bool:
            generation = await tx.key_generation(key.id, lock=True)
            await tx.finish_intents(
                [(intents[o.keystore_id], "failed" if o.error else "succeeded", o.error) for o in acting], now
            )
            if lease is not None:
                await audit_provider_calls(tx, calls, key, keystores, lease, now, self.clients.master_key)
                mine = await leases.is_live(tx.conn, lease)
                await leases.release(tx.conn, lease)
            else:  # recording observations only: not while another actor is acting on the key
                brief = await leases.claim(tx.conn, key.id, self.lease_seconds)
                mine = brief is not None
                if brief is not None:
                    await leases.release(tx.conn, brief)
            written = mine and generation == key.generation
            if written:
                await tx.update_targets(key.id, key.generation, [o.target for o in changed])
                in_line = {o.keystore_id for o in changed if o.target.sync_flag is SyncFlag.IN_SYNC}
                await tx.resolve_intents(key.id, in_line | set(settled), now)
            return written

        written = await self.store.run(record, what=f"the results of reconciling key {key.id}")
        return KeyOutcome(key.id, key.label, key.state.value, outcomes, stale=not written)

    async def _execute(
        self,
        key: ManagedKey,
        target: Target,
        keystore: Keystore,
        outcome: TargetOutcome,
        holding: _Holding,
        calls: list[ProviderCall],
        loaded: Loaded,
    ) -> None:
        """Run a target's planned actions in order, then observe again: the result decides the status."""
        bound = get_logger(key_id=key.id, keystore=keystore.name, keystore_id=keystore.id)
        client = await self.clients.client(keystore)
        ref = KeyRef(target.key_id_in_keystore or outcome.target.key_id_in_keystore, key.id, target.label_in_keystore)
        in_doubt = keystore.id in loaded.creates_in_doubt
        current = target  # with the version it serves, as the actions change it
        for action in outcome.plan.actions:
            if not await holding.keep():
                # Fencing: past the lease's deadline another actor may hold the key; no call is sent.
                self._failed(outcome, target, action, LeaseLost())
                return
            try:
                # The call (every attempt of it) ends by the lease's local deadline: after it, no attempt
                # starts, whatever happened meanwhile (a pause: timers fire on waking, before any retry).
                # And no request's bytes leave after it either (a pause between the check and the write).
                async with asyncio.timeout(holding.lease.remaining()) as deadline:
                    with fence.send_by(holding.lease.deadline):
                        if action is Action.ROTATE:
                            current = await self._rotate(client, key, keystore, ref, current, outcome)
                            observation = None
                        else:
                            observation = await self._act(client, action, key, ref, in_doubt=in_doubt)
            except TimeoutError:
                if not deadline.expired():
                    raise
                bound.warning("action cut off at the lease's deadline", action=action.value)
                cut = LeaseLost(cut_off=True)
                calls.append(ProviderCall(keystore.id, action, ref.key_id_in_keystore, cut.message))
                self._failed(outcome, target, action, cut)
                holding.lost = True
                return
            except ProviderError as exc:
                bound.warning("action failed", action=action.value, error=exc.message, transient=exc.transient)
                calls.append(ProviderCall(keystore.id, action, ref.key_id_in_keystore, exc.message))
                self._failed(outcome, target, action, exc)
                return
            outcome.actions_done.append(action)
            if action is Action.CREATE:  # a key made now is made at the key's current version
                current = current.with_changes(key_version=key.current_version, primary_version_id=None)
            if observation is not None:
                ref = KeyRef(observation.key_id_in_keystore, key.id, target.label_in_keystore)
            calls.append(ProviderCall(keystore.id, action, ref.key_id_in_keystore, None))
            bound.debug("action done", action=action.value)  # each call is in the audit trail too
        try:
            after = await client.get_key(ref)
        except NotFound:
            after = None
        except ProviderError as exc:
            self._failed(outcome, target, outcome.plan.actions[-1], exc)
            return
        final = plan_target(key, current, keystore, after, self.clock.now())
        if final.actions:  # still out of line after acting: keep the intent, retry later
            final = replace(final, target=self._with_retry(final.target, target, "not yet in line after acting"))
        outcome.plan = final

    async def _act(
        self, client: KeystoreClient, action: Action, key: ManagedKey, ref: KeyRef, *, in_doubt: bool = False
    ) -> Observation | None:
        if action is Action.CREATE:
            spec = KeySpec(
                algorithm=key.algorithm,
                size=key.size,
                name=key.name,
                labels={"keyorch-label": key.label},
                name_in_keystore=ref.name_in_keystore,
            )
            return await client.ensure_key(key.id, spec, in_doubt=in_doubt)
        if action is Action.ENABLE:
            return await client.enable(ref, older_versions=not key.deactivate_on_rotation)
        if action is Action.DISABLE:
            return await client.disable(ref)
        if action is Action.DISABLE_OLDER:
            await client.disable_older_versions(ref)
            return None
        return await client.schedule_destruction(ref, force=key.destroy_force)

    async def _rotate(
        self,
        client: KeystoreClient,
        key: ManagedKey,
        keystore: Keystore,
        ref: KeyRef,
        current: Target,
        outcome: TargetOutcome,
    ) -> Target:
        """Make the keystore's primary version a new one, exactly once per rotation, crash or lost answer
        notwithstanding: the rotation is sent only while the primary is still the recorded base, and a base
        first learned here is recorded durably before the rotation is sent (so a rotation whose record was
        lost is recognised afterwards: the primary is no longer the base). Each attempt is counted by its
        outcome (``keyorch_rotations_total``): whether a rotation request was sent tells a rotation made now
        from one recognised."""
        with mutations.counting() as sent:
            try:
                base = current.primary_version_id
                if base is None:
                    base = primary_version(await client.list_versions(ref)).version_id
                    async with self.store.transaction() as tx:
                        await tx.note_rotation_base(key.id, keystore.id, base)
                    # a failure from here on is recorded with the base, so the next attempt starts from it too
                    target = outcome.plan.target.with_changes(primary_version_id=base)
                    outcome.plan = replace(outcome.plan, target=target)
                made = await client.rotate(ref, from_version=base)
            except ProviderError as exc:
                metrics.record_rotation(keystore.name, _rotation_failure(exc, bool(sent)))
                raise
            except BaseException:  # cut off at the lease's deadline, or stopped
                metrics.record_rotation(keystore.name, "in_doubt" if sent else "failed")
                raise
        metrics.record_rotation(keystore.name, "rotated" if sent else "recognised")
        async with self.store.transaction() as tx:  # for `key versions`: each version's id in this keystore
            await tx.note_version_ids(
                key.id, keystore.id, {current.key_version: base, key.current_version: made.version_id}
            )
        return current.with_changes(key_version=key.current_version, primary_version_id=made.version_id)

    def _failed(self, outcome: TargetOutcome, target: Target, action: Action, exc: ProviderError) -> TargetOutcome:
        message = f"{action.value} failed: {exc.message}"[:1000]
        record = self._with_retry(outcome.target, target, message)
        if not exc.transient:
            # A refusal (e.g. Key Protect: registrations, retention, dual authorization): surfaced
            # as out of sync with the provider's reason; still retried, on the long backoff.
            record = record.with_changes(sync_flag=SyncFlag.OUT_OF_SYNC)
        outcome.plan = replace(outcome.plan, target=record)
        outcome.error = message
        outcome.unreachable = exc.transient and outcome.plan.observed is Observed.UNREACHABLE
        return outcome

    def _with_retry(self, record: Target, before: Target, message: str) -> Target:
        attempts = before.attempts + 1
        delay = min(RETRY_MAX, RETRY_BASE * (2 ** min(attempts - 1, 16)))
        return record.with_changes(last_error=message, attempts=attempts, next_attempt_at=self._now() + delay)

    def _now(self) -> datetime:
        return self.clock.now()
