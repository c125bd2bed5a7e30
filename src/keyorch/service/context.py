"""What every operation needs: the store, the clock, the acting user, the master key."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from keyorch.audit import Actor, AuditRecord, snapshot
from keyorch.crypto import MasterKey
from keyorch.domain.clock import Clock, SystemClock
from keyorch.domain.errors import KeyorchError
from keyorch.store.repository import Store, Transaction

T = TypeVar("T")


@dataclass
class Change:
    """What an operation did, for its audit record."""

    object_id: str | None
    before: object | None = None
    after: object | None = None
    detail: str | None = None


@dataclass
class ServiceContext:
    store: Store
    actor: Actor
    clock: Clock = SystemClock()  # noqa: RUF009 - stateless default
    master_key: MasterKey | None = None

    def new_id(self) -> str:
        return str(uuid.uuid4())

    async def change(
        self,
        action: str,
        object_type: str,
        ref: str | None,
        body: Callable[[Transaction], Awaitable[tuple[T, Change]]],
    ) -> T:
        """Run ``body`` in one transaction with its audit record; audit a refusal separately."""
        try:
            async with self.store.transaction() as tx:
                result, change = await body(tx)
                await tx.add_audit(
                    AuditRecord(
                        at=self.clock.now(),
                        user=self.actor.user,
                        source=self.actor.source,
                        action=action,
                        object_type=object_type,
                        object_id=change.object_id,
                        outcome="accepted",
                        before=snapshot(change.before),
                        after=snapshot(change.after),
                        detail=change.detail,
                    )
                )
                return result
        except KeyorchError as exc:
            await self._record_refusal(action, object_type, ref, exc)
            raise

    async def _record_refusal(self, action: str, object_type: str, ref: str | None, exc: KeyorchError) -> None:
        async with self.store.transaction() as tx:
            await tx.add_audit(
                AuditRecord(
                    at=self.clock.now(),
                    user=self.actor.user,
                    source=self.actor.source,
                    action=action,
                    object_type=object_type,
                    object_id=ref,
                    outcome="refused",
                    detail=f"{exc.code}: {exc.message}"[:2000],
                )
            )
