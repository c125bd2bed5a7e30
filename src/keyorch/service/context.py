"""What every operation needs: the store, the clock, the acting user, the master key."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from keyorch.audit import Actor, AuditRecord, snapshot
from keyorch.crypto import MasterKey
from keyorch.domain.clock import Clock, SystemClock
from keyorch.domain.errors import KeyorchError
from keyorch.service.environment import EnvironmentPolicy
from keyorch.store.audit_chain import AuditWriteFailed
from keyorch.store.audit_keys import MasterKeyMismatch, MasterKeyRequired
from keyorch.store.repository import Store, Transaction
from keyorch.store.retry import retryable

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
    #: who may use credentials from keyorch's environment, and where they may go (the operator's setting)
    environment: EnvironmentPolicy = EnvironmentPolicy()  # noqa: RUF009 - frozen

    def new_id(self) -> str:
        return str(uuid.uuid4())

    async def change(
        self,
        action: str,
        object_type: str,
        ref: str | None,
        body: Callable[[Transaction], Awaitable[tuple[T, Change]]],
        *,
        creates: bool = False,
    ) -> T:
        """Run ``body`` in one transaction with its audit record; audit a refusal separately.

        ``ref`` is how the caller named the object: an existing one's id or name (a refusal is filed under
        its id, like the accepted changes), or with ``creates`` the name of the one to be made.

        The change and its record commit together or not at all: a change whose audit record
        cannot be written is refused (AuditWriteFailed, or the master key missing or wrong) and leaves
        nothing behind. A refusal whose own record cannot be written is still answered as that refusal.
        A transaction the database aborts to break a deadlock or a serialization conflict is run again,
        ``body`` too (:meth:`Store.run`); after the bound the change is refused as ``StoreBusy`` (503).
        """

        async def attempt(tx: Transaction) -> T:
            result, change = await body(tx)
            record = self._record(
                action,
                object_type,
                change.object_id,
                "accepted",
                before=snapshot(change.before),
                after=snapshot(change.after),
                detail=change.detail,
            )
            await self._audit(tx, record)
            return result

        try:
            return await self.store.run(attempt, what=f"this {action}")
        except (AuditWriteFailed, MasterKeyRequired, MasterKeyMismatch):
            raise
        except KeyorchError as exc:
            try:
                await self._record_refusal(action, object_type, ref, exc, creates=creates)
            except (AuditWriteFailed, MasterKeyRequired, MasterKeyMismatch) as audit_exc:
                # The refusal stands as what it is (an unknown id is still bad input); the note says it
                # could not be audited.
                exc.message = f"{exc.message} (the refusal itself could not be audited: {audit_exc.message})"
                exc.args = (exc.message,)
            raise

    def _record(
        self, action: str, object_type: str, object_id: str | None, outcome: str, **content: Any
    ) -> AuditRecord:
        """An audit record by this context's actor, now."""
        return AuditRecord(
            at=self.clock.now(),
            user=self.actor.user,
            role=self.actor.role,
            source=self.actor.source,
            action=action,
            object_type=object_type,
            object_id=object_id,
            outcome=outcome,
            **content,
        )

    async def _audit(self, tx: Transaction, record: AuditRecord) -> None:
        try:
            await tx.add_audit(record, master_key=self.master_key)
        except SQLAlchemyError as exc:
            if retryable(exc):  # a deadlock or serialization abort: the whole change runs again
                raise
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
            raise AuditWriteFailed(
                f"the audit record of this {record.action} could not be written ({reason}), "
                "so it was refused and nothing was changed"
            ) from exc

    async def _record_refusal(
        self, action: str, object_type: str, ref: str | None, exc: KeyorchError, *, creates: bool
    ) -> None:
        async def attempt(tx: Transaction) -> None:
            filed = await self._filed_under(tx, object_type, ref) if ref is not None and not creates else ref
            record = self._record(action, object_type, filed, "refused", detail=f"{exc.code}: {exc.message}"[:2000])
            await self._audit(tx, record)

        await self.store.run(attempt, what=f"the audit record of a refused {action}")

    @staticmethod
    async def _filed_under(tx: Transaction, object_type: str, ref: str) -> str:
        """The id of the object ``ref`` names, else ``ref`` as given (unknown, ambiguous or not text)."""
        try:
            return await tx.object_id(object_type, ref) or ref
        except KeyorchError:
            return ref
