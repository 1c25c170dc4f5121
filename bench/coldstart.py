"""Cold start on the real node: apply->Ready and scale 4->8->Ready, without and with the cache.

Not a test. Needs a running cluster with the real node (`make cluster`) and KUBECONFIG set;
it starts the operator from this checkout as e2e does. The model is a generated ONNX file
(one MatMul with a `--dim`^2 float32 weight, 219 MB at the default 7400) on a directory of
the node (under its state dir), served in-cluster over http by e2e/modelserver.py in a pod.

For each mode it applies an InferenceModel with 4 replicas, waits until all are Ready, scales
to 8 and waits again, then deletes the model. Per-pod download and load times come from each
runtime's own metrics (kinfer_model_download_seconds; kinfer_model_load_seconds minus it),
the fill from the cache Job's summary. Prints markdown tables, with ratios to the no-cache
run of the same invocation.

    KUBECONFIG=.cluster/kubeconfig PYTHONPATH=operator:runtime:e2e \\
        .venv/bin/python bench/coldstart.py
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "e2e"))

from conftest import SESSION, LocalOperator  # noqa: E402
from harness import kubectl, kubectl_apply, kubectl_json, wait_until  # noqa: E402
from realnode import (  # noqa: E402
    bind_node_volume,
    model_manifest,
    start_model_server,
)

NODE_DIR = Path(os.environ.get("KINFER_NODE_DIR", "/var/lib/kinfer-node"))
NAME = "coldstart"


def write_model(path: Path, dim: int) -> str:
    """One MatMul [n, dim] x [dim, dim]: a model of dim^2 * 4 bytes that loads like any."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(0).standard_normal((dim, dim)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["output"])],
        "coldstart",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", dim])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", dim])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ready_replicas(namespace: str, want: int) -> bool:
    im = kubectl_json("get", "im", NAME, "-n", namespace)
    status = im.get("status") or {}
    ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
    return bool(
        status.get("observedGeneration") == im["metadata"]["generation"]
        and status.get("readyReplicas") == want
        and ready.get("status") == "True"
    )


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name}\{{[^}}]*\}} ([0-9.e+-]+)$", text, re.M)
    return float(match.group(1)) if match else float("nan")


def pod_times(namespace: str) -> dict[str, tuple[float, float]]:
    """(download s, load s) of each Ready runtime pod, from its own /metrics."""
    pods = kubectl_json("get", "pods", "-n", namespace, "-l", f"serving.kinfer.io/model={NAME}")
    out = {}
    for pod in pods["items"]:
        if "job-name" in pod["metadata"].get("labels", {}) or not pod["status"].get("podIP"):
            continue
        url = f"http://{pod['status']['podIP']}:9090/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
        download = _metric(text, "kinfer_model_download_seconds")
        total = _metric(text, "kinfer_model_load_seconds")
        out[pod["metadata"]["name"]] = (download, total - download)
    return out


def fill_summary(namespace: str) -> str:
    pods = kubectl_json("get", "pods", "-n", namespace, "-l", "job-name")["items"]
    for pod in pods:
        for cs in pod["status"].get("containerStatuses", []):
            message = (cs.get("state", {}).get("terminated") or {}).get("message")
            if message:
                return str(message).strip()
    return "-"


def run(
    namespace: str, uri: str, sha256: str, cached: bool, timeout: float, version: str
) -> dict[str, Any]:
    manifest = model_manifest(
        NAME,
        uri=uri,
        version=version,
        runtime={
            "resources": {
                "requests": {"cpu": "100m", "memory": "512Mi"},
                "limits": {"memory": "2Gi"},
            },
            "startupTimeoutSeconds": 900,
        },
        replicas=4,
    )
    manifest["spec"]["model"]["sha256"] = sha256
    if cached:
        manifest["spec"]["model"]["cache"] = {"claimName": "model-cache"}
    started = time.monotonic()
    kubectl_apply(manifest, namespace)
    wait_until(lambda: ready_replicas(namespace, 4), timeout, "4 ready replicas")
    first = time.monotonic() - started
    before = pod_times(namespace)
    started = time.monotonic()
    kubectl("scale", f"im/{NAME}", "-n", namespace, "--replicas=8")
    wait_until(lambda: ready_replicas(namespace, 8), timeout, "8 ready replicas")
    scale = time.monotonic() - started
    after = pod_times(namespace)
    new = {k: v for k, v in after.items() if k not in before}
    result = {
        "apply": first,
        "scale": scale,
        "fill": fill_summary(namespace) if cached else "-",
        "first_download": statistics.median(d for d, _ in before.values()),
        "first_load": statistics.median(load for _, load in before.values()),
        "scale_download": statistics.median(d for d, _ in new.values()) if new else float("nan"),
        "scale_load": statistics.median(load for _, load in new.values()) if new else float("nan"),
    }
    kubectl("delete", "im", NAME, "-n", namespace, "--wait=true", "--timeout=120s")
    wait_until(
        lambda: (
            not kubectl_json(
                "get", "pods", "-n", namespace, "-l", f"serving.kinfer.io/model={NAME}"
            )["items"]
        ),
        180,
        "the model's pods to go",
    )
    return result


def table(rows: dict[tuple[str, str], dict[str, Any]]) -> str:
    lines = [
        "| store | mode | apply → 4 Ready (s) | vs no cache | cache fill | per-pod download (s) "
        "| per-pod load (s) | scale 4→8 → Ready (s) | vs no cache | scale-up pod download (s) "
        "| scale-up pod load (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (store, mode), r in rows.items():
        base = rows[(store, "without cache")]
        lines.append(
            f"| {store} | {mode} | {r['apply']:.1f} | {r['apply'] / base['apply']:.2f} "
            f"| {r['fill']} "
            f"| {r['first_download']:.2f} | {r['first_load']:.2f} | {r['scale']:.1f} "
            f"| {r['scale'] / base['scale']:.2f} | {r['scale_download']:.2f} "
            f"| {r['scale_load']:.2f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dim", type=int, default=7400, help="weight is dim x dim float32")
    parser.add_argument("--timeout", type=float, default=600, help="per wait, seconds")
    parser.add_argument(
        "--store-mbps",
        default="0,50",
        help="comma-separated per-download caps of the model server in MB/s; 0: no cap",
    )
    args = parser.parse_args()
    namespace = f"e2e-{SESSION}-coldstart"
    work = NODE_DIR / "volumes" / namespace
    models = work / "models"
    models.mkdir(parents=True)
    os.chmod(work, 0o755)
    os.chmod(models, 0o755)
    sha256 = write_model(models / "model.onnx", args.dim)
    os.chmod(models / "model.onnx", 0o644)
    size_mb = (models / "model.onnx").stat().st_size / 1e6
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    operator = LocalOperator(Path(tempfile.mkdtemp(prefix="kinfer-bench-")))
    operator.start()
    kubectl("create", "namespace", namespace)
    rates = [int(r) for r in args.store_mbps.split(",")]
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    volume = None
    try:
        base = start_model_server(namespace, max(rates) * 10**6 or 1, extra_models=models)
        cache = work / "cache"
        cache.mkdir(parents=True)
        os.chown(cache, 65532, 65532)
        volume = bind_node_volume(namespace, cache, "model-cache", "ReadWriteOnce", size="5Gi")
        for rate in rates:
            store = f"{rate} MB/s per download" if rate else "in-cluster, no cap"
            # The server's pace is set once: one capped rate per invocation.
            uri = f"{base}/slow/bench/model.onnx" if rate else f"{base}/bench/model.onnx"
            for cached in (False, True):
                mode = "with cache" if cached else "without cache"
                # A version per run: the cached run of a rate starts from an empty cache.
                version = f"{rate}-{int(cached)}"
                rows[(store, mode)] = run(namespace, uri, sha256, cached, args.timeout, version)
                if cached:
                    shutil.rmtree(work / "cache" / NAME, ignore_errors=True)
    finally:
        kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=180s", check=False)
        if volume:
            kubectl("delete", "pv", volume, "--wait=false", check=False)
        operator.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\nMachine: {platform.node()}, {os.cpu_count()} CPUs, {platform.machine()}; "
        f"real kubelet node, CPU runtime image; model {size_mb:.0f} MB (ONNX, generated), "
        "served in-cluster over http; 4 replicas, then scaled to 8. Ratios are to the run "
        "without cache at the same store speed.\n"
    )
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
