"""A work queue of key ids: never the same key twice at once, per-key exponential backoff.

Like controller-runtime's rate-limited queue: ``add`` dedups a key already waiting; a key added
while it is being worked on is queued again once that work ends (so the newest desired state is
always reconciled); ``retry`` re-adds after a per-key exponential delay with jitter, and
``forget`` resets that delay after a success.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    base_seconds: float = 0.5
    max_seconds: float = 300.0
    jitter: float = 0.2

    def delay(self, failures: int) -> float:
        raw = min(self.max_seconds, self.base_seconds * (2 ** max(0, failures - 1)))
        return float(raw * (1 + random.uniform(-self.jitter, self.jitter)))


@dataclass
class WorkQueue:
    backoff: Backoff = field(default_factory=Backoff)
    _ready: deque[str] = field(default_factory=deque)
    _queued: set[str] = field(default_factory=set)
    _active: set[str] = field(default_factory=set)
    _dirty: set[str] = field(default_factory=set)
    _failures: dict[str, int] = field(default_factory=dict)
    _delayed: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    _idle: asyncio.Event = field(default_factory=asyncio.Event)
    _closed: bool = False

    def __post_init__(self) -> None:
        self._idle.set()

    def __len__(self) -> int:
        return len(self._ready) + len(self._delayed)

    @property
    def depth(self) -> int:
        return len(self) + len(self._active)

    def add(self, key_id: str, *, front: bool = False) -> None:
        if self._closed:
            return
        if key_id in self._active:
            self._dirty.add(key_id)
            return
        timer = self._delayed.pop(key_id, None)
        if timer is not None:
            timer.cancel()
        if key_id in self._queued:
            if front:
                self._ready.remove(key_id)
                self._ready.appendleft(key_id)
            return
        self._queued.add(key_id)
        if front:
            self._ready.appendleft(key_id)
        else:
            self._ready.append(key_id)
        self._idle.clear()
        self._wakeup.set()

    def retry(self, key_id: str) -> float:
        """Re-add after this key's next backoff delay; return the delay."""
        failures = self._failures.get(key_id, 0) + 1
        self._failures[key_id] = failures
        delay = self.backoff.delay(failures)
        self.add_after(key_id, delay)
        return delay

    def add_after(self, key_id: str, delay: float) -> None:
        if self._closed or key_id in self._queued or key_id in self._delayed:
            return
        loop = asyncio.get_running_loop()
        self._idle.clear()

        def fire() -> None:
            self._delayed.pop(key_id, None)
            self.add(key_id)

        self._delayed[key_id] = loop.call_later(delay, fire)

    def forget(self, key_id: str) -> None:
        self._failures.pop(key_id, None)

    def failures(self, key_id: str) -> int:
        return self._failures.get(key_id, 0)

    async def get(self) -> str | None:
        """The next key to work on (marked active), or None once the queue is closed."""
        while True:
            if self._ready:
                key_id = self._ready.popleft()
                self._queued.discard(key_id)
                self._active.add(key_id)
                return key_id
            if self._closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()

    def done(self, key_id: str) -> None:
        self._active.discard(key_id)
        if key_id in self._dirty:
            self._dirty.discard(key_id)
            self.add(key_id)
        self._check_idle()

    def _check_idle(self) -> None:
        if not self._ready and not self._active and not self._delayed:
            self._idle.set()

    async def join(self, *, include_delayed: bool = True) -> None:
        """Wait until nothing is ready or active (and, by default, nothing is waiting to retry)."""
        while True:
            if not include_delayed and not self._ready and not self._active:
                return
            await self._idle.wait()
            if not self._ready and not self._active and (not include_delayed or not self._delayed):
                return
            self._idle.clear()
            await asyncio.sleep(0)

    def drop_delayed(self) -> list[str]:
        """Cancel every pending retry (a one-shot pass ends); return their keys."""
        keys = list(self._delayed)
        for timer in self._delayed.values():
            timer.cancel()
        self._delayed.clear()
        self._check_idle()
        return keys

    def close(self) -> None:
        self._closed = True
        self.drop_delayed()
        self._wakeup.set()


async def run_workers(queue: WorkQueue, workers: int, handle: Callable[[str], Awaitable[None]]) -> None:
    """Run ``workers`` tasks taking keys from the queue until it is closed."""

    async def worker() -> None:
        while True:
            key_id = await queue.get()
            if key_id is None:
                return
            try:
                await handle(key_id)
            finally:
                queue.done(key_id)

    await asyncio.gather(*(worker() for _ in range(workers)))
