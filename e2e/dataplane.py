"""TEST-ONLY data-plane stand-in for the canary e2e cases on kwok nodes. It replaces the
kubelet and the gateway, nothing else.

It stays only where the real node cannot go: GPU nodes, and canaries on GPU nodes behind the
Gateway API (the real gateway, Traefik, runs on the real lane: e2e/test_real_gateway.py).
The same canary behaviour on real pods, with real Prometheus discovery, is
e2e/test_real_rollout.py. kwok pods run no containers, so nothing would serve
or be measured on them. This stand-in:
- runs one real `kinfer-runtime serve` process per revision that the operator deployed and
  kwok marked ready, serving the model file the test chose for that model version, with
  KINFER_REVISION set to the revision (as the operator sets it in the pod);
- registers those processes with a real Prometheus server (file discovery), adding the
  `namespace` label that Prometheus' Kubernetes discovery adds to pod targets;
- sends inference requests split in the proportions the operator wrote: ready replica counts
  of each revision's Deployment (ReplicaRatio mode) or the HTTPRoute's backend weights.
The operator, the analysis queries, Prometheus and the runtime are all real.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from harness import free_port, kubectl_json, wait_until

__all__ = ["DataPlane", "Prometheus", "free_port"]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


class Prometheus:
    """A real Prometheus scraping every second: file-discovered targets (`set_targets`), or
    the scrape jobs given (the real-node lane passes the Kubernetes discovery job of
    examples/observability/prometheus-scrape.yaml)."""

    def __init__(
        self,
        workdir: Path,
        scrape_configs: list[dict[str, Any]] | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        endpoint: str = "",
    ) -> None:
        """`port`: one reserved before the operator started; `endpoint`: the name the
        operator's Prometheus configuration gives this instance (models name that)."""
        self.workdir = workdir
        self.scrape_configs = scrape_configs
        self.host = host
        self.port = port or free_port()
        self.endpoint = endpoint
        self.url = f"http://{host}:{self.port}"
        self.targets_file = workdir / "targets.json"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus not found on PATH: `make binaries` builds it")
        self.targets_file.write_text("[]")
        config = self.workdir / "prometheus.yml"
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "scrape_configs": self.scrape_configs
                    or [
                        {
                            "job_name": "kinfer-runtime",
                            "file_sd_configs": [
                                {"files": [str(self.targets_file)], "refresh_interval": "1s"}
                            ],
                        }
                    ],
                }
            )
        )
        log = (self.workdir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address={self.host}:{self.port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: _ready(f"{self.url}/-/ready"), 60, "Prometheus to be ready")

    def set_targets(self, targets: list[tuple[str, dict[str, str]]]) -> None:
        groups = [{"targets": [address], "labels": labels} for address, labels in targets]
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        tmp.replace(self.targets_file)  # atomic: Prometheus never reads a half file

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None


class _Runtime:
    """One real runtime process standing in for all pods of one revision."""

    def __init__(self, name: str, version: str, revision: str, model_file: Path, log: Path):
        self.revision = revision
        self.port = free_port()
        self.metrics_port = free_port()
        # Every process serves gRPC too, as a pod does; on one host each needs a port of its own.
        self.grpc_port = free_port()
        self.classified_port = free_port()  # likewise the port the mirror and pinned rule use
        env = {
            **os.environ,
            "KINFER_MODEL_URI": str(model_file),
            "KINFER_MODEL_NAME": name,
            "KINFER_MODEL_VERSION": version,
            "KINFER_REVISION": revision,
            "KINFER_PORT": str(self.port),
            "KINFER_METRICS_PORT": str(self.metrics_port),
            "KINFER_GRPC_PORT": str(self.grpc_port),
            "KINFER_CLASSIFIED_PORT": str(self.classified_port),
            "KINFER_MAX_BATCH_SIZE": "8",
            "KINFER_DEVICE": "cpu",
            "KINFER_TERMINATION_LOG": str(log.with_suffix(".termination")),
        }
        exe = Path(sys.executable).with_name("kinfer-runtime")
        self.proc = subprocess.Popen(
            [str(exe), "serve"], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        return self.proc.poll() is None and _ready(f"{self.base}/v2/health/ready")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class DataPlane:
    """Serves, measures and loads one InferenceModel's revisions; see the module docstring."""

    def __init__(
        self,
        namespace: str,
        model: str,
        model_files: dict[str, Path],
        prometheus: Prometheus,
        logdir: Path,
        rate: float = 20.0,
    ) -> None:
        self.namespace, self.model = namespace, model
        self.model_files = model_files
        self.prometheus = prometheus
        self.logdir = logdir
        self.rate = rate
        self.sent: Counter[tuple[str, int]] = Counter()
        self._runtimes: dict[str, _Runtime] = {}
        self._weights: dict[str, float] = {}
        self._live: set[str] = set()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._follow, daemon=True),
            threading.Thread(target=self._load, daemon=True),
        ]
        self._payload = self._request_body()

    @staticmethod
    def _request_body() -> dict[str, Any]:
        from kinfer_runtime.demo import IMAGE_SHAPE, INPUT_NAME

        shape = [1, *IMAGE_SHAPE]
        count = 1
        for dim in shape:
            count *= dim
        data = [round(random.Random(7).uniform(-1, 1), 3) for _ in range(count)]
        return {"inputs": [{"name": INPUT_NAME, "shape": shape, "datatype": "FP32", "data": data}]}

    def __enter__(self) -> DataPlane:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        for runtime in self._runtimes.values():
            runtime.stop()
        self.prometheus.set_targets([])

    # -- following what the operator wrote ------------------------------------------------

    def _split(self, deployments: list[dict[str, Any]]) -> dict[str, float]:
        route = self._route()
        ready = {
            d["metadata"]["labels"]["serving.kinfer.io/revision"]: d
            for d in deployments
            if (d.get("status") or {}).get("readyReplicas", 0) > 0
        }
        if route is not None:  # Gateway API: exact weights per track Service
            weights: dict[str, float] = {}
            for backend in route["spec"]["rules"][0]["backendRefs"]:
                track = backend["name"].rsplit("-", 1)[-1]
                for rev, dep in ready.items():
                    if dep["metadata"]["labels"].get("serving.kinfer.io/track") == track:
                        weights[rev] = weights.get(rev, 0) + backend["weight"]
            return weights
        return {rev: float(d["status"]["readyReplicas"]) for rev, d in ready.items()}

    def _route(self) -> dict[str, Any] | None:
        try:
            items = kubectl_json("get", "httproutes", "-n", self.namespace)["items"]
        except AssertionError:
            return None  # no Gateway API CRDs in this cluster
        return next((r for r in items if r["metadata"]["name"] == self.model), None)

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                deployments = kubectl_json(
                    "get",
                    "deploy",
                    "-n",
                    self.namespace,
                    "-l",
                    f"serving.kinfer.io/model={self.model}",
                )["items"]
                self._sync(deployments)
            except Exception as err:  # keep following; the test asserts on outcomes
                print(f"dataplane: {err}", file=sys.stderr)
            self._stop.wait(0.5)

    def _sync(self, deployments: list[dict[str, Any]]) -> None:
        wanted: dict[str, str] = {}
        for dep in deployments:
            if (dep.get("status") or {}).get("readyReplicas", 0) > 0:
                rev = dep["metadata"]["labels"]["serving.kinfer.io/revision"]
                wanted[rev] = dep["metadata"]["annotations"]["serving.kinfer.io/model-version"]
        for rev, version in wanted.items():
            if rev not in self._runtimes:
                log = self.logdir / f"runtime-{rev}.log"
                self._runtimes[rev] = _Runtime(
                    self.model, version, rev, self.model_files[version], log
                )
        for rev in list(self._runtimes):
            if rev not in wanted:
                self._runtimes.pop(rev).stop()
        self.prometheus.set_targets(
            [
                (f"127.0.0.1:{r.metrics_port}", {"namespace": self.namespace})
                for r in self._runtimes.values()
            ]
        )
        self._live = {rev for rev, r in self._runtimes.items() if r.ready()}
        self._weights = self._split(deployments)

    # -- load -------------------------------------------------------------------------------

    def _load(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                if self.rate > 0:
                    self._send_one(client)
                    interval = 1.0 / self.rate
                else:
                    interval = 0.2
                self._stop.wait(max(0.0, interval - (time.monotonic() - started)))

    def _send_one(self, client: httpx.Client) -> None:
        live = {rev: w for rev, w in self._weights.items() if w > 0 and rev in self._live}
        if not live:
            return
        rev = random.choices(list(live), weights=list(live.values()))[0]
        runtime = self._runtimes.get(rev)
        if runtime is None:
            return
        url = f"{runtime.base}/v2/models/{self.model}/infer"
        try:
            code = client.post(url, json=self._payload).status_code
        except httpx.HTTPError:
            return
        self.sent[(rev, code)] += 1
