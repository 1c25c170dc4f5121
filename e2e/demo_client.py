"""`make demo`'s client: real inferences through the model's Service, on the real node.

    demo_client.py URL MODEL once          one request; prints the answer and who served it
    demo_client.py URL MODEL load SECONDS  steady traffic (4 clients) until SECONDS pass or
                                           SIGTERM; prints a tally per model version each second

The answer names the model version that served it (the Open Inference Protocol's
`model_version`), so a canary shows up as a changing mix of versions.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
import urllib.request
from collections import Counter

import numpy as np


def infer(url: str, model: str, image: np.ndarray) -> dict[str, object]:
    body = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": [1, 3, 32, 32],
                    "data": image.ravel().tolist(),
                }
            ]
        }
    ).encode()
    request = urllib.request.Request(
        f"{url}/v2/models/{model}/infer", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.loads(response.read()))


def once(url: str, model: str) -> int:
    image = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    started = time.perf_counter()
    answer = infer(url, model, image)
    elapsed = (time.perf_counter() - started) * 1000
    logits = np.asarray(answer["outputs"][0]["data"])  # type: ignore[index]
    print(
        f"POST {url}/v2/models/{model}/infer -> model version {answer.get('model_version')}, "
        f"class {int(logits.argmax())} (logit {logits.max():.3f}) in {elapsed:.1f} ms"
    )
    return 0


def load(url: str, model: str, seconds: float) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    tally: Counter[str] = Counter()
    lock = threading.Lock()
    image = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)

    def client() -> None:
        while not stop.is_set():
            try:
                key = f"v{infer(url, model, image).get('model_version')}"
            except OSError as err:
                key = f"error ({type(err).__name__})"
            with lock:
                tally[key] += 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + seconds
    while not stop.wait(1) and time.monotonic() < deadline:
        with lock:
            line, _ = ", ".join(f"{k}: {n}" for k, n in sorted(tally.items())), tally.clear()
        print(f"{time.strftime('%T')} answers/s by version: {line}", flush=True)
    stop.set()
    return 0


if __name__ == "__main__":
    url, model, mode = sys.argv[1:4]
    sys.exit(once(url, model) if mode == "once" else load(url, model, float(sys.argv[4])))
