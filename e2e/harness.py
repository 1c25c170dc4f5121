"""Cluster-agnostic helpers for the e2e suite: kubectl as a user runs it, plus polling.

Nothing here knows whether the cluster is the local kwok control plane or kind; everything
goes through KUBECONFIG.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

import yaml

__all__ = [
    "condition",
    "kubectl",
    "kubectl_apply",
    "kubectl_json",
    "wait_until",
]

T = TypeVar("T")


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
