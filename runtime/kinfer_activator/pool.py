"""One model's pods as the activator sees them: which pod a request goes to, and the queue of
requests held while the model has no Ready pod.

- Warm (a Ready pod and nobody held): the canary weight picks the revision, then the pod with
  the least load goes: the activator's own in-flight count there plus what other senders have
  there, as the runtime reported it in its last answer (`x-kinfer-queue-depth`).
- Cold (no Ready pod in either revision, or earlier requests still held): the request joins a
  bounded FIFO. The first hold asks the Waker for ceil(held / targetConcurrency) replicas,
  capped at wakeReplicas.max, and asks again whenever held demand outgrows the last ask.
- Release: as pods turn Ready (an endpoint change) or finish requests, held requests go
  oldest-first to pods with fewer than targetConcurrency in flight, so the first Ready pod is
  never buried under the whole herd.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from kinfer_activator.endpoints import EndpointSource, Pod
from kinfer_activator.metrics import ActivatorMetrics
from kinfer_activator.table import Route, Track
from kinfer_activator.waker import Waker

__all__ = ["HoldTimeout", "Lease", "ModelPool", "QueueFull"]

log = logging.getLogger(__name__)

REPORT_TTL_S = 1.0
"""How long a pod's reported queue depth counts: it only refreshes when we send it requests."""
REASK_AFTER_S = 5.0
"""Ask again after this long with requests held and still no Ready pod (a failed or lost ask)."""


class QueueFull(Exception):
    """maxHeldRequests are held already."""


class HoldTimeout(Exception):
    """maxHoldSeconds passed with no pod to take the request."""


@dataclass(slots=True)
class Lease:
    """A pod slot, held from pick to answer."""

    pod: Pod
    waited_s: float | None
    """Seconds held before release; None when it went straight to a warm pod."""


@dataclass(slots=True)
class _Held:
    arrived: float
    future: asyncio.Future[Pod] = field(repr=False)


class ModelPool:
    def __init__(
        self, route: Route, endpoints: EndpointSource, waker: Waker, metrics: ActivatorMetrics
    ) -> None:
        self.route = route
        self._endpoints = endpoints
        self._waker = waker
        self._labels = route.key
        self._metrics = metrics
        self._held: deque[_Held] = deque()
        self._inflight: dict[Pod, int] = {}
        self._others: dict[Pod, tuple[int, float]] = {}  # pod -> (others' depth, reported at)
        self._asked = 0
        self._asked_at = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    # --- picking ------------------------------------------------------------------------

    @property
    def held(self) -> int:
        return len(self._held)

    def inflight(self, pod: Pod) -> int:
        return self._inflight.get(pod, 0)

    def _tracks(self) -> tuple[Sequence[Pod], Sequence[Pod]]:
        route = self.route
        stable = self._endpoints.ready(route.namespace, route.stable.service)
        canary: Sequence[Pod] = ()
        if route.canary is not None and route.canary_weight > 0:
            canary = self._endpoints.ready(route.namespace, route.canary.service)
        return stable, canary

    def _candidates(self) -> Sequence[Pod]:
        """The revision the canary weight picks; the other one when the pick has no pod."""
        stable, canary = self._tracks()
        if canary and random.random() * 100 < self.route.canary_weight:
            return canary
        return stable or canary

    def _load(self, pod: Pod, now: float) -> int:
        others, at = self._others.get(pod, (0, 0.0))
        return self._inflight.get(pod, 0) + (others if now - at < REPORT_TTL_S else 0)

    def _take(self, pods: Sequence[Pod], cap: int | None) -> Pod | None:
        now = time.monotonic()
        best: Pod | None = None
        best_load = 0
        for pod in pods:
            load = self._load(pod, now)
            if (best is None or load < best_load) and (cap is None or self.inflight(pod) < cap):
                best, best_load = pod, load
        if best is not None:
            self._inflight[best] = self._inflight.get(best, 0) + 1
        return best

    async def acquire(self) -> Lease:
        """A pod for one request: at once when warm, else after a hold (QueueFull, HoldTimeout)."""
        if not self._held:
            pods = self._candidates()
            if pods:
                pod = self._take(pods, None)
                assert pod is not None
                return Lease(pod, None)
        route = self.route
        if len(self._held) >= route.max_held_requests:
            self._metrics.rejected.labels(*self._labels, "queue_full").inc()
            raise QueueFull
        arrived = time.monotonic()
        held = _Held(arrived, asyncio.get_running_loop().create_future())
        self._held.append(held)
        self._metrics.held.labels(*self._labels).set(len(self._held))
        try:
            self.dispatch()
            self._ask_for_replicas()
            try:
                pod = await asyncio.wait_for(held.future, route.max_hold_seconds)
            except TimeoutError:
                self._metrics.rejected.labels(*self._labels, "hold_timeout").inc()
                raise HoldTimeout from None
        finally:
            if not held.future.done() or held.future.cancelled():
                self._remove(held)
        waited = time.monotonic() - arrived
        self._metrics.cold_start.labels(*self._labels).observe(waited)
        return Lease(pod, waited)

    def release(self, lease: Lease, reported_depth: int | None) -> None:
        """The request on `lease` is answered; `reported_depth` is the runtime's own count of
        requests still in flight there (from its response header), when it sent one."""
        pod = lease.pod
        mine = self._inflight.get(pod, 1) - 1
        if reported_depth is not None:
            self._others[pod] = (max(0, reported_depth - mine), time.monotonic())
        if mine > 0:
            self._inflight[pod] = mine
        else:
            self._inflight.pop(pod, None)
        if self._held:
            self.dispatch()

    # --- holding ------------------------------------------------------------------------

    def _remove(self, held: _Held) -> None:
        with contextlib.suppress(ValueError):
            self._held.remove(held)
        self._metrics.held.labels(*self._labels).set(len(self._held))
        if not self._held:
            self._asked = 0

    def dispatch(self) -> None:
        """Release held requests, oldest first, while some pod is under targetConcurrency."""
        cap = self.route.target_concurrency
        while self._held:
            held = self._held[0]
            if held.future.done():  # timed out or its client went away
                self._held.popleft()
                continue
            pods = self._candidates()
            pod = self._take(pods, cap) if pods else None
            if pod is None:
                stable, canary = self._tracks()
                # The weighted pick may be full while the other revision has room.
                pod = self._take([*stable, *canary], cap)
                if pod is None:
                    break
            self._held.popleft()
            held.future.set_result(pod)
        self._metrics.held.labels(*self._labels).set(len(self._held))
        if not self._held:
            self._asked = 0

    def _ask_for_replicas(self) -> None:
        route = self.route
        wanted = min(math.ceil(len(self._held) / route.target_concurrency), route.wake_replicas.max)
        now = time.monotonic()
        stale = now - self._asked_at > REASK_AFTER_S and not any(self._tracks())
        if wanted <= self._asked and not stale:
            return
        self._asked = max(wanted, self._asked)
        self._asked_at = now
        self._metrics.wakes.labels(*self._labels).inc()
        task = asyncio.create_task(self._wake(route.namespace, route.stable, self._asked))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _wake(self, namespace: str, stable: Track, replicas: int) -> None:
        try:
            await self._waker.wake(namespace, stable.deployment, replicas)
        except Exception:
            log.exception("waking %s/%s failed; asking again later", namespace, stable.deployment)
            self._asked_at = 0.0

    def tick(self) -> None:
        """Periodic: re-ask when requests are held and still no pod is Ready."""
        if self._held:
            self.dispatch()
            if self._held:
                self._ask_for_replicas()
