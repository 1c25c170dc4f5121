"""Handler overhead benchmark: what a bundle's handler adds per request. Not a test.

Trains the digits bundle (e2e/digits.py), then starts two kinfer-runtime processes on
127.0.0.1: one serving the bare model.onnx (the baseline: a client sends the 8x8 tensor it
preprocessed itself) and one serving the bundle (the client sends a PNG, the handler decodes,
resizes, normalises, and answers top-3 labels). Prints, in one markdown table:

- c=1: mean and p50 latency of the baseline (FP32 tensor, binary /infer), the PNG to
  /predict, and the PNG as a BYTES tensor to /infer (binary extension), with ratios to the
  baseline;
- the handler's own preprocess + postprocess time in process (no HTTP, no model);
- c=16: throughput and the mean batch size (kinfer_batch_size sum / count) of the /predict
  load: the model call is still batched behind the handler.

    .venv/bin/python bench/handlers.py [--requests 400]
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "e2e"))

from digits import build  # noqa: E402

HEADER = "Inference-Header-Content-Length"


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(uri: str, name: str, cache: Path) -> Iterator[tuple[str, str]]:
    port, metrics = _port(), _port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KINFER_")},
        "KINFER_MODEL_URI": uri,
        "KINFER_MODEL_NAME": name,
        "KINFER_HOST": "127.0.0.1",
        "KINFER_PORT": str(port),
        "KINFER_GRPC_PORT": "0",
        "KINFER_METRICS_PORT": str(metrics),
        "KINFER_CLASSIFIED_PORT": "0",
        "KINFER_MODEL_CACHE_DIR": str(cache),
        "KINFER_MAX_BATCH_SIZE": "16",
        "KINFER_MAX_QUEUE_DELAY_US": "2000",
        "KINFER_TERMINATION_LOG": os.devnull,
        "KINFER_DRAIN_DELAY_S": "0",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "kinfer_runtime", "serve"], env=env, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"{name} never became ready")
            time.sleep(0.2)
        yield url, f"http://127.0.0.1:{metrics}/metrics"
    finally:
        process.terminate()
        process.wait(30)


def _binary(name: str, datatype: str, payload: bytes, shape: list[int]) -> tuple[bytes, dict]:
    doc = {
        "inputs": [
            {
                "name": name,
                "datatype": datatype,
                "shape": shape,
                "parameters": {"binary_data_size": len(payload)},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    header = json.dumps(doc).encode()
    return header + payload, {HEADER: str(len(header))}


def latencies(send: Callable[[httpx.Client], None], n: int) -> list[float]:
    out = []
    with httpx.Client(timeout=30) as client:
        for _ in range(3):
            send(client)  # warm
        for _ in range(n):
            started = time.perf_counter()
            send(client)
            out.append((time.perf_counter() - started) * 1e3)
    return out


def _batch(metrics_url: str) -> tuple[float, float]:
    page = httpx.get(metrics_url).text
    total = float(re.search(r"^kinfer_batch_size_sum\{.*\} (\S+)$", page, re.M)[1])  # type: ignore[index]
    count = float(re.search(r"^kinfer_batch_size_count\{.*\} (\S+)$", page, re.M)[1])  # type: ignore[index]
    return total, count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="kinfer-bench-handlers-"))
    digits = build(root / "digits")
    pngs = [(digits.images / n).read_bytes() for n in sorted(digits.truth)]
    png = pngs[0]
    from PIL import Image

    pixels = np.asarray(Image.open(digits.images / "0000.png").resize((8, 8), Image.BOX))
    tensor = (pixels.astype(np.float32) / 255.0).reshape(1, 1, 8, 8)
    rows: list[tuple[str, float, float, str]] = []

    # Both servers run at once and the three kinds of request take turns, round by round, so
    # that a busy machine slows them alike.
    with (
        serving(str(digits.bundle / "model.onnx"), "bare", root / "c1") as (bare, _),
        serving(f"file://{digits.tar_gz}", "digits", root / "c2") as (url, metrics),
    ):
        body, headers = _binary("pixels", "FP32", tensor.tobytes(), [1, 1, 8, 8])
        blob = len(png).to_bytes(4, "little") + png
        bbody, bheaders = _binary("image", "BYTES", blob, [1])

        def baseline(client: httpx.Client) -> None:
            r = client.post(f"{bare}/v2/models/bare/infer", content=body, headers=headers)
            assert r.status_code == 200

        def predict(client: httpx.Client) -> None:
            r = client.post(
                f"{url}/v2/models/digits/predict",
                content=png,
                headers={"Content-Type": "image/png"},
            )
            assert r.status_code == 200

        def infer_bytes(client: httpx.Client) -> None:
            r = client.post(f"{url}/v2/models/digits/infer", content=bbody, headers=bheaders)
            assert r.status_code == 200

        kinds = {
            "tensor to /infer, bare model (baseline)": baseline,
            "PNG to /predict, handler": predict,
            "PNG as BYTES to /infer, handler": infer_bytes,
        }
        samples: dict[str, list[float]] = {k: [] for k in kinds}
        rounds = 10
        for _ in range(rounds):
            for label, fn in kinds.items():
                samples[label] += latencies(fn, max(args.requests // rounds, 1))
        base = samples["tensor to /infer, bare model (baseline)"]
        for label, lat in samples.items():
            ratio = statistics.mean(lat) / statistics.mean(base)
            rows.append((label, statistics.mean(lat), statistics.median(lat), f"{ratio:.2f}"))

        before = _batch(metrics)
        started = time.perf_counter()

        def one(i: int) -> None:
            httpx.post(
                f"{url}/v2/models/digits/predict",
                content=pngs[i % len(pngs)],
                headers={"Content-Type": "image/png"},
                timeout=60,
            )

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(one, range(args.requests)))
        elapsed = time.perf_counter() - started
        after = _batch(metrics)
        mean_batch = (after[0] - before[0]) / max(after[1] - before[1], 1)

    # The handler alone, in process: preprocess + postprocess, no HTTP, no model.
    from kinfer_runtime.backends import BackendOptions, open_backend
    from kinfer_runtime.bundle import open_bundle
    from kinfer_runtime.handlers import HandlerContext, HandlerRequest
    from kinfer_runtime.handlers._loader import load_handler

    bundle = open_bundle(digits.bundle, root / "x")
    backend = open_backend(bundle.model_path, bundle.format, BackendOptions(device="cpu"))
    backend.load()
    assert bundle.manifest is not None and bundle.manifest.handler is not None
    handler = load_handler(
        bundle.manifest.handler,
        HandlerContext(
            bundle.root, backend.signature, bundle.labels, bundle.manifest.handler_options
        ),
    )
    request = HandlerRequest({}, body=png)
    outputs = backend.infer(handler.preprocess(request))
    own = []
    for _ in range(args.requests):
        started = time.perf_counter()
        handler.preprocess(request)
        handler.postprocess(outputs, request)
        own.append((time.perf_counter() - started) * 1e3)

    print(
        f"\nDigits bundle ({len(digits.truth)} held-out PNGs, in-process accuracy "
        f"{digits.summary['png_accuracy_in_process']:.4f}); {os.cpu_count()} CPUs\n"
    )
    print("| c=1 | mean ms | p50 ms | ratio to baseline |")
    print("|---|---:|---:|---:|")
    for label, mean, p50, ratio in rows:
        print(f"| {label} | {mean:.2f} | {p50:.2f} | {ratio} |")
    print(
        f"| handler preprocess + postprocess alone (in process) | {statistics.mean(own):.3f} "
        f"| {statistics.median(own):.3f} | |"
    )
    print(
        f"\nc=16, /predict with the handler: {args.requests / elapsed:.0f} req/s, "
        f"mean batch size {mean_batch:.2f} (kinfer_batch_size)"
    )


if __name__ == "__main__":
    main()
