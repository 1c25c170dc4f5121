"""Real pods under hostile load: a runtime pod with a 1Gi memory limit is not OOMKilled.

The loads of bench/hostile.py, against a runtime pod on the kubelet node (its budget derived
from the container's cgroup limit, nothing configured): 8 concurrent JSON requests as large as
the body limit allows, 32 concurrent 48 MiB gRPC messages, and 300 requests of 4 MiB mirrored
to a target that accepts connections and never answers. Requests may be refused (413, 503,
RESOURCE_EXHAUSTED); the container must not restart, and must answer correctly afterwards.
"""

from __future__ import annotations

import json
import socket
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np
import pytest
from harness import kubectl, kubectl_apply, kubectl_json, wait_until
from realnode import (
    HEADER_LENGTH,
    NODE_KEY,
    images,
    infer,
    model_manifest,
    reference_logits,
    serving_url,
)
from test_core import pods_of, wait_ready

MIB = 1024 * 1024
GRPC_INFER = "/inference.GRPCInferenceService/ModelInfer"


pytestmark = pytest.mark.real_node


def _status(sock: socket.socket) -> int:
    """The status code of the next response head on `sock` (its headers are skipped)."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed after {head!r}")
        head += chunk
    return int(head.split(b" ", 2)[1])


def _post(url: str, body: bytes, headers: dict[str, str]) -> str:
    """POST with `Expect: 100-continue`, as a client sending large bodies should: a server
    that refuses by the declared size (413, or 503 while its budget is full) says so before
    the body is sent, so the refusal reaches the client instead of a reset mid-upload."""
    target = urllib.parse.urlsplit(url)
    assert target.hostname is not None and target.port is not None
    lines = [
        f"POST {target.path} HTTP/1.1",
        f"Host: {target.hostname}:{target.port}",
        f"Content-Length: {len(body)}",
        "Expect: 100-continue",
        "Connection: close",
        *(f"{key}: {value}" for key, value in headers.items()),
    ]
    try:
        with socket.create_connection((target.hostname, target.port), timeout=300) as sock:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            status = _status(sock)
            if status == 100:
                sock.sendall(body)
                status = _status(sock)
            return str(status)
    except OSError as exc:
        return type(exc).__name__


def _json_body(image: np.ndarray, limit: int) -> bytes:
    text = json.dumps(image.ravel().tolist())[1:-1]
    rows = (limit - 200) // (len(text) + 1)
    shape = json.dumps([rows, *image.shape[1:]])
    head = f'{{"inputs":[{{"name":"input","datatype":"FP32","shape":{shape},"data":['
    return (head + ",".join([text] * rows) + "]}]}").encode()


def _binary_body(batch: np.ndarray) -> tuple[bytes, dict[str, str]]:
    tensor = {
        "name": "input",
        "datatype": "FP32",
        "shape": list(batch.shape),
        "parameters": {"binary_data_size": batch.nbytes},
    }
    head = json.dumps({"inputs": [tensor]}).encode()
    headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(head))}
    return head + batch.tobytes(), headers


def _grpc_message(batch: np.ndarray) -> bytes:
    from kinfer_runtime.schemas.proto import grpc_service_pb2 as pb

    request = pb.ModelInferRequest(model_name="demo")
    tensor = request.inputs.add()
    tensor.name, tensor.datatype = "input", "FP32"
    tensor.shape.extend(batch.shape)
    request.raw_input_contents.append(batch.tobytes())
    return request.SerializeToString()


def _grpc_all(target: str, message: bytes, n: int) -> list[str]:
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    with grpc.insecure_channel(target, options=options) as channel:
        call = channel.unary_unary(GRPC_INFER)
        futures = [call.future(message, timeout=300) for _ in range(n)]
        codes = []
        for future in futures:
            try:
                future.result()
                codes.append("OK")
            except grpc.RpcError as exc:
                codes.append(exc.code().name)
        return codes


def _silent_pod(namespace: str) -> str:
    """A pod (the runtime image, on the real node) that accepts TCP on 8080 and never
    answers; its IP."""
    script = (
        "import socket, time\n"
        "s = socket.socket(); s.bind(('', 8080)); s.listen(4096)\n"
        "conns = []\n"
        "while True: conns.append(s.accept())\n"
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "silent"},
        "spec": {
            # On the real node (the kwok nodes run no containers), tolerating its taint.
            "nodeSelector": {NODE_KEY: "true"},
            "tolerations": [{"key": NODE_KEY, "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [
                {
                    "name": "silent",
                    "image": images()["KINFER_RUNTIME_IMAGE"],
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", script],
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                }
            ],
        },
    }
    kubectl_apply(pod, namespace)
    kubectl("wait", "--for=condition=Ready", "pod/silent", "-n", namespace, "--timeout=120s")
    ip: str = kubectl_json("get", "pod", "silent", "-n", namespace)["status"]["podIP"]
    return ip


def _runtime_container(namespace: str) -> dict[str, Any]:
    (pod,) = pods_of(namespace, "demo")
    status: dict[str, Any] = pod["status"]["containerStatuses"][0]
    return status


@pytest.mark.timeout(900)
def test_a_1gi_runtime_pod_survives_hostile_loads_and_answers_afterwards(
    namespace: str,
) -> None:
    # limits: memory 1Gi. The response cache spares the two cores 299 of step 3's 300
    # inferences of 341 images each (the same body every time); each request is still read
    # whole, answered, and mirrored, which is the load this case is about.
    manifest = model_manifest("demo", runtime={"responseCache": {"maxBytes": 8 * MIB}})
    manifest["spec"]["model"]["deterministic"] = True
    kubectl_apply(manifest, namespace)
    wait_ready(namespace, "demo", timeout=180)
    url = serving_url(namespace, "demo")
    (pod,) = pods_of(namespace, "demo")
    pod_ip = pod["status"]["podIP"]
    infer_url = f"http://{pod_ip}:8080/v2/models/demo/infer"
    image = np.random.default_rng(3).standard_normal((1, 3, 32, 32)).astype(np.float32)

    # 1. Eight concurrent JSON bodies just under the 64 MiB body limit.
    body = _json_body(image, 63 * MIB)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(
            pool.map(
                lambda _: _post(infer_url, body, {"Content-Type": "application/json"}), range(8)
            )
        )
    del body
    assert set(statuses) <= {"200", "413", "503"}, statuses

    # 2. Thirty-two concurrent 48 MiB gRPC messages.
    message = _grpc_message(np.repeat(image, 48 * MIB // image.nbytes, axis=0))
    codes = _grpc_all(f"{pod_ip}:8081", message, 32)
    del message
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED", "UNAVAILABLE"}, codes

    # 3. 300 x 4 MiB requests mirrored to a target that never answers. The shadow ConfigMap
    # is the one every runtime pod mounts; written here (the operator owns it only during a
    # shadow rollout), it reaches the pod within the kubelet's sync period.
    silent_ip = _silent_pod(namespace)
    mirror = {
        "target": f"http://{silent_ip}:8080",
        "percent": 100,
        "revision": "silent",
        "timeoutSeconds": 60,
        "maxQueue": 10_000,
        "maxConcurrency": 4,
    }
    kubectl(
        "create",
        "configmap",
        "demo-shadow",
        "-n",
        namespace,
        f"--from-literal=mirror.json={json.dumps(mirror)}",
    )
    name = pod["metadata"]["name"]
    mounted = ("exec", "-n", namespace, name, "--", "cat", "/etc/kinfer/shadow/mirror.json")
    wait_until(
        lambda: "silent" in kubectl(*mounted, check=False).stdout,
        120,
        "the mirror settings to reach the pod",
    )
    body, headers = _binary_body(np.repeat(image, 4 * MIB // image.nbytes, axis=0))
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: _post(infer_url, body, headers), range(300)))
    assert statuses.count("200") > 0 and set(statuses) <= {"200", "503"}, set(statuses)

    # Never OOMKilled, never restarted; the answers are still right, over REST and gRPC.
    container = _runtime_container(namespace)
    assert container["restartCount"] == 0, container.get("lastState")
    assert "terminated" not in container.get("lastState", {}), container["lastState"]
    batch = np.random.default_rng(4).standard_normal((4, 3, 32, 32)).astype(np.float32)
    expected = reference_logits(batch)
    for binary in (False, True):
        got = infer(url, "demo", batch, binary=binary, timeout=60)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    (ok,) = _grpc_all(f"{pod_ip}:8081", _grpc_message(batch), 1)
    assert ok == "OK"
