"""Shared fixtures: the demo model (built once), live servers, a local model HTTP server, and
helpers that speak the Open Inference Protocol the way a client library would."""

import contextlib
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import pytest
import uvicorn
from kinfer_runtime._http import OneWriteHttpToolsProtocol
from kinfer_runtime.app import create_app
from kinfer_runtime.config import Settings
from kinfer_runtime.demo import build_demo_model
from kinfer_runtime.service import InferenceService
from onnx import TensorProto, helper

HEADER = "Inference-Header-Content-Length"


# --- models ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """model.onnx, model.pt and model.pt2 of the demo classifier, same weights."""
    out = tmp_path_factory.mktemp("demo")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated upstream
        build_demo_model(out)
    return out


@pytest.fixture(scope="session")
def variant_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """ONNX-only builds of the demo variants, built on first use."""
    built: dict[str, Path] = {}

    def get(variant: str) -> Path:
        if variant not in built:
            out = tmp_path_factory.mktemp(variant)
            build_demo_model(out, variant, with_torch=False)  # type: ignore[arg-type]
            built[variant] = out
        return built[variant]

    return get


@pytest.fixture(scope="session")
def types_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ONNX model passing through one tensor of each of several datatypes, BYTES included."""
    kinds = {
        "text": (TensorProto.STRING, "BYTES"),
        "count": (TensorProto.INT64, "INT64"),
        "flag": (TensorProto.BOOL, "BOOL"),
        "half": (TensorProto.FLOAT16, "FP16"),
        "small": (TensorProto.UINT8, "UINT8"),
    }
    nodes = [helper.make_node("Identity", [name], [f"{name}_out"]) for name in kinds]
    graph = helper.make_graph(
        nodes,
        "types",
        [helper.make_tensor_value_info(n, t, ["batch", 2]) for n, (t, _) in kinds.items()],
        [helper.make_tensor_value_info(f"{n}_out", t, ["batch", 2]) for n, (t, _) in kinds.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("types") / "types.onnx"
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def images() -> np.ndarray:
    return np.random.default_rng(7).standard_normal((64, 3, 32, 32)).astype(np.float32)


# --- settings and in-process servers ---------------------------------------------------------


def _settings(uri: Path | str, **overrides: Any) -> Settings:
    base = Settings(
        model_uri=str(uri),
        model_name="demo",
        host="127.0.0.1",
        grpc_port=0,  # tests that speak gRPC ask for a free port
        metrics_port=0,
        termination_log=None,
        drain_delay_s=0.0,
        max_batch_size=8,
        max_queue_delay_us=2000,
    )
    return replace(base, **overrides)


@pytest.fixture(scope="session")
def make_settings() -> Callable[..., Settings]:
    return _settings


@dataclass
class LiveServer:
    url: str
    service: InferenceService
    server: uvicorn.Server
    classified_url: str = ""
    """The classified listener (where shadow and pinned markers count), as the mirror and the
    pinned route reach it."""

    @property
    def grpc_target(self) -> str:
        """host:port of the gRPC endpoint (the settings must have asked for one)."""
        assert self.service.settings.grpc_port, "served without gRPC"
        return f"127.0.0.1:{self.service.settings.grpc_port}"

    def metric(self, name: str, **labels: str) -> float | None:
        model = self.service.model
        revision = self.service.settings.revision
        base = {"model": model.name, "version": model.version, "revision": revision}
        registry = self.service.metrics.registry
        return registry.get_sample_value(name, base | labels)


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _bound() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.contextmanager
def _serve_in_thread(settings: Settings, *, wait_ready: bool = True) -> Iterator[LiveServer]:
    # Both listeners, as server.serve binds them: the public port and the classified one.
    sock, classified = _bound(), _bound()
    port, classified_port = sock.getsockname()[1], classified.getsockname()[1]
    service = InferenceService(replace(settings, classified_port=classified_port))
    config = uvicorn.Config(
        create_app(service),
        loop="uvloop",
        http=OneWriteHttpToolsProtocol,
        ws="none",
        lifespan="on",
        log_config=None,
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock, classified]}, daemon=True
    )
    thread.start()
    try:
        _wait(lambda: server.started, 30, "the server to listen")
        if wait_ready:
            _wait(lambda: service.readiness.ready or service.failure is not None, 60, "readiness")
            assert service.failure is None, service.failure
        yield LiveServer(
            f"http://127.0.0.1:{port}",
            service,
            server,
            classified_url=f"http://127.0.0.1:{classified_port}",
        )
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        classified.close()


@pytest.fixture(scope="session")
def serve() -> Callable[..., contextlib.AbstractContextManager[LiveServer]]:
    """Runs the real app under uvicorn in a thread: serve(settings, wait_ready=True)."""
    return _serve_in_thread


@pytest.fixture(scope="session")
def onnx_server(demo_dir: Path) -> Iterator[LiveServer]:
    with _serve_in_thread(_settings(demo_dir / "model.onnx", revision="r1")) as live:
        yield live


@pytest.fixture
def client(onnx_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=onnx_server.url, timeout=30) as c:
        yield c


# --- protocol helpers ------------------------------------------------------------------------


class Oip:
    """Builds request bodies and reads responses, as a KServe v2 client library does."""

    @staticmethod
    def json_body(x: np.ndarray, name: str = "input", datatype: str = "FP32", **extra: Any) -> Any:
        tensor = {"name": name, "datatype": datatype, "shape": list(x.shape)}
        tensor["data"] = x.ravel().tolist()
        return {"inputs": [tensor], **extra}

    @staticmethod
    def binary_body(
        tensors: dict[str, tuple[str, np.ndarray]], *, binary_output: bool = True, **extra: Any
    ) -> tuple[bytes, dict[str, str]]:
        inputs, blobs = [], []
        for name, (datatype, array) in tensors.items():
            if datatype == "BYTES":
                blob = b"".join(len(v).to_bytes(4, "little") + v for v in array.ravel().tolist())
            else:
                blob = np.ascontiguousarray(array).tobytes()
            inputs.append(
                {
                    "name": name,
                    "datatype": datatype,
                    "shape": list(array.shape),
                    "parameters": {"binary_data_size": len(blob)},
                }
            )
            blobs.append(blob)
        doc: dict[str, Any] = {"inputs": inputs, **extra}
        if binary_output:
            doc.setdefault("parameters", {})["binary_data_output"] = True
        header = json.dumps(doc).encode()
        return header + b"".join(blobs), {HEADER: str(len(header))}

    @staticmethod
    def image_body(x: np.ndarray, *, binary_output: bool = True) -> tuple[bytes, dict[str, str]]:
        return Oip.binary_body({"input": ("FP32", x)}, binary_output=binary_output)

    @staticmethod
    def outputs(response: httpx.Response) -> dict[str, np.ndarray]:
        """Every output as numpy, whether sent as JSON or binary."""
        assert response.status_code == 200, response.text
        length = response.headers.get(HEADER)
        body = response.content
        header = json.loads(body[: int(length)] if length else body)
        offset = int(length) if length else 0
        result = {}
        for out in header["outputs"]:
            dtype = {
                "FP32": np.float32,
                "FP16": np.float16,
                "INT64": np.int64,
                "BOOL": np.bool_,
                "UINT8": np.uint8,
            }.get(out["datatype"], object)
            size = (out.get("parameters") or {}).get("binary_data_size")
            if size is None:
                data = out["data"]
                if out["datatype"] == "BYTES":
                    array = np.array([s.encode() for s in data], dtype=object)
                else:
                    array = np.array(data, dtype=dtype)
            else:
                chunk = body[offset : offset + size]
                offset += size
                if out["datatype"] == "BYTES":
                    items, i = [], 0
                    while i < len(chunk):
                        n = int.from_bytes(chunk[i : i + 4], "little")
                        items.append(chunk[i + 4 : i + 4 + n])
                        i += 4 + n
                    array = np.array(items, dtype=object)
                else:
                    array = np.frombuffer(chunk, dtype=dtype)
            result[out["name"]] = array.reshape(out["shape"])
        return result


@pytest.fixture(scope="session")
def oip() -> type[Oip]:
    return Oip


# --- a local HTTP server for model downloads -------------------------------------------------


@dataclass
class ModelHttpServer:
    """Serves `files` on 127.0.0.1, honouring Range requests like any static file server.
    Knobs: hold a download half-way, or cut it short (always, or the first `cut_times`)."""

    port: int = 0
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)
    hold: threading.Event | None = None  # set: finish; while unset, the download is paused
    half_sent: threading.Event = field(default_factory=threading.Event)
    truncate: bool = False
    cut_times: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def model_http() -> Iterator[ModelHttpServer]:
    state = ModelHttpServer()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(dict(self.headers))
            body = state.files.get(self.path.partition("?")[0])
            if body is None:
                self.send_error(404)
                return
            total = len(body)
            wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
            start = int(wanted.group(1)) if wanted else 0
            if start >= total and wanted:
                self.send_error(416)
                return
            body = body[start:]
            self.send_response(206 if wanted else 200)
            if wanted:
                self.send_header("Content-Range", f"bytes {start}-{total - 1}/{total}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            half = len(body) // 2
            self.wfile.write(body[:half])
            self.wfile.flush()
            state.half_sent.set()
            if state.hold is not None:
                state.hold.wait(30)
            cut = state.truncate or state.cut_times > 0
            state.cut_times -= 1
            if not cut:
                self.wfile.write(body[half:])

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        if state.hold is not None:
            state.hold.set()
        server.shutdown()
        server.server_close()


# --- real server processes -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def unused_port() -> Callable[[], int]:
    """A function returning a TCP port that is free on 127.0.0.1 right now."""
    return free_port


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    url: str
    metrics_url: str | None
    classified_url: str = ""

    def wait_ready(self, timeout_s: float = 60) -> None:
        def ready() -> bool:
            assert self.process.poll() is None, self.process.communicate()[1]
            try:
                return httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        _wait(ready, timeout_s, "the server process to be ready")

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)


@pytest.fixture
def server_process() -> Iterator[Callable[..., ServerProcess]]:
    """Starts `python -m kinfer_runtime serve` configured through KINFER_* variables only."""
    started: list[subprocess.Popen[str]] = []

    def start(env: dict[str, str], metrics: bool = False) -> ServerProcess:
        port, metrics_port = free_port(), free_port() if metrics else 0
        # Never the fixed default classified port: tests (and test runs) share the host.
        classified_port = free_port()
        full_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("KINFER_")},
            "KINFER_PORT": str(port),
            "KINFER_CLASSIFIED_PORT": str(classified_port),
            "KINFER_HOST": "127.0.0.1",
            "KINFER_METRICS_PORT": str(metrics_port),
            "KINFER_GRPC_PORT": "0",
            "KINFER_TERMINATION_LOG": os.devnull,
            "KINFER_LOG_LEVEL": "warning",
            **env,
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "kinfer_runtime", "serve"],
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        metrics_url = f"http://127.0.0.1:{metrics_port}" if metrics else None
        classified_url = f"http://127.0.0.1:{env.get('KINFER_CLASSIFIED_PORT', classified_port)}"
        return ServerProcess(process, f"http://127.0.0.1:{port}", metrics_url, classified_url)

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)
