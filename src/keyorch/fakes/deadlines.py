"""When time-based changes fall due in a fake (pending deletions, automatic purges), cheapest first.

A fake applies such changes lazily on each request; scanning every key on every request makes a
fake holding tens of thousands of keys quadratic. ``Deadlines`` is a min-heap of (due time, record
name): ``due(now)`` pops only the entries whose time has come. Entries are hints, never removed when
a deletion is cancelled or rescheduled: the caller re-checks the record itself before acting, and a
rescheduled record was added again under its new time.
"""

from __future__ import annotations

import heapq
import itertools


class Deadlines:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str]] = []
        self._order = itertools.count()

    def add(self, when: float, name: str) -> None:
        heapq.heappush(self._heap, (when, next(self._order), name))

    def due(self, now: float) -> list[str]:
        """Names whose time is ``now`` or earlier, each popped once (possibly stale: re-check them)."""
        names: list[str] = []
        while self._heap and self._heap[0][0] <= now:
            names.append(heapq.heappop(self._heap)[2])
        return names

    def clear(self) -> None:
        self._heap.clear()

    def __len__(self) -> int:
        return len(self._heap)
