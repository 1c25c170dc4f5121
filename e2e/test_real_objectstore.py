"""s3:// sources on the real node, against s3rver (a real S3 API server from the npm
registry, e2e/tools/objectstores.sh) on the node's own address: keys come from a Secret, a
fill Job and the pods reach the store, and a wrong key shows in status.

s3rver checks the access key id but does not verify SigV4 signatures; the signer is checked
against AWS's published example in tests/runtime/test_objectstore.py.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import kubectl_apply, kubectl_json, wait_until
from kinfer_runtime._objectstore import ObjectStoreCredentials, sign_url
from realnode import model_manifest, node_ip, require_real_node
from test_real_cache import CLAIM, cache_dir, fill_jobs, fill_message, wait_serving
from test_real_sources import serves_the_demo_model

__all__ = ["cache_dir"]  # the fixture, used here too

REPO = Path(__file__).resolve().parents[1]
NODE_DIR = Path(os.environ.get("KINFER_NODE_DIR", "/var/lib/kinfer-node"))
KEYS = ObjectStoreCredentials("S3RVER", "S3RVER")  # s3rver's built-in account


@pytest.fixture(autouse=True)
def _real_node() -> None:
    require_real_node()


@pytest.fixture
def s3_endpoint(namespace: str, tmp_path: Path) -> Iterator[str]:
    """s3rver on the node address (pods reach it; nothing on an external interface), with
    bucket `models` holding the demo model at demo/model.onnx."""
    exe = subprocess.run(
        ["bash", str(REPO / "e2e" / "tools" / "objectstores.sh"), "s3rver"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    data = NODE_DIR / "volumes" / f"{namespace}-s3"
    data.mkdir(parents=True)
    host = node_ip()
    with socket.socket() as s:
        s.bind((host, 0))
        port = s.getsockname()[1]
    log = (tmp_path / "s3rver.log").open("wb")
    proc = subprocess.Popen(
        [exe, "-d", str(data), "-a", host, "-p", str(port), "--configure-bucket", "models"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://{host}:{port}"
    try:
        wait_until(lambda: _listening(host, port), 30, "s3rver to listen")
        from kinfer_runtime.demo import build_demo_model

        (model,) = build_demo_model(tmp_path / "demo", "normal", with_torch=False)
        put = sign_url(f"{endpoint}/models/demo/model.onnx", KEYS, region="us-east-1", method="PUT")
        upload = urllib.request.Request(put, data=model.read_bytes(), method="PUT")
        with urllib.request.urlopen(upload, timeout=30) as response:
            assert response.status == 200
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        shutil.rmtree(data, ignore_errors=True)


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        time.sleep(0.2)
        return False


def _secret(namespace: str, key_id: str, secret: str) -> None:
    kubectl_apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "store"},
            "stringData": {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret},
        },
        namespace,
    )


def _s3_model(endpoint: str, sha256: str | None = None) -> dict[str, Any]:
    manifest = model_manifest("demo", uri="s3://models/demo/model.onnx")
    manifest["spec"]["model"].update({"endpoint": endpoint, "credentials": {"name": "store"}})
    if sha256:
        manifest["spec"]["model"]["sha256"] = sha256
    return manifest


def test_s3_source_fills_the_cache_and_serves(
    namespace: str, s3_endpoint: str, cache_dir: Path, tmp_path: Path
) -> None:
    digest = hashlib.sha256((tmp_path / "demo" / "model.onnx").read_bytes()).hexdigest()
    _secret(namespace, KEYS.access_key_id, KEYS.secret_access_key)
    manifest = _s3_model(s3_endpoint, digest)
    manifest["spec"]["model"]["cache"] = {"claimName": CLAIM}
    kubectl_apply(manifest, namespace)
    wait_serving(namespace, "1")
    serves_the_demo_model(namespace, "demo")
    (job,) = fill_jobs(namespace)
    assert fill_message(namespace, job).startswith("downloaded 5 MiB")


def test_s3_source_with_a_wrong_key_says_so_in_status(namespace: str, s3_endpoint: str) -> None:
    _secret(namespace, "NOT-A-KEY", "whatever")
    kubectl_apply(_s3_model(s3_endpoint), namespace)

    def degraded() -> dict[str, Any] | None:
        im = kubectl_json("get", "im", "demo", "-n", namespace)
        conds = (im.get("status") or {}).get("conditions", [])
        cond = next((c for c in conds if c["type"] == "Degraded"), None)
        return cond if cond and cond["status"] == "True" else None

    cond = wait_until(degraded, 120, "Degraded with the store's refusal")
    assert cond["reason"] == "ModelLoadFailed"
    assert "s3://models/demo/model.onnx" in cond["message"], cond
    assert "HTTP 403" in cond["message"], cond
