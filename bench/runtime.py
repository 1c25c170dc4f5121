"""Runtime benchmark: kinfer-runtime against the in-process ceiling and a peer server.

Not a test. Measures throughput and p50/p99 latency at several concurrencies, with JSON,
binary (KServe v2 binary tensor extension) and gRPC (v2 `ModelInfer`, raw tensor contents)
payloads, for:

1. kinfer-runtime with dynamic batching;
2. kinfer-runtime with batching off (max batch size 1);
3. the same model in-process through ONNX Runtime (kinfer's own ONNX backend, same session
   options), at the batch size the server can form at that concurrency: the ceiling;
4. KServe's Python model server (the `kserve` package) serving the same ONNX file through the
   same v2 protocol (REST and gRPC), driven by the same load generators. It runs from its own
   virtualenv, built on first use under the cache directory; if that fails the table says so.

Every request carries one demo image ([1,3,32,32] FP32). All servers run at once and each round
measures every system in turn, so background load on a shared machine hits them alike; the
median of the rounds is reported. Load goes to 127.0.0.1 only and every loop is bounded by a
request count and a time limit. Prints a markdown table.

    .venv/bin/python bench/runtime.py                 # CPU
    .venv/bin/python bench/runtime.py --device cuda   # needs onnxruntime-gpu in .venv
"""

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc
import numpy as np
import onnxruntime as ort
from kinfer_runtime.backends import BackendOptions
from kinfer_runtime.backends._cpu import available_cpus
from kinfer_runtime.backends.onnx import OnnxBackend
from kinfer_runtime.demo import build_demo_model
from kinfer_runtime.schemas.proto import grpc_service_pb2 as pb

T = TypeVar("T")

try:
    import aiohttp
except ImportError:  # pragma: no cover - reported to the user
    sys.exit("bench/runtime.py needs aiohttp (pip install aiohttp)")

KSERVE_PIN = "kserve==0.21.0"
ORT_PIN = "onnxruntime==1.31.1"
ORT_GPU_PIN = "onnxruntime-gpu==1.31.1"
MODEL_NAME = "demo"
HEADER = "Inference-Header-Content-Length"
GRPC_INFER = "/inference.GRPCInferenceService/ModelInfer"
PAYLOADS = ("json", "binary", "grpc")

# The peer: a KServe custom model, written the way KServe documents them (a Model subclass
# whose predict() runs ONNX Runtime), served by kserve.ModelServer over REST and gRPC (as
# kinfer is), with per-request latency logging off so that it does no work ours does not do.
PEER_SERVER = """
import argparse
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer

parser = argparse.ArgumentParser()
parser.add_argument("--model-path", required=True)
parser.add_argument("--name", required=True)
parser.add_argument("--threads", type=int, required=True)
parser.add_argument("--device", default="cpu")
parser.add_argument("--http_port", type=int, required=True)
parser.add_argument("--grpc_port", type=int, required=True)
args, _ = parser.parse_known_args()


class OnnxModel(Model):
    def __init__(self, name, path):
        super().__init__(name)
        self.path = path

    def load(self):
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        providers = ["CUDAExecutionProvider"] if args.device == "cuda" else []
        self.session = ort.InferenceSession(
            self.path, options, providers=providers + ["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers=None):
        batch = payload.inputs[0].as_numpy()
        (logits,) = self.session.run([self.output_name], {self.input_name: batch})
        output = InferOutput(name=self.output_name, shape=list(logits.shape), datatype="FP32")
        # gRPC requests never ask for binary outputs; raw contents are what its clients expect.
        binary = payload.use_binary_outputs or payload.from_grpc
        output.set_data_from_numpy(logits, binary_data=binary)
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=[output],
            use_binary_outputs=payload.use_binary_outputs,
            requested_outputs=payload.request_outputs,
        )


model = OnnxModel(args.name, args.model_path)
model.load()
ModelServer(
    http_port=args.http_port,
    grpc_port=args.grpc_port,
    workers=1,
    enable_grpc=True,
    enable_latency_logging=False,
).start([model])
"""


CEILING = "in-process ORT (ceiling)"
BATCHING = "kinfer, batching"
NO_BATCHING = "kinfer, no batching"
PEER = "KServe 0.21 (peer)"


@dataclass
class Result:
    concurrency: int
    payload: str
    system: str
    throughput: float | None  # inferences per second
    p50_ms: float | None
    p99_ms: float | None
    note: str = ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def percentile(sorted_values: Sequence[float], q: float) -> float:
    index = min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))
    return sorted_values[index]


# --- payloads ------------------------------------------------------------------------------


def json_request(image: np.ndarray) -> tuple[bytes, dict[str, str]]:
    doc = {
        "inputs": [
            {
                "name": "input",
                "datatype": "FP32",
                "shape": list(image.shape),
                "data": image.ravel().tolist(),
            }
        ]
    }
    return json.dumps(doc).encode(), {"Content-Type": "application/json"}


def binary_request(image: np.ndarray) -> tuple[bytes, dict[str, str]]:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": list(image.shape),
                    "parameters": {"binary_data_size": image.nbytes},
                }
            ],
            "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
        }
    ).encode()
    headers = {"Content-Type": "application/octet-stream", HEADER: str(len(header))}
    return header + image.tobytes(), headers


def grpc_request(image: np.ndarray) -> bytes:
    """A serialized ModelInferRequest: sent as bytes, so the client serializes nothing per call."""
    request = pb.ModelInferRequest(model_name=MODEL_NAME)
    request.inputs.add(name="input", datatype="FP32", shape=list(image.shape))
    request.outputs.add(name="logits")
    request.raw_input_contents.append(image.tobytes())
    return request.SerializeToString()


def parse_grpc_logits(body: bytes) -> np.ndarray:
    response = pb.ModelInferResponse.FromString(body)
    output = response.outputs[0]
    if response.raw_output_contents:
        data = np.frombuffer(response.raw_output_contents[0], dtype=np.float32)
    else:
        data = np.asarray(output.contents.fp32_contents, dtype=np.float32)
    return data.reshape(tuple(output.shape))


def parse_logits(body: bytes, header_length: str | None) -> np.ndarray:
    if header_length is None:
        output = json.loads(body)["outputs"][0]
        return np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])
    n = int(header_length)
    output = json.loads(body[:n])["outputs"][0]
    return np.frombuffer(body[n:], dtype=np.float32).reshape(output["shape"])


# --- load generator ------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    url: str  # REST infer URL
    grpc: str  # host:port


async def closed_loop(
    one: Callable[[], Awaitable[T]], concurrency: int, requests: int, time_limit_s: float
) -> tuple[float, list[float], T]:
    """`concurrency` workers each sending the next request as soon as their last is answered,
    until `requests` were sent or `time_limit_s` passed, after an unmeasured warm-up of twice
    `concurrency` requests (connections opened, the server settled). Returns the elapsed time,
    each request's latency and the last answer."""
    latencies: list[float] = []
    remaining = requests
    deadline = time.perf_counter() + time_limit_s
    last = (await asyncio.gather(*(one() for _ in range(concurrency * 2))))[-1]

    async def worker() -> None:
        nonlocal remaining, last
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            started = time.perf_counter()
            last = await one()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies, last


async def _load(
    url: str,
    body: bytes,
    headers: dict[str, str],
    concurrency: int,
    requests: int,
    time_limit_s: float,
) -> tuple[float, list[float], bytes, str | None]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> tuple[bytes, str | None]:
            async with session.post(url, data=body, headers=headers) as response:
                content = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {content[:200]!r}")
                return content, response.headers.get(HEADER)

        elapsed, latencies, sample = await closed_loop(one, concurrency, requests, time_limit_s)
    return elapsed, latencies, *sample


async def _grpc_load(
    target: str, body: bytes, concurrency: int, requests: int, time_limit_s: float
) -> tuple[float, list[float], bytes]:
    """The same loop as `_load` over one gRPC channel (HTTP/2 multiplexes the calls on one
    connection, as Triton's and KServe's clients do)."""
    async with grpc.aio.insecure_channel(target) as channel:
        infer = channel.unary_unary(GRPC_INFER)  # bytes in, bytes out

        async def one() -> bytes:
            response: bytes = await infer(body)
            return response

        return await closed_loop(one, concurrency, requests, time_limit_s)


def run_load(
    endpoint: Endpoint,
    payload: str,
    image: np.ndarray,
    concurrency: int,
    requests: int,
    time_limit_s: float,
    reference: np.ndarray,
) -> tuple[float, float, float]:
    if payload == "grpc":
        elapsed, latencies, sample = asyncio.run(
            _grpc_load(endpoint.grpc, grpc_request(image), concurrency, requests, time_limit_s)
        )
        logits = parse_grpc_logits(sample)
    else:
        body, headers = (binary_request if payload == "binary" else json_request)(image)
        elapsed, latencies, sample, header_length = asyncio.run(
            _load(endpoint.url, body, headers, concurrency, requests, time_limit_s)
        )
        logits = parse_logits(sample, header_length)
    if not np.allclose(logits, reference, atol=1e-4):
        raise RuntimeError(f"{endpoint} returned logits that differ from the in-process model")
    latencies.sort()
    return (
        len(latencies) / elapsed,
        percentile(latencies, 0.50) * 1e3,
        percentile(latencies, 0.99) * 1e3,
    )


# --- servers -------------------------------------------------------------------------------


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        ready = f"http://127.0.0.1:{port}/v2/health/ready"
        with contextlib.suppress(OSError), urllib.request.urlopen(ready, timeout=2) as r:
            if r.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError("server not ready in time")


@contextlib.contextmanager
def running(command: list[str], port: int, grpc_port: int, log: Path) -> Iterator[Endpoint]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_ready(port, process)
            yield Endpoint(
                f"http://127.0.0.1:{port}/v2/models/{MODEL_NAME}/infer", f"127.0.0.1:{grpc_port}"
            )
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def kinfer_command(
    model: Path, port: int, grpc_port: int, max_batch: int, delay_us: int, device: str
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "kinfer_runtime",
        "serve",
        "--model-uri",
        str(model),
        "--model-name",
        MODEL_NAME,
        "--port",
        str(port),
        "--grpc-port",
        str(grpc_port),
        "--metrics-port",
        "0",
        "--classified-port",  # the public path is what is measured; two servers share a host
        "0",
        "--max-batch-size",
        str(max_batch),
        "--max-queue-delay-us",
        str(delay_us),
        "--max-queue-size",
        "1024",
        "--device",
        device,
        "--drain-delay-s",
        "0",
        "--log-level",
        "warning",
    ]


def peer_python(cache: Path, device: str) -> tuple[Path | None, str]:
    """The peer's own virtualenv (never kinfer's), created and filled on first use."""
    venv = cache / f"kserve-venv-{device}"
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import kserve, onnxruntime"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python, ""
    print(f"creating the peer's virtualenv in {venv} ...", file=sys.stderr)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            KSERVE_PIN,
            ORT_GPU_PIN if device == "cuda" else ORT_PIN,
        ],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            return None, f"could not install {KSERVE_PIN}: {done.stderr.strip()[-300:]}"
    return python, ""


# --- in-process ceiling --------------------------------------------------------------------


def ceiling(
    backend: OnnxBackend, images: np.ndarray, batch: int, rows: int, time_limit_s: float
) -> tuple[float, float, float]:
    inputs = {"input": np.ascontiguousarray(images[:batch])}
    for _ in range(3):
        backend.infer(inputs)
    latencies = []
    deadline = time.perf_counter() + time_limit_s
    for _ in range(max(5, rows // batch)):
        started = time.perf_counter()
        backend.infer(inputs)
        latencies.append(time.perf_counter() - started)
        if time.perf_counter() > deadline:
            break
    latencies.sort()
    return (
        batch / statistics.fmean(latencies),
        percentile(latencies, 0.50) * 1e3,
        percentile(latencies, 0.99) * 1e3,
    )


# --- report --------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def table(results: list[Result]) -> str:
    by_key = {(r.concurrency, r.payload, r.system): r for r in results}
    lines = [
        "| concurrency | payload | system | inferences/s | p50 ms | p99 ms "
        "| vs ceiling | vs KServe |",
        "|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ceiling_r = by_key.get((r.concurrency, "—", CEILING))
        peer = by_key.get((r.concurrency, r.payload, PEER))
        vs_ceiling = vs_peer = "—"
        if r.throughput and ceiling_r and ceiling_r.throughput and r.payload != "—":
            vs_ceiling = f"{r.throughput / ceiling_r.throughput:.0%}"
        if r.throughput and peer and peer.throughput and peer is not r:
            vs_peer = f"{r.throughput / peer.throughput:.2f}x"
        system = r.system + (f" ({r.note})" if r.note else "")
        lines.append(
            f"| {r.concurrency} | {r.payload} | {system} | {_fmt(r.throughput, 0)} "
            f"| {_fmt(r.p50_ms, 2)} | {_fmt(r.p99_ms, 2)} | {vs_ceiling} | {vs_peer} |"
        )
    return "\n".join(lines)


def _lookup(results: list[Result], c: int, payload: str, system: str) -> Result | None:
    found = next(
        (r for r in results if (r.concurrency, r.payload, r.system) == (c, payload, system)), None
    )
    return found if found is not None and found.throughput else None


def targets(results: list[Result], top: int) -> str:
    """Issue 13's goals, each as the ratio (or difference) it is stated in."""

    def ratio(a: Result | None, b: Result | None) -> str:
        return "—" if a is None or b is None else f"{a.throughput / b.throughput:.2f}"  # type: ignore[operator]

    rest = _lookup(results, top, "binary", BATCHING)
    json_ = _lookup(results, top, "json", BATCHING)
    lines = [
        "| goal | target | measured |",
        "|---|---:|---:|",
        f"| REST binary c={top} / in-process ceiling | ≥ 0.90 "
        f"| {ratio(rest, _lookup(results, top, '—', CEILING))} |",
        f"| REST binary c={top} / KServe binary | ≥ 3.00 "
        f"| {ratio(rest, _lookup(results, top, 'binary', PEER))} |",
        f"| gRPC c={top} / REST binary c={top} | ≥ 1.00 "
        f"| {ratio(_lookup(results, top, 'grpc', BATCHING), rest)} |",
        f"| JSON c={top} / KServe JSON | ≥ 2.00 "
        f"| {ratio(json_, _lookup(results, top, 'json', PEER))} |",
    ]
    alone = _lookup(results, 1, "—", CEILING)
    for payload in ("binary", "grpc"):
        served = _lookup(results, 1, payload, BATCHING)
        overhead = "—"
        if served is not None and alone is not None:
            overhead = f"{served.p50_ms - alone.p50_ms:.2f} ms"  # type: ignore[operator]
        lines.append(f"| c=1 {payload}: p50 over in-process batch 1 | ≤ 0.50 ms | {overhead} |")
    return "\n".join(lines)


def machine(device: str) -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    gpu = ""
    if device == "cuda":
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        )
        gpu = f", GPU {done.stdout.strip() or 'unknown'}"
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    return (
        f"{cpu}, {available_cpus()} CPUs usable (load generator, servers and the model share "
        f"them){gpu}; load average {load} at the end; Python {platform.python_version()}, "
        f"onnxruntime {ort.__version__}"
    )


def _median_run(runs: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    """The run with the median throughput (latencies from that same run, so they agree)."""
    return sorted(runs)[len(runs) // 2]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=1000, help="per run (bounded)")
    parser.add_argument("--time-limit-s", type=float, default=15.0, help="per run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved; median reported")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=None,
        help="kinfer's batching delay (default: 0 on cpu, where a batch is no cheaper per "
        "image so waiting only adds latency; 1000 on cuda)",
    )
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("KINFER_CACHE", Path.home() / ".cache" / "kinfer")) / "bench",
    )
    args = parser.parse_args(argv)
    delay_us = args.max_queue_delay_us
    if delay_us is None:
        delay_us = 0 if args.device == "cpu" else 1000
    args.cache.mkdir(parents=True, exist_ok=True)
    logs = Path(tempfile.mkdtemp(prefix="kinfer-bench-"))
    model = build_demo_model(args.cache / "model", with_torch=False)[0]

    rng = np.random.default_rng(0)
    images = rng.standard_normal((max(args.concurrency), 3, 32, 32)).astype(np.float32)
    image = images[:1]
    backend = OnnxBackend(model, BackendOptions(device=args.device))
    backend.load()
    reference = backend.infer({"input": image})["logits"]
    per_image_ms = ceiling(backend, images, 1, 200, 5.0)[1]

    commands: dict[str, list[str]] = {}
    ports: dict[str, int] = {}
    grpc_ports: dict[str, int] = {}
    notes: dict[str, str] = {}
    for label, max_batch in ((BATCHING, args.max_batch_size), (NO_BATCHING, 1)):
        ports[label], grpc_ports[label] = free_port(), free_port()
        commands[label] = kinfer_command(
            model, ports[label], grpc_ports[label], max_batch, delay_us, args.device
        )
    if args.skip_peer:
        notes[PEER] = "skipped (--skip-peer)"
    else:
        python, reason = peer_python(args.cache, args.device)
        if python is None:
            notes[PEER] = reason
        else:
            script = args.cache / "kserve_peer.py"
            script.write_text(PEER_SERVER)
            ports[PEER], grpc_ports[PEER] = free_port(), free_port()
            commands[PEER] = [
                str(python),
                str(script),
                "--model-path",
                str(model),
                "--name",
                MODEL_NAME,
                "--threads",
                str(available_cpus()),
                "--device",
                args.device,
                "--http_port",
                str(ports[PEER]),
                "--grpc_port",
                str(grpc_ports[PEER]),
            ]

    runs: dict[tuple[int, str, str], list[tuple[float, float, float]]] = {}
    # One protocol failing (the peer's gRPC, say) leaves the system's other rows standing.
    failures: dict[tuple[str, str], str] = {}
    with contextlib.ExitStack() as stack:
        urls: dict[str, Endpoint] = {}
        for label, command in commands.items():
            log = logs / f"{ports[label]}.log"
            try:
                urls[label] = stack.enter_context(
                    running(command, ports[label], grpc_ports[label], log)
                )
            except Exception as exc:
                notes[label] = f"did not start: {exc} (log: {log})"
        # Rounds interleave every system, so background load on a shared machine hits all of
        # them alike; the median round is reported.
        for round_ in range(args.rounds):
            print(f"round {round_ + 1}/{args.rounds} ...", file=sys.stderr)
            for c in args.concurrency:
                batch = min(c, args.max_batch_size)
                runs.setdefault((c, "—", CEILING), []).append(
                    ceiling(backend, images, batch, args.requests, args.time_limit_s)
                )
                for payload in PAYLOADS:
                    for label, url in list(urls.items()):
                        try:
                            measured = run_load(
                                url, payload, image, c, args.requests, args.time_limit_s, reference
                            )
                        except Exception as exc:
                            failures[label, payload] = f"failed: {exc}"[:300]
                            continue
                        runs.setdefault((c, payload, label), []).append(measured)
    backend.close()

    results: list[Result] = []
    for c in args.concurrency:
        batch = min(c, args.max_batch_size)
        results.append(
            Result(c, "—", CEILING, *_median_run(runs[c, "—", CEILING]), note=f"batch {batch}")
        )
        for payload in PAYLOADS:
            for label in (BATCHING, NO_BATCHING, PEER):
                measured = runs.get((c, payload, label))
                if label in notes or not measured:
                    note = notes.get(label) or failures.get((label, payload), "no result")
                    results.append(Result(c, payload, label, None, None, None, note))
                else:
                    results.append(Result(c, payload, label, *_median_run(measured)))
    print(f"**Machine:** {machine(args.device)}  ")
    print(
        f"**Model:** kinfer demo ResNet (~0.19 GMAC/image, {per_image_ms:.2f} ms per image "
        f"in-process at batch 1), one image per request. kinfer: max batch "
        f"{args.max_batch_size}, queue delay {delay_us} µs. Median of {args.rounds} "
        f"interleaved rounds of up to {args.requests} requests each; device {args.device}.\n"
    )
    print(table(results))
    if 1 in args.concurrency:
        print()
        print(targets(results, max(args.concurrency)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
