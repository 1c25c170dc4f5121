"""The real-node lane: placing pods on the kubelet node, kinfer's images, and talking to the
runtime through its Service the way an in-cluster client does.

The real node (e2e/node.sh) carries a label and a NoSchedule taint, so nothing lands there
unless it asks: `on_real_node()` adds both to an InferenceModel, as any user would.
Traffic goes from this host to ClusterIPs (kube-proxy's rules) and pod IPs on the node's own
bridge, never anywhere else.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

import numpy as np
import pytest
from harness import kubectl, kubectl_apply, kubectl_json, wait_until

__all__ = [
    "NODE_KEY",
    "NODE_NAME",
    "LoadGenerator",
    "canary_rollout",
    "images",
    "infer",
    "model_manifest",
    "node_ip",
    "on_real_node",
    "reference_logits",
    "require_real_node",
    "service_url",
    "serving_url",
    "start_model_server",
]

NODE_NAME = "kinfer-real-0"
NODE_KEY = "node.kinfer.io/real"
HEADER_LENGTH = "Inference-Header-Content-Length"


def _cluster_env(name: str) -> dict[str, str]:
    """KEY=value lines that e2e/cluster.sh and e2e/images.sh leave next to the kubeconfig."""
    path = Path(os.environ.get("KUBECONFIG", ".cluster/kubeconfig")).parent / name
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            values[key] = value.strip('"')
    return values


@cache
def images() -> dict[str, str]:
    """Image names e2e/images.sh built and e2e/node.sh imported (KINFER_*_IMAGE)."""
    return _cluster_env("images.env")


@cache
def node_ip() -> str:
    """The real node's address (on its own bridge): pods reach host services there."""
    return _cluster_env("net.env")["NODE_IP"]


def require_real_node() -> None:
    """Fail (in CI, or when the node was asked for) or skip when there is no real node."""
    nodes = kubectl_json("get", "nodes", "-l", NODE_KEY)["items"]
    ready = [
        n
        for n in nodes
        for c in n["status"].get("conditions", [])
        if c["type"] == "Ready" and c["status"] == "True"
    ]
    if ready:
        return
    message = f"no Ready real node ({NODE_KEY}); `make cluster` starts one (root only)"
    if os.environ.get("CI") or os.environ.get("KINFER_REAL_NODE") == "1":
        pytest.fail(message)
    pytest.skip(message)


def on_real_node(manifest: dict[str, Any]) -> dict[str, Any]:
    """The InferenceModel with the real node's label selected and its taint tolerated."""
    scheduling = manifest["spec"].setdefault("scheduling", {})
    scheduling.setdefault("nodeSelector", {})[NODE_KEY] = "true"
    scheduling.setdefault("tolerations", []).append(
        {"key": NODE_KEY, "operator": "Exists", "effect": "NoSchedule"}
    )
    return manifest


def model_manifest(
    name: str, uri: str = "file:///models/demo/model.onnx", version: str = "1", **spec: Any
) -> dict[str, Any]:
    """An InferenceModel of the CPU runtime image on the real node."""
    runtime = {
        "image": images()["KINFER_RUNTIME_IMAGE"],
        "imagePullPolicy": "Never",
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "startupTimeoutSeconds": 120,
        "terminationGracePeriodSeconds": 10,
        **spec.pop("runtime", {}),
    }
    return on_real_node(
        {
            "apiVersion": "serving.kinfer.io/v1alpha1",
            "kind": "InferenceModel",
            "metadata": {"name": name},
            "spec": {
                "model": {"uri": uri, "format": "onnx", "version": version},
                "runtime": runtime,
                **spec,
            },
        }
    )


def start_model_server(
    namespace: str, slow_bytes_per_s: int = 20_000, extra_models: Path | None = None
) -> str:
    """e2e/modelserver.py in a pod on the real node, behind a Service; returns its base URL
    (the ClusterIP: pods have no cluster DNS here, and a URL is what users put in a spec).
    `extra_models`: a directory on the node, served under /bench/."""
    script = Path(__file__).with_name("modelserver.py").read_text()
    kubectl_apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "modelserver"},
            "data": {"modelserver.py": script},
        },
        namespace,
    )
    labels = {"app": "modelserver"}
    pod = on_real_node({"spec": {}})["spec"]["scheduling"]
    mounts: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    if extra_models is not None:
        mounts.append({"name": "bench", "mountPath": "/models/bench", "readOnly": True})
        volumes.append(
            {"name": "bench", "hostPath": {"path": str(extra_models), "type": "Directory"}}
        )
    kubectl_apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "modelserver", "labels": labels},
            "spec": {
                "nodeSelector": pod["nodeSelector"],
                "tolerations": pod["tolerations"],
                "automountServiceAccountToken": False,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 65532,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": "http",
                        "image": images()["KINFER_RUNTIME_IMAGE"],
                        "imagePullPolicy": "Never",
                        "command": ["python3", "/srv/modelserver.py"],
                        "env": [
                            {"name": "KINFER_SLOW_BYTES_PER_S", "value": str(slow_bytes_per_s)}
                        ],
                        "ports": [{"name": "http", "containerPort": 8000}],
                        "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1},
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": [{"name": "script", "mountPath": "/srv"}, *mounts],
                    }
                ],
                "volumes": [{"name": "script", "configMap": {"name": "modelserver"}}, *volumes],
            },
        },
        namespace,
    )
    kubectl_apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "modelserver"},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": "http"}]},
        },
        namespace,
    )
    kubectl("wait", "-n", namespace, "pod/modelserver", "--for=condition=Ready", "--timeout=90s")
    return service_url(namespace, "modelserver", port=80)


def bind_node_volume(
    namespace: str, path: Path, claim: str, access_mode: str, size: str = "1Gi"
) -> str:
    """A directory on the real node as a PersistentVolume bound to the claim `claim` in
    `namespace`; returns the volume's name (cluster-scoped: the caller deletes it)."""
    name = f"{namespace}-{claim}"
    kubectl_apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": [access_mode],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": str(path), "type": "Directory"},
                "claimRef": {"namespace": namespace, "name": claim},
            },
        },
        namespace,
    )
    kubectl_apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim},
            "spec": {
                "accessModes": [access_mode],
                "storageClassName": "",
                "volumeName": name,
                "resources": {"requests": {"storage": size}},
            },
        },
        namespace,
    )
    return name


def canary_rollout(
    prometheus: str, steps: list[tuple[int, int]], **analysis: Any
) -> dict[str, Any]:
    """spec.rollout for a quick canary: (weight, pauseSeconds) steps, analysis every 3 s on
    at least 5 requests, on the operator's Prometheus endpoint named `prometheus`."""
    return {
        "canary": {
            "steps": [{"weight": w, "pauseSeconds": p} for w, p in steps],
            "scaleDownDelaySeconds": 2,
            "progressDeadlineSeconds": 180,
        },
        "analysis": {
            "prometheus": prometheus,
            "intervalSeconds": 3,
            "minRequestCount": 5,
            **analysis,
        },
    }


def service_url(namespace: str, service: str, port: int = 8080) -> str:
    """http://<ClusterIP>:<port>: reached from this host through kube-proxy's rules."""
    svc = kubectl_json("get", "service", service, "-n", namespace)
    return f"http://{svc['spec']['clusterIP']}:{port}"


def serving_url(namespace: str, model: str, timeout: float = 30) -> str:
    """The model's Service URL once kube-proxy routes it: a model turns Ready when its pods
    do, and kube-proxy programs their endpoints a moment later (as for any Service)."""
    url = service_url(namespace, model)

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/v2/models/{model}/ready", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    wait_until(ready, timeout, f"{url} to answer for {model}")
    return url


@cache
def _demo_session() -> Any:
    import onnxruntime as ort
    from kinfer_runtime.demo import build_demo_model

    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"kinfer-e2e-demo-{os.getpid()}"
    (path,) = build_demo_model(out, "normal", with_torch=False)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def reference_logits(batch: np.ndarray) -> np.ndarray:
    """What the demo model answers, computed here by onnxruntime from the same weights."""
    session = _demo_session()
    return np.asarray(session.run(None, {session.get_inputs()[0].name: batch})[0])


def infer(
    base_url: str, model: str, batch: np.ndarray, binary: bool = False, timeout: float = 10
) -> np.ndarray:
    """One Open Inference Protocol request (JSON, or the binary tensor extension)."""
    tensor: dict[str, Any] = {"name": "input", "datatype": "FP32", "shape": list(batch.shape)}
    headers = {"Content-Type": "application/json"}
    if binary:
        tensor["parameters"] = {"binary_data_size": batch.nbytes}
        head = json.dumps(
            {
                "inputs": [tensor],
                "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
            }
        ).encode()
        body = head + batch.astype(np.float32).tobytes()
        headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(head))}
    else:
        tensor["data"] = batch.ravel().tolist()
        body = json.dumps({"inputs": [tensor]}).encode()
    request = urllib.request.Request(
        f"{base_url}/v2/models/{model}/infer", data=body, headers=headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        payload = response.read()
        length = response.headers.get(HEADER_LENGTH)
    if length is None:
        out = json.loads(payload)["outputs"][0]
        return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
    out = json.loads(payload[: int(length)])["outputs"][0]
    return np.frombuffer(payload[int(length) :], dtype=np.float32).reshape(out["shape"])


GRPC_PORT = 8081
"""The model Service's `grpc` port (runtime_contract.GRPC_PORT)."""


GRPC_RETRY_ARGS = [
    ("grpc.enable_retries", 1),
    (
        "grpc.service_config",
        json.dumps(
            {
                "methodConfig": [
                    {
                        "name": [{}],
                        "retryPolicy": {
                            "maxAttempts": 3,
                            "initialBackoff": "0.05s",
                            "maxBackoff": "0.5s",
                            "backoffMultiplier": 2,
                            "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"],
                        },
                    }
                ]
            }
        ),
    ),
]
"""What the README tells long-lived gRPC clients to set: a call that races a stopping server is
cancelled by grpc-core before it starts (CANCELLED), and is safe to send again."""


def _binary_request(batch: np.ndarray) -> tuple[bytes, dict[str, str]]:
    tensor = {"name": "input", "datatype": "FP32", "shape": list(batch.shape)}
    tensor["parameters"] = {"binary_data_size": batch.nbytes}
    head = json.dumps(
        {"inputs": [tensor], "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}
    ).encode()
    headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(head))}
    return head + batch.astype(np.float32).tobytes(), headers


class LoadGenerator:
    """Clients sending inferences through a Service without pause, for the span of a `with`
    block, each answer checked against the reference. Counts every outcome; a request that
    errs or answers wrongly is a failure, with its reason kept.

    Three kinds of client, none retrying, as applications behind a ClusterIP are:
    `clients` open a fresh connection per request (urllib); `keep_alive` each hold one
    persistent HTTP/1.1 connection (http.client: it reconnects only after a response saying
    `Connection: close`, so a connection the server closes under it fails the request);
    `grpc_channels` each hold one long-lived gRPC channel (Triton's client) to the Service's
    gRPC port. `outcomes` counts them all together; `by_kind` apart."""

    def __init__(
        self,
        base_url: str,
        model: str,
        clients: int = 4,
        keep_alive: int = 2,
        grpc_channels: int = 1,
    ) -> None:
        self.base_url, self.model = base_url, model
        self.outcomes: Counter[str] = Counter()
        self.by_kind: Counter[tuple[str, str]] = Counter()
        """(fresh | keep-alive | grpc, ok | failed) -> count."""
        self.failures: list[str] = []
        self.latencies: list[tuple[float, float]] = []
        """(monotonic time sent, seconds to the answer) of each answered request."""
        self.failed_at: list[float] = []
        """Monotonic time each failed request was sent."""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        rng = np.random.default_rng(7)
        self._batch = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
        self._expected = reference_logits(self._batch)
        self._threads = [
            *(threading.Thread(target=self._run, daemon=True) for _ in range(clients)),
            *(
                threading.Thread(target=self._run_keep_alive, daemon=True)
                for _ in range(keep_alive)
            ),
            *(threading.Thread(target=self._run_grpc, daemon=True) for _ in range(grpc_channels)),
        ]

    def _record(self, kind: str, sent: float, got: np.ndarray | None, error: str) -> None:
        if got is not None:
            ok = np.allclose(got, self._expected, atol=1e-3)
            error = "" if ok else "wrong answer"
        outcome = "failed" if error else "ok"
        with self._lock:
            if got is not None:
                self.latencies.append((sent, time.monotonic() - sent))
            self.outcomes[outcome] += 1
            self.by_kind[(kind, outcome)] += 1
            if error:
                self.failures.append(f"{time.strftime('%T')} {kind}: {error}")
                self.failed_at.append(sent)

    def _run(self) -> None:
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                got = infer(self.base_url, self.model, self._batch, binary=True)
            except (urllib.error.URLError, OSError, ValueError) as err:
                self._record("fresh", sent, None, f"{type(err).__name__}: {err}")
            else:
                self._record("fresh", sent, got, "")

    def _run_keep_alive(self) -> None:
        address = urlsplit(self.base_url)
        body, headers = _binary_request(self._batch)
        path = f"/v2/models/{self.model}/infer"
        connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=10)
        try:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    connection.request("POST", path, body=body, headers=headers)
                    response = connection.getresponse()
                    payload = response.read()
                    if response.status != 200:
                        raise ValueError(f"HTTP {response.status}: {payload[:200]!r}")
                    length = int(response.headers[HEADER_LENGTH])
                    out = json.loads(payload[:length])["outputs"][0]
                    got = np.frombuffer(payload[length:], dtype=np.float32).reshape(out["shape"])
                except (http.client.HTTPException, OSError, ValueError, KeyError) as err:
                    self._record("keep-alive", sent, None, f"{type(err).__name__}: {err}")
                    connection.close()  # the next request opens a new one, as clients do
                else:
                    self._record("keep-alive", sent, got, "")
        finally:
            connection.close()

    def _run_grpc(self) -> None:
        import tritonclient.grpc as tc  # the real lane only
        from tritonclient.utils import InferenceServerException

        target = f"{urlsplit(self.base_url).hostname}:{GRPC_PORT}"
        with tc.InferenceServerClient(target, channel_args=GRPC_RETRY_ARGS) as client:
            while not self._stop.is_set():
                sent = time.monotonic()
                tensor = tc.InferInput("input", list(self._batch.shape), "FP32")
                tensor.set_data_from_numpy(self._batch)
                try:
                    result = client.infer(self.model, [tensor], client_timeout=10)
                    got = result.as_numpy("logits")
                except InferenceServerException as err:
                    self._record("grpc", sent, None, f"{err.status()}: {err.message()}")
                else:
                    self._record("grpc", sent, got, "")

    def summary(self) -> str:
        """`fresh 812/0, keep-alive 1630/0, grpc 903/0` (answered/failed per kind)."""
        kinds = dict.fromkeys(kind for kind, _ in self.by_kind)
        return ", ".join(
            f"{k} {self.by_kind[(k, 'ok')]}/{self.by_kind[(k, 'failed')]}" for k in kinds
        )

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
