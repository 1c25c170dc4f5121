"""`make demo` with a real model: the digits bundle on the real node, real PNGs, real labels.

    demo_digits.py prepare DIR NAMESPACE        train the bundle into DIR (a directory on the
                                                real node), bind it as the PVC `digits` in
                                                NAMESPACE; the model URI is then
                                                pvc://digits/digits.tar.gz
    demo_digits.py URL MODEL DIR once           POST one held-out PNG to .../predict; prints
                                                the label, the truth, who served it
    demo_digits.py URL MODEL DIR load SECONDS   steady PNG traffic (4 clients) until SECONDS
                                                pass or SIGTERM; prints answers per model
                                                version and accuracy each second

Output follows e2e/demo_client.py (answers name the `model_version` that served them), so a
canary shows as a changing mix of versions while every answer stays a correct digit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any


def predict(url: str, model: str, png: bytes) -> dict[str, object]:
    request = urllib.request.Request(
        f"{url}/v2/models/{model}/predict", png, {"Content-Type": "image/png"}
    )
    # Long enough for a cold start: at zero the activator holds the request while it wakes.
    with urllib.request.urlopen(request, timeout=120) as response:
        return dict(json.loads(response.read()))


def _label(answer: dict[str, object]) -> tuple[str, float]:
    outputs = {o["name"]: o["data"] for o in answer["outputs"]}  # type: ignore[attr-defined]
    return str(outputs["label"][0]), float(outputs["score"][0])


CLAIM = "digits"
URI = f"pvc://{CLAIM}/digits.tar.gz"


def volume(root: Path, namespace: str) -> dict[str, Any]:
    """`root` (a directory on the real node) as a read-only PersistentVolume bound to the claim
    `digits` in `namespace`, as e2e/realnode.py's bind_node_volume makes them."""
    name = f"{namespace}-{CLAIM}"
    return {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": name},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadOnlyMany"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": "",
                    "hostPath": {"path": str(root), "type": "Directory"},
                    "claimRef": {"namespace": namespace, "name": CLAIM},
                },
            },
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": CLAIM, "namespace": namespace},
                "spec": {
                    "accessModes": ["ReadOnlyMany"],
                    "storageClassName": "",
                    "volumeName": name,
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        ],
    }


def prepare(root: Path, namespace: str) -> int:
    from digits import build

    artifacts = build(root)
    for p in [root, *root.rglob("*")]:  # world-readable for the runtime's user (65532)
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    manifest = json.dumps(volume(root, namespace))
    subprocess.run(["kubectl", "apply", "-f", "-"], input=manifest, text=True, check=True)
    s = artifacts.summary
    print(
        f"digits bundle: trained on {s['train']} digits in {s['train_seconds']}s; "
        f"{s['held_out']} held-out PNGs, accuracy in process "
        f"{s['png_accuracy_in_process']:.4f}; serve {URI}"
    )
    return 0


def once(url: str, model: str, root: Path) -> int:
    truth = json.loads((root / "images" / "truth.json").read_text())
    name = sorted(truth)[7]
    started = time.perf_counter()
    answer = predict(url, model, (root / "images" / name).read_bytes())
    elapsed = (time.perf_counter() - started) * 1000
    label, score = _label(answer)
    print(
        f"POST {url}/v2/models/{model}/predict ({name}, a handwritten {truth[name]}) -> "
        f"model version {answer.get('model_version')}: {label!r} ({score:.3f}) in {elapsed:.1f} ms"
    )
    return 0


def load(url: str, model: str, root: Path, seconds: float) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    truth = json.loads((root / "images" / "truth.json").read_text())
    images = [(truth[n], (root / "images" / n).read_bytes()) for n in sorted(truth)]
    tally: Counter[str] = Counter()
    right = Counter[bool]()
    lock = threading.Lock()

    def client(offset: int) -> None:
        i = offset
        while not stop.is_set():
            expected, png = images[i % len(images)]
            i += 4
            try:
                answer = predict(url, model, png)
                key, ok = f"v{answer.get('model_version')}", _label(answer)[0] == expected
            except OSError as err:
                key, ok = f"error ({type(err).__name__})", False
            with lock:
                tally[key] += 1
                right[ok] += 1

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + seconds
    while not stop.wait(1) and time.monotonic() < deadline:
        with lock:
            line = ", ".join(f"{k}: {n}" for k, n in sorted(tally.items()))
            total = right[True] + right[False]
            accuracy = f"{right[True] / total:.3f}" if total else "-"
            tally.clear()
            right.clear()
        print(f"{time.strftime('%T')} answers/s by version: {line}; correct {accuracy}", flush=True)
    stop.set()
    return 0


def main(argv: list[str]) -> int:
    if argv[0] == "prepare":
        return prepare(Path(argv[1]), argv[2])
    url, model, root, mode = argv[0], argv[1], Path(argv[2]), argv[3]
    if mode == "once":
        return once(url, model, root)
    return load(url, model, root, float(argv[4]))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main(sys.argv[1:]))
