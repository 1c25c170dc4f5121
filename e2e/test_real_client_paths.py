"""A GatewayAPI canary as each kind of client sees it: the candidate's share per step, measured
over real requests on the real node, for every path a client can take to the model.

* gateway HTTP: through Traefik's HTTPRoute, 8 keep-alive clients (the weight in status,
  +-3 points over 2000 requests);
* gateway gRPC: Triton's gRPC client (tritonclient.grpc) holding ONE channel through Traefik's
  GRPCRoute (the declared weight, +-5 points over 1000 calls: the route splits per call, not
  per connection);
* Service HTTP and Service gRPC: in-cluster clients of the `<name>` Service (its ClusterIP,
  through kube-proxy's rules), which the operator pins to stable while a GatewayAPI canary
  runs (rollout/front.py): exactly 0 candidate answers at every step.

A `weight: 0` step (pinned requests only) must send no unpinned request to the candidate on
any path: exactly 0 there, while every pinned request (HTTP header / gRPC metadata) reaches it.
Which revision answered is each response's `model_version` (the spec.model.version the
runtime serves). The four paths are measured at once, as four clients would be.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from dataplane import Prometheus
from gateway import Traefik
from harness import kubectl, kubectl_apply, kubectl_json, wait_until
from realnode import GRPC_RETRY_ARGS, canary_rollout, model_manifest, serving_url
from test_core import wait_ready
from test_real_gateway import (
    PIN,
    LiveTraffic,
    rollout_of,
    send,
    stable_behind_gateway,
    traefik,  # noqa: F401  (the module's Traefik fixture)
    wait_routed,
)

pytestmark = pytest.mark.real_node

REQUESTS = {
    "gateway HTTP": 2000,
    "gateway gRPC (one channel)": 1000,
    "Service HTTP": 1000,
    "Service gRPC (one channel)": 1000,
}
PINNED_PER_STEP = 100
TOLERANCE = {"gateway HTTP": 3.0, "gateway gRPC (one channel)": 5.0}  # percentage points
STEPS = [(0, 70), (10, 70), (50, 70)]
"""(weight, pauseSeconds): each step stays long enough for the four paths' 5000 requests,
sent at once (each one-channel gRPC client sends its calls one at a time): about 30 s
on the 2-core VM."""


def _grpc_sender(
    target: str, authority: str | None, pause: float = 0.0
) -> Callable[..., Counter[str]]:
    """A Triton gRPC client on ONE channel (one HTTP/2 connection at a time, as a client
    library holds it, with the retry policy the README asks of gRPC clients):
    `send(count, metadata)` makes `count` calls in a row, `pause` seconds apart, and counts
    the versions that answered ('error ...' for a failed call)."""
    import tritonclient.grpc as tc
    from tritonclient.utils import InferenceServerException

    args = list(GRPC_RETRY_ARGS)
    if authority:
        args.append(("grpc.default_authority", authority))
    client = tc.InferenceServerClient(target, channel_args=args)
    batch = np.random.default_rng(3).standard_normal((1, 3, 32, 32)).astype(np.float32)
    tensor = tc.InferInput("input", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)

    def send_grpc(count: int, metadata: dict[str, str] | None = None) -> Counter[str]:
        answered: Counter[str] = Counter()
        for _ in range(count):
            try:
                result = client.infer("demo", [tensor], headers=metadata, client_timeout=10)
                answered[result.get_response().model_version] += 1
            except InferenceServerException as err:
                answered[f"error {err.status()}"] += 1
            if pause:
                time.sleep(pause)
        return answered

    return send_grpc


def _grpc_routed(ns: str) -> bool:
    conditions = (kubectl_json("get", "im", "demo", "-n", ns).get("status") or {}).get(
        "conditions"
    ) or []
    return any(c["type"] == "GRPCRouted" and c["status"] == "True" for c in conditions)


def _service_selector(ns: str) -> dict[str, str]:
    return dict(kubectl_json("get", "service", "demo", "-n", ns)["spec"]["selector"])


def _at_once(senders: dict[str, Callable[[], Counter[str]]]) -> dict[str, Counter[str]]:
    """Every path's requests at the same time; each path's answers by version."""
    with ThreadPoolExecutor(max_workers=len(senders)) as pool:
        futures = {path: pool.submit(sender) for path, sender in senders.items()}
        return {path: future.result() for path, future in futures.items()}


def _wait_promoted(ns: str) -> None:
    last: list[dict[str, Any]] = []

    def promoted() -> bool:
        last[:] = [rollout_of(ns)]
        return last[0].get("phase") == "Succeeded"

    try:
        wait_until(promoted, 240, "promotion")
    except AssertionError as err:
        raise AssertionError(f"{err}; the rollout last: {last}") from None


@pytest.mark.timeout(1200)
def test_every_client_path_gets_its_documented_share_and_weight_zero_gets_none(
    quiet_cluster: str,
    traefik: Traefik,  # noqa: F811
    real_prometheus: Prometheus,
    capsys: pytest.CaptureFixture[str],
) -> None:
    namespace = quiet_cluster  # earlier models' pods are gone: the node's cores are ours
    manifest = stable_behind_gateway(namespace, traefik, real_prometheus, STEPS, pin=PIN)
    wait_routed(namespace, traefik, "1")
    try:
        wait_until(lambda: _grpc_routed(namespace), 120, "Traefik to accept the GRPCRoute")
    except AssertionError as err:
        routes = kubectl("get", "grpcroute", "demo", "-n", namespace, "-o", "yaml", check=False)
        raise AssertionError(f"{err}\n{routes.stdout}\n{traefik.log_tail(10)}") from None
    host = f"{namespace}.kinfer.test"
    gateway = urlsplit(traefik.url)
    grpc_gateway = _grpc_sender(f"{gateway.hostname}:{gateway.port}", authority=host)
    svc_http = serving_url(namespace, "demo")  # waits until kube-proxy routes the ClusterIP
    svc = urlsplit(svc_http)
    grpc_service = _grpc_sender(f"{svc.hostname}:8081", authority=None)
    assert grpc_gateway(4) == Counter({"1": 4})  # gRPC through the gateway before the canary
    assert grpc_service(4) == Counter({"1": 4})

    manifest["spec"]["model"]["version"] = "2"
    rows: list[tuple[int, int, dict[str, Counter[str]], dict[str, Counter[str]]]] = []
    with LiveTraffic(traefik, host) as live:
        kubectl_apply(manifest, namespace)
        for step, (weight, _pause) in enumerate(STEPS):

            def at_step(step: int = step, weight: int = weight) -> dict[str, Any] | None:
                r = rollout_of(namespace)
                current = r.get("step") == step and r.get("weight") == weight
                return r if current and r.get("stepStartedAt") else None

            before = wait_until(at_step, 300, f"step {step} at weight {weight} routed")
            status = kubectl_json("get", "im", "demo", "-n", namespace)["status"]
            selector = _service_selector(namespace)
            senders: dict[str, Callable[[], Counter[str]]] = {
                "gateway HTTP": lambda: send(traefik.url, host, REQUESTS["gateway HTTP"]),
                "gateway gRPC (one channel)": lambda: grpc_gateway(
                    REQUESTS["gateway gRPC (one channel)"]
                ),
                "Service HTTP": lambda: send(svc_http, host, REQUESTS["Service HTTP"]),
                "Service gRPC (one channel)": lambda: grpc_service(
                    REQUESTS["Service gRPC (one channel)"]
                ),
            }
            started = time.monotonic()
            unpinned = _at_once(senders)
            took = time.monotonic() - started
            pinned = _at_once(
                {
                    "gateway HTTP": lambda: send(
                        traefik.url, host, PINNED_PER_STEP, extra={PIN["header"]: PIN["value"]}
                    ),
                    "gateway gRPC (one channel)": lambda: grpc_gateway(
                        PINNED_PER_STEP, {PIN["header"]: PIN["value"]}
                    ),
                }
            )
            after = rollout_of(namespace)
            assert (after.get("step"), after.get("stepStartedAt")) == (
                step,
                before["stepStartedAt"],
            ), f"the step moved on while it was measured ({took:.0f}s): lengthen its pause"
            assert status["canaryWeight"] == weight and status["trafficSplit"] == "Exact"
            # The <name> Service is pinned to stable for the whole GatewayAPI canary.
            assert selector.get("serving.kinfer.io/revision") == status["stableRevision"], selector
            rows.append((step, weight, unpinned, pinned))
            with capsys.disabled():  # each step's shares, even if a later step fails
                print(f"\nstep {step} weight {weight}%: four paths in {took:.0f}s")
                for path, answered in unpinned.items():
                    print(f"step {step} weight {weight}% {path}: {dict(answered)}")
        _wait_promoted(namespace)

    with capsys.disabled():
        print("\n| step | weight | path | candidate share (unpinned) | pinned to candidate |")
        print("|---|---|---|---|---|")
        for step, weight, unpinned, pinned in rows:
            for path, answered in unpinned.items():
                share = 100 * answered["2"] / REQUESTS[path]
                pin = f"{pinned[path]['2']}/{PINNED_PER_STEP}" if path in pinned else "-"
                print(
                    f"| {step} | {weight}% | {path} | {share:.1f}% "
                    f"({answered['2']}/{REQUESTS[path]}) | {pin} |"
                )

    for step, weight, unpinned, pinned in rows:
        for path, answered in unpinned.items():
            assert sum(answered.values()) == REQUESTS[path], (step, path, answered)
            assert set(answered) <= {"1", "2"}, (step, path, answered)  # 0 failed calls
            share = 100 * answered["2"] / REQUESTS[path]
            if weight == 0 or path.startswith("Service"):
                # Weight 0, and the Service during a GatewayAPI canary: not one unpinned
                # request reaches the candidate.
                assert answered["2"] == 0, (step, path, answered)
            else:
                assert abs(share - weight) <= TOLERANCE[path], (step, weight, path, answered)
        for path, answered in pinned.items():
            assert answered == Counter({"2": PINNED_PER_STEP}), (step, path, answered)
    assert set(live.answered) <= {"1", "2"}, live.answered  # no error while weights moved
    # Promoted: the Service selects every revision again (only the new one is left).
    wait_until(
        lambda: "serving.kinfer.io/revision" not in _service_selector(namespace),
        60,
        "the Service to select every revision after promotion",
    )
    wait_routed(namespace, traefik, "2")
    # A channel to a retired pod reconnects; kube-proxy then sends it to the promoted pods.
    wait_until(lambda: grpc_service(5) == Counter({"2": 5}), 60, "Service gRPC on v2")


ONE_CHANNEL_CALLS = 1200
"""ReplicaRatio: calls on one gRPC channel, 50 ms apart (about a minute)."""


@pytest.mark.timeout(600)
def test_one_grpc_channel_follows_the_replica_ratio_once_connections_age(
    namespace: str, real_prometheus: Prometheus, capsys: pytest.CaptureFixture[str]
) -> None:
    """ReplicaRatio: the Service spreads connections, not calls, so one long-lived channel
    sticks to one pod (0% or 100% of the candidate). With `maxConnectionAgeSeconds: 1` the
    runtime ends each connection after a second (GOAWAY, in-flight calls finish) and the
    channel reconnects through kube-proxy: over a minute the one channel reaches both
    revisions, with 0 failed calls. Its share is printed next to the replica ratio (50%);
    about 60 connections picked at random are too few to promise +-5 points, so the case
    asserts the re-balancing and the clean hand-overs, and prints the share."""
    rollout = canary_rollout(real_prometheus.endpoint, [(50, 300)])
    grpc = {"maxConnectionAgeSeconds": 1, "maxConnectionAgeGraceSeconds": 5}
    manifest = model_manifest("demo", replicas=2, rollout=rollout, runtime={"grpc": grpc})
    kubectl_apply(manifest, namespace)
    wait_ready(namespace, "demo", timeout=180)
    host = urlsplit(serving_url(namespace, "demo")).hostname
    channel = _grpc_sender(f"{host}:8081", authority=None, pause=0.05)
    assert channel(4) == Counter({"1": 4})

    manifest["spec"]["model"]["version"] = "2"
    kubectl_apply(manifest, namespace)

    def both_serving() -> dict[str, Any] | None:
        r = rollout_of(namespace)
        status = kubectl_json("get", "im", "demo", "-n", namespace)["status"]
        ready = r.get("step") == 0 and r.get("stepStartedAt") and status.get("canaryWeight")
        return status if ready else None

    status = wait_until(both_serving, 240, "the canary at 50% beside stable")
    answered = channel(ONE_CHANNEL_CALLS)
    share = 100 * answered["2"] / ONE_CHANNEL_CALLS
    with capsys.disabled():
        print(
            f"\nReplicaRatio, one gRPC channel, maxConnectionAgeSeconds 1: {dict(answered)}; "
            f"candidate share {share:.1f}% (replica ratio {status['canaryWeight']}%, "
            f"split {status.get('trafficSplit')})"
        )
    assert set(answered) <= {"1", "2"}, answered  # 0 failed calls
    assert answered["1"] > 0 and answered["2"] > 0, answered  # not stuck on one pod
