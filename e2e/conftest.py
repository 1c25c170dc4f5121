"""e2e fixtures: CRDs installed, the operator running, and a namespace per test.

Runs against whatever KUBECONFIG points at. By default the operator runs as a local process
(`kinfer-operator`); with KINFER_E2E_OPERATOR=incluster the suite uses the operator that the
Helm chart installed.

KINFER_E2E_CLUSTER says whose cluster that is: `local` (default; e2e/cluster.sh, with the real
node and this host's Prometheus and Traefik) or `own` (bring your own cluster; README, "The
kind path"). Cases marked `real_node` or `host_services` need what only the local cluster
has: on your own cluster they skip and say why. On the local cluster a `real_node` case with
no Ready real node skips, or errors where the node is required (CI, KINFER_REAL_NODE=1).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from dataplane import Prometheus
from gateway import install_gateway_api_crds
from harness import (
    EXAMPLES,
    free_port,
    kubectl,
    kubectl_apply,
    kubectl_json,
    once_per_run,
    wait_until,
)
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
OPERATOR_MODE = os.environ.get("KINFER_E2E_OPERATOR", "local")
CLUSTER_MODE = os.environ.get("KINFER_E2E_CLUSTER", "local")
CLUSTER_MODES = ("local", "own")
# Through the environment, so every import of this module (pytest's, and a test's own
# `from conftest import ...`, which is a second module object) agrees on it.
RUN = os.environ.setdefault("KINFER_E2E_SESSION", secrets.token_hex(2))
"""This run's name (one lane of e2e/run.sh), shared by its pytest-xdist workers."""
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
"""This process's pytest-xdist worker id (gw0, gw1, ...), empty without xdist."""
SESSION = f"{RUN}{WORKER}"
"""Prefix of this session's namespaces. The local operator watches only these, so several e2e
runs (developers sharing a cluster), and the xdist workers of one run, each with its own
operator, never act on each other's models."""


HOSTCHECK = os.environ.get("KINFER_HOSTCHECK_SNAPSHOT")
"""Set only for the run after teardown (e2e/hygiene): no cluster then, and nothing else runs."""
collect_ignore = [] if HOSTCHECK else ["hygiene"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "real_node: runs pods on the local cluster's real kubelet node (make cluster)"
    )
    config.addinivalue_line(
        "markers",
        "host_services(what): needs services on this host that the cluster must reach "
        "(Prometheus, Traefik, a metrics API server): only the local cluster has them",
    )
    if HOSTCHECK:
        return
    if CLUSTER_MODE not in CLUSTER_MODES:
        raise pytest.UsageError(
            f"KINFER_E2E_CLUSTER={CLUSTER_MODE!r}: expected one of {', '.join(CLUSTER_MODES)}"
        )
    if not os.environ.get("KUBECONFIG"):
        raise pytest.UsageError("e2e needs KUBECONFIG: run `make e2e` or `make cluster` first")
    if shutil.which("kubectl") is None:
        raise pytest.UsageError("e2e needs kubectl on PATH")


EXCLUSIVE_MODULES = {"test_chart", "test_real_operator", "test_real_helm_upgrade"}
"""Modules whose operator watches the whole cluster (the chart's): it would act on the models of
a lane running beside it."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the cases that need the cluster to themselves `exclusive`: `e2e/run.sh` runs the
    two lanes side by side without them, then runs them alone."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "quiet_cluster" in fixtures or item.path.stem in EXCLUSIVE_MODULES:
            item.add_marker(pytest.mark.exclusive)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture (so before the CRDs and the operator): skip, or fail, the cases
    this cluster cannot run."""
    services = item.get_closest_marker("host_services")
    needs_node = item.get_closest_marker("real_node") is not None
    if CLUSTER_MODE == "own":
        if needs_node:
            pytest.skip("own cluster: needs the local cluster's real node (make cluster)")
        if services is not None:
            what = services.args[0] if services.args else "services on this host"
            pytest.skip(f"own cluster: needs {what}, reachable only from the local cluster")
    elif needs_node:
        from realnode import require_real_node

        require_real_node()


def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """The directory the xdist workers of this run share (the controller's basetemp), where
    `once_per_run` keeps its locks; None without xdist."""
    return tmp_path_factory.getbasetemp().parent if WORKER else None


@pytest.fixture(scope="session")
def crds(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Install (or update) kinfer's CRDs and Gateway API's, before the operator starts (as a
    platform would), and wait until the API serves them: once per run, whatever the number
    of xdist workers (each runs the session fixtures)."""
    shared = run_dir(tmp_path_factory)
    if shared is None:
        _install_crds()
    else:
        once_per_run(shared, "crds", _install_crds)


def _install_crds() -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/inferencemodels.serving.kinfer.io",
    )
    install_gateway_api_crds()

    def served() -> bool:
        found = kubectl("api-resources", "--api-group=gateway.networking.k8s.io").stdout
        return "httproutes" in found and "grpcroutes" in found

    # The operator looks for both at start (--gateway-api auto): GRPCRoutes are written and
    # watched only where discovery serves them.
    wait_until(served, 60, "discovery to serve HTTPRoutes and GRPCRoutes")


class LocalOperator:
    """The operator as a local process against the test cluster; restartable."""

    def __init__(
        self,
        log_dir: Path,
        args: tuple[str, ...] = (
            "--log-format",
            "plain",
            "--verbose",
            "--namespace",
            f"e2e-{SESSION}-*",
        ),
        env: dict[str, str] | None = None,
        name: str = "operator",
    ) -> None:
        self.log_path = log_dir / f"{name}.log"
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.args = args
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = Path(sys.executable).with_name("kinfer-operator")
        # Short resync and relist periods, so that every e2e case runs alongside both.
        env = {
            **os.environ,
            "KINFER_RESYNC_SECONDS": "10",
            "KINFER_RELIST_SECONDS": "5",
            **self.env,
        }
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                str(exe),
                *self.args,
                "--metrics-port",
                str(self.metrics_port),
                "--health-port",
                str(self.health_port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        wait_until(self._healthy, 60, "the operator's health endpoint")

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"operator exited; log:\n{self.log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.health_port}/healthz", timeout=1
            ) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a Prometheus counter over the series whose labels include `labels`, read
        from the operator's /metrics."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics") as r:
            text = r.read().decode()
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and labels.items() <= sample.labels.items():
                    total += sample.value
        return total


@dataclass(frozen=True)
class PrometheusEndpoints:
    """The Prometheus instances the suite runs, fixed before the operator starts: models can
    only name endpoints of the operator's configuration, never give a URL."""

    fake_port: int
    """test_canary's Prometheus (endpoint "fake"), scraping the stand-in data plane."""
    real_port: int
    """The real node's Prometheus (endpoint "real")."""
    real_host: str
    down_port: int
    """Nothing listens here (endpoint "down"): a Prometheus that is down."""

    def config(self) -> dict[str, Any]:
        """KINFER_PROMETHEUS_CONFIG's content."""
        return {
            "endpoints": {
                "fake": {"url": f"http://127.0.0.1:{self.fake_port}"},
                "real": {"url": f"http://{self.real_host}:{self.real_port}"},
                "down": {"url": f"http://127.0.0.1:{self.down_port}"},
            }
        }


@pytest.fixture(scope="session")
def prometheus_endpoints() -> PrometheusEndpoints:
    from realnode import node_ip

    try:
        real_host = node_ip()  # pods reach the real node's Prometheus there
    except (OSError, KeyError):
        real_host = "127.0.0.1"  # no real node: tests that need it skip
    return PrometheusEndpoints(free_port(), free_port(), real_host, free_port())


@dataclass(frozen=True)
class TraceEndpoint:
    """Where the real-lane trace backend (Jaeger, e2e/jaeger.py) takes OTLP, fixed before the
    operator starts: it is the operator's setting (KINFER_RUNTIME_OTLP_ENDPOINT), never a
    model's. Jaeger itself runs only while test_real_tracing needs it."""

    host: str
    otlp_port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.otlp_port}"


@pytest.fixture(scope="session")
def trace_endpoint(prometheus_endpoints: PrometheusEndpoints) -> TraceEndpoint:
    host = prometheus_endpoints.real_host  # the node's address: pods reach it
    try:
        return TraceEndpoint(host, free_port(host))
    except OSError:  # no real node's bridge here: tests that need it skip
        return TraceEndpoint(host, free_port())


STAND_IN_ACTIVATOR_IP = "10.255.255.254"
"""The kwok lane runs no activator: a selector-less `kinfer-activator` Service with one
Ready endpoint at this (unrouted) address tells the operator one is Ready, so models may go
to zero and be fronted by it (the cases wake them with a scale patch, as the activator does)."""


def stand_in_activator() -> None:
    """The activator as the operator sees it: its Service's EndpointSlice with a Ready pod."""
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kinfer-system"}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kinfer-activator", "namespace": "kinfer-system"},
            "spec": {"ports": [{"name": "http", "port": 8012, "protocol": "TCP"}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "kinfer-activator-stand-in",
                "namespace": "kinfer-system",
                "labels": {"kubernetes.io/service-name": "kinfer-activator"},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [STAND_IN_ACTIVATOR_IP], "conditions": {"ready": True}}],
            "ports": [{"name": "http", "port": 8012, "protocol": "TCP"}],
        },
    ]
    kubectl_apply("\n---\n".join(yaml.safe_dump(d) for d in docs), "kinfer-system")


@pytest.fixture(scope="session")
def operator(
    crds: None,
    tmp_path_factory: pytest.TempPathFactory,
    prometheus_endpoints: PrometheusEndpoints,
    trace_endpoint: TraceEndpoint,
) -> Iterator[LocalOperator | None]:
    """The running operator (None when it runs in-cluster, installed by the chart)."""
    if OPERATOR_MODE == "incluster":
        yield None
        return
    stand_in_activator()
    log_dir = tmp_path_factory.mktemp("operator")
    config = log_dir / "prometheus.yaml"
    config.write_text(yaml.safe_dump(prometheus_endpoints.config()))
    op = LocalOperator(
        log_dir,
        env={
            "KINFER_PROMETHEUS_CONFIG": str(config),
            "KINFER_RUNTIME_OTLP_ENDPOINT": trace_endpoint.url,
            # Scale to zero needs an activator to be known; the kwok lane has none running
            # (its cases wake models as the activator would, with a scale patch).
            "KINFER_ACTIVATOR_SERVICE": "kinfer-activator",
            "KINFER_ACTIVATOR_NAMESPACE": "kinfer-system",
        },
    )
    op.start()
    try:
        yield op
    finally:
        op.stop()
        print(f"\noperator log: {op.log_path}")


@pytest.fixture
def without_session_operator(operator: LocalOperator | None) -> Iterator[None]:
    """Stop the suite's operator so only the operators under test act (test_operator_process,
    test_upgrade)."""
    if operator is None:
        pytest.skip("needs the local operator (the in-cluster one is managed by its chart)")
    operator.stop()
    try:
        yield
    finally:
        operator.start()


@pytest.fixture
def namespace(request: pytest.FixtureRequest, operator: object) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting)."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:28].strip("-")
    name = f"e2e-{SESSION}-{slug}-{secrets.token_hex(2)}"[:63].rstrip("-")
    kubectl("create", "namespace", name)
    kubectl("label", "namespace", name, "kinfer.io/e2e=true")
    started = time.monotonic()
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)
    print(f"\n{request.node.name}: {time.monotonic() - started:.1f}s in {name}")


@pytest.fixture
def quiet_cluster(namespace: str) -> str:
    """The test's namespace, once earlier tests' namespaces of this run are gone.

    For tests that measure something cluster-wide (an operator's write counter, every API
    call a cluster-wide operator makes): models still terminating elsewhere would show up.
    """

    def others_gone() -> bool:
        listed = kubectl("get", "ns", "-l", "kinfer.io/e2e=true", "-o", "name").stdout.split()
        ours = [n for n in listed if n.startswith(f"namespace/e2e-{SESSION}-")]
        return ours == [f"namespace/{namespace}"]

    wait_until(others_gone, 180, "other e2e namespaces of this run to finish terminating")
    return namespace


@pytest.fixture(scope="session")
def real_prometheus(
    tmp_path_factory: pytest.TempPathFactory, prometheus_endpoints: PrometheusEndpoints
) -> Iterator[Prometheus]:
    """Prometheus (built by `make binaries`) with the scrape job examples/ ships, discovering
    the real node's pods through the API server. It listens on the node's address, so the
    operator reaches it from a pod as well as from this host."""
    from realnode import node_ip, require_real_node

    require_real_node()
    job = yaml.safe_load((EXAMPLES / "observability" / "prometheus-scrape.yaml").read_text())[0]
    job["scrape_interval"] = "1s"
    job["kubernetes_sd_configs"][0]["kubeconfig_file"] = os.environ["KUBECONFIG"]
    prom = Prometheus(
        tmp_path_factory.mktemp("prometheus-real"),
        [job],
        host=node_ip(),
        port=prometheus_endpoints.real_port,
        endpoint="real",
    )
    prom.start()
    yield prom
    prom.stop()


@pytest.fixture(scope="module")
def emulated_cluster() -> None:
    """Skip where the load cannot be emulated: only kwok's kubelet reports a pod's CPU from an
    annotation, and only an API server on this machine reaches the 127.0.0.1 metrics server
    (the kind path has real kubelets and an API server in a container)."""
    nodes = kubectl_json("get", "nodes")["items"]
    if not any("kwok.x-k8s.io/node" in (n["metadata"].get("annotations") or {}) for n in nodes):
        pytest.skip("needs the local kwok control plane (e2e/cluster.sh) to emulate load")


# The kwok lane's Prometheus (endpoint "fake") and the demo model files its data-plane
# stand-in serves: shared by test_canary and test_scale_to_zero (one Prometheus per session:
# both listen on the fixed port the operator is configured with).
@pytest.fixture(scope="session")
def prometheus(
    tmp_path_factory: pytest.TempPathFactory, prometheus_endpoints: PrometheusEndpoints
) -> Iterator[Prometheus]:
    prom = Prometheus(
        tmp_path_factory.mktemp("prometheus"), port=prometheus_endpoints.fake_port, endpoint="fake"
    )
    prom.start()
    yield prom
    prom.stop()


@pytest.fixture(scope="session")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real demo models: a good one, one that fails on real input, one ~10x slower."""
    root = tmp_path_factory.mktemp("models")
    exe = Path(sys.executable).with_name("kinfer-runtime")
    files = {}
    for variant in ("normal", "faulty", "slow"):
        subprocess.run(
            [
                str(exe),
                "demo-model",
                "--out",
                str(root / variant),
                "--variant",
                variant,
                "--onnx-only",
            ],
            check=True,
            capture_output=True,
        )
        files[variant] = root / variant / "model.onnx"
    return files
