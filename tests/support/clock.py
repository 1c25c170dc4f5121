"""A wall clock and a monotonic clock that tests move by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    """`now()` for status timestamps and `monotonic()` for backoff, both at `t` seconds."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> datetime:
        return EPOCH + timedelta(seconds=self.t)

    def monotonic(self) -> float:
        return self.t
