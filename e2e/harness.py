"""Cluster-agnostic helpers for the e2e suite: kubectl as a user runs it, plus polling.

Nothing here knows whether the cluster is the local kwok control plane or kind; everything
goes through KUBECONFIG.
"""

from __future__ import annotations

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
    "wait_until",
]

T = TypeVar("T")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def example(name: str) -> dict[str, Any]:
    """A manifest from examples/, as a user would apply it."""
    return dict(yaml.safe_load((EXAMPLES / name).read_text()))


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now at `host` (loopback by default)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


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
