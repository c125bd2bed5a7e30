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

from keyorch.domain.clock import Clock
from keyorch.domain.models import Keystore, ManagedKey, SyncFlag, Target
from keyorch.logs import get_logger
from keyorch.providers.base import KeyRef, KeySpec, KeystoreClient, Observation
from keyorch.providers.errors import NotFound, ProviderError
from keyorch.reconcile.clients import ClientPool
from keyorch.reconcile.planner import Action, Observed, TargetPlan, plan_target
from keyorch.store.repository import Store

#: Observations gathered by a listing pass: keystore id -> managed key id -> observation.
Listing = dict[str, dict[str, Observation]]
#: A key as read from the store, with the keystores its targets name (by id).
Loaded = tuple[ManagedKey, dict[str, Keystore]]

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
        return all(t.target.sync_flag is SyncFlag.IN_SYNC for t in self.targets)

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


class Reconciler:
    def __init__(self, store: Store, clients: ClientPool, clock: Clock) -> None:
        self.store = store
        self.clients = clients
        self.clock = clock

    async def load(self, key_ref: str) -> Loaded:
        async with self.store.read() as tx:
            key = await tx.key(key_ref)
            keystores = await tx.keystores_by_id(t.keystore_id for t in key.targets)
        return key, keystores

    async def load_many(self, key_ids: Sequence[str]) -> dict[str, Loaded]:
        """Several keys and their keystores in one read (a pass reads its keys in batches this way);
        a key removed meanwhile is left out."""
        async with self.store.read() as tx:
            found = await tx.keys_by_id(key_ids)
            keystores = await tx.keystores_by_id(t.keystore_id for key in found for t in key.targets)
        return {key.id: (key, {t.keystore_id: keystores[t.keystore_id] for t in key.targets}) for key in found}

    async def observe(
        self, key: ManagedKey, target: Target, keystore: Keystore, listing: Listing | None
    ) -> tuple[Observation | None, str | None]:
        """(observation or None if absent, connection error or None)."""
        if listing is not None and keystore.id in listing:
            return listing[keystore.id].get(key.id), None
        down = self.clients.down_reason(keystore.id)
        if down is not None:
            return None, down
        try:
            client = await self.clients.client(keystore)
            return await client.get_key(KeyRef(target.key_id_in_keystore, key.id)), None
        except NotFound:
            return None, None
        except ProviderError as exc:
            if exc.transient or (exc.exit_code == 4 and exc.http_status in (502, 503)):
                return None, exc.message
            raise

    async def plan(self, key_ref: str, *, push: bool = False, listing: Listing | None = None) -> KeyOutcome:
        """Observe and plan without acting (``keyorch plan``)."""
        key, keystores = await self.load(key_ref)
        outcomes = await asyncio.gather(
            *(self._plan_one(key, t, keystores[t.keystore_id], push, listing) for t in key.targets)
        )
        return KeyOutcome(key.id, key.label, key.state.value, list(outcomes))

    async def _plan_one(
        self, key: ManagedKey, target: Target, keystore: Keystore, push: bool, listing: Listing | None
    ) -> TargetOutcome:
        now = self.clock.now()
        if not keystore.connected:
            return TargetOutcome(keystore.id, keystore.name, plan_target(key, target, keystore, None, now))
        try:
            observation, unreachable = await self.observe(key, target, keystore, listing)
        except ProviderError as exc:
            plan = plan_target(key, target, keystore, None, now, unreachable=exc.message)
            return TargetOutcome(keystore.id, keystore.name, plan, error=exc.message, unreachable=True)
        plan = plan_target(key, target, keystore, observation, now, push=push, unreachable=unreachable)
        return TargetOutcome(keystore.id, keystore.name, plan, unreachable=unreachable is not None)

    async def reconcile_key(
        self, key_ref: str, *, push: bool = False, listing: Listing | None = None, loaded: Loaded | None = None
    ) -> KeyOutcome:
        """Observe, plan and act for every target of one key, with at most three transactions:
        read the key (unless ``loaded`` brings it, read in a batch); journal the intents of every
        mutating call (before any is made); record the results, the targets' new status and the
        intents' outcome (after all are made).

        The journal's transaction first checks that the key's desired state is still the one read:
        when it moved meanwhile (someone activated, deactivated or destroyed the key), nothing is
        done and the outcome is ``stale``, to be reconciled again from a fresh read. So no provider
        call ever acts on a desired state that is no longer current."""
        key, keystores = loaded if loaded is not None else await self.load(key_ref)
        outcomes = list(
            await asyncio.gather(
                *(self._plan_one(key, t, keystores[t.keystore_id], push, listing) for t in key.targets)
            )
        )
        before = {t.keystore_id: t for t in key.targets}
        acting = [o for o in outcomes if o.plan.actions]
        intents: dict[str, int] = {}
        doubtful: set[str] = set()
        if acting:
            async with self.store.transaction() as tx:
                if await tx.key_generation(key.id) != key.generation:
                    # The desired state moved since the key was read: act on nothing, read it again.
                    return KeyOutcome(key.id, key.label, key.state.value, outcomes, stale=True)
                # A create that failed or was interrupted may have made a key whose answer was lost.
                if any(Action.CREATE in o.plan.actions for o in acting):
                    doubtful = await tx.creates_in_doubt(key.id)
                started = [
                    (o.keystore_id, "+".join(a.value for a in o.plan.actions), before[o.keystore_id].attempts + 1)
                    for o in acting
                ]
                intents = await tx.start_intents(key.id, key.generation, started, self.clock.now())
            await asyncio.gather(
                *(
                    self._execute(key, before[o.keystore_id], keystores[o.keystore_id], o, o.keystore_id in doubtful)
                    for o in acting
                )
            )
        changed = [o for o in outcomes if _material(o.target) != _material(before[o.keystore_id])]
        if not changed and not intents:
            return KeyOutcome(key.id, key.label, key.state.value, outcomes)
        now = self.clock.now()
        async with self.store.transaction() as tx:
            await tx.finish_intents(
                [(intents[o.keystore_id], "failed" if o.error else "succeeded", o.error) for o in acting], now
            )
            written = await tx.update_targets(key.id, key.generation, [o.target for o in changed])
            if written:
                in_line = [o.keystore_id for o in changed if o.target.sync_flag is SyncFlag.IN_SYNC]
                await tx.resolve_intents(key.id, in_line, now)
        return KeyOutcome(key.id, key.label, key.state.value, outcomes, stale=not written)

    async def _execute(
        self, key: ManagedKey, target: Target, keystore: Keystore, outcome: TargetOutcome, create_in_doubt: bool
    ) -> None:
        """Run a target's planned actions in order, then observe again: the result decides the status."""
        bound = get_logger(key_id=key.id, keystore=keystore.name, keystore_id=keystore.id)
        client = await self.clients.client(keystore)
        ref = KeyRef(target.key_id_in_keystore or outcome.target.key_id_in_keystore, key.id)
        for action in outcome.plan.actions:
            try:
                observation = await self._act(client, action, key, ref, in_doubt=create_in_doubt)
            except ProviderError as exc:
                bound.warning("action failed", action=action.value, error=exc.message, transient=exc.transient)
                self._failed(outcome, target, action, exc)
                return
            outcome.actions_done.append(action)
            bound.info("action done", action=action.value)
            if observation is not None:
                ref = KeyRef(observation.key_id_in_keystore, key.id)
        try:
            after = await client.get_key(ref)
        except NotFound:
            after = None
        except ProviderError as exc:
            self._failed(outcome, target, outcome.plan.actions[-1], exc)
            return
        final = plan_target(key, target, keystore, after, self.clock.now())
        if final.actions:  # still out of line after acting: keep the intent, retry later
            final = replace(final, target=self._with_retry(final.target, target, "not yet in line after acting"))
        outcome.plan = final

    async def _act(
        self, client: KeystoreClient, action: Action, key: ManagedKey, ref: KeyRef, *, in_doubt: bool = False
    ) -> Observation | None:
        if action is Action.CREATE:
            spec = KeySpec(algorithm=key.algorithm, size=key.size, name=key.name, labels={"keyorch-label": key.label})
            return await client.ensure_key(key.id, spec, in_doubt=in_doubt)
        if action is Action.ENABLE:
            return await client.enable(ref)
        if action is Action.DISABLE:
            return await client.disable(ref)
        return await client.schedule_destruction(ref, force=key.destroy_force)

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
