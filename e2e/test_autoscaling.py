"""Autoscaling on the real control plane: the real HPA controller scales what kinfer built.

Real: kube-apiserver, the HPA controller in kube-controller-manager (sync every 5s),
metrics-server scraping kwok's emulated kubelet, the operator process, and in the custom-metric
case a real `kinfer-runtime serve` process under real concurrent load. Stand-ins: kwok's pods
run no containers, so a pod's CPU usage is what its `kwok.x-k8s.io/usage-cpu` annotation says
(what a loaded container would report to the kubelet), and per-pod custom metrics come from the
test-only aggregated API in e2e/custom_metrics.py instead of Prometheus plus prometheus-adapter
(its docstring says why).

Each scenario records a timeline (seconds since recording started, the load, the Deployments'
desired and ready replicas, the InferenceModel's status.replicas, the HPA's decision) and prints
it as a markdown table; run with `pytest -s` to see it.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, Self

import httpx
import pytest
from custom_metrics import CustomMetricsServer
from dataplane import _Runtime
from harness import BackgroundLoop, condition, kubectl, kubectl_apply, kubectl_json, wait_until
from kinfer_operator._kube import FIELD_MANAGER, Kube, load_config
from kinfer_operator.children.hpa import INFLIGHT_METRIC
from kinfer_operator.reconcile import Reconciler
from prometheus_client.parser import text_string_to_metric_families

USAGE_CPU = "kwok.x-k8s.io/usage-cpu"
MODEL_LABEL = "serving.kinfer.io/model"
CPU_REQUEST = "500m"
HEAVY = "1500m"  # 300% of the request: the HPA wants far more than the policy allows per step
IDLE = "1m"  # kwok's default usage


# -- manifests and reads ---------------------------------------------------------------------


def manifest(
    name: str,
    autoscaling: dict[str, Any],
    version: str = "1",
    rollout: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {"uri": "file:///models/demo/model.onnx", "version": version},
        "runtime": {
            "image": "kinfer/runtime:dev",
            "resources": {"requests": {"cpu": CPU_REQUEST, "memory": "512Mi"}},
        },
        "autoscaling": autoscaling,
    }
    if rollout is not None:
        spec["rollout"] = rollout
    return {
        "apiVersion": "serving.kinfer.io/v1alpha1",
        "kind": "InferenceModel",
        "metadata": {"name": name},
        "spec": spec,
    }


def get_im(ns: str, name: str) -> dict[str, Any]:
    return dict(kubectl_json("get", "im", name, "-n", ns))


def wait_ready(ns: str, name: str, timeout: int = 60) -> dict[str, Any]:
    kubectl("wait", "-n", ns, f"im/{name}", "--for=condition=Ready", f"--timeout={timeout}s")
    return get_im(ns, name)


def field_managers(deployment: Mapping[str, Any]) -> tuple[frozenset[str], frozenset[str]]:
    """(every field manager, those owning spec.replicas), as `manager[/subresource]`.

    This catches the regression that matters most: a Deployment applied *with* replicas makes
    `kinfer-operator` (operation Apply) own spec.replicas, and every apply then fights the HPA.
    It does not see writes through /scale: on a Deployment whose replicas nobody owned (ours
    are applied without them), the API server records no owner for a /scale update, neither
    for the HPA nor for kinfer. Scale calls are counted separately (Kube.writes, the operator's
    metric and log).
    """
    everyone, owners = set(), set()
    for entry in deployment["metadata"].get("managedFields") or []:
        sub = entry.get("subresource")
        manager = f"{entry['manager']}/{sub}" if sub else str(entry["manager"])
        everyone.add(manager)
        if "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {}):
            owners.add(manager)
    return frozenset(everyone), frozenset(owners)


@pytest.fixture(scope="module")
def emulated_cluster() -> None:
    """Skip where the load cannot be emulated: only kwok's kubelet reports a pod's CPU from an
    annotation, and only an API server on this machine reaches the 127.0.0.1 metrics server
    (the kind path has real kubelets and an API server in a container)."""
    nodes = kubectl_json("get", "nodes")["items"]
    if not any("kwok.x-k8s.io/node" in (n["metadata"].get("annotations") or {}) for n in nodes):
        pytest.skip("needs the local kwok control plane (e2e/cluster.sh) to emulate load")


# -- load ------------------------------------------------------------------------------------


class CpuLoad(BackgroundLoop):
    """Keeps kwok's CPU-usage annotation on every pod of a model at `per_pod`.

    New pods (the HPA's, a canary's) get it within a second, as a loaded Service spreads
    requests over every ready pod.
    """

    def __init__(self, namespace: str, model: str, per_pod: str = IDLE) -> None:
        super().__init__()
        self.namespace, self.model, self.per_pod = namespace, model, per_pod

    def set(self, per_pod: str) -> None:
        self.per_pod = per_pod

    def tick(self) -> None:
        want = self.per_pod
        pods = kubectl_json("get", "pods", "-n", self.namespace, "-l", self._selector)
        stale = [
            p["metadata"]["name"]
            for p in pods["items"]
            if not p["metadata"].get("deletionTimestamp")
            and (p["metadata"].get("annotations") or {}).get(USAGE_CPU) != want
        ]
        if stale:
            kubectl(
                "annotate",
                "--overwrite",
                "-n",
                self.namespace,
                "pods",
                *stale,
                f"{USAGE_CPU}={want}",
                check=False,
            )

    @property
    def _selector(self) -> str:
        return f"{MODEL_LABEL}={self.model}"


# -- recording -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentState:
    track: str
    revision: str
    spec: int
    ready: int
    managers: frozenset[str]
    replica_owners: frozenset[str]
    deleting: bool = False


@dataclass(frozen=True)
class Sample:
    t: float
    """Seconds since the recorder started."""
    load: str
    deployments: Mapping[str, DeploymentState]
    im_replicas: int | None
    hpa_target: str | None
    hpa_desired: int | None
    hpa_metric: str

    def stable(self) -> DeploymentState | None:
        """The Deployment labelled stable in this sample, if any."""
        return next((d for d in self.deployments.values() if d.track == "stable"), None)


def stables(samples: list[Sample]) -> list[tuple[Sample, DeploymentState]]:
    """Samples that saw a stable Deployment, with its state."""
    return [(s, st) for s in samples if (st := s.stable()) is not None]


def _hpa_metric(hpa: Mapping[str, Any]) -> str:
    for metric in (hpa.get("status") or {}).get("currentMetrics") or []:
        if metric.get("type") == "Resource":
            value = metric["resource"]["current"].get("averageUtilization")
            return f"cpu {value}%"
        if metric.get("type") == "Pods":
            return f"{metric['pods']['current'].get('averageValue')}/pod"
    return "-"


class Recorder(BackgroundLoop):
    """Samples the model's Deployments, HPA and status about once a second, in a thread."""

    interval = 0.8

    def __init__(self, namespace: str, model: str, load: Callable[[], str]) -> None:
        super().__init__()
        self.namespace, self.model, self.load = namespace, model, load
        self.samples: list[Sample] = []
        self.started = time.monotonic()

    def __enter__(self) -> Self:
        self.started = time.monotonic()
        return super().__enter__()

    def tick(self) -> None:
        self.samples.append(self.sample())

    def sample(self) -> Sample:
        t = time.monotonic() - self.started
        load = self.load()
        items = kubectl_json(
            "get",
            "deploy,hpa,im",
            "-n",
            self.namespace,
            "--show-managed-fields",
        )["items"]
        deployments: dict[str, DeploymentState] = {}
        im_replicas = hpa_target = hpa_desired = None
        hpa_metric = "-"
        for obj in items:
            meta = obj["metadata"]
            if obj["kind"] == "Deployment" and (meta.get("labels") or {}).get(MODEL_LABEL):
                deployments[meta["name"]] = DeploymentState(
                    track=meta["labels"].get("serving.kinfer.io/track", ""),
                    revision=meta["labels"].get("serving.kinfer.io/revision", ""),
                    spec=int(obj["spec"].get("replicas", 0)),
                    ready=int((obj.get("status") or {}).get("readyReplicas", 0)),
                    managers=field_managers(obj)[0],
                    replica_owners=field_managers(obj)[1],
                    deleting=bool(meta.get("deletionTimestamp")),
                )
            elif obj["kind"] == "HorizontalPodAutoscaler" and meta["name"] == self.model:
                hpa_target = obj["spec"]["scaleTargetRef"]["name"]
                hpa_desired = (obj.get("status") or {}).get("desiredReplicas")
                hpa_metric = _hpa_metric(obj)
            elif obj["kind"] == "InferenceModel" and meta["name"] == self.model:
                im_replicas = (obj.get("status") or {}).get("replicas")
        return Sample(t, load, deployments, im_replicas, hpa_target, hpa_desired, hpa_metric)

    def table(self, title: str) -> str:
        """Markdown table of the samples where something changed (plus the last one)."""
        header = (
            "| t (s) | load | Deployments (track revision: desired/ready) "
            "| IM status.replicas | HPA desired | HPA metric |"
        )
        lines = [title, "", header, "|---|---|---|---|---|---|"]
        previous: tuple[Any, ...] | None = None
        for i, s in enumerate(self.samples):
            deps = ", ".join(
                f"{d.track or '?'} {n.rsplit('-', 1)[-1][:6]}{' (deleting)' if d.deleting else ''}"
                f": {d.spec}/{d.ready}"
                for n, d in sorted(s.deployments.items(), key=lambda kv: kv[1].track, reverse=True)
            )
            row = (s.load, deps, s.im_replicas, s.hpa_desired, s.hpa_metric)
            if row != previous or i == len(self.samples) - 1:
                cells = [f"{s.t:5.1f}", *(str(c) for c in row)]
                lines.append("| " + " | ".join(cells) + " |")
            previous = row
        return "\n".join(lines)


@dataclass(frozen=True)
class WatchEvent:
    t: float
    type: str
    name: str
    state: DeploymentState


class DeploymentWatch:
    """Every change to the model's Deployments, from `kubectl get --watch`, in order.

    Polling can miss the instant a Deployment disappears; a watch sees each state, so the
    capacity next to a deletion is read from the last event before it.
    """

    def __init__(self, namespace: str, model: str) -> None:
        self.events: list[WatchEvent] = []
        self.started = time.monotonic()
        self._proc = subprocess.Popen(
            [
                "kubectl",
                "get",
                "deployments",
                "-n",
                namespace,
                "-l",
                f"{MODEL_LABEL}={model}",
                "--watch",
                "--output-watch-events",
                "-o",
                "json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        decoder = json.JSONDecoder()
        buffer = ""
        for chunk in self._proc.stdout:
            buffer += chunk
            while buffer.strip():
                try:
                    event, end = decoder.raw_decode(buffer.lstrip())
                except json.JSONDecodeError:
                    break
                buffer = buffer.lstrip()[end:]
                obj = event["object"]
                meta = obj["metadata"]
                state = DeploymentState(
                    track=meta["labels"].get("serving.kinfer.io/track", ""),
                    revision=meta["labels"].get("serving.kinfer.io/revision", ""),
                    spec=int(obj["spec"].get("replicas", 0)),
                    ready=int((obj.get("status") or {}).get("readyReplicas", 0)),
                    managers=field_managers(obj)[0],
                    replica_owners=field_managers(obj)[1],
                    deleting=bool(meta.get("deletionTimestamp")),
                )
                self.events.append(
                    WatchEvent(time.monotonic() - self.started, event["type"], meta["name"], state)
                )

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=10)
        self._thread.join(timeout=10)

    def table(self, title: str) -> str:
        """Markdown table: one row per watch event, with every live Deployment after it."""
        lines = [
            title,
            "",
            "| t (s) | event | Deployments after it (track revision: desired/ready) |",
            "|---|---|---|",
        ]
        for event, live in self.replay():
            deps = ", ".join(
                f"{d.track} {n.rsplit('-', 1)[-1][:6]}{' (deleting)' if d.deleting else ''}"
                f": {d.spec}/{d.ready}"
                for n, d in sorted(live.items(), key=lambda kv: kv[1].track, reverse=True)
            )
            short = event.name.rsplit("-", 1)[-1][:6]
            lines.append(f"| {event.t:5.1f} | {event.type} {short} | {deps} |")
        return "\n".join(lines)

    def replay(self) -> Iterator[tuple[WatchEvent, dict[str, DeploymentState]]]:
        """Each event with the state of every live Deployment right after it."""
        live: dict[str, DeploymentState] = {}
        for event in list(self.events):
            if event.type == "DELETED":
                live.pop(event.name, None)
            else:
                live[event.name] = event.state
            yield event, dict(live)


def operator_scale_writes(operator: Any) -> float | None:
    """kinfer_operator_api_writes_total{verb="scale"} from the local operator's /metrics."""
    if operator is None:
        return None
    url = f"http://127.0.0.1:{operator.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "kinfer_operator_api_writes_total"
        and sample.labels.get("verb") == "scale"
    )


def watched_prefix(operator: Any) -> str:
    """Namespace prefix the session's operator watches (its `--namespace` glob), else `e2e-`.

    The conftest's `namespace` fixture is per test; the CPU scenario is shared by several
    tests, so it makes its own namespace and must put it where this session's operator looks.
    """
    args = list(getattr(operator, "args", ()))
    for flag, value in pairwise(args):
        if flag in ("--namespace", "-n") and value.endswith("*"):
            return str(value).rstrip("*")
    return "e2e-"


def watched_namespace(operator: Any, slug: str) -> str:
    return f"{watched_prefix(operator)}{slug}-{secrets.token_hex(2)}"


def other_live_models(operator: Any, namespace: str) -> list[str]:
    """InferenceModels outside `namespace` that this session's operator may reconcile."""
    prefix = watched_prefix(operator)
    return [
        f"{m['metadata']['namespace']}/{m['metadata']['name']}"
        for m in kubectl_json("get", "im", "-A")["items"]
        if m["metadata"]["namespace"] != namespace
        and m["metadata"]["namespace"].startswith(prefix)
        and not m["metadata"].get("deletionTimestamp")
    ]


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
    kube = Kube(load_config())
    reconciler = Reconciler(kube)
    stop_passes = threading.Event()

    def in_process_passes() -> None:
        # No-op passes racing the HPA: each observes replicas the HPA just changed.
        while not stop_passes.is_set():
            try:
                if reconciler.reconcile(namespace, CPU_MODEL) is not None:
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
        run.in_process_writes = kube.writes
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


# -- 2: a custom metric from the real runtime ------------------------------------------------

CUSTOM_MODEL = "inflight-scaled"
CONCURRENCY_TARGET = 4
CLIENTS = 16


class RuntimeInflight:
    """Per-pod `kinfer_inflight_requests` for the HPA, read from a real runtime's /metrics.

    One runtime process stands in for every pod of the revision (kwok runs no containers), so
    the gauge it exports is the revision's total and is divided evenly over the pods the HPA
    selected, as a Service spreading the same requests would divide them.
    """

    def __init__(self) -> None:
        self.runtimes: dict[str, _Runtime] = {}
        self.readings: list[float] = []

    def total(self, namespace: str) -> float:
        runtime = self.runtimes.get(namespace)
        if runtime is None:
            raise LookupError(f"no runtime serves namespace {namespace} yet")
        url = f"http://127.0.0.1:{runtime.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=2) as response:
            text = response.read().decode()
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == INFLIGHT_METRIC
        )

    def values(self, namespace: str, metric: str, pods: list[str]) -> dict[str, float]:
        total = self.total(namespace)
        self.readings.append(total)
        return {pod: total / len(pods) for pod in pods}


@pytest.fixture(scope="module")
def inflight() -> RuntimeInflight:
    """Where the metrics server reads values; tests plug their runtime in per namespace."""
    return RuntimeInflight()


@pytest.fixture(scope="module")
def custom_metrics(
    inflight: RuntimeInflight, tmp_path_factory: pytest.TempPathFactory, emulated_cluster: None
) -> Iterator[CustomMetricsServer]:
    """The test-only custom.metrics.k8s.io, registered once per module: the APIService
    `v1beta2.custom.metrics.k8s.io` is cluster-scoped and only one server can own it."""
    server = CustomMetricsServer(
        tmp_path_factory.mktemp("custom-metrics"), (INFLIGHT_METRIC,), inflight.values
    )
    server.start()
    try:
        server.register()
        yield server
    finally:
        server.unregister()
        server.stop()


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model's slow variant: requests pile up, as on a saturated GPU."""
    out = tmp_path_factory.mktemp("slow-model")
    exe = Path(sys.executable).with_name("kinfer-runtime")
    subprocess.run(
        [str(exe), "demo-model", "--out", str(out), "--variant", "slow", "--onnx-only"],
        check=True,
        capture_output=True,
    )
    return out / "model.onnx"


class ClosedLoopClients:
    """`count` clients, each sending its next inference request as soon as one returns."""

    def __init__(self, url: str, count: int) -> None:
        from kinfer_runtime.demo import IMAGE_SHAPE, INPUT_NAME

        shape = [1, *IMAGE_SHAPE]
        size = 1
        for dim in shape:
            size *= dim
        self.body = json.dumps(
            {
                "inputs": [
                    {"name": INPUT_NAME, "shape": shape, "datatype": "FP32", "data": [0.5] * size}
                ]
            }
        ).encode()
        self.url, self.count = url, count
        self.codes: Counter[int] = Counter()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._client, daemon=True) for _ in range(self.count)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=35)

    def _client(self) -> None:
        headers = {"content-type": "application/json"}
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                try:
                    code = client.post(self.url, content=self.body, headers=headers).status_code
                except httpx.HTTPError:
                    code = 0
                self.codes[code] += 1


def test_inflight_requests_from_the_runtime_scale_the_hpa_up_and_down(
    namespace: str,
    custom_metrics: CustomMetricsServer,
    inflight: RuntimeInflight,
    slow_model: Path,
    tmp_path: Path,
) -> None:
    autoscaling = {
        "minReplicas": 1,
        "maxReplicas": 6,
        "metrics": [{"type": "concurrency", "target": CONCURRENCY_TARGET}],
        "behavior": {
            "scaleUp": {
                "stabilizationWindowSeconds": 0,
                "policies": [{"type": "Percent", "value": 500, "periodSeconds": 5}],
            },
            "scaleDown": {
                "stabilizationWindowSeconds": 5,
                "policies": [{"type": "Percent", "value": 100, "periodSeconds": 5}],
            },
        },
    }
    kubectl_apply(manifest(CUSTOM_MODEL, autoscaling), namespace)
    revision = wait_ready(namespace, CUSTOM_MODEL)["status"]["stableRevision"]
    runtime = _Runtime(CUSTOM_MODEL, "1", revision, slow_model, tmp_path / "runtime.log")
    inflight.runtimes[namespace] = runtime
    clients = ClosedLoopClients(f"{runtime.base}/v2/models/{CUSTOM_MODEL}/infer", CLIENTS)
    phase = "idle"
    try:
        wait_until(runtime.ready, 60, "the runtime to load the model")
        with Recorder(namespace, CUSTOM_MODEL, lambda: phase) as recorder:

            def stable_at(check: Callable[[int], bool]) -> bool:
                s = recorder.samples[-1] if recorder.samples else None
                stable = s.stable() if s else None
                return bool(stable and stable.spec == stable.ready and check(stable.spec))

            phase = f"{CLIENTS} clients"
            loaded_at = time.monotonic()
            clients.start()
            wait_until(lambda: stable_at(lambda n: n >= 3), 60, "a scale-up on in-flight requests")
            scaled_up_after = time.monotonic() - loaded_at
            time.sleep(7)  # an HPA pass or so at the level the load settles on
            peak_readings = list(inflight.readings[-3:])
            phase = "no clients"
            clients.stop()
            wait_until(lambda: stable_at(lambda n: n == 1), 60, "a scale-down once idle")
        table = recorder.table(
            f"Custom metric ({INFLIGHT_METRIC} target {CONCURRENCY_TARGET}/pod, from a real "
            f"runtime under {CLIENTS} closed-loop clients; scaled up {scaled_up_after:.1f}s "
            "after the load started)"
        )
        print("\n" + table)
    finally:
        clients.stop()
        runtime.stop()
        inflight.runtimes.pop(namespace, None)

    # The HPA asked our aggregated API for exactly the stable revision's pods...
    queries = custom_metrics.queries_for(namespace)
    assert queries, "the HPA never queried custom.metrics.k8s.io"
    assert all(f"serving.kinfer.io/revision={revision}" in q.label_selector for q in queries)
    # ...the runtime really had the load in flight, and the HPA scaled on it within bounds.
    assert max(peak_readings) >= 2 * CONCURRENCY_TARGET, peak_readings
    peak = max(st.spec for _, st in stables(recorder.samples))
    assert 3 <= peak <= 6, table
    assert clients.codes[200] > 0 and set(clients.codes) <= {0, 200}, clients.codes
    ready = condition(get_im(namespace, CUSTOM_MODEL), "Ready")
    assert ready is not None and ready["status"] == "True"


# -- 3: schema and CEL rules the existing validation suite does not cover ---------------------

BASE_SPEC = manifest("rejected", {"maxReplicas": 2})["spec"]
INVALID_AUTOSCALING = [
    ("max-replicas-missing", {"minReplicas": 1}, ["spec.autoscaling.maxReplicas", "Required"]),
    (
        "raw-without-metric-spec",
        {"maxReplicas": 2, "metrics": [{"type": "raw"}]},
        ["spec.autoscaling.metrics[0]", "type raw needs raw"],
    ),
    (
        "target-with-raw",
        {"maxReplicas": 2, "metrics": [{"type": "cpu", "target": 50, "raw": {"type": "Pods"}}]},
        ["spec.autoscaling.metrics[0]", "no raw"],
    ),
    (
        "cpu-without-target",
        {"maxReplicas": 2, "metrics": [{"type": "cpu"}]},
        ["spec.autoscaling.metrics[0]", "needs target"],
    ),
    ("no-metrics", {"maxReplicas": 2, "metrics": []}, ["spec.autoscaling.metrics"]),
]


@pytest.mark.parametrize(
    ("case", "autoscaling", "expected"),
    INVALID_AUTOSCALING,
    ids=[c[0] for c in INVALID_AUTOSCALING],
)
def test_invalid_autoscaling_is_rejected_naming_the_field(
    namespace: str, case: str, autoscaling: dict[str, Any], expected: list[str]
) -> None:
    doc = manifest("rejected", autoscaling)
    result = kubectl_apply(doc, namespace, check=False)
    assert result.returncode != 0, f"{case} was accepted"
    for fragment in expected:
        assert fragment in result.stderr, f"{case}: {fragment!r} not in {result.stderr!r}"


def test_kubectl_scale_on_an_autoscaled_model_is_refused(namespace: str) -> None:
    """The HPA owns the count: setting spec.replicas through the scale subresource fails."""
    kubectl_apply(manifest("owned", {"maxReplicas": 2}), namespace)
    result = kubectl("scale", "-n", namespace, "im/owned", "--replicas=3", check=False)
    assert result.returncode != 0
    assert "mutually exclusive" in result.stderr and "spec.replicas" in result.stderr
    assert get_im(namespace, "owned")["spec"]["replicas"] == 1  # still the untouched default


# -- 5: the HPA during a canary --------------------------------------------------------------

CANARY_MODEL = "hpa-canary"
CANARY_MAX = 4
CANARY_AUTOSCALING = {
    "minReplicas": 2,
    "maxReplicas": CANARY_MAX,
    "metrics": [{"type": "cpu", "target": 50}],
}
CANARY_WEIGHT = 40
CANARY_SIZE = round(CANARY_MAX * CANARY_WEIGHT / (100 - CANARY_WEIGHT))  # 3 next to 4 stable
# Held by hand: a step that would pause for an hour, and an analysis that never comes due.
CANARY_ROLLOUT = {
    "canary": {
        "steps": [{"weight": CANARY_WEIGHT, "pauseSeconds": 3600}],
        "scaleDownDelaySeconds": 2,
    },
    "analysis": {"prometheusUrl": "http://127.0.0.1:9", "intervalSeconds": 3600, "errorLimit": 100},
}


def _loaded_stable(namespace: str, load: CpuLoad) -> tuple[str, int]:
    """Apply version 1 and load it until the HPA holds it at maxReplicas; (deployment, N)."""
    kubectl_apply(manifest(CANARY_MODEL, CANARY_AUTOSCALING, "1", CANARY_ROLLOUT), namespace)
    stable_revision = wait_ready(namespace, CANARY_MODEL)["status"]["stableRevision"]
    deployment = f"{CANARY_MODEL}-{stable_revision}"
    load.set(HEAVY)

    def at_max() -> bool:
        dep = kubectl_json("get", "deploy", deployment, "-n", namespace)
        ready = (dep.get("status") or {}).get("readyReplicas", 0)
        return bool(dep["spec"]["replicas"] == ready == CANARY_MAX)

    wait_until(at_max, 90, "the HPA to hold the loaded stable at maxReplicas", interval=1)
    return deployment, CANARY_MAX


def _start_canary(namespace: str, version: str) -> str:
    kubectl_apply(manifest(CANARY_MODEL, CANARY_AUTOSCALING, version, CANARY_ROLLOUT), namespace)

    def canary_serving() -> str | None:
        status = get_im(namespace, CANARY_MODEL)["status"]
        rollout = status.get("rollout") or {}
        revision = rollout.get("revision")
        if rollout.get("phase") != "Progressing" or not rollout.get("stepStartedAt"):
            return None
        return str(revision)

    return wait_until(canary_serving, 60, "the canary to serve its first step")


def rollout_phase(namespace: str) -> str | None:
    rollout = get_im(namespace, CANARY_MODEL)["status"].get("rollout") or {}
    return rollout.get("phase")


def annotate_model(namespace: str, annotation: str) -> None:
    kubectl("annotate", "im", CANARY_MODEL, "-n", namespace, annotation)


def test_promoting_a_canary_under_the_hpa_never_lowers_serving_capacity(
    namespace: str, emulated_cluster: None
) -> None:
    with CpuLoad(namespace, CANARY_MODEL) as load:
        old, n = _loaded_stable(namespace, load)
        watch = DeploymentWatch(namespace, CANARY_MODEL)
        try:
            with Recorder(namespace, CANARY_MODEL, lambda: load.per_pod) as recorder:
                canary = _start_canary(namespace, "2")
                new = f"{CANARY_MODEL}-{canary}"
                annotate_model(namespace, f"serving.kinfer.io/promote={canary}")
                wait_until(lambda: rollout_phase(namespace) == "Succeeded", 60, "the promotion")

                def hpa_target() -> str:
                    hpa = kubectl_json("get", "hpa", CANARY_MODEL, "-n", namespace)
                    return str(hpa["spec"]["scaleTargetRef"]["name"])

                wait_until(lambda: hpa_target() == new, 30, "the HPA to target the new stable")
                wait_until(
                    lambda: not kubectl("get", "deploy", old, "-n", namespace, check=False).stdout,
                    30,
                    "the old stable Deployment to go",
                )
                time.sleep(2)
        finally:
            watch.stop()
    title = f"Canary promotion under the HPA (N={n}, canary weight {CANARY_WEIGHT}%)"
    print("\n" + recorder.table(title) + "\n\n" + watch.table(title + ", every Deployment event"))

    replay = list(watch.replay())
    as_canary = [live[new] for _, live in replay if new in live and live[new].track == "canary"]
    # Sized from the weight on top of the HPA's stable, then to N before it takes over.
    assert {d.spec for d in as_canary} >= {CANARY_SIZE, n}, as_canary
    deletions = [(e, live) for e, live in replay if e.name == old and e.type == "DELETED"]
    assert deletions, "the old stable Deployment was never deleted"
    event, live = deletions[0]
    assert new in live and live[new].track == "stable", live
    assert live[new].ready >= n, f"at {event.t:.1f}s the new stable had {live[new].ready}/{n} ready"
    # Stable was never reduced while it served, and serving capacity never dipped below N.
    for e, live in replay:
        if e.name == old and e.type != "DELETED" and not live[old].deleting:
            assert live[old].spec >= n, f"old stable scaled to {live[old].spec} at {e.t:.1f}s"
        serving = sum(d.ready for name, d in live.items() if name in (old, new))
        assert serving >= n, f"only {serving} ready at {e.t:.1f}s ({e.type} {e.name})"
    assert hpa_target() == new
    assert get_im(namespace, CANARY_MODEL)["status"]["stableRevision"] == canary


def test_aborting_a_canary_under_the_hpa_keeps_the_stable_replicas(
    namespace: str, emulated_cluster: None
) -> None:
    with CpuLoad(namespace, CANARY_MODEL) as load:
        stable, n = _loaded_stable(namespace, load)
        watch = DeploymentWatch(namespace, CANARY_MODEL)
        try:
            with Recorder(namespace, CANARY_MODEL, lambda: load.per_pod) as recorder:
                canary = _start_canary(namespace, "2")
                annotate_model(namespace, f"serving.kinfer.io/abort={canary}")
                wait_until(lambda: rollout_phase(namespace) == "RolledBack", 60, "the rollback")
                wait_until(
                    lambda: (
                        kubectl("get", "deploy", "-n", namespace, "-o", "name").stdout.split()
                        == [f"deployment.apps/{stable}"]
                    ),
                    30,
                    "the canary Deployment to be removed",
                )
                time.sleep(2)
        finally:
            watch.stop()
    title = f"Canary abort under the HPA (N={n}, canary weight {CANARY_WEIGHT}%)"
    print("\n" + recorder.table(title) + "\n\n" + watch.table(title + ", every Deployment event"))

    replay = list(watch.replay())
    name = f"{CANARY_MODEL}-{canary}"
    assert CANARY_SIZE in {live[name].spec for _, live in replay if name in live}, "no canary"
    for event, live in replay:
        assert stable in live, f"stable Deployment gone at {event.t:.1f}s"
        assert live[stable].spec >= n and live[stable].ready >= n, (event, live[stable])
    hpa = kubectl_json("get", "hpa", CANARY_MODEL, "-n", namespace)
    assert hpa["spec"]["scaleTargetRef"]["name"] == stable
    status = get_im(namespace, CANARY_MODEL)["status"]
    assert status["rollout"]["reason"] == "ManualAbort" and status["stableRevision"] in stable
