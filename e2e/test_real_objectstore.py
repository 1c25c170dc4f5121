"""Object-store sources on the real node, each against a real implementation of its API run
on the node's own address: s3:// against s3rver (npm), gs:// against fake-gcs-server (Go
module proxy), azure:// against Azurite (npm), all installed by e2e/tools/objectstores.sh.
Keys come from a Secret, a fill Job and the pods reach the store, and a refusal shows in
status.

What each server checks: s3rver checks the access key id but not SigV4 signatures, so the
signer is checked against AWS's published example in tests/runtime/test_objectstore.py.
fake-gcs-server checks no credentials at all (every request is anonymous to it), so gs://
shows a refusal with a missing object (HTTP 404) instead of a wrong key. Azurite verifies the
SAS signature with the account key, so a wrong key is a real signature failure.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import shutil
import socket
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from harness import free_port, kubectl_apply, kubectl_json, wait_until
from kinfer_operator.api.spec import AWS_SECRET_KEYS, AZURE_SECRET_KEYS
from kinfer_runtime._objectstore import ObjectStoreCredentials, sign_url
from realnode import model_manifest, node_ip
from test_real_cache import CLAIM, cache_dir, fill_jobs, fill_message, wait_serving
from test_real_sources import serves_the_demo_model

__all__ = ["cache_dir"]  # the fixture, used here too

REPO = Path(__file__).resolve().parents[1]
NODE_DIR = Path(os.environ.get("KINFER_NODE_DIR", "/var/lib/kinfer-node"))
S3_KEYS = ObjectStoreCredentials("S3RVER", "S3RVER")  # s3rver's built-in account
# Azurite's built-in development account, as published in Azure's docs.
AZURE_KEYS = ObjectStoreCredentials(
    "devstoreaccount1",
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
)
OBJECT = "demo/model.onnx"


pytestmark = pytest.mark.real_node


def _installed(server: str) -> str:
    return subprocess.run(
        ["bash", str(REPO / "e2e" / "tools" / "objectstores.sh"), server],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@contextmanager
def _serving(argv: Callable[[str, int], list[str]], log: Path) -> Iterator[tuple[str, int]]:
    """A store process bound to the node address (pods reach it; nothing listens on an
    external interface), stopped by its PID."""
    host = node_ip()
    port = free_port(host)
    with log.open("wb") as out:
        proc = subprocess.Popen(argv(host, port), stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: _listening(host, port), 60, f"{log.stem} to listen")
            yield host, port
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.fixture
def demo_model(tmp_path: Path) -> Path:
    from kinfer_runtime.demo import build_demo_model

    (model,) = build_demo_model(tmp_path / "demo", "normal", with_torch=False)
    return model


@pytest.fixture
def store_data(namespace: str) -> Iterator[Path]:
    data = NODE_DIR / "volumes" / f"{namespace}-store"
    data.mkdir(parents=True)
    yield data
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def s3_endpoint(store_data: Path, tmp_path: Path, demo_model: Path) -> Iterator[str]:
    """s3rver with bucket `models` holding the demo model at demo/model.onnx."""
    exe = _installed("s3rver")

    def argv(host: str, port: int) -> list[str]:
        return [
            exe,
            "-d",
            str(store_data),
            "-a",
            host,
            "-p",
            str(port),
            "--configure-bucket",
            "models",
        ]

    with _serving(argv, tmp_path / "s3rver.log") as (host, port):
        endpoint = f"http://{host}:{port}"
        put = sign_url(f"{endpoint}/models/{OBJECT}", S3_KEYS, region="us-east-1", method="PUT")
        upload = urllib.request.Request(put, data=demo_model.read_bytes(), method="PUT")
        with urllib.request.urlopen(upload, timeout=30) as response:
            assert response.status == 200
        yield endpoint


@pytest.fixture
def gcs_endpoint(store_data: Path, tmp_path: Path, demo_model: Path) -> Iterator[str]:
    """fake-gcs-server with bucket `models` holding the demo model at demo/model.onnx (its
    -data folder: one directory per bucket), answering the XML API on its public host."""
    exe = _installed("fake-gcs-server")
    (store_data / "models" / "demo").mkdir(parents=True)
    shutil.copy(demo_model, store_data / "models" / OBJECT)

    def argv(host: str, port: int) -> list[str]:
        return [
            exe,
            "-scheme",
            "http",
            "-host",
            host,
            "-port",
            str(port),
            "-public-host",
            f"{host}:{port}",
            "-backend",
            "memory",
            "-data",
            str(store_data),
        ]

    with _serving(argv, tmp_path / "fake-gcs-server.log") as (host, port):
        yield f"http://{host}:{port}"


def _account_sas(keys: ObjectStoreCredentials) -> str:
    """An account SAS that may create containers and write blobs: the runtime only reads one
    blob (a service SAS); the fixture needs more to put the model there."""
    expiry = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    fields = [keys.access_key_id, "rwc", "b", "co", "", expiry, "", "", "2022-11-02", "", ""]
    key = base64.b64decode(keys.secret_access_key)
    sig = hmac.new(key, "\n".join(fields).encode(), hashlib.sha256).digest()
    query = {"sv": "2022-11-02", "ss": "b", "srt": "co", "sp": "rwc", "se": expiry}
    return urllib.parse.urlencode({**query, "sig": base64.b64encode(sig).decode()})


@pytest.fixture
def azure_endpoint(store_data: Path, tmp_path: Path, demo_model: Path) -> Iterator[str]:
    """Azurite's blob service, container `models` holding the demo model at
    demo/model.onnx; the endpoint is the account's URL (path-style, as on an IP address)."""
    exe = _installed("azurite")

    def argv(host: str, port: int) -> list[str]:
        return [
            exe,
            "--blobHost",
            host,
            "--blobPort",
            str(port),
            "-l",
            str(store_data),
            "--disableTelemetry",
            "--skipApiVersionCheck",
        ]

    with _serving(argv, tmp_path / "azurite.log") as (host, port):
        endpoint = f"http://{host}:{port}/{AZURE_KEYS.access_key_id}"
        sas = _account_sas(AZURE_KEYS)
        create = urllib.request.Request(f"{endpoint}/models?restype=container&{sas}", method="PUT")
        with urllib.request.urlopen(create, timeout=30) as response:
            assert response.status == 201
        upload = urllib.request.Request(
            f"{endpoint}/models/{OBJECT}?{sas}",
            data=demo_model.read_bytes(),
            method="PUT",
            headers={"x-ms-blob-type": "BlockBlob"},
        )
        with urllib.request.urlopen(upload, timeout=30) as response:
            assert response.status == 201
        yield endpoint


def _secret(namespace: str, names: tuple[str, str], keys: ObjectStoreCredentials) -> None:
    """The Secret `store`, with the key pair under the names the operator reads (`names`)."""
    data = dict(zip(names, (keys.access_key_id, keys.secret_access_key), strict=True))
    kubectl_apply(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "store"}, "stringData": data},
        namespace,
    )


def _model(uri: str, endpoint: str, sha256: str | None = None) -> dict[str, Any]:
    manifest = model_manifest("demo", uri=uri)
    manifest["spec"]["model"].update({"endpoint": endpoint, "credentials": {"name": "store"}})
    if sha256:
        manifest["spec"]["model"]["sha256"] = sha256
        manifest["spec"]["model"]["cache"] = {"claimName": CLAIM}
    return manifest


def _fills_the_cache_and_serves(namespace: str, manifest: dict[str, Any]) -> None:
    kubectl_apply(manifest, namespace)
    wait_serving(namespace, "1")
    serves_the_demo_model(namespace, "demo")
    (job,) = fill_jobs(namespace)
    assert fill_message(namespace, job).startswith("downloaded 5 MiB")


def _degraded_with(namespace: str, uri: str, http_status: int) -> None:
    def degraded() -> dict[str, Any] | None:
        im = kubectl_json("get", "im", "demo", "-n", namespace)
        conds = (im.get("status") or {}).get("conditions", [])
        cond = next((c for c in conds if c["type"] == "Degraded"), None)
        return cond if cond and cond["status"] == "True" else None

    cond = wait_until(degraded, 120, "Degraded with the store's refusal")
    assert cond["reason"] == "ModelLoadFailed"
    assert uri in cond["message"], cond
    assert f"HTTP {http_status}" in cond["message"], cond


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_s3_source_fills_the_cache_and_serves(
    namespace: str, s3_endpoint: str, cache_dir: Path, demo_model: Path
) -> None:
    _secret(namespace, AWS_SECRET_KEYS, S3_KEYS)
    manifest = _model(f"s3://models/{OBJECT}", s3_endpoint, _sha256(demo_model))
    _fills_the_cache_and_serves(namespace, manifest)


def test_s3_source_with_a_wrong_key_says_so_in_status(namespace: str, s3_endpoint: str) -> None:
    _secret(namespace, AWS_SECRET_KEYS, ObjectStoreCredentials("NOT-A-KEY", "whatever"))
    kubectl_apply(_model(f"s3://models/{OBJECT}", s3_endpoint), namespace)
    _degraded_with(namespace, f"s3://models/{OBJECT}", 403)


def test_gs_source_fills_the_cache_and_serves(
    namespace: str, gcs_endpoint: str, cache_dir: Path, demo_model: Path
) -> None:
    _secret(
        namespace, AWS_SECRET_KEYS, ObjectStoreCredentials("GOOG1EXAMPLEHMACKEY", "hmac-secret")
    )
    manifest = _model(f"gs://models/{OBJECT}", gcs_endpoint, _sha256(demo_model))
    _fills_the_cache_and_serves(namespace, manifest)


def test_gs_source_of_a_missing_object_says_so_in_status(namespace: str, gcs_endpoint: str) -> None:
    _secret(
        namespace, AWS_SECRET_KEYS, ObjectStoreCredentials("GOOG1EXAMPLEHMACKEY", "hmac-secret")
    )
    kubectl_apply(_model("gs://models/demo/missing.onnx", gcs_endpoint), namespace)
    _degraded_with(namespace, "gs://models/demo/missing.onnx", 404)


def test_azure_source_fills_the_cache_and_serves(
    namespace: str, azure_endpoint: str, cache_dir: Path, demo_model: Path
) -> None:
    _secret(namespace, AZURE_SECRET_KEYS, AZURE_KEYS)
    manifest = _model(f"azure://models/{OBJECT}", azure_endpoint, _sha256(demo_model))
    _fills_the_cache_and_serves(namespace, manifest)


def test_azure_source_with_a_wrong_key_says_so_in_status(
    namespace: str, azure_endpoint: str
) -> None:
    wrong = base64.b64encode(b"not the account key").decode()
    _secret(namespace, AZURE_SECRET_KEYS, ObjectStoreCredentials(AZURE_KEYS.access_key_id, wrong))
    kubectl_apply(_model(f"azure://models/{OBJECT}", azure_endpoint), namespace)
    _degraded_with(namespace, f"azure://models/{OBJECT}", 403)
