"""The one retry of a writing transaction that PostgreSQL aborted to break a deadlock or a
serialization conflict (SQLSTATE ``40P01`` deadlock_detected, ``40001`` serialization_failure).

Such an abort is PostgreSQL's way of saying "run it again": the transaction was rolled back whole,
so running its body again from the start is safe. :func:`run_retrying` does that a bounded number of
times (:data:`MAX_ATTEMPTS`, with a short jittered wait between, tenacity); if every attempt is aborted
it raises :class:`StoreBusy`, a one-sentence 503 (exit code 4), never the driver's traceback.
Callers: :meth:`keyorch.store.repository.Store.run` (every writing unit of work that can be run
again: :meth:`keyorch.service.context.ServiceContext.change`, the reconciler's journal and result
transactions).

Lock order, so that deadlocks stay rare and the retry stays a safety net (the order every writer
takes row locks in one transaction):

1. ``managed_keys`` rows, through :meth:`~keyorch.store.repository.Transaction.key_generation`
   with ``lock=True`` (``SELECT … FOR UPDATE``) or the key's own ``UPDATE``/``DELETE``; a writer of
   several keys takes them in ascending id order;
2. rows belonging to those keys: ``key_leases``, ``intents``, ``key_targets`` (a key's targets are
   never written, nor deleted, before its ``managed_keys`` row is locked);
3. the audit chain's head row (:func:`keyorch.store.audit_chain.append`), always last, just before
   commit: every audited change takes it, so holding it longer would serialize everything.

SQLite has one writer at a time (no deadlocks between transactions); its errors are not retried here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from keyorch.domain.errors import KeyorchError
from keyorch.logs import get_logger

T = TypeVar("T")

#: SQLSTATEs after which PostgreSQL rolled the transaction back and asks for it to be run again.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
#: Attempts of one unit of work (the first included) before :class:`StoreBusy`.
MAX_ATTEMPTS = 5
#: The wait before attempt ``n + 1``: uniform in ``[0, min(MAX_WAIT, BASE_WAIT * 2 ** n)]`` seconds.
BASE_WAIT_SECONDS = 0.02
MAX_WAIT_SECONDS = 0.5


class StoreBusy(KeyorchError):
    """Every attempt of a change was aborted by the database (deadlock or serialization conflict)."""

    exit_code = 4
    http_status = 503
    code = "store_busy"


def sqlstate_of(exc: BaseException) -> str | None:
    """The SQLSTATE a database error carries (SQLAlchemy's wrapper, the asyncpg adapter or asyncpg itself)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        state = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(state, str):
            return state
        current = current.orig if isinstance(current, DBAPIError) else current.__cause__
    return None


def retryable(exc: BaseException) -> bool:
    """Whether ``exc`` is PostgreSQL's abort of a transaction that may simply be run again."""
    return sqlstate_of(exc) in RETRYABLE_SQLSTATES


async def run_retrying(attempt: Callable[[], Awaitable[T]], *, what: str = "the change") -> T:
    """Await ``attempt()`` (one whole transaction), again after a deadlock or serialization abort, at most
    :data:`MAX_ATTEMPTS` times in all; then raise :class:`StoreBusy` naming ``what``."""
    log = get_logger()

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        state_code = sqlstate_of(error) if error is not None else None
        log.info(
            "transaction aborted by the database, running it again", sqlstate=state_code, attempt=state.attempt_number
        )

    retrying = AsyncRetrying(
        retry=retry_if_exception(retryable),
        stop=stop_after_attempt(MAX_ATTEMPTS),
        wait=wait_random_exponential(multiplier=BASE_WAIT_SECONDS, max=MAX_WAIT_SECONDS),
        before_sleep=before_sleep,
    )
    try:
        return await retrying(attempt)
    except RetryError as exc:
        last = exc.last_attempt.exception()
        raise StoreBusy(
            f"the database aborted {what} {MAX_ATTEMPTS} times in a row to resolve conflicts with concurrent "
            f"changes (SQLSTATE {sqlstate_of(last) if last else 'unknown'}); nothing was changed, try again"
        ) from None
