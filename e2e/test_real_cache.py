"""The model cache on the real node: one download per version, before any pod starts.

The cache is a PersistentVolume on the node (a directory under its state dir, so teardown
removes it). The model server is e2e/modelserver.py in a pod; its `/slow/` path paces the
download so that the progress in status can be watched. Nothing is mocked.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import kubectl, kubectl_apply, kubectl_json, wait_until
from realnode import bind_node_volume, model_manifest, start_model_server
from test_real_sources import image_model_sha256, serves_the_demo_model

NODE_DIR = Path(os.environ.get("KINFER_NODE_DIR", "/var/lib/kinfer-node"))
CLAIM = "model-cache"
SHARED_CACHE_HIT = "from the shared model cache"


pytestmark = pytest.mark.real_node


@pytest.fixture
def cache_dir(namespace: str) -> Iterator[Path]:
    """A writable cache volume for the runtime user, bound to the claim `model-cache`."""
    path = NODE_DIR / "volumes" / f"{namespace}-cache"
    path.mkdir(parents=True)
    os.chown(path, 65532, 65532)
    volume = bind_node_volume(namespace, path, CLAIM, "ReadWriteOnce")
    try:
        yield path
    finally:
        kubectl("delete", "pv", volume, "--wait=false", check=False)
        shutil.rmtree(path, ignore_errors=True)


def cached_model(base: str, path: str, sha256: str, version: str, **cache: Any) -> dict[str, Any]:
    manifest = model_manifest("demo", uri=f"{base}/{path}", version=version)
    manifest["spec"]["model"]["sha256"] = sha256
    manifest["spec"]["model"]["cache"] = {"claimName": CLAIM, **cache}
    return manifest


def wait_serving(namespace: str, version: str, timeout: float = 180) -> dict[str, Any]:
    """The model once the current generation serves `version` on every replica, and the
    previous revision's pods are gone: a terminating pod may still answer until kube-proxy
    drops its endpoint, as in any rolling update."""

    def serving() -> dict[str, Any] | None:
        im = kubectl_json("get", "im", "demo", "-n", namespace)
        status = im.get("status") or {}
        ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
        revisions = {
            p["metadata"]["labels"].get("serving.kinfer.io/revision")
            for p in kubectl_json(
                "get", "pods", "-n", namespace, "-l", "serving.kinfer.io/model=demo,!job-name"
            )["items"]
        }
        done = (
            status.get("observedGeneration") == im["metadata"]["generation"]
            and ready.get("status") == "True"
            and status.get("stableModelVersion") == version
            and revisions == {status.get("stableRevision")}
        )
        return im if done else None

    return wait_until(serving, timeout, f"model version {version} to serve")


def runtime_logs(namespace: str) -> dict[str, str]:
    """Logs of every runtime pod of the model, by pod name (fill pods excluded)."""
    pods = kubectl_json(
        "get", "pods", "-n", namespace, "-l", "serving.kinfer.io/model=demo,!job-name"
    )["items"]
    return {
        p["metadata"]["name"]: kubectl(
            "logs", "-n", namespace, p["metadata"]["name"], "-c", "runtime"
        ).stdout
        for p in pods
        if p["status"].get("phase") == "Running"
    }


def fill_jobs(namespace: str) -> list[dict[str, Any]]:
    return list(kubectl_json("get", "jobs", "-n", namespace)["items"])


def fill_message(namespace: str, job: dict[str, Any]) -> str:
    """The fill pod's termination message: what it did, and what it evicted."""
    name = job["metadata"]["name"]
    pods = kubectl_json("get", "pods", "-n", namespace, "-l", f"job-name={name}")["items"]
    for pod in pods:
        for cs in pod["status"].get("containerStatuses", []):
            message = (cs.get("state", {}).get("terminated") or {}).get("message")
            if message:
                return str(message)
    return ""


def test_fills_once_shows_progress_and_pods_skip_the_download(
    namespace: str, cache_dir: Path
) -> None:
    base = start_model_server(namespace, slow_bytes_per_s=1_000_000)
    digest = image_model_sha256(namespace)
    kubectl_apply(cached_model(base, "slow/demo/model.onnx", digest, "1"), namespace)

    # While the Job downloads (about 5 s at this pace), no runtime pod exists and the
    # MESSAGE column of `kubectl get im -o wide` carries the bytes so far.
    def downloading() -> str | None:
        out = kubectl("get", "im", "demo", "-n", namespace, "-o", "wide").stdout
        return out if re.search(r"Downloading model \d+\.\d/4\.7 MiB", out) else None

    wide = wait_until(downloading, 90, "download progress in the MESSAGE column")
    assert "MESSAGE" in wide
    assert not runtime_logs(namespace), "runtime pods started before the version was cached"

    wait_serving(namespace, "1")
    serves_the_demo_model(namespace, "demo")
    (job,) = fill_jobs(namespace)
    assert fill_message(namespace, job).startswith("downloaded 5 MiB")
    assert (cache_dir / "demo" / digest[:32] / "model.onnx").is_file()

    kubectl("scale", "im/demo", "-n", namespace, "--replicas=3")
    wait_until(
        lambda: (
            kubectl_json("get", "im", "demo", "-n", namespace)["status"].get("readyReplicas") == 3
        ),
        120,
        "3 ready replicas",
    )
    logs = runtime_logs(namespace)
    assert len(logs) == 3
    for pod, text in logs.items():
        assert SHARED_CACHE_HIT in text, (pod, text[-2000:])
        assert "downloading" not in text, (pod, text[-2000:])
    assert len(fill_jobs(namespace)) == 1  # the scale-up filled nothing


def test_revert_reuses_the_cache_and_eviction_keeps_live_versions(
    namespace: str, cache_dir: Path
) -> None:
    base = start_model_server(namespace)
    sums = {
        v: kubectl(
            "exec", "-n", namespace, "modelserver", "--", "sha256sum", f"/models/{v}/model.onnx"
        ).stdout.split()[0]
        for v in ("demo", "demo-slow", "demo-faulty")
    }
    # Room for the 5 MB and 11 MB versions together, not for all three.
    limit = {"maxSize": "12Mi"}

    def roll_to(path: str, version: str) -> None:
        kubectl_apply(
            cached_model(base, f"{path}/model.onnx", sums[path], version, **limit), namespace
        )
        wait_serving(namespace, version)

    roll_to("demo", "1")
    roll_to("demo-slow", "2")  # v1 serves while v2 fills: both live, over the limit, both kept
    keys = {v: s[:32] for v, s in sums.items()}
    assert {p.name for p in (cache_dir / "demo").iterdir()} == {keys["demo"], keys["demo-slow"]}

    roll_to("demo", "1")  # GitOps revert
    revert_job = next(
        j
        for j in fill_jobs(namespace)
        if j["metadata"]["labels"]["serving.kinfer.io/cache-key"] == keys["demo"]
    )
    assert fill_message(namespace, revert_job).startswith("already cached")
    serves_the_demo_model(namespace, "demo")

    roll_to("demo-faulty", "3")  # v1 (stable while v3 filled) stays; unused v2 goes
    assert {p.name for p in (cache_dir / "demo").iterdir()} == {keys["demo"], keys["demo-faulty"]}
    for pod, text in runtime_logs(namespace).items():
        assert SHARED_CACHE_HIT in text, (pod, text[-2000:])
    # Jobs of versions no revision uses are deleted with their pods.
    live = {j["metadata"]["labels"]["serving.kinfer.io/cache-key"] for j in fill_jobs(namespace)}
    wait_until(
        lambda: (
            {j["metadata"]["labels"]["serving.kinfer.io/cache-key"] for j in fill_jobs(namespace)}
            == {keys["demo-faulty"]}
        ),
        60,
        f"only the live version's fill Job to remain (have {live})",
    )


def test_a_wrong_sha256_fails_the_fill_and_no_pod_starts(namespace: str, cache_dir: Path) -> None:
    base = start_model_server(namespace)
    kubectl_apply(cached_model(base, "demo/model.onnx", "0" * 64, "1"), namespace)

    def degraded() -> dict[str, Any] | None:
        im = kubectl_json("get", "im", "demo", "-n", namespace)
        cond = next(
            (c for c in (im.get("status") or {}).get("conditions", []) if c["type"] == "Degraded"),
            None,
        )
        return cond if cond and cond["status"] == "True" else None

    cond = wait_until(degraded, 180, "Degraded with the fill failure")
    assert cond["reason"] == "ModelCacheFailed"
    assert "sha256 mismatch" in cond["message"], cond
    assert not runtime_logs(namespace)
    assert not [p for p in cache_dir.rglob("*") if p.is_file()]
