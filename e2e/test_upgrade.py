"""Upgrading kinfer: a new operator rolls its changed pod template a few models at a time, and
models stored under the previous release's CRD still reconcile after the new one is applied."""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, LocalOperator
from harness import example, kubectl, kubectl_apply, kubectl_json, wait_until

MODELS = 20
MAX_ROLLS = 3
MARK_ANNOTATION = "serving.kinfer.io/template-mark"
PREVIOUS_CRD = Path(__file__).resolve().parent / "upgrade" / "crd-previous.yaml"


def _operator(tmp_path: Path, namespace: str, name: str, **env: str) -> LocalOperator:
    return LocalOperator(
        tmp_path, args=("--log-format", "plain", "--namespace", namespace), env=env, name=name
    )


def _small_model(name: str) -> dict[str, Any]:
    manifest = example("demo-cpu.yaml")
    manifest["metadata"]["name"] = name
    manifest["spec"]["runtime"]["resources"] = {
        "requests": {"cpu": "20m", "memory": "32Mi"},
        "limits": {"memory": "64Mi"},
    }
    return manifest


def _ready(namespace: str) -> int:
    models = kubectl_json("get", "inferencemodels", "-n", namespace)["items"]
    return sum(
        any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in m.get("status", {}).get("conditions", [])
        )
        for m in models
    )


def _deployments(namespace: str) -> list[dict[str, Any]]:
    return list(kubectl_json("get", "deployments", "-n", namespace)["items"])


def _rolling(deployment: dict[str, Any]) -> bool:
    """Pods not yet on the Deployment's current template, or not ready."""
    spec = int(deployment["spec"].get("replicas", 1))
    status = deployment.get("status") or {}
    return bool(
        int(status.get("observedGeneration", 0)) < int(deployment["metadata"]["generation"])
        or int(status.get("updatedReplicas", 0)) < spec
        or int(status.get("readyReplicas", 0)) < spec
        or int(status.get("replicas", 0)) > int(status.get("updatedReplicas", 0))
    )


def _rolling_models(namespace: str) -> int:
    return len(
        {
            d["metadata"]["labels"]["serving.kinfer.io/model"]
            for d in _deployments(namespace)
            if _rolling(d)
        }
    )


def _all_marked(namespace: str, mark: str) -> bool:
    deployments = _deployments(namespace)
    marked = [
        d
        for d in deployments
        if d["spec"]["template"]["metadata"].get("annotations", {}).get(MARK_ANNOTATION) == mark
        and not _rolling(d)
    ]
    return len(deployments) == MODELS and len(marked) == MODELS


class _Sampler:
    """(seconds since start, models rolling) every ~0.3 s, in the background."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.curve: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.monotonic()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.curve.append((time.monotonic() - self._started, _rolling_models(self.namespace)))
            self._stop.wait(0.3)

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@pytest.mark.timeout(600)
def test_an_operator_upgrade_rolls_at_most_the_allowed_models_at_once(
    namespace: str,
    tmp_path: Path,
    without_session_operator: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = _operator(tmp_path, namespace, "before")
    before.start()
    try:
        for i in range(MODELS):
            kubectl_apply(_small_model(f"m{i:02d}"), namespace)
        wait_until(lambda: _ready(namespace) == MODELS, 240, f"{MODELS} models to be Ready")
        wait_until(lambda: _rolling_models(namespace) == 0, 60, "every Deployment to settle")
    finally:
        before.stop()

    mark = f"upgrade-{secrets.token_hex(3)}"
    env = {"KINFER_TEMPLATE_MARK": mark, "KINFER_MAX_TEMPLATE_ROLLS": str(MAX_ROLLS)}
    after = _operator(tmp_path, namespace, "after", **env)
    with _Sampler(namespace) as sampler:
        after.start()
        try:
            # Mid-upgrade, the operator restarts: it must resume with the rolls in flight.
            wait_until(lambda: sampler.curve and sampler.curve[-1][1] > 0, 60, "a roll to start")
            after.stop(kill=True)
            after.start()
            wait_until(lambda: _all_marked(namespace, mark), 300, "every model on the new template")
        finally:
            after.stop()
    with capsys.disabled():
        print(f"\nrolling models over time (max {MAX_ROLLS} allowed), t[s] count:")
        for t, count in sampler.curve:
            print(f"{t:7.1f} {count:3d} {'#' * count}")
    peak = max(count for _, count in sampler.curve)
    assert 0 < peak <= MAX_ROLLS, sampler.curve
    assert _ready(namespace) == MODELS


def _apply_crd(path: Path) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/inferencemodels.serving.kinfer.io",
    )


def _model_ready(namespace: str, name: str, replicas: int) -> bool:
    im = kubectl_json("get", "inferencemodel", name, "-n", namespace)
    status = im.get("status", {})
    return bool(
        status.get("observedGeneration") == im["metadata"]["generation"]
        and status.get("readyReplicas") == replicas
        and any(
            c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])
        )
    )


def test_a_model_stored_under_the_previous_crd_reconciles_after_the_crd_upgrade(
    quiet_cluster: str,
) -> None:
    """The CRD is cluster-wide, so this runs alone (quiet_cluster marks it exclusive)."""
    namespace = quiet_cluster
    current = REPO / "crds" / "inferencemodels.serving.kinfer.io.yaml"
    _apply_crd(PREVIOUS_CRD)
    try:
        kubectl_apply(example("demo-cpu.yaml"), namespace)
        wait_until(lambda: _model_ready(namespace, "demo-cpu", 2), 90, "Ready on the old CRD")
    finally:
        _apply_crd(current)

    # The stored object still validates: a full round trip through the new schema.
    stored = kubectl("get", "inferencemodel", "demo-cpu", "-n", namespace, "-o", "yaml").stdout
    kubectl("replace", "-n", namespace, "-f", "-", input=stored)
    wait_until(lambda: _model_ready(namespace, "demo-cpu", 2), 90, "Ready on the new CRD")

    kubectl(
        "patch",
        "inferencemodel",
        "demo-cpu",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec": {"replicas": 3}}',
    )
    wait_until(lambda: _model_ready(namespace, "demo-cpu", 3), 90, "the update to be served")
