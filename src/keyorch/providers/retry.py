"""The one retry policy of every keystore call (tenacity), and its per-provider defaults.

* Exponential backoff with full jitter: before attempt ``n + 1`` wait a uniform random time in
  ``[0, min(max_delay, base * 2 ** (n - 1))]``; a ``Retry-After`` the provider sent is a floor for
  that wait (it may exceed ``max_delay``).
* Bounded three times: at most ``max_attempts`` attempts; no wait is started that would end after
  ``total_timeout_seconds`` since the first attempt began, nor after the call's total deadline
  (:mod:`keyorch.providers.deadlines`, which also cuts short an attempt still running at that
  moment). The call then ends with its last error.
* Only transient errors (:func:`keyorch.providers.errors.is_transient`) are retried. A call that is
  not idempotent is retried only when the request certainly never reached the server (a connection
  that was never made, ``exc.sent`` false) or was refused unprocessed (:class:`Throttled`): a
  timeout or a 5xx after a create may have created something, and is left to the caller (the
  reconciler, which checks what happened before it creates again).
* ``retry_after`` is a floor for the next attempt of *every* retried call, here and wherever else
  it is sent again: the transport keeps it per call (:class:`~keyorch.providers.deadlines.ResendGate`),
  so a resend by :func:`call_checked` or by the reconciler waits it out too.
* A call the provider refuses to repeat once it succeeded (AWS ``ScheduleKeyDeletion``, Cloud KMS
  ``:destroy``) goes through :func:`call_checked`: after a failure that leaves its outcome in doubt
  (:func:`in_doubt`) the next attempt first reads whether it took effect, and sends again only when
  it did not.
* ``on_retry`` is called before every wait with a :class:`RetryEvent`, so metrics can count retries
  and throttles without this module knowing about them.

The first attempt runs outside tenacity: building tenacity's retry state costs about as much CPU as
a whole loopback request, and most calls succeed at once. Only after a transient failure does the
call enter tenacity, which then counts that failure as its first attempt.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState

from keyorch.domain.models import KeystoreType
from keyorch.providers.deadlines import time_left
from keyorch.providers.errors import Fenced, MalformedResponse, ProviderError, Throttled

T = TypeVar("T")
D = TypeVar("D")


@dataclass(frozen=True)
class RetryEvent:
    """One retry about to happen: after failed attempt ``attempt``, wait ``wait_seconds``."""

    attempt: int
    wait_seconds: float
    error: ProviderError

    @property
    def throttled(self) -> bool:
        return isinstance(self.error, Throttled)


RetryHook = Callable[[RetryEvent], None]


@dataclass
class RetryStats:
    """Counts of what the retry policy did; usable as an ``on_retry`` hook."""

    retries: int = 0
    throttles: int = 0

    def __call__(self, event: RetryEvent) -> None:
        self.retries += 1
        if event.throttled:
            self.throttles += 1


@dataclass(frozen=True)
class RetryPolicy:
    """Retry parameters. ``sleep``, ``clock`` and ``random`` are injectable so tests never sleep."""

    max_attempts: int = 4
    base_delay_seconds: float = 0.5
    max_delay_seconds: float = 20.0
    total_timeout_seconds: float = 60.0
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)
    random: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay_seconds < 0 or self.max_delay_seconds < 0 or self.total_timeout_seconds <= 0:
            raise ValueError("delays must be >= 0 and total_timeout_seconds > 0")

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """The wait after failed attempt ``attempt`` (1-based): full jitter, ``retry_after`` as a floor."""
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * 2.0 ** (attempt - 1))
        wait = self.random() * ceiling
        if retry_after is not None and retry_after > wait:
            return retry_after
        return wait


#: Per-provider defaults, after each provider's own client (docs/providers.md §5.4):
#: botocore's standard mode (3 attempts, backoff capped at 20 s); azure-core (backoff factor 0.8 s);
#: the Cloud KMS service config (0.1 s initial wait, 60 s cap, 60 s overall); the Key Protect Go
#: client (4 retries, 30 s maximum wait). The reconciler retries failed keys on its own, so these
#: stay short of the libraries' longest settings.
DEFAULT_RETRY_POLICIES: dict[KeystoreType, RetryPolicy] = {
    KeystoreType.AWS_KMS: RetryPolicy(max_attempts=3, base_delay_seconds=1.0, max_delay_seconds=20.0),
    KeystoreType.AZURE_KEY_VAULT: RetryPolicy(max_attempts=4, base_delay_seconds=0.8, max_delay_seconds=60.0),
    KeystoreType.GOOGLE_KMS: RetryPolicy(max_attempts=5, base_delay_seconds=0.1, max_delay_seconds=60.0),
    KeystoreType.IBM_KEY_PROTECT: RetryPolicy(max_attempts=5, base_delay_seconds=1.0, max_delay_seconds=30.0),
}


def retry_policy_for(kind: KeystoreType) -> RetryPolicy:
    return DEFAULT_RETRY_POLICIES[kind]


def may_retry(exc: BaseException | None, *, idempotent: bool) -> bool:
    """Whether ``exc`` allows another attempt of a call that is (not) idempotent: any transient error
    of an idempotent call; of another, only one that surely was not carried out (never sent, or
    refused unprocessed as throttled). A call held back by its lease (:class:`Fenced`) is never
    tried again: the lease will not come back."""
    if not isinstance(exc, ProviderError) or not exc.transient or isinstance(exc, Fenced):
        return False
    return idempotent or not exc.sent or isinstance(exc, Throttled)


async def call_with_retry(
    policy: RetryPolicy,
    fn: Callable[[], Awaitable[T]],
    *,
    idempotent: bool,
    on_retry: RetryHook | None = None,
) -> T:
    """Await ``fn()`` under ``policy``; raise the last error when the policy gives up."""
    started = policy.clock()
    try:
        return await fn()
    except ProviderError as exc:
        if policy.max_attempts < 2 or not may_retry(exc, idempotent=idempotent):
            raise
        pending: ProviderError | None = exc

    def should_retry(state: RetryCallState) -> bool:
        outcome = state.outcome
        return outcome is not None and outcome.failed and may_retry(outcome.exception(), idempotent=idempotent)

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        retry_after = error.retry_after if isinstance(error, ProviderError) else None
        return policy.backoff(state.attempt_number, retry_after)

    def stop(state: RetryCallState) -> bool:
        if state.attempt_number >= policy.max_attempts:
            return True
        left = time_left()
        if left is not None and state.upcoming_sleep >= left:
            return True  # the wait would outlast the call's deadline: end with the error in hand
        return policy.clock() - started + state.upcoming_sleep > policy.total_timeout_seconds

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        if on_retry is not None and isinstance(error, ProviderError):
            on_retry(RetryEvent(state.attempt_number, state.upcoming_sleep, error))

    retrying = AsyncRetrying(
        sleep=policy.sleep, stop=stop, wait=wait, retry=should_retry, before_sleep=before_sleep, reraise=True
    )
    async for attempt in retrying:
        with attempt:
            if pending is not None:
                first, pending = pending, None
                raise first  # tenacity counts the failure that brought us here as attempt 1
            return await fn()
    raise AssertionError("tenacity ended without a result or an error")  # pragma: no cover


def in_doubt(exc: ProviderError) -> bool:
    """Whether a failed call may still have been carried out: it reached the provider, and the answer
    (if any) does not say it was refused. A throttled call was not processed; a 2xx keyorch cannot read
    (a :class:`MalformedResponse`, permanent or not) may have been."""
    if not exc.sent or isinstance(exc, Throttled):
        return False
    return exc.transient or isinstance(exc, MalformedResponse)


async def call_checked(
    policy: RetryPolicy,
    send: Callable[[], Awaitable[T]],
    done: Callable[[], Awaitable[D | None]],
    *,
    on_retry: RetryHook | None = None,
) -> T | D:
    """Send a call the provider refuses to repeat once it succeeded, never repeating it blindly.

    ``send`` makes one attempt (the transport must send it as not idempotent, so that it resends only
    what surely never left this host); ``done`` reads whether it took effect, returning that reading
    or ``None``. Each attempt after one whose outcome is in doubt (:func:`in_doubt`) first awaits
    ``done``: a reading ends the call, ``None`` lets the attempt send again. The attempts follow
    ``policy`` (the read is part of its attempt and retried by the transport itself). When the policy
    gives up on an in-doubt failure, ``done`` is asked once more; if that read fails too, the call's
    own error is raised."""
    doubt = False

    async def attempt() -> T | D:
        nonlocal doubt
        if doubt:
            found = await done()
            if found is not None:
                return found
            doubt = False
        try:
            return await send()
        except ProviderError as exc:
            doubt = in_doubt(exc)
            raise

    try:
        return await call_with_retry(policy, attempt, idempotent=True, on_retry=on_retry)
    except ProviderError as exc:
        if not doubt:
            raise
        try:
            found = await done()
        except ProviderError:
            raise exc from None
        if found is None:
            raise
        return found
