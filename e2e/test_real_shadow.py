"""Shadow traffic on real pods: the stable runtime mirrors a share of the requests it answered
to the candidate, users only ever get stable's answers, and the shadow phase is analysed on
the candidate's mirrored requests alone (real Prometheus, Kubernetes discovery).

Mirroring is switched through the `<model>-shadow` ConfigMap that every runtime pod mounts:
the kubelet rewrites the file in place (within its sync period, up to about a minute), so the
stable pods are never restarted; the tests check their UIDs and restart counts.

Latency figures are printed, not asserted beyond a generous sanity bound: the machine is a
shared 2-core VM, where the load generator, both runtimes and the control plane compete.
"""

from __future__ import annotations

import re
import time
import urllib.request
from typing import Any

import pytest
from dataplane import Prometheus
from harness import kubectl_apply, kubectl_json, wait_until
from realnode import LoadGenerator, canary_rollout, model_manifest, serving_url
from test_core import pods_of, wait_ready

BASELINE_SECONDS = 20


pytestmark = pytest.mark.real_node


def _get(ns: str, kind: str, name: str) -> dict[str, Any]:
    return dict(kubectl_json("get", kind, name, "-n", ns))


def _rollout(ns: str) -> dict[str, Any]:
    return dict(_get(ns, "im", "demo").get("status", {}).get("rollout") or {})


def _pods(ns: str, revision: str) -> list[dict[str, Any]]:
    return [
        p
        for p in pods_of(ns, "demo")
        if p["metadata"]["labels"].get("serving.kinfer.io/revision") == revision
    ]


def _scrape(pod: dict[str, Any], name: str, **labels: str) -> float:
    """Sum of a series on one runtime pod's metrics port, over series with these labels."""
    ip = pod["status"].get("podIP")
    if not ip:
        return 0.0
    try:
        with urllib.request.urlopen(f"http://{ip}:9090/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    total = 0.0
    for match in re.finditer(rf"^{name}\{{([^}}]*)\}} ([0-9.e+]+)$", text, re.M):
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def _mirrored(ns: str, revision: str) -> float:
    return sum(
        _scrape(p, "kinfer_shadow_requests_total", result="mirrored") for p in _pods(ns, revision)
    )


def _identity(ns: str, revision: str) -> dict[str, int]:
    """uid -> restart count of a revision's pods."""
    return {
        p["metadata"]["uid"]: sum(c["restartCount"] for c in p["status"]["containerStatuses"])
        for p in _pods(ns, revision)
    }


def _p99(load: LoadGenerator, start: float, end: float) -> tuple[float, int]:
    window = sorted(s for t, s in list(load.latencies) if start <= t < end)
    if not window:
        return float("nan"), 0
    return window[min(len(window) - 1, int(0.99 * len(window)))], len(window)


def _events(ns: str) -> list[str]:
    listed = kubectl_json("get", "events", "-n", ns, "--field-selector", "involvedObject.name=demo")
    return [f"{e['reason']}: {e['message']}" for e in listed["items"]]


def _report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f" [{text}]", end="")


# The kubelet rewrites a mounted ConfigMap within its sync period (about a minute): longer
# than the suite's default per-test timeout allows for, on top of the rollout itself.
@pytest.mark.timeout(600)
def test_a_faulty_candidate_fails_in_shadow_with_no_user_visible_error(
    namespace: str, real_prometheus: Prometheus, capsys: pytest.CaptureFixture[str]
) -> None:
    rollout = canary_rollout(real_prometheus.endpoint, [(50, 30)], failureLimit=2)
    rollout["shadow"] = {"percent": 50, "pauseSeconds": 300}
    manifest = model_manifest("demo", replicas=2, rollout=rollout)
    kubectl_apply(manifest, namespace)
    stable = wait_ready(namespace, "demo", timeout=180)["status"]["stableRevision"]
    before = _identity(namespace, stable)
    with LoadGenerator(serving_url(namespace, "demo"), "demo", clients=4) as load:
        off_start = time.monotonic()
        time.sleep(BASELINE_SECONDS)
        off_end = time.monotonic()
        manifest["spec"]["model"] |= {
            "uri": "file:///models/demo-faulty/model.onnx",
            "version": "2",
        }
        kubectl_apply(manifest, namespace)
        candidate = wait_until(
            lambda: _rollout(namespace).get("shadowPercent") and _rollout(namespace)["revision"],
            60,
            "the shadow phase to start",
        )
        selector = _get(namespace, "service", "demo")["spec"]["selector"]
        assert selector.get("serving.kinfer.io/revision") == stable, selector
        wait_until(lambda: _mirrored(namespace, stable) > 0, 180, "stable to mirror requests")
        on_start = time.monotonic()
        # The candidate serves mirrored requests only: the Service never sent it a user.
        cand_pods = _pods(namespace, candidate)
        assert sum(_scrape(p, "kinfer_requests_total", source="shadow") for p in cand_pods) > 0
        assert sum(_scrape(p, "kinfer_requests_total", source="live") for p in cand_pods) == 0
        done = wait_until(
            lambda: (r := _rollout(namespace)).get("phase") == "RolledBack" and r,
            180,
            "the faulty candidate to be rolled back in shadow",
        )
        on_end = time.monotonic()
    p99_off, n_off = _p99(load, off_start, off_end)
    p99_on, n_on = _p99(load, on_start, on_end)
    _report(
        capsys,
        f"{load.total} requests, {load.outcomes['failed']} failed; stable p99 "
        f"{p99_off * 1000:.1f} ms mirroring off (n={n_off}), "
        f"{p99_on * 1000:.1f} ms at 50% mirroring (n={n_on}); "
        f"mirrored {_mirrored(namespace, stable):.0f}",
    )
    assert load.outcomes["failed"] == 0, load.failures[:10]
    assert done["reason"] == "AnalysisFailed"
    assert done["message"].startswith("in shadow (mirrored requests): error-rate")
    error_rate = next(m for m in done["lastAnalysis"]["metrics"] if m["name"] == "error-rate")
    assert error_rate["verdict"] == "Fail" and float(error_rate["value"]) > 0.01
    im = _get(namespace, "im", "demo")
    assert im["status"]["stableRevision"] == stable
    events = _events(namespace)
    assert any(e.startswith("ShadowStarted") for e in events), events
    assert any(e.startswith("RolledBack: AnalysisFailed") for e in events), events
    # Mirroring on and off never restarted a stable pod.
    assert _identity(namespace, stable) == before
    assert all(restarts == 0 for restarts in before.values())
    assert n_on > 0 and p99_on < max(2.0, 10 * p99_off)  # sanity only; the figure is printed
    # The candidate goes, and with it the pin and the shadow Service.
    wait_until(
        lambda: (
            not _pods(namespace, candidate)
            and "serving.kinfer.io/revision"
            not in _get(namespace, "service", "demo")["spec"]["selector"]
        ),
        120,
        "the candidate's pods and the Service pin to go",
    )


@pytest.mark.timeout(600)
def test_a_healthy_candidate_passes_shadow_then_the_canary_steps(
    namespace: str, real_prometheus: Prometheus, capsys: pytest.CaptureFixture[str]
) -> None:
    rollout = canary_rollout(real_prometheus.endpoint, [(50, 3)])
    rollout["shadow"] = {"percent": 100, "pauseSeconds": 20}
    manifest = model_manifest("demo", replicas=2, rollout=rollout)
    kubectl_apply(manifest, namespace)
    stable = wait_ready(namespace, "demo", timeout=180)["status"]["stableRevision"]
    before = _identity(namespace, stable)
    with LoadGenerator(serving_url(namespace, "demo"), "demo", clients=4) as load:
        off_start = time.monotonic()
        time.sleep(BASELINE_SECONDS)
        off_end = time.monotonic()
        manifest["spec"]["model"]["version"] = "2"
        kubectl_apply(manifest, namespace)
        wait_until(lambda: _mirrored(namespace, stable) > 0, 180, "stable to mirror requests")
        on_start = time.monotonic()
        wait_until(
            lambda: _rollout(namespace).get("shadowPercent") is None,
            120,
            "the shadow phase to pass",
        )
        on_end = time.monotonic()
        assert _identity(namespace, stable) == before  # no stable pod restarted for it
        done = wait_until(
            lambda: (r := _rollout(namespace)).get("phase") in ("Succeeded", "RolledBack") and r,
            180,
            "the rollout to finish",
        )
    p99_off, n_off = _p99(load, off_start, off_end)
    p99_on, n_on = _p99(load, on_start, on_end)
    _report(
        capsys,
        f"{load.total} requests, {load.outcomes['failed']} failed; stable p99 "
        f"{p99_off * 1000:.1f} ms mirroring off (n={n_off}), "
        f"{p99_on * 1000:.1f} ms at 100% mirroring (n={n_on})",
    )
    assert done["phase"] == "Succeeded", done
    assert load.outcomes["failed"] == 0, load.failures[:10]
    events = _events(namespace)
    assert any(e.startswith("ShadowPassed") for e in events), events
    assert any(e.startswith("CanaryWeight") for e in events), events
    assert n_on > 0 and p99_on < max(2.0, 10 * p99_off)
