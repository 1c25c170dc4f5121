"""Hostile-load memory benchmark: the runtime's peak RSS under loads meant to exhaust it.

Not a test. Starts `kinfer-runtime serve` as a subprocess on 127.0.0.1 with the demo model, a
fresh process per load, and reads its peak resident set (`VmHWM` in /proc/<pid>/status) after:

1. `json`: 8 concurrent REST requests, each a JSON tensor as close to the body limit as fits;
2. `grpc`: 32 concurrent gRPC `ModelInfer` messages of 48 MiB (raw tensor contents);
3. `mirror`: 300 binary REST requests of 4 MiB, 8 at a time, on a runtime that mirrors every
   answered request to a target that accepts connections and never answers.

Loads 1 and 2 declare the shape of one image for data of hundreds: the server must read and
decode all of it before it can tell (400 / INVALID_ARGUMENT), which is what costs memory,
while the model itself never runs, so the benchmark takes seconds on a shared CPU rather than
minutes. Load 3 must be answered to be mirrored: each request is one image padded to 4 MiB
with a long request `id` (the server echoes it), so the model runs one image per request.
That padding is JSON, which the byte budget counts at 32 times its size: under the budget of
a 1 GiB pod about two such requests are served at once and the rest get 503.

After each load the server must still answer a small request correctly (checked against the
model run in this process). `--memory-limit 1Gi` sets the byte budget a pod with that limit
derives (KINFER_MAX_INFLIGHT_BYTES, a quarter of it) rather than the no-limit default; older
runtimes ignore the variable. `--runtime-path DIR` serves another checkout's runtime (e.g. the
base commit's `runtime/`), for before/after figures in one run. Prints a markdown table.

    .venv/bin/python bench/hostile.py --memory-limit 1Gi
"""

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc
import numpy as np
from kinfer_runtime.backends import BackendOptions
from kinfer_runtime.backends.onnx import OnnxBackend
from kinfer_runtime.demo import build_demo_model
from kinfer_runtime.schemas.proto import grpc_service_pb2 as pb

from runtime import wait_ready  # bench/runtime.py: the same readiness wait

MODEL = "demo"
MIB = 1024 * 1024
BODY_LIMIT = 64 * MIB  # the runtime's default KINFER_MAX_BODY_BYTES
HEADER = "Inference-Header-Content-Length"
GRPC_INFER = "/inference.GRPCInferenceService/ModelInfer"


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    grpc_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2/models/{MODEL}/infer"

    def peak_rss(self) -> int:
        """VmHWM: the most resident memory the process has had, in bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM in /proc status")


@dataclass
class Row:
    load: str
    outcomes: str
    ready_rss: int
    peak_rss: int
    healthy: bool
    seconds: float


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def parse_size(text: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text)


@contextlib.contextmanager
def running(
    model: Path, env: dict[str, str], runtime_path: Path | None, log: Path
) -> Iterator[Server]:
    port, grpc_port = free_port(), free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KINFER_")}
    if runtime_path is not None:
        full_env["PYTHONPATH"] = f"{runtime_path}{os.pathsep}{full_env.get('PYTHONPATH', '')}"
    full_env |= {
        "KINFER_MODEL_URI": str(model),
        "KINFER_MODEL_NAME": MODEL,
        "KINFER_HOST": "127.0.0.1",
        "KINFER_PORT": str(port),
        "KINFER_GRPC_PORT": str(grpc_port),
        "KINFER_METRICS_PORT": "0",
        "KINFER_DEVICE": "cpu",
        "KINFER_DRAIN_DELAY_S": "0",
        "KINFER_TERMINATION_LOG": os.devnull,
        "KINFER_LOG_LEVEL": "warning",
        **env,
    }
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "kinfer_runtime", "serve"],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        server = Server(process, port, grpc_port)
        try:
            try:
                wait_ready(port, process)
            except RuntimeError as err:
                raise RuntimeError(f"{err}; see {log}") from err
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def binary_body(x: np.ndarray) -> tuple[bytes, dict[str, str]]:
    doc = {
        "inputs": [
            {
                "name": "input",
                "datatype": "FP32",
                "shape": list(x.shape),
                "parameters": {"binary_data_size": x.nbytes},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    header = json.dumps(doc).encode()
    headers = {HEADER: str(len(header)), "Content-Type": "application/octet-stream"}
    return header + x.tobytes(), headers


def padded_body(image: np.ndarray, size: int) -> tuple[bytes, dict[str, str]]:
    """A binary request for one image padded to `size` bytes with a long `id`, which the
    server echoes: a large body that costs the model nothing."""
    body, headers = binary_body(image)
    pad = size - len(body) - len(',"id":""')
    head_length = int(headers[HEADER])
    head = body[: head_length - 1] + b',"id":"' + b"x" * pad + b'"}'
    return head + body[head_length:], {**headers, HEADER: str(len(head))}


def largest_json_body(image: np.ndarray, limit: int) -> bytes:
    """A JSON request with as many copies of `image` as fit under `limit` bytes as its data,
    and the shape of one image."""
    text = json.dumps(image.ravel().tolist())[1:-1]  # the numbers of one image, comma-separated
    per_image = len(text) + 1
    rows = (limit - 200) // per_image
    data = ",".join([text] * rows)
    shape = list(image.shape)
    head = f'{{"inputs":[{{"name":"input","datatype":"FP32","shape":{json.dumps(shape)},"data":['
    return f"{head}{data}]}}]}}".encode()


def grpc_message(x: np.ndarray, shape: Sequence[int] | None = None) -> bytes:
    request = pb.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add()
    tensor.name, tensor.datatype = "input", "FP32"
    tensor.shape.extend(x.shape if shape is None else shape)
    request.raw_input_contents.append(x.tobytes())
    return request.SerializeToString()


async def post_all(url: str, body: bytes, headers: dict[str, str], n: int, width: int) -> Counter:
    """`n` POSTs of `body`, `width` at a time; the count of each status (or error)."""
    statuses: Counter[str] = Counter()
    left = iter(range(n))
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def worker() -> None:
            for _ in left:
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        statuses[str(response.status)] += 1
                except aiohttp.ClientError as exc:
                    statuses[type(exc).__name__] += 1

        await asyncio.gather(*(worker() for _ in range(width)))
    return statuses


async def grpc_all(target: str, message: bytes, n: int) -> Counter:
    statuses: Counter[str] = Counter()
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        call = channel.unary_unary(GRPC_INFER)

        async def one() -> None:
            try:
                await call(message, timeout=600)
                statuses["OK"] += 1
            except grpc.aio.AioRpcError as exc:
                statuses[exc.code().name] += 1

        await asyncio.gather(*(one() for _ in range(n)))
    return statuses


def answers_correctly(server: Server, image: np.ndarray, expected: np.ndarray) -> bool:
    body, headers = binary_body(image)
    request = urllib.request.Request(server.url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            content = response.read()
            length = int(response.headers[HEADER])
    except OSError:
        return False
    header = json.loads(content[:length])
    (out,) = [o for o in header["outputs"] if o["name"] == "logits"]
    logits = np.frombuffer(content[length:], dtype=np.float32).reshape(out["shape"])
    return bool(np.allclose(logits, expected, rtol=1e-4, atol=1e-5))


@contextlib.contextmanager
def silent_target() -> Iterator[int]:
    """A socket that accepts connections (the kernel's backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def measure(
    name: str,
    model: Path,
    env: dict[str, str],
    args: argparse.Namespace,
    load: Callable[[Server], Counter],
    check: Callable[[Server], bool],
) -> Row:
    with running(model, env, args.runtime_path, args.log) as server:
        check(server)  # warm: the ready process's footprint includes one answered request
        ready = server.peak_rss()
        started = time.perf_counter()
        outcomes = load(server)
        seconds = time.perf_counter() - started
        peak = server.peak_rss()
        healthy = server.process.poll() is None and check(server)
    text = ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items()))
    return Row(name, text, ready, peak, healthy, seconds)


def table(rows: Sequence[Row], label: str) -> str:
    lines = [
        "| runtime | load | outcomes | RSS ready (MiB) | peak RSS (MiB) | answers after | s |",
        "|---|---|---|---:|---:|---|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {label} | {r.load} | {r.outcomes} | {r.ready_rss / MIB:.0f} | "
            f"{r.peak_rss / MIB:.0f} | {'yes' if r.healthy else 'NO'} | {r.seconds:.1f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory-limit", type=parse_size, help="pod memory limit, e.g. 1Gi")
    parser.add_argument("--runtime-path", type=Path, help="serve this runtime/ directory")
    parser.add_argument("--label", default="this checkout", help="runtime column")
    parser.add_argument(
        "--loads", default="json,grpc,mirror", help="comma-separated: json, grpc, mirror"
    )
    parser.add_argument("--log", type=Path, default=Path(tempfile.gettempdir()) / "hostile.log")
    args = parser.parse_args(argv)
    env: dict[str, str] = {}
    if args.memory_limit:
        env["KINFER_MAX_INFLIGHT_BYTES"] = str(args.memory_limit // 4)

    work = Path(tempfile.mkdtemp(prefix="kinfer-hostile-"))
    build_demo_model(work, with_torch=False)
    model = work / "model.onnx"
    backend = OnnxBackend(model, BackendOptions(device="cpu"))
    backend.load()
    (spec,) = backend.signature.inputs
    shape = [1, *(int(d) for d in spec.shape[1:])]
    image = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    expected = backend.infer({"input": image})["logits"]
    check: Callable[[Server], bool] = lambda s: answers_correctly(s, image, expected)  # noqa: E731

    rows = []
    loads = args.loads.split(",")
    if "json" in loads:
        body = largest_json_body(image, BODY_LIMIT - MIB)
        headers = {"Content-Type": "application/json"}
        rows.append(
            measure(
                f"json: 8 x {len(body) / MIB:.0f} MiB",
                model,
                env,
                args,
                lambda s: asyncio.run(post_all(s.url, body, headers, 8, 8)),
                check,
            )
        )
        del body
    if "grpc" in loads:
        rows_per_message = 48 * MIB // image.nbytes
        message = grpc_message(np.repeat(image, rows_per_message, axis=0), image.shape)
        rows.append(
            measure(
                f"grpc: 32 x {len(message) / MIB:.0f} MiB",
                model,
                env,
                args,
                lambda s: asyncio.run(grpc_all(f"127.0.0.1:{s.grpc_port}", message, 32)),
                check,
            )
        )
        del message
    if "mirror" in loads:
        body, headers = padded_body(image, 4 * MIB)
        with silent_target() as port:
            config = work / "shadow.json"
            target = {"target": f"http://127.0.0.1:{port}", "percent": 100, "revision": "cand"}
            config.write_text(
                json.dumps(
                    {**target, "maxQueue": 10_000, "maxConcurrency": 4, "timeoutSeconds": 60}
                )
            )
            mirror_env = {**env, "KINFER_SHADOW_CONFIG": str(config), "KINFER_REVISION": "stab"}
            rows.append(
                measure(
                    f"mirror: 300 x {len(body) / MIB:.0f} MiB to a silent target",
                    model,
                    mirror_env,
                    args,
                    lambda s: asyncio.run(post_all(s.url, body, headers, 300, 8)),
                    check,
                )
            )
    limit = f", budget for a {args.memory_limit / MIB:.0f} MiB limit" if args.memory_limit else ""
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs{limit}\n")
    print(table(rows, args.label))
    return 0 if all(r.healthy for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
