"""TEST-ONLY `custom.metrics.k8s.io` server: a stand-in for prometheus-adapter in the e2e suite.

In a real cluster the HPA reads `kinfer_inflight_requests` per pod from prometheus-adapter,
which asks a Prometheus that scrapes every runtime pod (rules in
examples/autoscaling/prometheus-adapter-rules.yaml). On the local control plane that chain
cannot exist: kwok's pods run no containers, so there is no pod to scrape, and Prometheus'
Kubernetes discovery would find only pod IPs that nothing listens on. What this module keeps
real is everything on the Kubernetes side of the adapter:

- a real aggregated API: an APIService `v1beta2.custom.metrics.k8s.io` whose Service is
  `type: ExternalName, externalName: 127.0.0.1` (the same trick kwokctl uses to register the
  local metrics-server), so the real kube-apiserver proxies the real HPA controller's requests
  to this process over TLS (a self-signed certificate made with the `openssl` CLI;
  `insecureSkipTLSVerify` as for metrics-server);
- the wire format the HPA's custom-metrics client decodes: API discovery (APIResourceList)
  and `MetricValueList` for `GET .../namespaces/{ns}/pods/*/{metric}?labelSelector=...`, for
  the pods that really match the HPA's selector (listed with kubectl).

What it replaces is Prometheus and the adapter's PromQL: each pod's value comes from a
callable the test supplies (the e2e test reads a real runtime process's `/metrics`). Only
v1beta2 is registered: the HPA controller's client prefers it and only falls back to v1beta1
when discovery lacks it. The handler answers v1beta1 paths too, in v1beta1's shape, so
registering v1beta1 instead is a change of REGISTERED_VERSION only.

The APIService is cluster-wide state: while it points at a process that is gone, discovery of
the group fails for every client of the cluster. `unregister()` removes it at the end of the
module, and a run that finds one left behind by a crashed run (our label, not Available)
replaces it.

Hand-written on `http.server` because the metrics API needs five JSON answers; a generic
apiserver library (the Go custom-metrics-apiserver boilerplate) would need a Go build.
"""

from __future__ import annotations

import json
import secrets
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from harness import kubectl, kubectl_json, wait_until

__all__ = [
    "API_GROUP",
    "OWNER_LABEL",
    "CustomMetricsServer",
    "PodValues",
    "Query",
    "quantity",
]

API_GROUP = "custom.metrics.k8s.io"
API_VERSIONS = ("v1beta2", "v1beta1")
REGISTERED_VERSION = "v1beta2"
OWNER_LABEL = "kinfer.io/e2e-custom-metrics"
"""Label on the APIService and Service naming the run that registered them."""

PodValues = Callable[[str, str, list[str]], Mapping[str, float]]
"""(namespace, metric, pod names matching the HPA's selector) -> value per pod."""


@dataclass(frozen=True)
class Query:
    """One metrics request as the HPA sent it (through the aggregator)."""

    namespace: str
    metric: str
    label_selector: str
    pods: tuple[str, ...]
    values: Mapping[str, float]
    at: float = field(default_factory=time.monotonic)


def quantity(value: float) -> str:
    """A resource.Quantity string; milli-units keep fractions exact enough for the HPA."""
    milli = round(value * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """(cert, key) for 127.0.0.1, made with the openssl CLI (no Python crypto dependency)."""
    cert, key = directory / "tls.crt", directory / "tls.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=kinfer-e2e-custom-metrics",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Handler(BaseHTTPRequestHandler):
    server: _MetricsHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the aggregator polls discovery often; queries are recorded on the server

    def _send(self, code: int, body: Mapping[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _not_found(self, what: str) -> None:
        self._send(
            404,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "NotFound",
                "code": 404,
                "message": what,
            },
        )

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
        query = urllib.parse.parse_qs(url.query)
        owner = self.server.owner
        if parts == ["apis"]:
            self._send(200, _group_list())
        elif parts == ["apis", API_GROUP]:
            self._send(200, _group())
        elif len(parts) == 3 and parts[:2] == ["apis", API_GROUP] and parts[2] in API_VERSIONS:
            self._send(200, _resource_list(parts[2], owner.metrics))
        elif (
            len(parts) == 8
            and parts[:2] == ["apis", API_GROUP]
            and parts[2] in API_VERSIONS
            and parts[3] == "namespaces"
            and parts[5] == "pods"
        ):
            # .../namespaces/{ns}/pods/{name or *}/{metric}?labelSelector=...
            version, namespace, pod, metric = parts[2], parts[4], parts[6], parts[7]
            selector = query.get("labelSelector", [""])[0]
            self._pods_metric(version, namespace, metric, selector, None if pod == "*" else pod)
        else:
            self._not_found(f"the e2e custom metrics server does not serve {url.path}")

    def _pods_metric(
        self, version: str, namespace: str, metric: str, selector: str, only: str | None = None
    ) -> None:
        owner = self.server.owner
        if metric not in owner.metrics:
            self._not_found(f"metric {metric} is not served for pods")
            return
        pods = owner.pods(namespace, selector)
        if only is not None:
            pods = [p for p in pods if p == only]
        try:
            values = dict(owner.values(namespace, metric, pods))
        except Exception as err:  # the source died: answer like an adapter whose query failed
            self._send(
                503,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "code": 503,
                    "message": f"metric source: {err}",
                },
            )
            return
        owner.record(Query(namespace, metric, selector, tuple(pods), values))
        items = [_metric_value(version, namespace, pod, metric, v) for pod, v in values.items()]
        self._send(
            200,
            {
                "kind": "MetricValueList",
                "apiVersion": f"{API_GROUP}/{version}",
                "metadata": {},
                "items": items,
            },
        )


def _group() -> dict[str, Any]:
    versions = [
        {"groupVersion": f"{API_GROUP}/{REGISTERED_VERSION}", "version": REGISTERED_VERSION}
    ]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": API_GROUP,
        "versions": versions,
        "preferredVersion": versions[0],
    }


def _group_list() -> dict[str, Any]:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group()]}


def _resource_list(version: str, metrics: tuple[str, ...]) -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{API_GROUP}/{version}",
        "resources": [
            {
                "name": f"pods/{metric}",
                "singularName": "",
                "namespaced": True,
                "kind": "MetricValueList",
                "verbs": ["get"],
            }
            for metric in metrics
        ],
    }


def _metric_value(
    version: str, namespace: str, pod: str, metric: str, value: float
) -> dict[str, Any]:
    described = {"kind": "Pod", "namespace": namespace, "name": pod, "apiVersion": "/v1"}
    if version == "v1beta1":
        return {
            "describedObject": described,
            "metricName": metric,
            "timestamp": _now(),
            "windowSeconds": 1,
            "value": quantity(value),
        }
    return {
        "describedObject": described,
        "metric": {"name": metric},
        "timestamp": _now(),
        "windowSeconds": 1,
        "value": quantity(value),
    }


class _MetricsHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: CustomMetricsServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.owner = owner


class CustomMetricsServer:
    """Serves pods metrics from `values` over HTTPS and registers them as an aggregated API."""

    def __init__(self, workdir: Path, metrics: tuple[str, ...], values: PodValues) -> None:
        self.workdir = workdir
        self.metrics = metrics
        self.values = values
        # A letter first: a bare hex token such as 108e81 reads as a number in YAML.
        self.token = f"t{secrets.token_hex(3)}"
        self.service = f"kinfer-e2e-custom-metrics-{self.token}"
        self.service_namespace = "kube-system"
        self.apiservice = f"{REGISTERED_VERSION}.{API_GROUP}"
        self.queries: list[Query] = []
        self._lock = threading.Lock()
        self._httpd: _MetricsHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- serving ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        cert, key = self_signed_certificate(self.workdir)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._httpd = _MetricsHTTPServer(self)
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def record(self, query: Query) -> None:
        with self._lock:
            self.queries.append(query)

    def queries_for(self, namespace: str, since: float = 0.0) -> list[Query]:
        with self._lock:
            return [q for q in self.queries if q.namespace == namespace and q.at >= since]

    @staticmethod
    def pods(namespace: str, selector: str) -> list[str]:
        """Names of the pods the HPA selected that are not being deleted."""
        args = ["get", "pods", "-n", namespace]
        if selector:
            args += ["-l", selector]
        return [
            p["metadata"]["name"]
            for p in kubectl_json(*args)["items"]
            if not p["metadata"].get("deletionTimestamp")
        ]

    # -- registration -----------------------------------------------------------------------

    def register(self, timeout: float = 90) -> None:
        """Create the ExternalName Service and the APIService; wait until it is Available.

        The APIService's name is fixed by the API (`<version>.<group>`), so only one server
        can own it. One left behind by a crashed run of this suite (our label, not Available)
        is replaced; one that serves (a real adapter, or a concurrent run) is waited for and
        then reported, never overwritten.
        """
        self._claim(timeout)
        labels = {OWNER_LABEL: self.token}
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": self.service,
                "namespace": self.service_namespace,
                "labels": labels,
            },
            "spec": {"type": "ExternalName", "externalName": "127.0.0.1"},
        }
        apiservice = {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": self.apiservice, "labels": labels},
            "spec": {
                "group": API_GROUP,
                "version": REGISTERED_VERSION,
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
                "insecureSkipTLSVerify": True,
                "service": {
                    "name": self.service,
                    "namespace": self.service_namespace,
                    "port": self.port,
                },
            },
        }
        text = yaml.safe_dump_all([service, apiservice])
        kubectl("create", "-f", "-", input=text)
        wait_until(self._available, timeout, f"APIService {self.apiservice} to be Available")

    def _existing(self) -> dict[str, Any] | None:
        got = kubectl("get", "apiservice", self.apiservice, "-o", "json", check=False)
        return dict(json.loads(got.stdout)) if got.returncode == 0 else None

    def _claim(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (existing := self._existing()) is not None:
            labels = existing["metadata"].get("labels") or {}
            available = any(
                c.get("type") == "Available" and c.get("status") == "True"
                for c in (existing.get("status") or {}).get("conditions") or []
            )
            if OWNER_LABEL in labels and not available:
                kubectl("delete", "apiservice", self.apiservice, "--ignore-not-found")
                stale = labels[OWNER_LABEL]
                kubectl(
                    "delete",
                    "service",
                    "-n",
                    self.service_namespace,
                    "-l",
                    f"{OWNER_LABEL}={stale}",
                    "--ignore-not-found",
                )
                continue
            if time.monotonic() > deadline:
                owner = labels.get(OWNER_LABEL, "not this suite")
                raise RuntimeError(
                    f"APIService {self.apiservice} is served by someone else ({owner}); "
                    "the custom-metrics e2e test needs to own it"
                )
            time.sleep(2)

    def _available(self) -> bool:
        existing = self._existing()
        conditions = (existing or {}).get("status", {}).get("conditions") or []
        return any(c.get("type") == "Available" and c.get("status") == "True" for c in conditions)

    def unregister(self) -> None:
        """Delete the APIService and Service, but only while they are still ours."""
        existing = self._existing()
        if existing and (existing["metadata"].get("labels") or {}).get(OWNER_LABEL) == self.token:
            kubectl("delete", "apiservice", self.apiservice, "--ignore-not-found", check=False)
        kubectl(
            "delete",
            "service",
            self.service,
            "-n",
            self.service_namespace,
            "--ignore-not-found",
            check=False,
        )
