"""Every failure a user can cause shows in `kubectl get im` (issue 11).

Each cause runs in its own namespace, all at once: the model shows READY False with the cause's
reason within one resync, gets one Warning Event, the operator's writes stay bounded while the
failure lasts (no hot loop), and the model recovers once the spec (or what is around it) is
fixed. The test prints the measured figures as a markdown table.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import SESSION, LocalOperator
from harness import condition, example, kubectl, kubectl_apply, kubectl_json, wait_until
from support.factories import deep_merge

RESYNC_SECONDS = 10.0  # KINFER_RESYNC_SECONDS of the e2e operator
WINDOW_SECONDS = 60.0
"""How long each failure is left in place while the operator's writes are counted."""
MAX_WRITES_PER_MINUTE = 10
NAME = "demo-cpu"


def _quota(hard: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "budget"},
        "spec": {"hard": hard},
    }


def _limit_range(limit: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": "limits"},
        "spec": {"limits": [{"type": "Container", **limit}]},
    }


@dataclass
class Cause:
    """One thing a user can get wrong, and how they fix it."""

    name: str
    reason: str
    change: dict[str, Any]
    """Spec overlay that causes the failure."""
    fix: dict[str, Any] | None = None
    """Spec overlay (on top of the failing spec) that fixes it."""
    expect: str = ""
    """Words of the API server or controller that the status message quotes."""
    setup: list[dict[str, Any]] = field(default_factory=list)
    """Namespaced objects that exist before the model (quotas, limit ranges)."""
    fix_delete: list[str] = field(default_factory=list)
    """kind/name of objects deleted as the fix (the spec cannot fix it)."""
    fix_create: list[dict[str, Any]] = field(default_factory=list)
    """Objects created as the fix."""
    policy: bool = False
    """A ValidatingAdmissionPolicy refuses Deployments without a CPU limit in the namespace."""
    # measured
    namespace: str = ""
    applied_at: float = 0.0
    shown_after: float | None = None
    writes_per_minute: float | None = None
    warning_events: int = 0
    recovered_after: float | None = None
    problems: list[str] = field(default_factory=list)


CPU_LIMIT = {"runtime": {"resources": {"limits": {"cpu": "1"}}}}

CAUSES = [
    Cause(
        "missing-service-account",
        "ServiceAccountNotFound",
        {"runtime": {"serviceAccountName": "runner"}},
        {"runtime": {"serviceAccountName": None}},
        expect='serviceaccount "runner" not found',
    ),
    Cause(
        "cpu-quota-exceeded",
        "QuotaExceeded",
        {},
        {"runtime": {"resources": {"requests": {"cpu": "50m"}}}},
        expect="exceeded quota",
        setup=[_quota({"requests.cpu": "100m"})],
    ),
    Cause(
        "gpu-quota-exceeded",
        "QuotaExceeded",
        {"runtime": {"gpu": {"count": 1}}},
        {"runtime": {"gpu": None}},
        expect="requests.nvidia.com/gpu",
        setup=[_quota({"requests.nvidia.com/gpu": "0"})],
    ),
    Cause(
        "quota-needs-limits",
        "QuotaExceeded",
        {},
        CPU_LIMIT,
        expect="must specify limits.cpu",
        setup=[_quota({"limits.cpu": "4", "limits.memory": "8Gi"})],
    ),
    Cause(
        "limit-range-maximum",
        "LimitRangeViolation",
        {"runtime": {"resources": {"limits": {"cpu": "2"}}}},
        CPU_LIMIT,
        expect="maximum cpu usage per Container is 1",
        setup=[_limit_range({"max": {"cpu": "1"}})],
    ),
    Cause(
        "limit-range-default-below-request",
        "PodCreationFailed",
        {},
        CPU_LIMIT,
        expect="must be less than or equal to cpu limit",
        setup=[_limit_range({"default": {"cpu": "100m"}, "defaultRequest": {"cpu": "100m"}})],
    ),
    Cause(
        "missing-priority-class",
        "PriorityClassNotFound",
        {"scheduling": {"priorityClassName": "urgent"}},
        {"scheduling": {"priorityClassName": None}},
        expect="urgent",
    ),
    Cause(
        "invalid-affinity",
        "ChildRejected",
        {
            "scheduling": {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}
                    }
                }
            }
        },
        {"scheduling": {"affinity": None}},
        expect="nodeSelectorTerms",
    ),
    Cause(
        "invalid-hpa-metric",
        "ChildRejected",
        {
            "autoscaling": {
                "maxReplicas": 2,
                "metrics": [{"type": "raw", "raw": {"type": "Pods", "pods": {}}}],
            }
        },
        {"autoscaling": {"metrics": [{"type": "cpu", "target": 80}]}},
        expect="spec.metrics[0].pods",
    ),
    Cause(
        "policy-refuses-deployment",
        "ChildRejected",
        {},
        CPU_LIMIT,
        expect="every container must set a CPU limit",
        policy=True,
    ),
    Cause(
        "service-quota-exceeded",
        "ChildRejected",
        {},
        None,
        expect="exceeded quota",
        setup=[_quota({"services": "0"})],
        fix_delete=["resourcequota/budget"],
    ),
]


def _base() -> dict[str, Any]:
    manifest = example("demo-cpu.yaml")
    manifest["spec"]["replicas"] = 1
    return manifest


def _manifest(cause: Cause, fixed: bool = False) -> dict[str, Any]:
    manifest = _base()
    manifest["spec"] = deep_merge(manifest["spec"], cause.change)
    if fixed and cause.fix:
        manifest["spec"] = deep_merge(manifest["spec"], cause.fix)
    return manifest


def _policy(cause: Cause) -> list[dict[str, Any]]:
    name = f"kinfer-e2e-{cause.namespace}"[:63]
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": ["apps"],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["deployments"],
                        }
                    ]
                },
                "validations": [
                    {
                        "expression": "object.spec.template.spec.containers.all(c, "
                        "has(c.resources) && has(c.resources.limits) "
                        "&& 'cpu' in c.resources.limits)",
                        "message": "every container must set a CPU limit (policy require-limits)",
                    }
                ],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": cause.namespace}
                    }
                },
            },
        },
    ]


def _writes_by_namespace(operator: LocalOperator) -> dict[str, int]:
    """API writes per namespace so far, summed from the operator's per-pass debug lines."""
    totals: dict[str, int] = {}
    pattern = re.compile(r"pass ([a-z0-9-]+)/[a-z0-9-]+ \(\w+\): (\d+) write")
    for match in pattern.finditer(operator.log_path.read_text(errors="replace")):
        totals[match.group(1)] = totals.get(match.group(1), 0) + int(match.group(2))
    return totals


def _ready(cause: Cause) -> dict[str, Any] | None:
    im = kubectl_json("get", "im", NAME, "-n", cause.namespace)
    return condition(im, "Ready")


def _ready_everywhere() -> dict[str, dict[str, Any] | None]:
    """The Ready condition of every model, by namespace: one call, so timings stay sharp."""
    items = kubectl_json("get", "im", "-A")["items"]
    return {im["metadata"]["namespace"]: condition(im, "Ready") for im in items}


@pytest.fixture
def causes(operator: LocalOperator | None) -> Iterator[list[Cause]]:
    prepared = []
    for cause in CAUSES:
        cause.namespace = f"e2e-{SESSION}-fail-{cause.name}"[:63].rstrip("-")
        kubectl("create", "namespace", cause.namespace)
        kubectl("label", "namespace", cause.namespace, "kinfer.io/e2e=true")
        for obj in cause.setup:
            kubectl_apply(obj, cause.namespace)
        if cause.policy:
            for obj in _policy(cause):
                kubectl("apply", "-f", "-", input=json.dumps(obj))
        prepared.append(cause)
    if any(c.policy for c in prepared):
        time.sleep(2)  # the policy plugin compiles new policies asynchronously
    yield prepared
    for cause in prepared:
        if cause.policy:
            for obj in _policy(cause):
                kind = obj["kind"].lower()
                kubectl("delete", kind, obj["metadata"]["name"], "--wait=false", check=False)
        kubectl("delete", "namespace", cause.namespace, "--wait=false", check=False)


def _report(causes: list[Cause]) -> None:
    print(
        "\n| cause | reason | shown after (s) | Warning Events | writes/min failing | "
        "recovered after fix (s) |"
    )
    print("|---|---|---|---|---|---|")
    for c in causes:
        shown = f"{c.shown_after:.1f}" if c.shown_after is not None else "never"
        writes = f"{c.writes_per_minute:.0f}" if c.writes_per_minute is not None else "n/a"
        recovered = f"{c.recovered_after:.1f}" if c.recovered_after is not None else "never"
        print(f"| {c.name} | {c.reason} | {shown} | {c.warning_events} | {writes} | {recovered} |")


def test_every_failure_cause_shows_in_status_and_recovers(
    causes: list[Cause], operator: LocalOperator | None
) -> None:
    for cause in causes:
        cause.applied_at = time.monotonic()
        kubectl_apply(_manifest(cause), cause.namespace)

    # 1. Shown in status within one resync, in `kubectl get im` itself.
    deadline = time.monotonic() + 90
    pending = list(causes)
    while pending and time.monotonic() < deadline:
        everywhere = _ready_everywhere()
        for cause in list(pending):
            ready = everywhere.get(cause.namespace)
            if ready and ready["status"] == "False" and ready["reason"] == cause.reason:
                cause.shown_after = time.monotonic() - cause.applied_at
                pending.remove(cause)
        time.sleep(0.1)
    for cause in causes:
        if cause.shown_after is None:
            cause.problems.append(f"never showed {cause.reason}: {_ready(cause)}")
            continue
        if cause.shown_after > RESYNC_SECONDS:
            cause.problems.append(f"took {cause.shown_after:.1f}s, more than one resync")
        ready = _ready(cause) or {}
        if cause.expect not in ready.get("message", ""):
            cause.problems.append(f"message lacks {cause.expect!r}: {ready.get('message')!r}")
        row = kubectl("get", "im", NAME, "-n", cause.namespace, "--no-headers").stdout
        if "False" not in row or cause.reason not in row:
            cause.problems.append(f"kubectl get im shows {row!r}")

    # 2. Bounded writes while the failure lasts.
    before = _writes_by_namespace(operator) if operator else {}
    started = time.monotonic()
    time.sleep(WINDOW_SECONDS)
    after = _writes_by_namespace(operator) if operator else {}
    minutes = (time.monotonic() - started) / 60
    for cause in causes:
        if operator is not None:
            writes = after.get(cause.namespace, 0) - before.get(cause.namespace, 0)
            cause.writes_per_minute = writes / minutes
            if cause.writes_per_minute > MAX_WRITES_PER_MINUTE:
                cause.problems.append(f"{writes} writes in {minutes * 60:.0f}s: a hot loop")
        events = kubectl_json("get", "events", "-n", cause.namespace)["items"]
        warnings = [
            e
            for e in events
            if e["involvedObject"].get("name") == NAME
            and e["involvedObject"].get("kind") == "InferenceModel"
            and e["type"] == "Warning"
            and e["reason"] == cause.reason
        ]
        cause.warning_events = len(warnings)
        if len(warnings) != 1:
            cause.problems.append(f"{len(warnings)} Warning Events {cause.reason}, want 1")

    # 3. Fixing the spec (or what is around it) recovers, with nothing restarted by hand.
    for cause in causes:
        cause.applied_at = time.monotonic()
        for obj in cause.fix_create:
            kubectl_apply(obj, cause.namespace)
        for ref in cause.fix_delete:
            kubectl("delete", ref, "-n", cause.namespace)
        if cause.fix is not None:
            kubectl_apply(_manifest(cause, fixed=True), cause.namespace)
    pending = list(causes)
    deadline = time.monotonic() + 120
    while pending and time.monotonic() < deadline:
        everywhere = _ready_everywhere()
        for cause in list(pending):
            ready = everywhere.get(cause.namespace)
            if ready and ready["status"] == "True":
                cause.recovered_after = time.monotonic() - cause.applied_at
                pending.remove(cause)
        time.sleep(0.1)
    for cause in pending:
        cause.problems.append(f"did not recover: {_ready(cause)}")

    _report(causes)
    assert len({c.name for c in causes}) >= 10
    problems = {c.name: c.problems for c in causes if c.problems}
    assert problems == {}


INVALID_AFFINITY = {
    "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}
}
CANARY_FAILURES = [
    (
        "pods-cannot-be-created",
        {"runtime": {"serviceAccountName": "runner"}},
        "ServiceAccountNotFound",
        'serviceaccount "runner" not found',
    ),
    (
        "deployment-refused",
        {"scheduling": {"affinity": INVALID_AFFINITY}},
        "ChildRejected",
        "nodeSelectorTerms",
    ),
]


@pytest.mark.parametrize(
    ("change", "reason", "expect"),
    [c[1:] for c in CANARY_FAILURES],
    ids=[c[0] for c in CANARY_FAILURES],
)
def test_a_canary_that_cannot_run_is_rolled_back_with_the_reason(
    namespace: str, change: dict[str, Any], reason: str, expect: str
) -> None:
    manifest = example("demo-cpu.yaml")
    manifest["spec"]["rollout"] = {
        "canary": {"steps": [{"weight": 50, "pauseSeconds": 0}], "scaleDownDelaySeconds": 0}
    }
    kubectl_apply(manifest, namespace)
    kubectl("wait", "-n", namespace, f"im/{NAME}", "--for=condition=Ready", "--timeout=90s")
    started = time.monotonic()
    kubectl_apply(deep_merge(manifest, {"spec": change}), namespace)

    def rolled_back() -> dict[str, Any] | None:
        im = kubectl_json("get", "im", NAME, "-n", namespace)
        rollout = (im.get("status") or {}).get("rollout") or {}
        return im if rollout.get("phase") == "RolledBack" else None

    im = wait_until(rolled_back, 60, "the canary to be rolled back")
    took = time.monotonic() - started
    rollout = im["status"]["rollout"]
    assert rollout["reason"] == reason
    assert expect in rollout["message"]
    assert took < 30, f"rolled back after {took:.0f}s: it waited for a deadline"
    ready = condition(im, "Ready")
    assert ready is not None and ready["reason"] == "RolledBack"
    assert im["status"]["stableModelVersion"] == "1"  # the stable revision kept serving
    print(f"\ncanary rolled back ({reason}) after {took:.1f}s")


def _service_range_size() -> int | None:
    """Addresses in the cluster's Service CIDR, from the ServiceCIDR API (None if absent)."""
    found = kubectl("get", "servicecidrs", "-o", "json", check=False)
    if found.returncode != 0:
        return None
    cidrs = [c for item in json.loads(found.stdout)["items"] for c in item["spec"]["cidrs"]]
    v4 = [c for c in cidrs if ":" not in c]
    return sum(2 ** (32 - int(c.split("/")[1])) for c in v4) if v4 else None


def test_a_full_service_ip_range_is_a_retry_that_says_why(
    quiet_cluster: str, operator: LocalOperator | None
) -> None:
    # Quiet: Services of earlier tests' namespaces, still terminating, would free addresses
    # after the fillers took the rest.
    namespace = quiet_cluster
    size = _service_range_size()
    if size is None or size > 1024:
        pytest.skip(f"Service CIDR too large to fill in a test ({size} addresses)")
    fillers = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"filler-{i}", "labels": {"kinfer.io/filler": "true"}},
                "spec": {"ports": [{"port": 80}]},
            }
            for i in range(size)
        ],
    }
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(fillers), check=False)
    try:
        applied = time.monotonic()
        kubectl_apply(_base(), namespace)

        def retrying() -> dict[str, Any] | None:
            ready = _ready_in(namespace)
            return ready if ready and ready["reason"] == "Retrying" else None

        ready = wait_until(retrying, RESYNC_SECONDS, "Ready=False reason Retrying")
        shown = time.monotonic() - applied
        assert "range is full" in ready["message"], ready["message"]
        im = kubectl_json("get", "im", NAME, "-n", namespace)
        assert condition(im, "Degraded")["status"] == "False"  # type: ignore[index]
        assert condition(im, "Progressing")["reason"] == "Retrying"  # type: ignore[index]
        if operator is not None:
            # The pass that wrote Retrying logs its writes after the status is visible.
            wait_until(
                lambda: _writes_by_namespace(operator).get(namespace),
                10,
                "the pass that wrote Retrying to log its writes",
            )
            before = _writes_by_namespace(operator).get(namespace, 0)
            time.sleep(30)
            writes = _writes_by_namespace(operator).get(namespace, 0) - before
            assert writes * 2 <= MAX_WRITES_PER_MINUTE
            print(f"\nService IP range full: Retrying after {shown:.1f}s, {writes * 2} writes/min")
    finally:
        kubectl("delete", "svc", "-n", namespace, "-l", "kinfer.io/filler=true", "--wait=false")
    kubectl("wait", "-n", namespace, f"im/{NAME}", "--for=condition=Ready", "--timeout=120s")


def _ready_in(namespace: str) -> dict[str, Any] | None:
    return condition(kubectl_json("get", "im", NAME, "-n", namespace), "Ready")
