"""The operator process itself: leader election (one active replica), health, metrics, JSON
logs."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import LocalOperator
from harness import example, kubectl, kubectl_apply, kubectl_json, wait_until


def _elected(
    tmp_path: Path, namespace: str, name: str, timing: tuple[int, int, int] = (6, 4, 1)
) -> LocalOperator:
    """An operator electing through the Lease `kinfer` in the test's namespace; short
    (lease duration, renew deadline, retry period) so a silent holder is replaced quickly."""
    duration, deadline, retry = timing
    return LocalOperator(
        tmp_path,
        args=(
            "--log-format",
            "json",
            "--namespace",
            namespace,
            "--leader-election",
            "kinfer",
            "--leader-election-namespace",
            namespace,
            "--leader-election-lease-duration",
            str(duration),
            "--leader-election-renew-deadline",
            str(deadline),
            "--leader-election-retry-period",
            str(retry),
        ),
        name=name,
    )


def _ready_replicas(namespace: str) -> int:
    im: dict[str, Any] = kubectl_json("get", "im", "demo-cpu", "-n", namespace)
    return int((im.get("status") or {}).get("readyReplicas") or 0)


def _leads(op: LocalOperator) -> bool:
    """Whether the operator says it acts (its `kinfer_operator_leader` gauge); False while
    it is not serving metrics (starting, or gone)."""
    if op.proc is None:
        return False
    try:
        return op.metric("kinfer_operator_leader") == 1
    except OSError:
        return False


def _start_together(*ops: LocalOperator) -> None:
    """Start the operators at the same moment (each `start` waits for its health)."""
    threads = [threading.Thread(target=op.start) for op in ops]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _holder(namespace: str) -> str:
    lease: dict[str, Any] = kubectl_json("get", "lease", "kinfer", "-n", namespace)
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def test_only_the_lease_holder_acts_and_a_standby_takes_over_when_it_dies(
    namespace: str, tmp_path: Path, without_session_operator: None
) -> None:
    one, two = _elected(tmp_path, namespace, "one"), _elected(tmp_path, namespace, "two")
    _start_together(one, two)
    try:
        wait_until(lambda: _leads(one) or _leads(two), 10, "one operator to take the Lease")
        active, standby = (one, two) if _leads(one) else (two, one)
        kubectl_apply(example("demo-cpu.yaml"), namespace)
        wait_until(lambda: _ready_replicas(namespace) == 2, 60, "the active operator to serve")
        assert active.metric("kinfer_operator_reconciles_total") > 0
        assert standby.metric("kinfer_operator_reconciles_total") == 0
        assert _holder(namespace)

        active.stop(kill=True)  # no goodbye: the standby waits out the lease duration
        kubectl("scale", "im/demo-cpu", "-n", namespace, "--replicas=3")
        wait_until(lambda: _ready_replicas(namespace) == 3, 60, "the standby to take over")
        assert standby.metric("kinfer_operator_reconciles_total") > 0
        assert _leads(standby)
    finally:
        one.stop()
        two.stop()


def test_two_operators_started_together_elect_one_at_once_and_hand_over_on_sigterm(
    namespace: str,
    tmp_path: Path,
    without_session_operator: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A fresh install: two replicas start at the same moment against a Lease nobody holds
    yet. One must act within 5 s and never both; a clean exit of the holder hands over at the
    standby's next try, not after the lease duration. The chart's default timing."""
    ops = [_elected(tmp_path, namespace, f"op{i}", timing=(15, 10, 2)) for i in (0, 1)]
    samples: list[tuple[float, bool, bool]] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            samples.append((time.monotonic(), _leads(ops[0]), _leads(ops[1])))
            sampling.wait(0.1)

    started = time.monotonic()
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        _start_together(*ops)
        while time.monotonic() - started < 15:
            time.sleep(0.1)
        both = [t - started for t, a, b in samples if a and b]
        assert not both, f"two operators acted at once at {both[:5]} s after start"
        first = next((t - started for t, a, b in samples if a or b), None)
        assert first is not None and first <= 5, f"nobody acted within 5 s (first: {first})"

        leader = 0 if samples[-1][1] else 1
        assert samples[-1][1 + leader], "the first holder lost the Lease with nobody stopping"
        other = ops[1 - leader]
        stopped = time.monotonic()
        samples.clear()
        ops[leader].stop()  # SIGTERM: the operator releases the Lease on its way out
        wait_until(lambda: _leads(other), 30, "the standby to take over")
        taken = time.monotonic() - stopped
        sampling.set()
        sampler.join()
        assert not [s for s in samples if s[1] and s[2]], "two acted during the handover"
        with capsys.disabled():
            print(
                f"\nleader election: first operator acting {first:.2f} s after start; "
                f"standby acting {taken:.2f} s after SIGTERM to the holder"
            )
        assert taken < 15, "the Lease was not released: the standby waited out its duration"
    finally:
        sampling.set()
        sampler.join()
        for op in ops:
            op.stop()


def test_operator_serves_health_and_metrics_and_logs_json(
    namespace: str, tmp_path: Path, without_session_operator: None
) -> None:
    op = LocalOperator(
        tmp_path, args=("--log-format", "json", "--namespace", namespace), name="json"
    )
    op.start()
    try:
        kubectl_apply(example("demo-cpu.yaml"), namespace)
        wait_until(lambda: _ready_replicas(namespace) == 2, 60, "the model to serve")
        with urllib.request.urlopen(f"http://127.0.0.1:{op.health_port}/healthz") as r:
            assert r.status == 200
        assert op.metric("kinfer_operator_reconcile_duration_seconds_count") > 0
        assert op.metric("kinfer_operator_api_writes_total") > 0
    finally:
        op.stop()
    records = [
        json.loads(line) for line in op.log_path.read_text().splitlines() if line.startswith("{")
    ]
    assert records, "no JSON log lines"
    assert any("applying Deployment" in r.get("message", "") for r in records)
