"""The keyed work queue: dedup, one pass per key at a time, delays, backoff, fairness."""

from __future__ import annotations

import threading
import time

import pytest
from kinfer_operator.reconcile.queue import RetryPolicy, WorkQueue


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _drain(queue: WorkQueue[str]) -> list[str]:
    out = []
    while (key := queue.get(timeout=0)) is not None:
        out.append(key)
        queue.done(key)
    return out


def test_duplicates_collapse_while_a_key_waits() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "a", "a", "c", "b"):
        queue.add(key)
    assert queue.depth() == 3
    assert _drain(queue) == ["a", "b", "c"]
    queue.shutdown()


def test_a_key_added_while_processing_runs_again_after_not_during() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert queue.get(timeout=0) == "a"
    queue.add("a")  # an event arrives during the pass
    queue.add("a")
    assert queue.get(timeout=0) is None  # not handed to a second worker
    queue.done("a")
    assert queue.get(timeout=0) == "a"  # once more, after the first pass
    queue.done("a")
    assert queue.get(timeout=0) is None
    queue.shutdown()


def test_a_storm_on_one_key_delays_others_by_at_most_one_pass() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("storm")
    key = queue.get(timeout=0)
    assert key == "storm"
    for other in ("b", "c"):
        queue.add(other)
    for _ in range(1000):  # a pod event storm while its pass runs
        queue.add("storm")
    queue.done("storm")
    order = _drain(queue)
    assert order == ["b", "c", "storm"]
    queue.shutdown()


def test_add_after_uses_the_earliest_delay_and_fires_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("a", 30.0)
    queue.add_after("a", 0.05)  # sooner: wins
    queue.add_after("a", 10.0)  # later than pending: ignored
    assert queue.delayed() == 1
    assert queue.get(timeout=2.0) == "a"
    queue.done("a")
    assert queue.get(timeout=0.2) is None  # the superseded 30 s entry never fires early
    assert queue.delayed() == 0
    queue.shutdown()


def test_failures_back_off_exponentially_per_key_up_to_the_cap() -> None:
    policy = RetryPolicy(base_seconds=1.0, cap_seconds=8.0, rate_per_second=1000, burst=1000)
    queue: WorkQueue[str] = WorkQueue(policy)
    delays = [queue.add_rate_limited("a") for _ in range(6)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert queue.add_rate_limited("b") == 1.0  # per key
    queue.forget("a")
    assert queue.add_rate_limited("a") == 1.0  # success resets it
    queue.shutdown()


def test_retries_share_a_global_rate_limit() -> None:
    clock = FakeClock()
    policy = RetryPolicy(base_seconds=0.001, cap_seconds=1.0, rate_per_second=10, burst=5)
    queue: WorkQueue[str] = WorkQueue(policy, clock=clock)
    delays = [queue.add_rate_limited(f"k{i}") for i in range(8)]
    assert delays[:5] == [0.001] * 5  # the burst
    assert delays[5:] == pytest.approx([0.1, 0.2, 0.3])  # then 10 per second, in turn
    queue.shutdown()


def test_workers_never_run_one_key_twice_at_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    running: set[str] = set()
    overlaps: list[str] = []
    lock = threading.Lock()
    passes = {"a": 0, "b": 0}

    def worker() -> None:
        while (key := queue.get()) is not None:
            with lock:
                if key in running:
                    overlaps.append(key)
                running.add(key)
            time.sleep(0.001)
            with lock:
                running.discard(key)
                passes[key] += 1
            queue.done(key)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(300):
        queue.add("a")
        queue.add("b")
        time.sleep(0.0002)
    deadline = time.monotonic() + 5
    while (queue.depth() or any(passes[k] == 0 for k in passes)) and time.monotonic() < deadline:
        time.sleep(0.01)
    queue.shutdown()
    for t in threads:
        t.join(timeout=5)
    assert overlaps == []
    assert 1 <= passes["a"] < 300  # collapsed, not one pass per add


def test_shutdown_wakes_blocked_workers() -> None:
    queue: WorkQueue[str] = WorkQueue()
    got: list[str | None] = []
    thread = threading.Thread(target=lambda: got.append(queue.get()))
    thread.start()
    queue.shutdown()
    thread.join(timeout=2)
    assert got == [None]
    queue.add("a")
    assert queue.depth() == 0


def test_a_blocked_worker_wakes_for_a_new_key_while_the_scheduler_waits_too() -> None:
    """The scheduler thread waits on the same lock; the wake-up must reach the worker."""
    queue: WorkQueue[str] = WorkQueue()
    time.sleep(0.05)  # the scheduler is now waiting (for a first delay)
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(queue.get()))
    worker.start()
    time.sleep(0.05)  # the worker is now waiting too
    queue.add("a")
    worker.join(timeout=2)
    assert got == ["a"]
    queue.shutdown()
