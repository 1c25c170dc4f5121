"""One keyed work queue for every reconcile: client-go's rate-limiting workqueue, in Python.

- `add(key)`: duplicates collapse while a key waits; a key being processed is marked dirty
  and goes back to the tail when its pass ends, so one key never runs twice at once and a
  storm of events on one model costs the others at most one pass of it.
- `add_after(key, delay)`: one scheduler thread and a heap, not a timer per model; of
  several pending delays for a key the earliest wins.
- `add_rate_limited(key)`: per-key exponential backoff (capped) combined with a global
  token bucket, so a cluster-wide failure cannot turn into a retry storm.

kopf has no such queue (each of its handlers runs when its event arrives), and none of the
maintained Python clients ships one, hence this module.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["RetryPolicy", "WorkQueue"]

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class RetryPolicy:
    """Per-key backoff and the global retry rate."""

    base_seconds: float = 1.0
    cap_seconds: float = 300.0
    rate_per_second: float = 10.0
    burst: int = 100


class _Bucket:
    """A token bucket that hands out the delay until the caller's token is due."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self._rate, self._burst, self._clock = rate, float(burst), clock
        self._tokens, self._at = float(burst), clock()

    def reserve(self) -> float:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate


class WorkQueue(Generic[K]):
    """Thread-safe; `get` blocks until a key is ready or the queue shuts down."""

    def __init__(
        self, policy: RetryPolicy = RetryPolicy(), clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._policy, self._clock = policy, clock
        # One lock, two conditions: a worker waiting for a key and the scheduler waiting for
        # the next due time must never take each other's wake-up.
        lock = threading.Lock()
        self._cond = threading.Condition(lock)
        self._timer = threading.Condition(lock)
        self._ready: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._heap: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}
        self._seq = itertools.count()
        self._failures: dict[K, int] = {}
        self._bucket = _Bucket(policy.rate_per_second, policy.burst, clock)
        self._closed = False
        self._scheduler = threading.Thread(target=self._schedule, name="workqueue-delays")
        self._scheduler.daemon = True
        self._scheduler.start()

    # -- adding ----------------------------------------------------------------------------

    def add(self, key: K) -> None:
        """Make the key ready now (once, however often it is added before it runs)."""
        with self._cond:
            self._add_locked(key)

    def _add_locked(self, key: K) -> None:
        if self._closed or key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._ready.append(key)
            self._cond.notify()

    def add_after(self, key: K, delay: float) -> None:
        """Make the key ready after `delay` seconds, unless it is due sooner already."""
        if delay <= 0:
            self.add(key)
            return
        due = self._clock() + delay
        with self._cond:
            if self._closed or self._due.get(key, float("inf")) <= due:
                return
            self._due[key] = due
            heapq.heappush(self._heap, (due, next(self._seq), key))
            self._timer.notify()

    def add_rate_limited(self, key: K) -> float:
        """Retry a key that failed: per-key exponential backoff, globally rate-limited.
        Returns the delay chosen."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
            own = min(self._policy.cap_seconds, self._policy.base_seconds * 2.0**failures)
            delay = max(own, self._bucket.reserve())
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """The key succeeded: its next failure starts the backoff from the base again."""
        with self._cond:
            self._failures.pop(key, None)

    def discard(self, key: K) -> None:
        """The object is gone: drop its pending delay and backoff (a waiting add stays, and
        its pass finds nothing)."""
        with self._cond:
            self._failures.pop(key, None)
            self._due.pop(key, None)

    # -- draining --------------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> K | None:
        """The next ready key, now marked as processing; None on shutdown or timeout."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while not self._ready and not self._closed:
                left = None if deadline is None else deadline - self._clock()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)
            if self._closed:
                return None
            key = self._ready.popleft()
            self._dirty.discard(key)
            self._processing.add(key)
            return key

    def done(self, key: K) -> None:
        """The key's pass ended; if it was added meanwhile, it goes to the tail now."""
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._ready.append(key)
                self._cond.notify()

    def shutdown(self) -> None:
        """Wake every waiting worker with None; later adds are ignored."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            self._timer.notify_all()

    # -- introspection ---------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Shut down: `get` returns None at once."""
        with self._cond:
            return self._closed

    def depth(self) -> int:
        """Keys ready to run now (not counting delayed ones)."""
        with self._cond:
            return len(self._ready)

    def delayed(self) -> int:
        """Keys waiting for a delay."""
        with self._cond:
            return len(self._due)

    def due_in(self, key: K) -> float | None:
        """Seconds until the key's pending delay runs out, if it has one."""
        with self._cond:
            due = self._due.get(key)
            return None if due is None else due - self._clock()

    def _schedule(self) -> None:
        with self._cond:
            while not self._closed:
                now = self._clock()
                while self._heap and self._heap[0][0] <= now:
                    due, _, key = heapq.heappop(self._heap)
                    if self._due.get(key) == due:  # else superseded by an earlier delay
                        del self._due[key]
                        self._add_locked(key)
                wait = self._heap[0][0] - now if self._heap else None
                self._timer.wait(wait)
