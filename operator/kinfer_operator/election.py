"""Leader election on a `coordination.k8s.io/v1` Lease: one replica acts, the others stand by.

Every write of the Lease is a compare-and-swap on its resourceVersion, so of two replicas that
try to take it at the same moment exactly one succeeds; the other sees a conflict and stands by.
A holder renews every `retry_period` seconds and stops acting by itself once `renew_deadline`
has passed since its last renew went through (the API server may be unreachable: a network
split). A standby takes over only when it has seen the Lease unchanged for `lease_duration`
seconds, measured on its own monotonic clock (no clock skew between nodes matters). With
`renew_deadline < lease_duration` the old holder has stopped before a standby may start, so two
replicas never act at once. A clean shutdown clears the holder: a standby takes over at its
next try instead of waiting the lease out.

Why not `kubernetes.leaderelection`: it never releases the lock on shutdown, cannot tell a
caller whether it still leads (it only calls back, and on losing the lock exits the process),
measures deadlines with the wall clock, and talks to the API through the client's global
configuration instead of ours; so this is a small acquire/renew/release over `LeaseStore`,
which `Kube` implements (the only module that talks to the API server).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["ElectionSettings", "LeaderElector", "LeaseRecord", "LeaseStore"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseRecord:
    """What a Lease says: who holds it (empty: nobody), for how long, and its version."""

    holder: str
    duration_s: int
    acquired: datetime | None = None
    renewed: datetime | None = None
    transitions: int = 0
    version: str = ""
    """resourceVersion as read; a replace succeeds only while the stored Lease still has it."""


class LeaseStore(Protocol):
    """The Lease's storage (the API server through `Kube`; tests fake it).

    Each call gives up after `timeout` seconds by raising; a write that lost a race (409
    Conflict or AlreadyExists) returns None instead.
    """

    def read_lease(self, namespace: str, name: str, timeout: float) -> LeaseRecord | None: ...

    def create_lease(
        self, namespace: str, name: str, record: LeaseRecord, timeout: float
    ) -> LeaseRecord | None: ...

    def replace_lease(
        self, namespace: str, name: str, record: LeaseRecord, timeout: float
    ) -> LeaseRecord | None: ...


@dataclass(frozen=True)
class ElectionSettings:
    """Timing of the election, in seconds (client-go's defaults)."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "leader election needs 0 < retry period < renew deadline < lease duration, "
                f"got --leader-election-retry-period={self.retry_period:g}, "
                f"--leader-election-renew-deadline={self.renew_deadline:g}, "
                f"--leader-election-lease-duration={self.lease_duration:g}"
            )
        if self.lease_duration > 3600:
            raise ValueError(
                f"--leader-election-lease-duration={self.lease_duration:g}: at most 3600 s"
            )


class LeaderElector:
    """Holds, renews and releases one Lease for one identity; `leading()` is the gate."""

    def __init__(
        self,
        store: LeaseStore,
        namespace: str,
        name: str,
        identity: str,
        settings: ElectionSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_change: Callable[[bool], None] = lambda leading: None,
    ) -> None:
        self.namespace, self.name, self.identity = namespace, name, identity
        self.settings = settings or ElectionSettings()
        self._store, self._clock, self._now, self._on_change = store, clock, now, on_change
        self._lock = threading.Lock()
        self._valid_until = float("-inf")
        """Monotonic time after which this replica no longer acts without a renew."""
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self._reported = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def leading(self) -> bool:
        """Whether this replica may act now: it holds the Lease and renewed it in time."""
        with self._lock:
            return self._clock() < self._valid_until

    def try_once(self) -> bool:
        """One round: take the Lease if it is free or expired, renew it if ours. Returns
        whether this replica leads afterwards. An API error leaves the last renew standing
        (it runs out on its own after `renew_deadline`)."""
        if self._stop.is_set():  # stopping: never take the Lease again
            return self.leading()
        started = self._clock()
        timeout = self.settings.retry_period
        try:
            current = self._store.read_lease(self.namespace, self.name, timeout)
            if current is None:
                fresh = LeaseRecord(self.identity, self._duration(), self._now(), self._now(), 0)
                self._settle(
                    self._store.create_lease(self.namespace, self.name, fresh, timeout), started
                )
            elif self._may_take(current, started):
                ours = current.holder == self.identity
                claim = dataclasses.replace(
                    current,
                    holder=self.identity,
                    duration_s=self._duration(),
                    acquired=current.acquired if ours else self._now(),
                    renewed=self._now(),
                    transitions=current.transitions + (0 if ours else 1),
                )
                self._settle(
                    self._store.replace_lease(self.namespace, self.name, claim, timeout), started
                )
            else:
                self._lose()
        except Exception as err:  # unreachable, forbidden, timed out: keep what we had
            _log.warning("leader election: Lease %s/%s: %s", self.namespace, self.name, err)
        self._report()
        return self.leading()

    def release(self) -> None:
        """Stop acting, then clear the holder so a standby takes over at its next try.
        Call only once nothing here acts any more (the workers have stopped)."""
        with self._lock:
            held = self._clock() < self._valid_until
            self._valid_until = float("-inf")
            observed = self._observed
        if held and observed is not None and observed.holder == self.identity:
            free = dataclasses.replace(observed, holder="", duration_s=1, renewed=self._now())
            try:
                self._store.replace_lease(
                    self.namespace, self.name, free, self.settings.retry_period
                )
                _log.info("leader election: released Lease %s/%s", self.namespace, self.name)
            except Exception as err:
                _log.warning("leader election: could not release the Lease: %s", err)
        self._report()

    def start(self) -> None:
        """Try at once, then every `retry_period` seconds, in a daemon thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop trying and release the Lease (see `release`)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.retry_period * 2)
        self.release()

    # -- inside ----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self.try_once()
            self._stop.wait(self.settings.retry_period)

    def _duration(self) -> int:
        # Whole seconds on the Lease, rounded up: a standby must never wait less than our
        # renew deadline.
        return max(1, math.ceil(self.settings.lease_duration))

    def _may_take(self, current: LeaseRecord, started: float) -> bool:
        """Ours, free, or unchanged for its whole duration as seen from here."""
        with self._lock:
            if self._observed is None or self._observed.version != current.version:
                self._observed, self._observed_at = current, started
            observed_at = self._observed_at
        if not current.holder or current.holder == self.identity:
            return True
        return started >= observed_at + current.duration_s

    def _settle(self, stored: LeaseRecord | None, started: float) -> None:
        if stored is None:  # someone else wrote it first: the compare-and-swap lost
            self._lose()
            return
        with self._lock:
            self._observed, self._observed_at = stored, started
            # From when the request was sent: the Lease may have been written any time after.
            self._valid_until = started + self.settings.renew_deadline

    def _lose(self) -> None:
        with self._lock:
            self._valid_until = float("-inf")

    def _report(self) -> None:
        leading = self.leading()
        if leading != self._reported:
            self._reported = leading
            _log.info(
                "leader election: %s Lease %s/%s as %s",
                "acquired" if leading else "lost",
                self.namespace,
                self.name,
                self.identity,
            )
            self._on_change(leading)
