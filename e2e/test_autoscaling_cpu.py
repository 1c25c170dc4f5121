"""Autoscaling on CPU: the real HPA follows its behavior policy, status follows the HPA, and
neither the operator nor an in-process pass ever writes the replicas it chose.

See e2e/autoscaling.py for what is real and what is emulated."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import pytest
from autoscaling import (
    CPU_REQUEST,
    HEAVY,
    IDLE,
    CpuLoad,
    Recorder,
    Sample,
    manifest,
    operator_scale_writes,
    other_live_models,
    stables,
    wait_ready,
    watched_namespace,
)
from harness import InProcessReconciler, kubectl, kubectl_apply, kubectl_json, wait_until
from kinfer_operator._kube import FIELD_MANAGER

# -- 1 and 4: CPU, the HPA's behavior, status, and no replica writes --------------------------

CPU_MODEL = "cpu-scaled"
SCALE_UP_PODS, SCALE_UP_PERIOD = 1, 10
CPU_BEHAVIOR = {
    "scaleUp": {
        "stabilizationWindowSeconds": 0,
        "selectPolicy": "Max",
        "policies": [{"type": "Pods", "value": SCALE_UP_PODS, "periodSeconds": SCALE_UP_PERIOD}],
    },
    "scaleDown": {
        "stabilizationWindowSeconds": 10,
        "selectPolicy": "Max",
        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 5}],
    },
}
CPU_AUTOSCALING = {
    "minReplicas": 1,
    "maxReplicas": 4,
    "metrics": [{"type": "cpu", "target": 50}],
    "behavior": CPU_BEHAVIOR,
}


@dataclass
class CpuRun:
    """One recorded scale-up and scale-down; the tests below each judge one aspect of it."""

    namespace: str
    samples: list[Sample]
    table: str
    load_removed_at: float | None = None
    hpa: dict[str, Any] = field(default_factory=dict)
    scale_at_max: dict[str, Any] | str | None = None
    """The model's /scale at maxReplicas, or the API server's error for it."""
    in_process_writes: Counter[tuple[str, str]] = field(default_factory=Counter)
    in_process_passes: int = 0
    operator_log_scales: list[str] = field(default_factory=list)
    operator_scale_delta: float | None = None
    others_during: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def cpu_run(operator: Any, emulated_cluster: None) -> Iterator[CpuRun]:
    """Load a model until the HPA reaches maxReplicas, then idle it back to minReplicas.

    Nothing here asserts: a step that times out just leaves its trace in the record, and the
    behaviour-named tests fail on it.
    """
    namespace = watched_namespace(operator, "autoscaling-cpu")
    kubectl("create", "namespace", namespace)
    kubectl("label", "namespace", namespace, "kinfer.io/e2e=true")
    log_start = operator.log_path.stat().st_size if operator is not None else 0
    others = set(other_live_models(operator, namespace))
    writes_before = operator_scale_writes(operator)
    run = CpuRun(namespace, [], "")
    in_process = InProcessReconciler(namespace)
    stop_passes = threading.Event()

    def in_process_passes() -> None:
        # No-op passes racing the HPA: each observes replicas the HPA just changed.
        while not stop_passes.is_set():
            try:
                if in_process.reconcile(CPU_MODEL) is not None:
                    run.in_process_passes += 1
            except Exception as err:
                print(f"in-process reconcile: {err}", file=sys.stderr)
            stop_passes.wait(1.0)

    passes = threading.Thread(target=in_process_passes, daemon=True)
    try:
        with (
            CpuLoad(namespace, CPU_MODEL, HEAVY) as load,
            Recorder(namespace, CPU_MODEL, lambda: load.per_pod) as recorder,
        ):
            kubectl_apply(manifest(CPU_MODEL, CPU_AUTOSCALING), namespace)
            wait_ready(namespace, CPU_MODEL)
            passes.start()

            def at(replicas: int) -> bool:
                s = recorder.samples[-1] if recorder.samples else None
                stable = s.stable() if s else None
                return bool(stable and stable.spec == stable.ready == replicas)

            def at_max() -> bool:
                return at(4) and recorder.samples[-1].im_replicas == 4

            try:
                wait_until(at_max, 90, "4 ready replicas under CPU load", interval=1)
                got = kubectl(
                    "get",
                    f"im/{CPU_MODEL}",
                    "-n",
                    namespace,
                    "--subresource=scale",
                    "-o",
                    "json",
                    check=False,
                )
                run.scale_at_max = json.loads(got.stdout) if got.returncode == 0 else got.stderr
            except AssertionError as err:
                print(err, file=sys.stderr)
            load.set(IDLE)
            run.load_removed_at = time.monotonic() - recorder.started
            try:
                wait_until(lambda: at(1), 90, "1 replica once idle", interval=1)
                time.sleep(2)  # one more sample of the settled state
            except AssertionError as err:
                print(err, file=sys.stderr)
            stop_passes.set()
            passes.join(timeout=30)
        run.samples = recorder.samples
        run.table = recorder.table(
            f"CPU autoscaling ({CPU_MODEL}: min 1, max 4, cpu target 50% of {CPU_REQUEST}, "
            f"scaleUp {SCALE_UP_PODS} pod / {SCALE_UP_PERIOD}s, scaleDown window 10s; "
            f"load {HEAVY} per pod from t=0, idle from t={run.load_removed_at or 0:.1f}s)"
        )
        run.hpa = kubectl_json("get", "hpa", CPU_MODEL, "-n", namespace)
        run.in_process_writes = in_process.kube.writes
        run.others_during = sorted(others | set(other_live_models(operator, namespace)))
        if operator is not None:
            with operator.log_path.open("rb") as log:
                log.seek(log_start)
                text = log.read().decode(errors="replace")
            run.operator_log_scales = [
                line for line in text.splitlines() if f"scaling {namespace}/" in line
            ]
            after = operator_scale_writes(operator)
            if writes_before is not None and after is not None:
                run.operator_scale_delta = after - writes_before
        print("\n" + run.table)
        yield run
    finally:
        stop_passes.set()
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _stable_changes(samples: list[Sample]) -> list[tuple[float, int, int]]:
    """(t, before, after) for every change of the stable Deployment's desired replicas."""
    out: list[tuple[float, int, int]] = []
    last: int | None = None
    for s in samples:
        stable = s.stable()
        if stable is None:
            continue
        if last is not None and stable.spec != last:
            out.append((s.t, last, stable.spec))
        last = stable.spec
    return out


def test_cpu_load_scales_up_no_faster_than_the_scale_up_policy(cpu_run: CpuRun) -> None:
    ups = [c for c in _stable_changes(cpu_run.samples) if c[2] > c[1]]
    peak = max((st.spec for _, st in stables(cpu_run.samples)), default=0)
    assert peak == 4, f"the HPA never reached maxReplicas 4\n{cpu_run.table}"
    # Unlimited, a 300% load would take 1 -> 4 at once (desired = 6, capped by max; kinfer's
    # default behavior would allow 1 -> 3); the policy allows one pod per 10 s. Samples are
    # ~1 s apart, hence the 2 s of slack.
    for t, before, after in ups:
        assert after - before <= SCALE_UP_PODS, f"jump {before}->{after} at {t:.1f}s"
    times = [t for t, _, _ in ups]
    gaps = [b - a for a, b in pairwise(times)]
    assert all(g >= SCALE_UP_PERIOD - 2 for g in gaps), f"scale-ups {ups}\n{cpu_run.table}"
    assert all(st.spec <= 4 for _, st in stables(cpu_run.samples))
    # The HPA kinfer created carries the model's behavior verbatim (defaults aside).
    behavior = cpu_run.hpa["spec"]["behavior"]
    assert behavior["scaleUp"]["policies"] == CPU_BEHAVIOR["scaleUp"]["policies"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 10


def test_removing_the_load_scales_back_down_to_min_replicas(cpu_run: CpuRun) -> None:
    assert cpu_run.load_removed_at is not None
    after = [st for s, st in stables(cpu_run.samples) if s.t > cpu_run.load_removed_at]
    assert after, "no samples after the load was removed"
    assert (after[-1].spec, after[-1].ready) == (1, 1), cpu_run.table
    downs = [c for c in _stable_changes(cpu_run.samples) if c[2] < c[1]]
    assert downs and all(t > cpu_run.load_removed_at for t, _, _ in downs), downs


def test_status_replicas_follow_the_replicas_the_hpa_chose(cpu_run: CpuRun) -> None:
    # status.replicas reports the serving Deployment's real replicas; it lags the Deployment
    # by one reconcile, so compare at every level the Deployment held for two samples or more.
    held = [st.ready for _, st in stables(cpu_run.samples)]
    levels = {a for a, b in pairwise(held) if a == b}
    assert {1, 4} <= levels, cpu_run.table
    for level in sorted(levels):
        settled = [
            s
            for s, st in stables(cpu_run.samples)
            if st.spec == st.ready == level and s.im_replicas == level
        ]
        assert settled, f"status.replicas never showed {level}\n{cpu_run.table}"


def test_scale_subresource_of_an_autoscaled_model_reports_the_hpa_replicas(
    cpu_run: CpuRun,
) -> None:
    """`kubectl get --subresource=scale` (and KEDA, or a VPA walking the owner chain from the
    pods up to the InferenceModel) reads /scale; it must answer with the HPA's count."""
    scale = cpu_run.scale_at_max
    assert scale is not None, f"the HPA never reached 4 replicas\n{cpu_run.table}"
    assert isinstance(scale, dict), f"GET /scale of an autoscaled InferenceModel failed: {scale}"
    assert scale["status"]["replicas"] == 4
    assert "serving.kinfer.io/revision=" in scale["status"]["selector"]


def test_reconciles_while_the_hpa_scales_never_write_deployment_replicas(
    cpu_run: CpuRun,
) -> None:
    states = [d for s in cpu_run.samples for d in s.deployments.values()]
    # The HPA really moved spec.replicas under the passes below...
    assert len({d.spec for d in states}) >= 3, cpu_run.table
    # ...and managedFields were read (kinfer's own Apply entry is there), yet kinfer's apply
    # never owned spec.replicas (field_managers says why /scale writes are counted instead).
    managers = frozenset().union(*(d.managers for d in states))
    assert FIELD_MANAGER in managers, managers
    owners = frozenset().union(*(d.replica_owners for d in states))
    assert not any(m.startswith(FIELD_MANAGER) for m in owners), owners
    # In-process passes raced the HPA the whole time and never scaled or re-applied.
    assert cpu_run.in_process_passes >= 10
    writes = cpu_run.in_process_writes
    assert writes[("scale", "Deployment")] == 0 and writes[("apply", "Deployment")] == 0, writes
    # The operator process: no scale logged for this namespace, and (when nothing else in the
    # cluster could have been scaled meanwhile) its scale-write counter did not move.
    assert cpu_run.operator_log_scales == []
    if cpu_run.operator_scale_delta is not None and not cpu_run.others_during:
        assert cpu_run.operator_scale_delta == 0
