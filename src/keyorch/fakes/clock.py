"""A clock per fake service that tests and admins can move forward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class FakeClock:
    """Wall-clock time plus an offset that only ever grows (or is set explicitly).

    Every time-dependent rule of a fake (pending windows, dual-authorization expiry,
    purge delays) reads ``now()`` from here, so advancing the clock makes those windows
    pass in an instant.
    """

    def __init__(self) -> None:
        self._offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def advance(self, seconds: float) -> datetime:
        if seconds < 0:
            raise ValueError(f"advance_seconds must be >= 0, got {seconds}")
        self._offset += timedelta(seconds=seconds)
        return self.now()

    def set(self, when: datetime) -> datetime:
        if when.tzinfo is None:
            raise ValueError("time must carry a timezone")
        self._offset = when - datetime.now(UTC)
        return self.now()

    @property
    def offset_seconds(self) -> float:
        return self._offset.total_seconds()
