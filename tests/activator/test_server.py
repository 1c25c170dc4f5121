"""The activator in front of real runtime processes on loopback: holding at zero, waking,
paced release, limits, isolation between ports, least-queue routing."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

import aiohttp
from kinfer_activator.table import Track
from support.activator import NAMESPACE, ActivatorThread, Runtime, free_port, make_route

Body = tuple[bytes, dict[str, str]]
Answer = tuple[int, dict[str, str], bytes]


async def _post(
    session: aiohttp.ClientSession, url: str, body: Body, extra: dict[str, str] | None = None
) -> Answer:
    async with session.post(url, data=body[0], headers=body[1] | (extra or {})) as response:
        return response.status, dict(response.headers), await response.read()


async def _many(
    url: str, body: Body, n: int, while_sent: Callable[[], None] | None = None
) -> list[Answer]:
    """`n` concurrent requests; `while_sent` runs (in a thread) once they are all in flight."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [asyncio.ensure_future(_post(session, url, body)) for _ in range(n)]
        if while_sent is not None:
            await asyncio.to_thread(while_sent)
        return list(await asyncio.gather(*tasks))


def _url(port: int, model: str = "demo") -> str:
    return f"http://127.0.0.1:{port}/v2/models/{model}/infer"


def _wait_held(activator: ActivatorThread, port: int, n: int) -> None:
    deadline = time.monotonic() + 60
    pool = activator.activator.pool(port)
    assert pool is not None
    while pool.held < n:
        assert time.monotonic() < deadline, f"only {pool.held} of {n} requests held"
        time.sleep(0.02)


def test_hundred_requests_at_zero_all_answered_and_waker_asked_for_ceil(
    activator: ActivatorThread, runtimes: list[Runtime], infer_body: Body
) -> None:
    port = free_port()
    route = make_route(port, at_zero=True, target_concurrency=4, wake_replicas={"max": 30})
    activator.apply(route)
    cold_before = sum(r.requests("cold_start") for r in runtimes)

    def pods_turn_ready() -> None:
        _wait_held(activator, port, 100)
        activator.set_pods(route.stable.service, [r.pod for r in runtimes])

    answers = asyncio.run(_many(_url(port), infer_body, 100, pods_turn_ready))

    assert [status for status, _, _ in answers] == [200] * 100
    assert all(float(headers["x-kinfer-cold-start"]) > 0 for _, headers, _ in answers)
    asked = [replicas for _, _, replicas in activator.waker.asks]
    assert max(asked) == math.ceil(100 / 4)
    assert {(ns, dep) for ns, dep, _ in activator.waker.asks} == {(NAMESPACE, "demo-r1")}
    # Held requests reach the classified port with the marker: counted apart from analysis.
    assert sum(r.requests("cold_start") for r in runtimes) - cold_before == 100


def test_wake_is_capped_at_wake_replicas_max(
    activator: ActivatorThread, runtimes: list[Runtime], infer_body: Body
) -> None:
    port = free_port()
    route = make_route(port, at_zero=True, target_concurrency=1, wake_replicas={"max": 3})
    activator.apply(route)

    def pods_turn_ready() -> None:
        _wait_held(activator, port, 10)
        activator.set_pods(route.stable.service, [runtimes[0].pod])

    answers = asyncio.run(_many(_url(port), infer_body, 10, pods_turn_ready))

    assert [status for status, _, _ in answers] == [200] * 10
    assert max(replicas for _, _, replicas in activator.waker.asks) == 3


def test_release_never_exceeds_target_concurrency_per_pod(
    activator: ActivatorThread, slow_runtime: Runtime, infer_body: Body
) -> None:
    port = free_port()
    route = make_route(port, at_zero=True, target_concurrency=2)
    activator.apply(route)

    def pod_turns_ready() -> None:
        _wait_held(activator, port, 12)
        activator.set_pods(route.stable.service, [slow_runtime.pod])

    answers = asyncio.run(_many(_url(port), infer_body, 12, pod_turns_ready))

    assert [status for status, _, _ in answers] == [200] * 12
    # The runtime's own count of requests in flight beside each one: at most target - 1.
    depths = [int(headers["x-kinfer-queue-depth"]) for _, headers, _ in answers]
    assert max(depths) <= route.target_concurrency - 1, depths


def test_hold_past_max_hold_seconds_is_503_with_retry_after(
    activator: ActivatorThread, infer_body: Body
) -> None:
    port = free_port()
    activator.apply(make_route(port, at_zero=True, max_hold_seconds=0.3))

    [(status, headers, content)] = asyncio.run(_many(_url(port), infer_body, 1))

    assert status == 503
    assert headers["Retry-After"] == "5"
    assert b"became ready" in content


def test_full_queue_is_503_at_once(activator: ActivatorThread, infer_body: Body) -> None:
    port = free_port()
    activator.apply(make_route(port, at_zero=True, max_held_requests=2, max_hold_seconds=1))

    answers = asyncio.run(_many(_url(port), infer_body, 5))

    full = [a for a in answers if b"too many requests held" in a[2]]
    assert len(full) == 3
    assert all(status == 503 and "Retry-After" in headers for status, headers, _ in full)


def test_unknown_model_is_404_naming_it(
    activator: ActivatorThread, runtimes: list[Runtime], infer_body: Body
) -> None:
    port = free_port()
    route = make_route(port)
    activator.apply(route)
    activator.set_pods(route.stable.service, [runtimes[0].pod])

    [(status, _, content)] = asyncio.run(_many(_url(port, "resnet"), infer_body, 1))

    assert status == 404
    assert b"'resnet'" in content
    assert activator.waker.asks == []


def test_errors_pass_through_unchanged(activator: ActivatorThread, runtimes: list[Runtime]) -> None:
    port = free_port()
    route = make_route(port)
    activator.apply(route)
    activator.set_pods(route.stable.service, [runtimes[0].pod])
    bad: Body = (b'{"inputs": [{"name": "nope"}]}', {"Content-Type": "application/json"})

    [(via_status, _, via_body)] = asyncio.run(_many(_url(port), bad, 1))
    [(direct_status, _, direct_body)] = asyncio.run(
        _many(f"{runtimes[0].url}/v2/models/demo/infer", bad, 1)
    )

    assert via_status == direct_status == 400
    assert via_body == direct_body


def test_each_port_reaches_only_its_own_model(
    activator: ActivatorThread, runtimes: list[Runtime], infer_body: Body
) -> None:
    port_a, port_b = free_port(), free_port()
    route_a = make_route(port_a)
    route_b = make_route(
        port_b,
        namespace="team-b",
        stable=Track(revision="r9", service="demo-stable", deployment="demo-r9"),
    )
    activator.apply(route_a, route_b)
    activator.set_pods(route_a.stable.service, [runtimes[0].pod])  # team-a's demo only
    before = [r.requests() for r in runtimes]

    answers = asyncio.run(_many(_url(port_a), infer_body, 6))

    assert [status for status, _, _ in answers] == [200] * 6
    assert [r.requests() - b for r, b in zip(runtimes, before, strict=True)] == [6, 0]
    # team-b's model has no pod: its port holds (and wakes team-b's Deployment), never
    # borrowing team-a's pods although model and Service names are the same.
    pool_b = activator.activator.pool(port_b)
    assert pool_b is not None and pool_b.route.namespace == "team-b"


def test_table_change_closes_dropped_ports(activator: ActivatorThread, infer_body: Body) -> None:
    port_a, port_b = free_port(), free_port()
    activator.apply(make_route(port_a), make_route(port_b, model="other"))
    activator.apply(make_route(port_b, model="other"))

    async def connect() -> str:
        try:
            async with aiohttp.ClientSession() as session:
                await _post(session, _url(port_a), infer_body)
        except aiohttp.ClientConnectionError:
            return "refused"
        return "answered"

    assert asyncio.run(connect()) == "refused"
    assert activator.activator.pool(port_b) is not None


def test_least_queue_sends_most_requests_to_the_idle_pod(
    activator: ActivatorThread, runtimes: list[Runtime], slow_runtime: Runtime, infer_body: Body
) -> None:
    port = free_port()
    route = make_route(port, least_queue=True)
    activator.apply(route)
    activator.set_pods(route.stable.service, [slow_runtime.pod, runtimes[0].pod])
    before_fast, before_slow = runtimes[0].requests(), slow_runtime.requests()

    async def closed_loop() -> None:
        async with aiohttp.ClientSession() as session:

            async def client() -> None:
                for _ in range(10):
                    status, _, _ = await _post(session, _url(port), infer_body)
                    assert status == 200

            await asyncio.gather(*(client() for _ in range(4)))

    asyncio.run(closed_loop())

    fast = runtimes[0].requests() - before_fast
    slow = slow_runtime.requests() - before_slow
    assert fast + slow == 40
    assert fast > 2 * slow, (fast, slow)


def test_canary_weight_splits_between_revisions(
    activator: ActivatorThread, runtimes: list[Runtime], infer_body: Body
) -> None:
    port = free_port()
    canary = Track(revision="r2", service="demo-canary", deployment="demo-r2")
    route = make_route(port, canary=canary, canary_weight=100)
    activator.apply(route)
    activator.set_pods(route.stable.service, [runtimes[0].pod])
    activator.set_pods(canary.service, [runtimes[1].pod])
    before = [r.requests() for r in runtimes]

    asyncio.run(_many(_url(port), infer_body, 8))

    assert [r.requests() - b for r, b in zip(runtimes, before, strict=True)] == [0, 8]


def test_a_client_that_leaves_while_held_frees_its_place(
    activator: ActivatorThread, infer_body: Body
) -> None:
    port = free_port()
    activator.apply(make_route(port, at_zero=True, max_held_requests=1))

    async def leave() -> None:
        timeout = aiohttp.ClientTimeout(total=0.5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                await _post(session, _url(port), infer_body)
            except TimeoutError:
                return
        raise AssertionError("answered while no pod was ready")

    asyncio.run(leave())
    pool = activator.activator.pool(port)
    assert pool is not None
    deadline = time.monotonic() + 30
    while pool.held:
        assert time.monotonic() < deadline, "the gone client's request is still held"
        time.sleep(0.02)
