"""Support for the autoscaling e2e modules (test_autoscaling_*.py): manifests, emulated CPU
load, the recorder that samples Deployments, HPA and status into a timeline, and a watch on
the Deployments' replica writes.

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
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Self

from harness import BackgroundLoop, kubectl, kubectl_json
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
