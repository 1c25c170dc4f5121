"""Operator at scale: N InferenceModels through the operator against the same children applied
directly, on the local control plane's kwok lane. Prints markdown tables; not a test.

For each N (default 100, 500, 1000), in one run and on one cluster:

1. **direct**: the Deployments and Services the operator would make for N models (built by the
   operator's own `plan`, without owner references), applied with one `kubectl apply`; timed
   until every Deployment has an available replica; then deleted, timed until no pod is left.
2. **operator**: N InferenceModels applied with one `kubectl apply` to a namespace the operator
   (a local `kinfer-operator` process with its production defaults) watches; timed until every
   model reports Ready. Then the operator is left alone for `--window` seconds: its CPU time,
   RSS, reconcile passes and API requests (by verb, from its own metrics; its watches are not
   counted) over that window are the steady state. Then the models are deleted, timed until no
   pod is left, and the RSS is read again.

Pods go to fake kwok nodes made for the bench (kwok plays their kubelet, so a pod is Ready as
soon as it is bound) and the Service range is widened for the bench with a ServiceCIDR object,
so the cluster holds 2 x max N Services. Both are removed at the end.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kinfer_operator.handlers import IDLE_SECONDS
from kinfer_operator.model import InferenceModel
from kinfer_operator.reconcile.plan import plan
from kinfer_operator.world import Observed
from kubernetes import client, config, watch
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
OPERATOR_NS, DIRECT_NS = "kinfer-bench", "kinfer-bench-direct"
BENCH_LABEL = "kinfer.io/bench"
NODES, PODS_PER_NODE = 3, 500
CLK_TCK = os.sysconf("SC_CLK_TCK")

TARGETS = {
    "converge": ("≤ 1.2x direct", lambda r: r.converge_ratio <= 1.2),
    "cpu": ("< 5% of a core", lambda r: r.cpu_percent < 5),
    "api": ("< 1 request/s", lambda r: r.api_per_second < 1),
    "rss": ("< 200 MiB", lambda r: r.rss_settled < 200),
    "cleanup": ("≤ 1.2x direct", lambda r: r.cleanup_ratio <= 1.2),
    "released": ("≤ 1.25x idle", lambda r: r.rss_after <= 1.25 * r.rss_idle),
    "pool": ("0 warnings", lambda r: r.pool_warnings == 0),
}


def kubectl(*args: str, stdin: str | None = None) -> str:
    out = subprocess.run(
        ["kubectl", *args], input=stdin, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


def apply(objects: list[dict[str, Any]]) -> None:
    """One `kubectl apply` of every object, as a user committing them would."""
    doc = {"apiVersion": "v1", "kind": "List", "items": objects}
    kubectl("apply", "--server-side", "--field-manager=bench", "-f", "-", stdin=json.dumps(doc))


# -- what is created ---------------------------------------------------------------------------


def model_manifest(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kinfer.io/v1alpha1",
        "kind": "InferenceModel",
        "metadata": {"name": f"m{i:04d}", "namespace": OPERATOR_NS},
        "spec": {
            "model": {"uri": "file:///models/demo/model.onnx", "version": "1"},
            "runtime": {
                "image": "kinfer/runtime:bench",
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
            },
            "replicas": 1,
            "scheduling": {"nodeSelector": {BENCH_LABEL: "true"}},
        },
    }


def direct_objects(i: int) -> list[dict[str, Any]]:
    """What the operator would apply for model i, without its owner: a user's own manifests."""
    body = model_manifest(i)
    body["metadata"].update(namespace=DIRECT_NS, uid=f"bench-{i}", generation=1)
    objects = plan(InferenceModel.from_body(body), Observed()).applies
    for obj in objects:
        obj["metadata"].pop("ownerReferences", None)
        obj["metadata"]["namespace"] = DIRECT_NS
    return objects


def bench_node(i: int) -> dict[str, Any]:
    capacity = {"cpu": "1000", "memory": "4Ti", "pods": str(PODS_PER_NODE)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": f"kinfer-bench-{i}",
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {BENCH_LABEL: "true", "type": "kwok", "kubernetes.io/os": "linux"},
        },
        # Fake pod addresses: kwok hands them out, nothing routes or sends to them.
        "spec": {"podCIDR": f"10.246.{2 * i}.0/23", "podCIDRs": [f"10.246.{2 * i}.0/23"]},
        "status": {"allocatable": capacity, "capacity": capacity},
    }


@contextmanager
def bench_cluster(max_models: int) -> Iterator[None]:
    """Bench nodes, namespaces and a wider Service range; all removed afterwards."""
    net_env = Path(os.environ.get("CLUSTER_DIR", REPO / ".cluster")) / "net.env"
    net = dict(line.split("=", 1) for line in net_env.read_text().split() if "=" in line)
    base = ipaddress.ip_network(net["SERVICE_CIDR"]).supernet(new_prefix=16).network_address
    wide = ipaddress.ip_network(f"{base + 32 * 256}/20")  # x.y.32.0/20: 4094 more Services
    assert wide.num_addresses - 2 >= 2 * max_models
    cidr = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "ServiceCIDR",
        "metadata": {"name": "kinfer-bench"},
        "spec": {"cidrs": [str(wide)]},
    }
    namespaces = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}
        for n in (OPERATOR_NS, DIRECT_NS)
    ]
    kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    kubectl("wait", "--for=condition=Established", "crd/inferencemodels.serving.kinfer.io")
    apply([cidr, *namespaces, *(bench_node(i) for i in range(NODES))])
    try:
        yield
    finally:
        for ns in (OPERATOR_NS, DIRECT_NS):
            kubectl("delete", "namespace", ns, "--ignore-not-found", "--timeout=300s")
        kubectl("delete", "nodes", "-l", f"{BENCH_LABEL}=true", "--ignore-not-found")
        kubectl("delete", "servicecidr", "kinfer-bench", "--ignore-not-found", "--timeout=120s")


# -- observing ---------------------------------------------------------------------------------


class Countdown:
    """Watches one kind in a namespace and notes when `want` objects satisfy `done`."""

    def __init__(
        self, list_fn: Callable[..., Any], want: int, done: Callable[[Mapping[str, Any]], bool]
    ) -> None:
        self.want, self._list, self._done = want, list_fn, done
        self.ready: set[str] = set()
        self.finished = threading.Event()
        self.at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and not self.finished.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(self._list, timeout_seconds=30):
                    obj = event["object"]
                    obj = (
                        obj
                        if isinstance(obj, dict)
                        else client.ApiClient().sanitize_for_serialization(obj)
                    )
                    name = obj["metadata"]["name"]
                    if event["type"] != "DELETED" and self._done(obj):
                        self.ready.add(name)
                    else:
                        self.ready.discard(name)
                    if len(self.ready) >= self.want:
                        self.at = time.monotonic()
                        self.finished.set()
                        stream.stop()
                        return
            except Exception as err:  # a dropped watch: start another, after a breath
                print(f"  (watch restarted: {str(err).splitlines()[0]})", file=sys.stderr)
                time.sleep(1)

    def wait(self, timeout: float) -> float | None:
        self.finished.wait(timeout)
        self._stop.set()
        return self.at


def model_ready(obj: Mapping[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def deployment_available(obj: Mapping[str, Any]) -> bool:
    return int((obj.get("status") or {}).get("availableReplicas") or 0) >= 1


def remaining(namespace: str) -> int:
    """Pods, Deployments and Services left in a namespace (cheap: one item per list)."""
    core, apps = client.CoreV1Api(), client.AppsV1Api()
    total = 0
    for fn in (
        core.list_namespaced_pod,
        apps.list_namespaced_deployment,
        core.list_namespaced_service,
    ):
        listing = fn(namespace, limit=1)
        total += len(listing.items) + int(listing.metadata.remaining_item_count or 0)
    return total


def wait_empty(namespace: str, timeout: float) -> float:
    started = time.monotonic()
    while remaining(namespace) and time.monotonic() - started < timeout:
        time.sleep(1)
    return time.monotonic() - started


# -- the operator under test -------------------------------------------------------------------


@dataclass
class Operator:
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    metrics_port: int = 0

    def start(self) -> None:
        self.metrics_port = _free_port()
        exe = Path(sys.executable).with_name("kinfer-operator")
        args = [str(exe), "--namespace", OPERATOR_NS, "--log-format", "plain"]
        args += ["--metrics-port", str(self.metrics_port), "--health-port", str(_free_port())]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KINFER_")}
        self.proc = subprocess.Popen(
            args, stdout=self.log.open("ab"), stderr=subprocess.STDOUT, env=env
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.metrics()
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"operator did not start; see {self.log}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime

    def rss_mib(self) -> float:
        assert self.proc is not None
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        return int(match.group(1)) / 1024 if match else float("nan")

    def pool_warnings(self) -> int:
        return self.log.read_text(errors="replace").count("Connection pool is full")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sum(metrics: Mapping[tuple[str, Any], float], name: str, **labels: str) -> float:
    return sum(
        v for (n, lbls), v in metrics.items() if n == name and labels.items() <= dict(lbls).items()
    )


def _by_verb(metrics: Mapping[tuple[str, Any], float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for (name, labels), value in metrics.items():
        if name == "kinfer_operator_api_requests_total":
            verb = dict(labels)["verb"]
            out[verb] = out.get(verb, 0.0) + value
    return out


# -- one N -------------------------------------------------------------------------------------


@dataclass
class Result:
    models: int
    direct_ready: float
    operator_ready: float
    rss_idle: float
    rss_settled: float
    reconciles_per_second: float
    api_per_second: float
    api_by_verb: dict[str, float]
    cpu_percent: float
    direct_cleanup: float
    operator_cleanup: float
    rss_after: float
    pool_warnings: int
    notes: list[str] = field(default_factory=list)

    @property
    def converge_ratio(self) -> float:
        return self.operator_ready / self.direct_ready

    @property
    def cleanup_ratio(self) -> float:
        return self.operator_cleanup / self.direct_cleanup


def run_direct(n: int, timeout: float) -> tuple[float, float]:
    apps = client.AppsV1Api()
    countdown = Countdown(
        lambda **kw: apps.list_namespaced_deployment(DIRECT_NS, **kw), n, deployment_available
    )
    started = time.monotonic()
    apply([obj for i in range(n) for obj in direct_objects(i)])
    at = countdown.wait(timeout)
    ready = (at - started) if at else float("nan")
    started = time.monotonic()
    kubectl("delete", "deployments,services", "--all", "-n", DIRECT_NS, "--wait=false")
    cleanup = wait_empty(DIRECT_NS, timeout)
    return ready, cleanup


def run_operator(op: Operator, n: int, window: float, timeout: float, rss_idle: float) -> Result:
    custom = client.CustomObjectsApi()
    countdown = Countdown(
        lambda **kw: custom.list_namespaced_custom_object(
            "serving.kinfer.io", "v1alpha1", OPERATOR_NS, "inferencemodels", **kw
        ),
        n,
        model_ready,
    )
    started = time.monotonic()
    apply([model_manifest(i) for i in range(n)])
    at = countdown.wait(timeout)
    ready = (at - started) if at else float("nan")
    time.sleep(15)  # events of the last pods settle
    before, cpu_before, t0 = op.metrics(), op.cpu_seconds(), time.monotonic()
    time.sleep(window)
    after, cpu_after, elapsed = op.metrics(), op.cpu_seconds(), time.monotonic() - t0
    rss_settled = op.rss_mib()
    verbs_before, verbs_after = _by_verb(before), _by_verb(after)
    by_verb = {v: (verbs_after[v] - verbs_before.get(v, 0.0)) / elapsed for v in verbs_after}
    reconciles = _sum(after, "kinfer_operator_reconciles_total") - _sum(
        before, "kinfer_operator_reconciles_total"
    )
    kubectl("delete", "inferencemodels", "--all", "-n", OPERATOR_NS, "--wait=false")
    started = time.monotonic()
    cleanup = wait_empty(OPERATOR_NS, timeout)
    # The deletions' events reach the operator, and an idle worker hands the memory back
    # (handlers.IDLE_SECONDS after the queue went quiet).
    time.sleep(IDLE_SECONDS + 15)
    return Result(
        models=n,
        direct_ready=float("nan"),
        operator_ready=ready,
        rss_idle=rss_idle,
        rss_settled=rss_settled,
        reconciles_per_second=reconciles / elapsed,
        api_per_second=sum(by_verb.values()),
        api_by_verb={v: r for v, r in by_verb.items() if r > 0},
        cpu_percent=100 * (cpu_after - cpu_before) / elapsed,
        direct_cleanup=float("nan"),
        operator_cleanup=cleanup,
        rss_after=op.rss_mib(),
        pool_warnings=op.pool_warnings(),
    )


def table(results: list[Result], window: float) -> str:
    head = (
        "| models | all Ready: operator | direct | ratio | RSS idle → settled → after delete "
        "| steady passes/s | steady API req/s (by verb) | steady CPU | cleanup: operator "
        "| direct | ratio | pool warnings |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = []
    for r in results:
        verbs = ", ".join(f"{v} {x:.2f}" for v, x in sorted(r.api_by_verb.items())) or "none"
        rows.append(
            f"| {r.models} | {r.operator_ready:.1f} s | {r.direct_ready:.1f} s "
            f"| {r.converge_ratio:.2f} | {r.rss_idle:.0f} → {r.rss_settled:.0f} → "
            f"{r.rss_after:.0f} MiB | {r.reconciles_per_second:.2f} "
            f"| {r.api_per_second:.2f} ({verbs}) | {r.cpu_percent:.1f}% of a core "
            f"| {r.operator_cleanup:.1f} s | {r.direct_cleanup:.1f} s | {r.cleanup_ratio:.2f} "
            f"| {r.pool_warnings} |"
        )
    return (
        "\n".join([head, *rows])
        + f"\n\nSteady state: a {window:.0f} s window, 15 s after all Ready."
    )


def targets(result: Result) -> str:
    values = {
        "converge": f"{result.converge_ratio:.2f}x",
        "cpu": f"{result.cpu_percent:.1f}%",
        "api": f"{result.api_per_second:.2f}/s",
        "rss": f"{result.rss_settled:.0f} MiB",
        "cleanup": f"{result.cleanup_ratio:.2f}x",
        "released": f"{result.rss_after:.0f} MiB vs idle {result.rss_idle:.0f} MiB",
        "pool": str(result.pool_warnings),
    }
    lines = [f"| target at {result.models} models | goal | measured | met |", "|---|---|---|---|"]
    for key, (goal, check) in TARGETS.items():
        lines.append(f"| {key} | {goal} | {values[key]} | {'yes' if check(result) else 'NO'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="100,500,1000", help="comma-separated N")
    parser.add_argument("--window", type=float, default=60.0, help="steady-state seconds")
    parser.add_argument("--timeout", type=float, default=900.0, help="per phase")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.models.split(",")]
    # Stopped early: still stop the operator and delete the bench's nodes and namespaces.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    config.load_kube_config()
    log = Path(tempfile.mkdtemp(prefix="kinfer-bench-")) / "operator.log"
    print(
        f"machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"operator log: {log}",
        flush=True,
    )
    results = []
    with bench_cluster(max(sizes)):
        op = Operator(log)
        op.start()
        try:
            time.sleep(20)
            rss_idle = op.rss_mib()
            for n in sizes:
                print(f"N={n}: direct…", flush=True)
                direct_ready, direct_cleanup = run_direct(n, args.timeout)
                print(f"N={n}: operator…", flush=True)
                result = run_operator(op, n, args.window, args.timeout, rss_idle)
                result.direct_ready, result.direct_cleanup = direct_ready, direct_cleanup
                results.append(result)
                print(table(results[-1:], args.window), flush=True)
        finally:
            op.stop()
    print("\n## Operator at scale (kwok lane)\n")
    print(table(results, args.window))
    print()
    print(targets(results[-1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
