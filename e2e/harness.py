"""Cluster-agnostic helpers for the e2e suite: kubectl as a user runs it, plus polling.

Nothing here knows whether the cluster is the local kwok control plane or kind; everything
goes through KUBECONFIG.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self, TypeVar

import yaml

__all__ = [
    "EXAMPLES",
    "BackgroundLoop",
    "condition",
    "example",
    "free_port",
    "helm_binary",
    "kubectl",
    "kubectl_apply",
    "kubectl_json",
    "once_per_run",
    "wait_until",
    "worker_ports",
]

T = TypeVar("T")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def example(name: str) -> dict[str, Any]:
    """A manifest from examples/, as a user would apply it."""
    return dict(yaml.safe_load((EXAMPLES / name).read_text()))


def worker_ports(span: str | None, worker: str | None, workers: int) -> range | None:
    """This pytest-xdist worker's share of the lane's port span ("FIRST-LAST", from
    KINFER_E2E_PORTS): the span cut into `workers` equal blocks, block N for worker `gwN`.
    None without a span (a plain pytest run: the kernel picks ports)."""
    if not span:
        return None
    first, last = (int(part) for part in span.split("-", 1))
    index = int((worker or "gw0").removeprefix("gw"))
    size = (last - first + 1) // max(workers, 1)
    if size < 1 or index >= max(workers, 1):
        raise ValueError(f"port span {span} cannot give worker {worker} of {workers} a block")
    return range(first + index * size, first + (index + 1) * size)


_PORTS = worker_ports(
    os.environ.get("KINFER_E2E_PORTS"),
    os.environ.get("PYTEST_XDIST_WORKER"),
    int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")),
)
_next_port = itertools.cycle(_PORTS) if _PORTS is not None else None


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now at `host` (loopback by default).

    Under `e2e/run.sh` each lane has its own span of ports below the kernel's ephemeral range
    and each xdist worker its own block of that span, handed out in turn: lanes and workers
    starting servers side by side never pick the same port between choosing and binding it.
    """
    if _PORTS is None or _next_port is None:
        with socket.socket() as s:
            s.bind((host, 0))
            return int(s.getsockname()[1])
    for _ in range(len(_PORTS)):
        port = next(_next_port)
        if _bindable(host, port):
            return port
    raise AssertionError(f"no free port at {host} in {_PORTS.start}-{_PORTS.stop - 1}")


def once_per_run(lock_dir: Path, name: str, action: Callable[[], None]) -> None:
    """Run `action` once for all the pytest-xdist workers of one run (a lane) that share
    `lock_dir`: the first worker runs it under an exclusive file lock and leaves a mark; the
    others wait on the lock, see the mark and return. A failed action leaves no mark, so the
    next worker tries again (and fails the same way, with its own traceback)."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    done = lock_dir / f"{name}.done"
    with (lock_dir / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if done.exists():
                return
            action()
            done.touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class BackgroundLoop:
    """Calls `tick()` every `interval` seconds in a daemon thread for the span of a `with`
    block. A failing tick is reported and the loop goes on: tests assert on outcomes."""

    interval = 1.0

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as err:
                print(f"{type(self).__name__}: {err}", file=sys.stderr)
            self._stop.wait(self.interval)

    def tick(self) -> None:
        raise NotImplementedError


def kubectl(
    *args: str, input: str | None = None, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run kubectl; on failure with check=True the error shows kubectl's stderr."""
    proc = subprocess.run(
        ["kubectl", *args], input=input, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed:\n{proc.stderr}{proc.stdout}")
    return proc


def kubectl_json(*args: str) -> Any:
    """kubectl get ... -o json, parsed."""
    return json.loads(kubectl(*args, "-o", "json").stdout)


def kubectl_apply(
    manifest: dict[str, Any] | str, namespace: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`kubectl apply -f -` a manifest, exactly as a user or a GitOps tool would."""
    text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
    return kubectl("apply", "-n", namespace, "-f", "-", input=text, check=check)


def wait_until(
    probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5
) -> T:
    """Poll until `probe` returns something truthy; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def service_addresses(namespace: str, service: str) -> set[str]:
    """The addresses kube-proxy sends a Service's traffic to: the Ready endpoints of every
    EndpointSlice labelled with the Service's name, whoever manages it."""
    slices = kubectl_json(
        "get", "endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={service}"
    )["items"]
    return {
        address
        for s in slices
        for e in s.get("endpoints") or []
        if (e.get("conditions") or {}).get("ready", True)
        for address in e["addresses"]
    }


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    """A status condition by type."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


class InProcessReconciler:
    """The operator's own reconcile pass, run in the test process.

    Each pass first relists the namespace into a fresh informer cache (what the operator's
    watches would hold), so it acts on the cluster as it is now; its writes are counted.
    """

    def __init__(self, namespace: str) -> None:
        from kinfer_operator._kube import Kube, load_config
        from kinfer_operator.reconcile import Reconciler
        from kinfer_operator.reconcile.cluster import CachedCluster
        from kinfer_operator.world import Store

        self.namespace = namespace
        self.kube = Kube(load_config())
        self.store = Store()
        self.reconciler = Reconciler(CachedCluster(self.store, self.kube, routes_watched=False))

    def reconcile(self, name: str) -> Any:
        from kinfer_operator.reconcile.cluster import relist

        relist(self.store, self.kube, [self.namespace], with_routes=False)
        return self.reconciler.reconcile(self.namespace, name, trigger="e2e")


def helm_binary() -> str:
    """helm on PATH, else the pinned build next to the control-plane binaries."""
    found = shutil.which("helm")
    if found:
        return found
    env = dict(
        line.split("=", 1)
        for line in (Path(__file__).parent / "tools" / "versions.env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    cache = Path(os.environ.get("KINFER_CACHE", Path.home() / ".cache/kinfer"))
    pinned = cache / f"k8s-{env['K8S_VERSION']}" / "bin" / "helm"
    assert pinned.exists(), "helm not found: run `make binaries`"
    return str(pinned)
