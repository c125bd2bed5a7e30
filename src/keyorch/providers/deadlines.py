"""Two bounds in time on every keystore call: its total deadline, and the earliest moment it may be
sent again after the keystore asked for a pause (``Retry-After``).

* :func:`within_deadline` runs one logical call (every attempt, every wait between attempts, a
  token fetch on the way) under a total deadline, the keystore setting ``call_timeout_seconds``
  (default :data:`~keyorch.providers.limits.DEFAULT_CALL_TIMEOUT_SECONDS`). The transport's
  socket timeouts bound the wait for each *byte*; this bounds the whole call, so a keystore that
  trickles its answer one byte at a time, or hangs between attempts, cannot hold a caller for
  longer. The time a call spends waiting for keyorch's own request pacing (the rate buckets of
  :mod:`keyorch.providers.limits`) is not the keystore's doing and does not count: the transport
  calls :func:`pause` with it. A call cut short raises
  :class:`~keyorch.providers.errors.DeadlineExceeded`, with ``sent`` telling whether any attempt
  had reached the wire (then its outcome is in doubt, as after any timeout).
* :class:`ResendGate` remembers, per call (operation and URL), the ``Retry-After`` a keystore
  gave, and makes the next attempt of that call wait it out, whoever sends it: a
  :func:`~keyorch.providers.retry.call_checked` resend, or the reconciler trying the key again
  later. (The retry policy's own next attempt of the same request already waited at least that
  long, so the request that was answered does not wait twice.) A wait that would end after the
  call's deadline is not started: the call fails at once with
  :class:`~keyorch.providers.errors.Throttled` (not sent, ``retry_after`` the time left), so the
  keystore never sees the call before the moment it named.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

from keyorch.providers.errors import DeadlineExceeded, Throttled

T = TypeVar("T")


@dataclass
class _Deadline:
    timeout: asyncio.Timeout
    sent: bool = False


#: The deadlines of the calls the current task is inside (a call may make calls: a token fetch).
_ACTIVE: ContextVar[tuple[_Deadline, ...]] = ContextVar("keyorch_call_deadlines", default=())


async def within_deadline(
    seconds: float, call: Callable[[], Awaitable[T]], *, keystore: str, operation: str, setting: str
) -> T:
    """Await ``call()``; raise :class:`DeadlineExceeded` once it has taken ``seconds`` (not counting
    :func:`pause`). ``setting`` names what sets the deadline, for the message."""
    deadline: _Deadline | None = None
    try:
        async with asyncio.timeout(seconds) as timeout:
            deadline = _Deadline(timeout)
            token = _ACTIVE.set((*_ACTIVE.get(), deadline))
            try:
                return await call()
            finally:
                _ACTIVE.reset(token)
    except TimeoutError:
        if deadline is None or not deadline.timeout.expired():
            raise
        raise DeadlineExceeded(
            f"no complete answer within {seconds:g} s ({setting}, every attempt included)",
            keystore=keystore or None,
            operation=operation or None,
            sent=deadline.sent,
        ) from None


def pause(seconds: float) -> None:
    """Time the current task waited for keyorch's own pacing: it does not count against its deadlines."""
    if seconds <= 0:
        return
    for deadline in _ACTIVE.get():
        when = deadline.timeout.when()
        if when is not None:
            deadline.timeout.reschedule(when + seconds)


def mark_sent() -> None:
    """An attempt of the current call is going on the wire."""
    for deadline in _ACTIVE.get():
        deadline.sent = True


def time_left() -> float | None:
    """Seconds until the nearest deadline of the current task, ``None`` when it has none."""
    whens = [when for d in _ACTIVE.get() if (when := d.timeout.when()) is not None]
    return min(whens) - asyncio.get_running_loop().time() if whens else None


class ResendGate:
    """Per call (a key such as operation and URL), the moment before which it must not be sent again."""

    #: Expired entries are dropped once the gate holds this many.
    PRUNE_AT = 256

    def __init__(self, clock: Callable[[], float], sleep: Callable[[float], Awaitable[None]]) -> None:
        self._clock = clock
        self._sleep = sleep
        self._until: dict[tuple[str, str], tuple[float, object]] = {}

    def hold(self, call: tuple[str, str], seconds: float, request: object) -> None:
        """The keystore asked, answering ``request``, that ``call`` not be sent again for ``seconds``."""
        until = self._clock() + seconds
        if until > self._until.get(call, (0.0, None))[0]:
            self._until[call] = (until, request)
        if len(self._until) > self.PRUNE_AT:
            now = self._clock()
            self._until = {k: v for k, v in self._until.items() if v[0] > now}

    def remaining(self, call: tuple[str, str], request: object = None) -> float:
        """Seconds until ``call`` may be sent by ``request`` (0 when it may be sent now, or when the
        pause was asked of ``request`` itself, whose retry policy waits it out)."""
        held = self._until.get(call)
        if held is None:
            return 0.0
        left = held[0] - self._clock()
        if left <= 0:
            del self._until[call]
            return 0.0
        return 0.0 if held[1] is request else left

    async def wait(self, call: tuple[str, str], request: object) -> None:
        """Wait until ``call`` may be sent by ``request``; :class:`Throttled` (not sent) when that is
        after the deadline."""
        wait = self.remaining(call, request)
        if wait <= 0:
            return
        left = time_left()
        if left is not None and wait >= left:
            raise Throttled(
                f"the keystore asked for {wait:.1f} s more before this call is sent again, past the call's deadline",
                retry_after=wait,
                sent=False,
            )
        await self._sleep(wait)
