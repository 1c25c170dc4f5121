"""Picking pods and holding requests, without a network: endpoints and wakes by hand."""

from __future__ import annotations

import asyncio

import pytest
from kinfer_activator.endpoints import Pod, StaticEndpoints
from kinfer_activator.metrics import ActivatorMetrics
from kinfer_activator.pool import HoldTimeout, ModelPool, QueueFull
from kinfer_activator.table import Track
from support.activator import NAMESPACE, FakeWaker, make_route

A, B = Pod("10.0.0.1", 8080, 8090), Pod("10.0.0.2", 8080, 8090)


def _pool(**fields: object) -> tuple[ModelPool, StaticEndpoints, FakeWaker]:
    endpoints, waker = StaticEndpoints(), FakeWaker()
    pool = ModelPool(make_route(20000, **fields), endpoints, waker, ActivatorMetrics())
    endpoints.subscribe(pool.dispatch)
    return pool, endpoints, waker


def test_warm_pick_is_the_pod_with_fewest_requests_in_flight() -> None:
    async def run() -> list[Pod]:
        pool, endpoints, _ = _pool()
        endpoints.set(NAMESPACE, "demo-stable", [A, B])
        first = await pool.acquire()
        second = await pool.acquire()
        pool.release(first, None)
        third = await pool.acquire()
        return [first.pod, second.pod, third.pod]

    first, second, third = asyncio.run(run())
    assert second != first
    assert third == first  # freed again, so least loaded


def test_reported_queue_depth_steers_away_from_a_pod_others_load() -> None:
    async def run() -> Pod:
        pool, endpoints, _ = _pool()
        endpoints.set(NAMESPACE, "demo-stable", [A, B])
        lease = await pool.acquire()
        busy = lease.pod
        pool.release(lease, reported_depth=5)  # five requests of other senders there
        return busy if (await pool.acquire()).pod == busy else Pod("none", 0)

    assert asyncio.run(run()).address == "none"


def test_held_requests_wake_ceil_held_over_target_and_release_paced() -> None:
    async def run() -> tuple[list[int], list[int]]:
        pool, endpoints, waker = _pool(target_concurrency=3, wake_replicas={"max": 10})
        tasks = [asyncio.ensure_future(pool.acquire()) for _ in range(10)]
        await asyncio.sleep(0.05)
        assert pool.held == 10
        endpoints.set(NAMESPACE, "demo-stable", [A])  # one pod turns Ready
        await asyncio.sleep(0.05)
        released = [t for t in tasks if t.done()]
        in_flight = [pool.inflight(A)]
        for task in released:
            pool.release(task.result(), None)
        await asyncio.sleep(0.05)
        in_flight.append(pool.inflight(A))
        return [r for _, _, r in waker.asks], in_flight

    asks, in_flight = asyncio.run(run())
    assert max(asks) == 4  # ceil(10 / 3)
    assert asks == sorted(asks)  # asked again as demand grew, never less
    assert in_flight == [3, 3]  # released three at a time to the one pod


def test_queue_full_and_hold_timeout() -> None:
    async def run() -> None:
        pool, _, _ = _pool(max_held_requests=1, max_hold_seconds=0.1)
        held = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull):
            await pool.acquire()
        with pytest.raises(HoldTimeout):
            await held
        assert pool.held == 0

    asyncio.run(run())


def test_a_client_gone_while_held_frees_its_place() -> None:
    async def run() -> int:
        pool, _, _ = _pool()
        held = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0.01)
        held.cancel()
        await asyncio.sleep(0.01)
        return pool.held

    assert asyncio.run(run()) == 0


def test_canary_weight_picks_the_revision_then_the_pod() -> None:
    canary = Track(revision="r2", service="demo-canary", deployment="demo-r2")

    async def run(weight: int) -> set[Pod]:
        pool, endpoints, _ = _pool(canary=canary, canary_weight=weight)
        endpoints.set(NAMESPACE, "demo-stable", [A])
        endpoints.set(NAMESPACE, "demo-canary", [B])
        picked = set()
        for _ in range(20):
            lease = await pool.acquire()
            picked.add(lease.pod)
            pool.release(lease, None)
        return picked

    assert asyncio.run(run(0)) == {A}
    assert asyncio.run(run(100)) == {B}
    assert asyncio.run(run(50)) == {A, B}


def test_only_the_stable_deployment_the_table_names_is_woken() -> None:
    canary = Track(revision="r2", service="demo-canary", deployment="demo-r2")

    async def run() -> set[tuple[str, str]]:
        pool, _, waker = _pool(canary=canary, canary_weight=50, max_hold_seconds=0.05)
        with pytest.raises(HoldTimeout):
            await pool.acquire()
        return {(ns, deployment) for ns, deployment, _ in waker.asks}

    assert asyncio.run(run()) == {(NAMESPACE, "demo-r1")}
