"""Per-model memory of writes the API server did not take, with capped exponential backoff.

A refused child is asked for again only when the model changes (the user fixed the spec, or
touched it after fixing what was around it: retried on the very next pass) or when its
backoff has run out; every other pass reuses
the remembered answer, so status keeps saying what is wrong while the API server sees no hot
loop. controller-runtime's per-item rate limiter does the same for whole reconciles; here it
is per write, because one refused child must not hold back the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kinfer_operator.world import WriteFailure

__all__ = ["BASE_SECONDS", "CAP_SECONDS", "WriteBackoff", "WriteKey"]

BASE_SECONDS = 5.0
"""Delay after the first failure; doubled after each further one."""
CAP_SECONDS = 300.0
"""Longest delay between two attempts of the same write."""

WriteKey = tuple[str, str, str]
"""(verb, kind, name) of one write."""


@dataclass(frozen=True)
class _Attempt:
    digest: str
    failure: WriteFailure
    failures: int
    retry_at: float


class WriteBackoff:
    """Remembered failures of one model's writes; not thread-safe (one pass at a time)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._attempts: dict[WriteKey, _Attempt] = {}
        self._generation: int | None = None

    def generation(self, generation: int) -> None:
        """A new metadata.generation means someone acted: every write may be tried now."""
        if generation != self._generation:
            self._attempts.clear()
            self._generation = generation

    def waiting(self, key: WriteKey, digest: str) -> WriteFailure | None:
        """The remembered failure while this exact write is still backing off, else None."""
        attempt = self._attempts.get(key)
        if attempt is None or attempt.digest != digest or self._clock() >= attempt.retry_at:
            return None
        return attempt.failure

    def failed(self, key: WriteKey, digest: str, failure: WriteFailure) -> float:
        """Record a failure; returns the seconds until this write may be tried again."""
        before = self._attempts.get(key)
        count = before.failures + 1 if before is not None and before.digest == digest else 1
        delay = min(CAP_SECONDS, BASE_SECONDS * 2.0 ** (count - 1))
        self._attempts[key] = _Attempt(digest, failure, count, self._clock() + delay)
        return delay

    def succeeded(self, key: WriteKey) -> None:
        """The write went through: forget its history."""
        self._attempts.pop(key, None)

    def keep_only(self, keys: Iterable[WriteKey]) -> None:
        """Forget writes this pass no longer wants (the plan moved on)."""
        wanted = set(keys)
        for key in [k for k in self._attempts if k not in wanted]:
            del self._attempts[key]

    def failure_of(self, key: WriteKey) -> WriteFailure | None:
        """The last failure of a write, whatever its backoff."""
        attempt = self._attempts.get(key)
        return attempt.failure if attempt is not None else None

    def next_retry_in(self) -> float | None:
        """Seconds until the earliest remembered write may be tried again."""
        if not self._attempts:
            return None
        soonest = min(a.retry_at for a in self._attempts.values())
        return max(0.0, soonest - self._clock())
