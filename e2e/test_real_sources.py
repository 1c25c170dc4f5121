"""Model sources in a real pod: file:// from the image, pvc:// from a PersistentVolume on the
node, http:// with sha256 from an in-cluster server; a wrong sha256 refuses to serve."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from harness import condition, kubectl, kubectl_apply, kubectl_json, wait_until
from realnode import (
    bind_node_volume,
    infer,
    model_manifest,
    reference_logits,
    serving_url,
    start_model_server,
)
from test_core import wait_ready

NODE_DIR = Path(os.environ.get("KINFER_NODE_DIR", "/var/lib/kinfer-node"))


pytestmark = pytest.mark.real_node


def serves_the_demo_model(namespace: str, name: str) -> None:
    batch = np.random.default_rng(3).standard_normal((2, 3, 32, 32)).astype(np.float32)
    got = infer(serving_url(namespace, name), name, batch, binary=True)
    np.testing.assert_allclose(got, reference_logits(batch), rtol=1e-4, atol=1e-4)


def image_model_sha256(namespace: str) -> str:
    """sha256 of the image's demo model, read inside the model server's container."""
    out = kubectl(
        "exec", "-n", namespace, "modelserver", "--", "sha256sum", "/models/demo/model.onnx"
    )
    return out.stdout.split()[0]


def test_http_source_with_sha256_serves(namespace: str) -> None:
    base = start_model_server(namespace)
    digest = image_model_sha256(namespace)
    manifest = model_manifest("demo", uri=f"{base}/demo/model.onnx")
    manifest["spec"]["model"]["sha256"] = digest
    kubectl_apply(manifest, namespace)
    wait_ready(namespace, "demo", timeout=180)
    serves_the_demo_model(namespace, "demo")


def test_http_source_with_wrong_sha256_refuses_to_serve(namespace: str) -> None:
    base = start_model_server(namespace)
    manifest = model_manifest("demo", uri=f"{base}/demo/model.onnx")
    manifest["spec"]["model"]["sha256"] = "0" * 64
    kubectl_apply(manifest, namespace)

    def degraded() -> dict[str, object] | None:
        im = kubectl_json("get", "im", "demo", "-n", namespace)
        cond = condition(im, "Degraded")
        return cond if cond and cond["status"] == "True" else None

    cond = wait_until(degraded, 120, "Degraded with the load failure")
    assert cond["reason"] == "ModelLoadFailed"
    assert "sha256 mismatch" in str(cond["message"]), cond
    im = kubectl_json("get", "im", "demo", "-n", namespace)
    assert condition(im, "Ready")["status"] == "False"
    assert not im["status"].get("readyReplicas")


@pytest.fixture
def node_volume(namespace: str) -> Iterator[Path]:
    """A directory on the node (under its state dir, removed by teardown) holding a model."""
    path = NODE_DIR / "volumes" / namespace
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_pvc_source_from_a_persistent_volume_on_the_node(
    namespace: str, node_volume: Path, tmp_path: Path
) -> None:
    from kinfer_runtime.demo import build_demo_model

    (model,) = build_demo_model(tmp_path, "normal", with_torch=False)
    shutil.copy(model, node_volume / "model.onnx")
    os.chmod(node_volume, 0o755)
    os.chmod(node_volume / "model.onnx", 0o644)
    volume = bind_node_volume(namespace, node_volume, "models", "ReadOnlyMany")
    try:
        manifest = model_manifest("demo", uri="pvc://models/model.onnx")
        manifest["spec"]["model"]["sha256"] = hashlib.sha256(model.read_bytes()).hexdigest()
        kubectl_apply(manifest, namespace)
        wait_ready(namespace, "demo", timeout=180)
        serves_the_demo_model(namespace, "demo")
    finally:
        kubectl("delete", "pv", volume, "--wait=false", check=False)
