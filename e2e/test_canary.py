"""Canary rollouts on the real control plane, measured by a real Prometheus.

The operator, API server, controllers, Prometheus and the runtime processes are real; the
serving side of kwok's pods is played by the test-only stand-in in e2e/dataplane.py (it
replaces the kubelet and the gateway; read its docstring). This file keeps the rollout
machine's cases that need GPU nodes or the Gateway API; e2e/test_real_rollout.py runs
canaries on real pods with a real data plane.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dataplane import DataPlane, Prometheus
from harness import (
    BackgroundLoop,
    condition,
    kubectl,
    kubectl_apply,
    kubectl_json,
    wait_until,
)

pytestmark = pytest.mark.host_services(
    "a Prometheus on this host and the kwok data-plane stand-in (e2e/dataplane.py)"
)

NAME = "canary-demo"


def manifest(version: str, prometheus: str, **rollout: Any) -> dict[str, Any]:
    """`prometheus`: the name of an endpoint in the operator's configuration."""
    spec_rollout: dict[str, Any] = {
        "canary": {
            "steps": [{"weight": 25, "pauseSeconds": 4}, {"weight": 50, "pauseSeconds": 4}],
            "progressDeadlineSeconds": 60,
            "scaleDownDelaySeconds": 2,
        },
        "analysis": {
            "prometheus": prometheus,
            "intervalSeconds": 3,
            "minRequestCount": 10,
            "failureLimit": 2,
            "errorLimit": 3,
        },
    }
    for key, value in rollout.items():
        spec_rollout[key] = {**spec_rollout.get(key, {}), **value}
    return {
        "apiVersion": "serving.kinfer.io/v1alpha1",
        "kind": "InferenceModel",
        "metadata": {"name": NAME},
        "spec": {
            "model": {"uri": "file:///models/demo/model.onnx", "version": version},
            "runtime": {"image": "kinfer/runtime:dev"},
            "replicas": 4,
            "rollout": spec_rollout,
        },
    }


def im(ns: str) -> dict[str, Any]:
    return dict(kubectl_json("get", "im", NAME, "-n", ns))


def rollout_of(ns: str) -> dict[str, Any]:
    return dict(im(ns)["status"].get("rollout") or {})


def wait_rollout(ns: str, phase: str, timeout: float = 90) -> dict[str, Any]:
    return wait_until(
        lambda: (r := rollout_of(ns)) and r.get("phase") == phase and r,
        timeout,
        f"rollout phase {phase}",
    )


def events(ns: str) -> str:
    return kubectl(
        "get",
        "events",
        "-n",
        ns,
        "--field-selector",
        f"involvedObject.name={NAME}",
        "--sort-by=.lastTimestamp",
    ).stdout


def start_stable(ns: str, prometheus: Prometheus, **rollout: Any) -> str:
    kubectl_apply(manifest("1", prometheus.endpoint, **rollout), ns)
    kubectl("wait", "-n", ns, f"im/{NAME}", "--for=condition=Ready", "--timeout=60s")
    return str(im(ns)["status"]["stableRevision"])


@pytest.fixture
def plane(
    namespace: str, prometheus: Prometheus, model_files: dict[str, Path], tmp_path: Path
) -> Iterator[DataPlane]:
    versions = {
        "1": model_files["normal"],
        "2": model_files["normal"],
        "3": model_files["normal"],
        "bad": model_files["faulty"],
        "slow": model_files["slow"],
    }
    with DataPlane(namespace, NAME, versions, prometheus, tmp_path) as dp:
        yield dp


def test_good_canary_is_promoted_through_every_step(
    namespace: str, prometheus: Prometheus, plane: DataPlane
) -> None:
    first = start_stable(namespace, prometheus)
    kubectl_apply(manifest("2", prometheus.endpoint), namespace)
    seen: list[tuple[int, int]] = []

    def promoted() -> bool:
        r = rollout_of(namespace)
        if r.get("phase") == "Progressing" and r.get("stepStartedAt"):
            step = (r["step"], r["weight"])
            if not seen or seen[-1] != step:
                seen.append(step)
        return r.get("phase") == "Succeeded"

    wait_until(promoted, 120, "the canary to be promoted")
    assert seen == [(0, 25), (1, 50)]
    status = im(namespace)["status"]
    assert status["stableModelVersion"] == "2" and status["stableRevision"] != first
    assert status["rollout"]["lastAnalysis"]["decision"] == "Pass"
    assert condition(im(namespace), "Ready")["status"] == "True"
    assert events(namespace).count("Promoted") == 1
    canary_requests = sum(n for (rev, _), n in plane.sent.items() if rev != first)
    assert canary_requests > 0


def test_bad_canary_is_rolled_back_naming_the_metric(
    namespace: str, prometheus: Prometheus, plane: DataPlane
) -> None:
    first = start_stable(namespace, prometheus)
    kubectl_apply(manifest("bad", prometheus.endpoint), namespace)
    rollout = wait_rollout(namespace, "RolledBack")
    assert rollout["reason"] == "AnalysisFailed"
    assert "error-rate" in rollout["message"]
    metric = next(m for m in rollout["lastAnalysis"]["metrics"] if m["name"] == "error-rate")
    assert metric["verdict"] == "Fail" and float(metric["value"]) > 0.01
    status = im(namespace)["status"]
    assert status["phase"] == "RolledBack" and status["stableRevision"] == first
    assert condition(im(namespace), "Degraded")["reason"] == "RolledBack"
    assert "RolledBack" in events(namespace)
    # No retry loop: the bad revision stays rolled back, its Deployment goes away.
    wait_until(
        lambda: len(kubectl_json("get", "deploy", "-n", namespace)["items"]) == 1,
        30,
        "the canary Deployment to be removed",
    )
    time.sleep(8)
    assert rollout_of(namespace)["phase"] == "RolledBack"
    assert events(namespace).count("RolloutStarted") == 1


def test_too_little_traffic_holds_then_proceeds(
    namespace: str, prometheus: Prometheus, plane: DataPlane
) -> None:
    start_stable(namespace, prometheus)
    plane.rate = 0
    kubectl_apply(manifest("2", prometheus.endpoint), namespace)
    wait_until(
        lambda: (rollout_of(namespace).get("lastAnalysis") or {}).get("decision") == "Inconclusive",
        60,
        "an inconclusive analysis",
    )
    time.sleep(7)
    held = rollout_of(namespace)
    assert (held["phase"], held["step"], held["failures"]) == ("Progressing", 0, 0)
    plane.rate = 20
    wait_rollout(namespace, "Succeeded", 120)


def test_unreachable_prometheus_is_an_error_then_an_abort(
    namespace: str, prometheus: Prometheus, plane: DataPlane
) -> None:
    start_stable(namespace, prometheus)
    # The operator's "down" endpoint: a port nothing listens on, a Prometheus that is down.
    kubectl_apply(manifest("2", "down"), namespace)
    wait_until(lambda: rollout_of(namespace).get("errors", 0) >= 1, 60, "a Prometheus error")
    assert rollout_of(namespace)["failures"] == 0
    rollout = wait_rollout(namespace, "RolledBack")
    assert rollout["reason"] == "AnalysisUnavailable"
    assert rollout["lastAnalysis"]["decision"] == "Error"


def test_operator_killed_mid_canary_resumes_at_the_same_step(
    namespace: str, prometheus: Prometheus, plane: DataPlane, operator: Any
) -> None:
    if operator is None:
        pytest.skip("the in-cluster operator is restarted by deleting its pod instead")
    start_stable(namespace, prometheus)
    slow_steps = {
        "canary": {"steps": [{"weight": 25, "pauseSeconds": 6}, {"weight": 50, "pauseSeconds": 6}]}
    }
    kubectl_apply(manifest("2", prometheus.endpoint, **slow_steps), namespace)
    wait_until(lambda: rollout_of(namespace).get("step") == 1, 90, "step 2")
    operator.stop(kill=True)
    frozen = rollout_of(namespace)
    time.sleep(3)
    assert rollout_of(namespace) == frozen  # nobody else acts while it is down
    operator.start()
    # Every rollout state seen after the restart: it goes on from the frozen step (the
    # same rollout, never restarted from step 1) until it succeeds.
    seen: list[dict[str, Any]] = []

    def succeeded() -> bool:
        seen.append(rollout_of(namespace))
        return seen[-1].get("phase") == "Succeeded"

    wait_until(succeeded, 120, "the resumed rollout to succeed", interval=0.5)
    assert {s.get("startedAt") for s in seen} == {frozen["startedAt"]}  # the same rollout
    steps = [s["step"] for s in seen if "step" in s]
    assert steps and min(steps) >= frozen["step"], (frozen, steps)  # no earlier step again
    assert steps == sorted(steps)
    log = events(namespace)
    assert log.count("RolloutStarted") == 1 and log.count("Promoted") == 1


def test_reverting_the_spec_to_stable_is_a_no_op(
    namespace: str, prometheus: Prometheus, plane: DataPlane
) -> None:
    first = start_stable(namespace, prometheus)
    kubectl_apply(manifest("bad", prometheus.endpoint), namespace)
    wait_rollout(namespace, "RolledBack")
    analysed = rollout_of(namespace)["lastAnalysis"]["time"]
    kubectl_apply(manifest("1", prometheus.endpoint), namespace)  # git revert
    kubectl("wait", "-n", namespace, f"im/{NAME}", "--for=condition=Ready", "--timeout=60s")
    time.sleep(6)
    status = im(namespace)["status"]
    assert status["stableRevision"] == first and "canaryRevision" not in status
    assert rollout_of(namespace)["lastAnalysis"]["time"] == analysed
    assert events(namespace).count("RolloutStarted") == 1


def test_spec_change_mid_canary_restarts_the_rollout(
    namespace: str, prometheus: Prometheus, plane: DataPlane
) -> None:
    start_stable(namespace, prometheus)
    kubectl_apply(manifest("2", prometheus.endpoint), namespace)
    wait_until(lambda: rollout_of(namespace).get("step") == 1, 90, "step 2 of version 2")
    kubectl_apply(manifest("3", prometheus.endpoint), namespace)
    wait_until(lambda: rollout_of(namespace).get("modelVersion") == "3", 30, "a new rollout")
    restarted = rollout_of(namespace)
    assert restarted["step"] == 0 and restarted["phase"] == "Progressing"
    assert "RolloutRestarted" in events(namespace)
    wait_rollout(namespace, "Succeeded", 120)
    assert im(namespace)["status"]["stableModelVersion"] == "3"


def plugin(command: str, namespace: str) -> str:
    """`kubectl kinfer <command>`, the documented manual control."""
    exe = Path(sys.executable).with_name("kubectl-kinfer")
    proc = subprocess.run(
        [str(exe), command, NAME, "-n", namespace], capture_output=True, text=True, check=True
    )
    return proc.stdout


def test_manual_promote_and_abort(namespace: str, prometheus: Prometheus, plane: DataPlane) -> None:
    start_stable(namespace, prometheus)
    long = {
        "canary": {
            "steps": [{"weight": 25, "pauseSeconds": 600}, {"weight": 50, "pauseSeconds": 600}]
        }
    }
    kubectl_apply(manifest("2", prometheus.endpoint, **long), namespace)
    wait_until(lambda: im(namespace)["status"].get("canaryRevision"), 30, "a canary")
    plugin("promote", namespace)
    wait_rollout(namespace, "Succeeded", 60)
    assert im(namespace)["status"]["stableModelVersion"] == "2"

    kubectl_apply(manifest("3", prometheus.endpoint, **long), namespace)
    canary = wait_until(
        lambda: (r := rollout_of(namespace)).get("modelVersion") == "3" and r["revision"],
        30,
        "the second canary",
    )
    kubectl("annotate", "im", NAME, "-n", namespace, f"serving.kinfer.io/abort={canary}")
    rollout = wait_rollout(namespace, "RolledBack", 60)
    assert rollout["reason"] == "ManualAbort"
    assert "RolledBack" in plugin("status", namespace)
    assert im(namespace)["status"]["stableModelVersion"] == "2"


def test_gpu_unschedulable_canary_waits_then_rolls_back(
    namespace: str, prometheus: Prometheus, plane: DataPlane
) -> None:
    stable = manifest("1", prometheus.endpoint)
    stable["spec"]["runtime"]["gpu"] = {"count": 1, "product": "NVIDIA-H100-80GB-HBM3"}
    stable["spec"]["replicas"] = 2
    kubectl_apply(stable, namespace)
    kubectl("wait", "-n", namespace, f"im/{NAME}", "--for=condition=Ready", "--timeout=60s")
    greedy = copy.deepcopy(stable)  # 8 more H100s do not fit next to the stable replica
    greedy["spec"]["runtime"]["gpu"]["count"] = 8
    greedy["spec"]["model"]["version"] = "2"
    greedy["spec"]["rollout"]["canary"]["progressDeadlineSeconds"] = 30
    kubectl_apply(greedy, namespace)
    weights: set[int] = set()

    def rolled_back() -> bool:
        status = im(namespace)["status"]
        weights.add(int((status.get("rollout") or {}).get("weight", 0)))
        return (status.get("rollout") or {}).get("phase") == "RolledBack"

    wait_until(rolled_back, 90, "the GPU-starved canary to roll back")
    rollout = rollout_of(namespace)
    assert rollout["reason"] == "GPUUnschedulable" and "Insufficient" in rollout["message"]
    assert weights == {0}  # traffic never shifted to pods that could not run


class GatewayStandIn(BackgroundLoop):
    """TEST-ONLY stand-in for a Gateway API controller: it reports the kinfer HTTPRoute (and
    GRPCRoute, which holds the step as well when the operator watches GRPCRoutes) as Accepted
    with ResolvedRefs for its current generation, as a real gateway would once it programmed
    the route. `accepting` lets a test hold that back."""

    interval = 0.5

    def __init__(self, namespace: str) -> None:
        super().__init__()
        self.namespace = namespace
        self.accepting = False
        self.weights: list[tuple[int, int]] = []

    def tick(self) -> None:
        for route in kubectl_json("get", "httproutes", "-n", self.namespace)["items"]:
            backends = route["spec"]["rules"][0]["backendRefs"]
            pair = (backends[0].get("weight"), backends[1].get("weight"))
            if not self.weights or self.weights[-1] != pair:
                self.weights.append(pair)
            if self.accepting:
                self._accept(route)
        if self.accepting:
            try:
                grpc = kubectl_json("get", "grpcroutes", "-n", self.namespace)["items"]
            except AssertionError:
                grpc = []  # no GRPCRoute CRD: the operator writes none
            for route in grpc:
                self._accept(route, "grpcroute")

    def _accept(self, route: dict[str, Any], kind: str = "httproute") -> None:
        generation = route["metadata"]["generation"]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        conditions = [
            {
                "type": t,
                "status": "True",
                "reason": t,
                "message": "e2e stand-in",
                "observedGeneration": generation,
                "lastTransitionTime": now,
            }
            for t in ("Accepted", "ResolvedRefs")
        ]
        status = {
            "parents": [
                {
                    "parentRef": route["spec"]["parentRefs"][0],
                    "controllerName": "kinfer.io/e2e-gateway-stand-in",
                    "conditions": conditions,
                }
            ]
        }
        kubectl(
            "patch",
            kind,
            route["metadata"]["name"],
            "-n",
            self.namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": status}),
        )


def test_gateway_api_canary_writes_both_weights_and_waits_for_the_route(
    namespace: str, prometheus: Prometheus, plane: DataPlane
) -> None:
    traffic = {
        "traffic": {
            "mode": "GatewayAPI",
            "gateway": {"parentRefs": [{"name": "inference-gw"}], "hostnames": ["canary.example"]},
        }
    }
    with GatewayStandIn(namespace) as gateway:
        gateway.accepting = True
        start_stable(namespace, prometheus, **traffic)
        gateway.accepting = False  # the next weight is not programmed yet
        kubectl_apply(manifest("2", prometheus.endpoint, **traffic), namespace)
        wait_until(lambda: rollout_of(namespace).get("weight") == 25, 60, "weight 25 written")
        time.sleep(5)
        held = rollout_of(namespace)
        assert held.get("stepStartedAt") is None and "lastAnalysis" not in held
        gateway.accepting = True
        wait_rollout(namespace, "Succeeded", 120)
    assert (75, 25) in gateway.weights and (50, 50) in gateway.weights
    assert all(None not in pair and sum(pair) == 100 for pair in gateway.weights)
    route = kubectl_json("get", "httproute", NAME, "-n", namespace)
    assert route["spec"]["hostnames"] == ["canary.example"]
    assert im(namespace)["status"]["stableModelVersion"] == "2"


# --- capacity: canaries that fit in the GPUs there are (spec.rollout.canary.capacity) -----
#
# The cluster's only H100 node has 8 GPUs; the model runs 3 replicas of 2 GPUs each, so
# exactly `replicas + 1` pods fit. `reuse` (maxSurge 1) moves replicas from stable to the
# candidate and must complete a canary and roll a failing one back without ever holding more
# than 4 pods; `surge` in GatewayAPI mode needs 5 (stable whole plus 2 canary pods for 34%)
# and must say it cannot fit (CanaryUnschedulable) instead of waiting silently. A sampler
# records the model's pods (starting and terminating ones included) the whole time. The
# cases need the H100 node to themselves: `quiet_cluster` runs them alone.

REPLICAS, GPUS_PER_POD, MAX_SURGE = 3, 2, 1
"""8 H100s: room for exactly REPLICAS + 1 pods."""


class PodCounter(BackgroundLoop):
    """Samples the model's pods (every pod not Succeeded/Failed: starting, ready and
    terminating ones all hold their GPUs) with the time, per revision."""

    interval = 0.25

    def __init__(self, namespace: str) -> None:
        super().__init__()
        self.namespace = namespace
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._start = time.monotonic()

    def tick(self) -> None:
        pods = kubectl_json(
            "get", "pods", "-n", self.namespace, "-l", f"serving.kinfer.io/model={NAME}"
        )["items"]
        per: dict[str, int] = {}
        for pod in pods:
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            revision = pod["metadata"]["labels"].get("serving.kinfer.io/revision", "?")
            per[revision] = per.get(revision, 0) + 1
        if not self.samples or self.samples[-1][1] != per:
            self.samples.append((round(time.monotonic() - self._start, 1), per))

    @property
    def most(self) -> int:
        return max((sum(per.values()) for _, per in self.samples), default=0)

    def table(self) -> str:
        rows = ["| t (s) | pods per revision | total |", "|---|---|---|"]
        for t, per in self.samples:
            shown = ", ".join(f"{rev[:8]}: {n}" for rev, n in sorted(per.items()))
            rows.append(f"| {t} | {shown} | {sum(per.values())} |")
        return "\n".join(rows)


GATEWAY_TRAFFIC = {
    "mode": "GatewayAPI",
    "gateway": {"parentRefs": [{"name": "inference-gw"}], "hostnames": ["canary.example"]},
}


def gpu_manifest(version: str, prometheus: Prometheus, mode: str, **extra: Any) -> dict[str, Any]:
    doc = manifest(
        version,
        prometheus.endpoint,
        canary={
            "steps": [{"weight": 34, "pauseSeconds": 3}, {"weight": 67, "pauseSeconds": 3}],
            "progressDeadlineSeconds": 45,
            "capacity": {"mode": mode, "maxSurge": MAX_SURGE},
        },
        retire={"podsPerStep": 1, "intervalSeconds": 1},
        **extra,
    )
    doc["spec"]["replicas"] = REPLICAS
    doc["spec"]["runtime"]["gpu"] = {"count": GPUS_PER_POD, "product": "NVIDIA-H100-80GB-HBM3"}
    return doc


def start_gpu(namespace: str, prometheus: Prometheus, mode: str, **extra: Any) -> str:
    kubectl_apply(gpu_manifest("1", prometheus, mode, **extra), namespace)
    kubectl("wait", "-n", namespace, f"im/{NAME}", "--for=condition=Ready", "--timeout=90s")
    return str(im(namespace)["status"]["stableRevision"])


def show(counter: PodCounter, capsys: pytest.CaptureFixture[str], title: str) -> None:
    with capsys.disabled():
        print(f"\n{title} (bound {REPLICAS + MAX_SURGE}, most seen {counter.most})")
        print(counter.table())


def test_reuse_completes_a_canary_within_replicas_plus_surge(
    quiet_cluster: str,
    prometheus: Prometheus,
    plane: DataPlane,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ns = quiet_cluster
    first = start_gpu(ns, prometheus, "reuse")
    with PodCounter(ns) as counter:
        kubectl_apply(gpu_manifest("2", prometheus, "reuse"), ns)
        wait_rollout(ns, "Succeeded", 180)
        wait_until(
            lambda: len(kubectl_json("get", "deploy", "-n", ns)["items"]) == 1,
            60,
            "the old revision to be retired",
        )
    show(counter, capsys, "reuse canary, promoted")
    assert counter.most <= REPLICAS + MAX_SURGE, counter.table()
    status = im(ns)["status"]
    assert status["stableModelVersion"] == "2" and status["stableRevision"] != first
    assert condition(im(ns), "Ready")["status"] == "True"
    assert "CanaryUnschedulable" not in events(ns)
    # The weight followed the moved replicas: 1 of 3, then 2 of 3.
    assert any(rev != first and n >= 2 for _, per in counter.samples for rev, n in per.items())


def test_reuse_rolls_a_failing_canary_back_within_replicas_plus_surge(
    quiet_cluster: str,
    prometheus: Prometheus,
    plane: DataPlane,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ns = quiet_cluster
    first = start_gpu(ns, prometheus, "reuse")
    with PodCounter(ns) as counter:
        kubectl_apply(gpu_manifest("bad", prometheus, "reuse"), ns)
        rollout = wait_rollout(ns, "RolledBack", 180)
        wait_until(
            lambda: (
                len(kubectl_json("get", "deploy", "-n", ns)["items"]) == 1
                and counter.samples
                and counter.samples[-1][1] == {first: REPLICAS}
            ),
            90,
            "the canary's replicas to be moved back",
        )
    show(counter, capsys, "reuse canary, rolled back")
    assert rollout["reason"] == "AnalysisFailed"
    assert counter.most <= REPLICAS + MAX_SURGE, counter.table()
    status = im(ns)["status"]
    assert status["stableRevision"] == first
    stable = kubectl_json("get", "deploy", "-n", ns)["items"][0]
    assert stable["spec"]["replicas"] == REPLICAS
    assert counter.samples[-1][1] == {first: REPLICAS}


def test_surge_that_cannot_fit_says_so_then_rolls_back(
    quiet_cluster: str,
    prometheus: Prometheus,
    plane: DataPlane,
) -> None:
    ns = quiet_cluster
    # GatewayAPI mode surges: stable keeps its 3 pods and the canary gets 2 for 34%.
    with GatewayStandIn(ns) as gateway:
        gateway.accepting = True
        first = start_gpu(ns, prometheus, "surge", traffic=GATEWAY_TRAFFIC)
        kubectl_apply(gpu_manifest("2", prometheus, "surge", traffic=GATEWAY_TRAFFIC), ns)
        _cannot_fit(ns, first)


def _cannot_fit(ns: str, first: str) -> None:
    def degraded() -> dict[str, Any] | None:
        cond = condition(im(ns), "Degraded")
        return cond if cond and cond["reason"] == "CanaryUnschedulable" else None

    cond = wait_until(degraded, 60, "Degraded=True with reason CanaryUnschedulable")
    assert cond["status"] == "True"
    assert "capacity.mode: reuse" in cond["message"] and "Insufficient" in cond["message"]
    assert condition(im(ns), "Progressing")["status"] == "False"
    assert rollout_of(ns)["weight"] == 0
    assert "CanaryUnschedulable" in events(ns)
    rollout = wait_rollout(ns, "RolledBack", 90)
    assert rollout["reason"] == "GPUUnschedulable"
    assert im(ns)["status"]["stableRevision"] == first
