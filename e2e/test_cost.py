"""GPU cost per revision against pods' own lifetimes, on the kwok lane.

The GPUs are fakes: kwok nodes advertise nvidia.com/gpu and kwok plays the kubelet, so pods
are scheduled against GPU capacity and get real start times, but no container runs. The
API server, scheduler, garbage collector and the operator process are real.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import LocalOperator
from harness import condition, example, kubectl_apply, kubectl_json, wait_until

NAME = "resnet50"
GPUS = 2
METRIC = "kinfer_gpu_seconds_total"
POLL = 0.25
TRANSITION = 2.0
"""Seconds a deleted pod may be seen late or early: our poll and the watch's latency."""


def _unix(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


class Lifetimes:
    """Each pod's start (its status.startTime) and when this test last saw it."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.pods: dict[str, dict[str, Any]] = {}
        self.live: set[str] = set()

    def poll(self) -> float:
        listing = kubectl_json(
            "get", "pods", "-n", self.namespace, "-l", f"serving.kinfer.io/model={NAME}"
        )
        now = time.time()
        self.live = set()
        for pod in listing["items"]:
            start = (pod.get("status") or {}).get("startTime")
            if not start:
                continue
            uid = pod["metadata"]["uid"]
            revision = pod["metadata"]["labels"]["serving.kinfer.io/revision"]
            seen = self.pods.setdefault(uid, {"revision": revision, "start": _unix(start)})
            seen["last"] = now
            self.live.add(uid)
        return now

    def watch(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.poll()
            time.sleep(POLL)

    def expected(self, revision: str, at: float) -> tuple[float, int]:
        """GPU-seconds of a revision at `at`, and how many of its pods are gone."""
        total, gone = 0.0, 0
        for uid, pod in self.pods.items():
            if pod["revision"] != revision:
                continue
            end = at if uid in self.live else pod["last"]
            gone += uid not in self.live
            total += GPUS * (end - pod["start"])
        return total, gone


def _model(namespace: str) -> dict[str, Any]:
    return dict(kubectl_json("get", "im", NAME, "-n", namespace))


def _cost_rows(namespace: str) -> dict[str, float]:
    exe = Path(sys.executable).with_name("kubectl-kinfer")
    out = subprocess.run(
        [str(exe), "cost", NAME, "-n", namespace], capture_output=True, text=True, check=True
    ).stdout
    rows = [line.split() for line in out.splitlines()[1:]]
    return {r[2]: float(r[-1]) * 3600 for r in rows if r[2] != "(total)"}


def _status_seconds(cost: dict[str, Any], at: float) -> float:
    running = cost.get("runningGpus", 0) * at - cost.get("runningGpuStartSum", 0)
    return float(cost.get("retiredGpuSeconds", 0) + cost.get("finishedGpuSeconds", 0) + running)


def test_gpu_seconds_follow_pod_lifetimes_through_a_new_revision_and_a_restart(
    namespace: str, operator: LocalOperator | None
) -> None:
    if operator is None:
        pytest.skip("needs the local operator: the test restarts it")
    manifest = example("resnet-gpu.yaml")
    manifest["spec"]["runtime"]["gpu"]["count"] = GPUS
    kubectl_apply(manifest, namespace)
    wait_until(
        lambda: (c := condition(_model(namespace), "Ready")) and c["status"] == "True",
        90,
        "the GPU model to be Ready",
    )
    old = _model(namespace)["status"]["stableRevision"]
    pods = Lifetimes(namespace)
    pods.watch(15)  # the stable revision runs for a measured time

    manifest["spec"]["model"]["version"] = "4"  # a new revision replaces it
    kubectl_apply(manifest, namespace)

    def replaced() -> bool:
        pods.poll()
        status = _model(namespace)["status"]
        costs = {c["revision"]: c for c in status.get("cost") or []}
        gone = costs.get(old, {})
        return bool(
            status.get("stableRevision") not in (None, old)
            and not any(p["revision"] == old for uid, p in pods.pods.items() if uid in pods.live)
            and gone.get("track") == "retired"
            and gone.get("runningGpus", 0) == 0
            and gone.get("retiredGpuSeconds", 0) > 0
        )

    wait_until(replaced, 120, "the old revision's pods to be gone and folded into status")
    new = _model(namespace)["status"]["stableRevision"]
    pods.watch(8)

    # the counter against the pods' own lifetimes
    read_at = time.time()
    before = {r: operator.metric(METRIC, namespace=namespace, revision=r) for r in (old, new)}
    at = (read_at + time.time()) / 2
    pods.poll()  # which pods are still live (a live pod's end is `at`)
    for revision in (old, new):
        want, gone = pods.expected(revision, at)
        live = 2 - gone if revision == new else 0
        slack = GPUS * (gone * TRANSITION + live * 1.5 + 1)
        print(f"\n{revision}: counter {before[revision]:.0f}, lifetimes {want:.1f} (±{slack:.0f})")
        assert abs(before[revision] - want) <= slack, (revision, before[revision], want)
    assert before[old] >= GPUS * 2 * 14  # two pods for the measured 15 s

    # status and `kubectl kinfer cost` compute the same figures from status.cost. Status is
    # as of the model's last pass: a pod that became Ready since is in the counter but not
    # yet in status, so on a busy machine the two agree once that pass has run.
    status: dict[str, Any] = {}

    def status_agrees() -> bool:
        now = time.time()
        status.clear()
        status.update({c["revision"]: c for c in _model(namespace)["status"]["cost"]})
        table = _cost_rows(namespace)
        for revision in (old, new):
            metric_now = operator.metric(METRIC, namespace=namespace, revision=revision)
            if abs(_status_seconds(status[revision], now) - metric_now) > GPUS * 2 * 2:
                return False
            if abs(table[revision] - metric_now) > GPUS * 2 * 3:
                return False
        return True

    wait_until(status_agrees, 30, "status.cost and `kubectl kinfer cost` to match the counter")
    assert status[old]["track"] == "retired" and status[new]["track"] == "stable"

    # a restarted operator rebuilds the counter: deleted pods from status, live ones from
    # their start times; neither lost nor counted twice
    operator.stop()
    time.sleep(2)
    operator.start()
    wait_until(
        lambda: operator.metric(METRIC, namespace=namespace, revision=new) > 0,
        60,
        "the restarted operator's counter",
    )
    after = {r: operator.metric(METRIC, namespace=namespace, revision=r) for r in (old, new)}
    elapsed = time.time() - read_at
    print(f"restart ({elapsed:.1f}s): {before} -> {after}")
    assert after[old] == before[old]  # whole seconds from status: exactly the same
    assert after[old] >= status[old]["retiredGpuSeconds"]
    assert before[new] <= after[new] <= before[new] + GPUS * 2 * (elapsed + 1)
