"""One Event per transition: a full rollout on the real API server tells each step once."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

from harness import condition, example, kubectl, kubectl_apply, kubectl_json, wait_until


def _events(namespace: str, name: str) -> list[dict[str, Any]]:
    items = kubectl_json("get", "events", "-n", namespace)["items"]
    ours = [
        e
        for e in items
        if e["involvedObject"].get("name") == name
        and e["involvedObject"].get("kind") == "InferenceModel"
    ]
    return sorted(ours, key=lambda e: (e.get("firstTimestamp") or "", e["metadata"]["name"]))


def test_a_full_rollout_tells_each_transition_once(namespace: str) -> None:
    manifest = example("demo-cpu.yaml")
    manifest["spec"]["replicas"] = 4
    kubectl_apply(manifest, namespace)
    kubectl("wait", "-n", namespace, "im/demo-cpu", "--for=condition=Ready", "--timeout=90s")
    first = kubectl_json("get", "im", "demo-cpu", "-n", namespace)["status"]["stableRevision"]

    bumped = copy.deepcopy(manifest)
    bumped["spec"]["model"]["version"] = "2"
    kubectl_apply(bumped, namespace)

    def promoted() -> bool:
        im = kubectl_json("get", "im", "demo-cpu", "-n", namespace)
        ready = condition(im, "Ready")
        return bool(ready and ready["status"] == "True" and im["status"]["stableRevision"] != first)

    wait_until(promoted, 120, "the new revision to become stable")
    wait_until(
        lambda: len(kubectl("get", "deploy", "-n", namespace, "-o", "name").stdout.split()) == 1,
        60,
        "the old revision to be removed",
    )
    events = _events(namespace, "demo-cpu")
    reasons = [e["reason"] for e in events]
    # No Deploying or Canary twice, no "Deploying 0/4" after the rollout completed.
    assert Counter(reasons) == {"Deploying": 1, "Serving": 1, "RollingOut": 1, "Promoted": 1}, (
        reasons
    )
    assert all(e.get("count", 1) == 1 for e in events)
