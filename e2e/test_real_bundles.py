"""Model bundles on the real node: the digits CNN (e2e/digits.py, trained at test time, no
download) with its labels and handler, served from three sources, each checked by POSTing
every held-out PNG to /v2/models/<name>/predict:

- pvc://, a bundle directory on a PersistentVolume;
- http:// with the archive's sha256 (digits.tar.gz), from the in-cluster model server;
- s3:// (digits.zip) through the model cache, from s3rver on the node.

Each must give, label for label, what the same handler and model give in process, and at least
95% right. A bundle whose handler fails to import is Degraded/ModelLoadFailed naming the file
and line.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import pytest
from digits import DigitsArtifacts, build
from harness import condition, kubectl, kubectl_apply, kubectl_json, wait_until
from kinfer_operator.api.spec import AWS_SECRET_KEYS
from kinfer_runtime._objectstore import sign_url
from realnode import bind_node_volume, model_manifest, serving_url, start_model_server
from test_core import wait_ready
from test_real_cache import CLAIM, cache_dir, wait_serving
from test_real_objectstore import S3_KEYS, _secret, demo_model, s3_endpoint, store_data
from test_real_sources import node_volume

__all__ = ["cache_dir", "demo_model", "node_volume", "s3_endpoint", "store_data"]  # fixtures

pytestmark = pytest.mark.real_node

MIN_ACCURACY = 0.95


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> DigitsArtifacts:
    return build(tmp_path_factory.mktemp("digits"))


def _readable(path: Path) -> None:
    """World-readable for the runtime's user (65532)."""
    for p in [path, *path.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def labels_match(namespace: str, name: str, digits: DigitsArtifacts) -> float:
    """POSTs every held-out PNG; asserts the labels equal in-process and the accuracy bound."""
    url = f"{serving_url(namespace, name)}/v2/models/{name}/predict"
    served = {}
    with httpx.Client(timeout=30) as client:
        for image, _ in sorted(digits.truth.items()):
            response = client.post(
                url,
                content=(digits.images / image).read_bytes(),
                headers={"Content-Type": "image/png"},
            )
            assert response.status_code == 200, response.text
            (label,) = [o for o in response.json()["outputs"] if o["name"] == "label"]
            served[image] = label["data"][0]
    assert served == digits.summary["in_process_labels"]
    accuracy = sum(served[i] == t for i, t in digits.truth.items()) / len(digits.truth)
    assert accuracy >= MIN_ACCURACY, accuracy
    print(f"\n{name}: {len(served)} PNGs, accuracy {accuracy:.4f} (as in process)")
    return accuracy


def _bundle_model(uri: str, **model: Any) -> dict[str, Any]:
    manifest = model_manifest("digits", uri=uri, runtime={"handlerThreads": 2})
    manifest["spec"]["model"].update(model)
    return manifest


def test_bundle_directory_from_a_pvc(
    namespace: str, node_volume: Path, digits: DigitsArtifacts
) -> None:
    shutil.copytree(digits.bundle, node_volume / "digits")
    _readable(node_volume)
    volume = bind_node_volume(namespace, node_volume, "models", "ReadOnlyMany")
    try:
        kubectl_apply(_bundle_model("pvc://models/digits"), namespace)
        wait_ready(namespace, "digits", timeout=180)
        labels_match(namespace, "digits", digits)
    finally:
        kubectl("delete", "pv", volume, "--wait=false", check=False)


def test_bundle_archive_over_http_with_sha256(
    namespace: str, node_volume: Path, digits: DigitsArtifacts
) -> None:
    shutil.copy(digits.tar_gz, node_volume / "digits.tar.gz")
    _readable(node_volume)
    base = start_model_server(namespace, extra_models=node_volume)
    manifest = _bundle_model(f"{base}/bench/digits.tar.gz", sha256=_sha256(digits.tar_gz))
    kubectl_apply(manifest, namespace)
    wait_ready(namespace, "digits", timeout=180)
    labels_match(namespace, "digits", digits)


def test_bundle_zip_from_s3_through_the_model_cache(
    namespace: str, s3_endpoint: str, cache_dir: Path, digits: DigitsArtifacts
) -> None:
    put = sign_url(
        f"{s3_endpoint}/models/digits/digits.zip", S3_KEYS, region="us-east-1", method="PUT"
    )
    upload = urllib.request.Request(put, data=digits.zip.read_bytes(), method="PUT")
    with urllib.request.urlopen(upload, timeout=30) as response:
        assert response.status == 200
    _secret(namespace, AWS_SECRET_KEYS, S3_KEYS)
    manifest = _bundle_model(
        "s3://models/digits/digits.zip",
        endpoint=s3_endpoint,
        credentials={"name": "store"},
        sha256=_sha256(digits.zip),
        cache={"claimName": CLAIM},
    )
    manifest["metadata"]["name"] = "demo"  # wait_serving reads the model `demo`
    kubectl_apply(manifest, namespace)
    wait_serving(namespace, "1")
    labels_match(namespace, "demo", digits)
    # The fill Job put the archive in the shared cache; the pod extracted its own copy.
    assert list(cache_dir.rglob("digits.zip")), list(cache_dir.rglob("*"))


def test_a_handler_that_fails_to_import_is_degraded_naming_file_and_line(
    namespace: str, node_volume: Path, digits: DigitsArtifacts
) -> None:
    shutil.copytree(digits.bundle, node_volume / "broken")
    (node_volume / "broken" / "handler.py").write_text("import os\n\nraise ImportError('nope')\n")
    _readable(node_volume)
    volume = bind_node_volume(namespace, node_volume, "models", "ReadOnlyMany")
    try:
        kubectl_apply(_bundle_model("pvc://models/broken"), namespace)

        def degraded() -> dict[str, Any] | None:
            cond = condition(kubectl_json("get", "im", "digits", "-n", namespace), "Degraded")
            return cond if cond and cond["status"] == "True" else None

        cond = wait_until(degraded, 180, "Degraded with the handler's import error")
        assert cond["reason"] == "ModelLoadFailed"
        assert "handler.py:3: ImportError: nope" in str(cond["message"]), cond
    finally:
        kubectl("delete", "pv", volume, "--wait=false", check=False)
