"""The HPA during a canary: promotion never lowers serving capacity, and an abort keeps the
stable replicas.

See e2e/autoscaling.py for what is real and what is emulated."""

from __future__ import annotations

import time

from autoscaling import (
    HEAVY,
    CpuLoad,
    DeploymentWatch,
    Recorder,
    get_im,
    manifest,
    wait_ready,
)
from harness import kubectl, kubectl_apply, kubectl_json, wait_until

# -- 5: the HPA during a canary --------------------------------------------------------------

CANARY_MODEL = "hpa-canary"
CANARY_MAX = 4
CANARY_AUTOSCALING = {
    "minReplicas": 2,
    "maxReplicas": CANARY_MAX,
    "metrics": [{"type": "cpu", "target": 50}],
}
CANARY_WEIGHT = 40
CANARY_SIZE = round(CANARY_MAX * CANARY_WEIGHT / (100 - CANARY_WEIGHT))  # 3 next to 4 stable
# Held by hand: a step that would pause for an hour, and an analysis that never comes due.
CANARY_ROLLOUT = {
    "canary": {
        "steps": [{"weight": CANARY_WEIGHT, "pauseSeconds": 3600}],
        "scaleDownDelaySeconds": 2,
    },
    "analysis": {"prometheus": "down", "intervalSeconds": 3600, "errorLimit": 100},
}


def _loaded_stable(namespace: str, load: CpuLoad) -> tuple[str, int]:
    """Apply version 1 and load it until the HPA holds it at maxReplicas; (deployment, N)."""
    kubectl_apply(manifest(CANARY_MODEL, CANARY_AUTOSCALING, "1", CANARY_ROLLOUT), namespace)
    stable_revision = wait_ready(namespace, CANARY_MODEL)["status"]["stableRevision"]
    deployment = f"{CANARY_MODEL}-{stable_revision}"
    load.set(HEAVY)

    def at_max() -> bool:
        dep = kubectl_json("get", "deploy", deployment, "-n", namespace)
        ready = (dep.get("status") or {}).get("readyReplicas", 0)
        return bool(dep["spec"]["replicas"] == ready == CANARY_MAX)

    wait_until(at_max, 90, "the HPA to hold the loaded stable at maxReplicas", interval=1)
    return deployment, CANARY_MAX


def _start_canary(namespace: str, version: str) -> str:
    kubectl_apply(manifest(CANARY_MODEL, CANARY_AUTOSCALING, version, CANARY_ROLLOUT), namespace)

    def canary_serving() -> str | None:
        status = get_im(namespace, CANARY_MODEL)["status"]
        rollout = status.get("rollout") or {}
        revision = rollout.get("revision")
        if rollout.get("phase") != "Progressing" or not rollout.get("stepStartedAt"):
            return None
        return str(revision)

    return wait_until(canary_serving, 60, "the canary to serve its first step")


def rollout_phase(namespace: str) -> str | None:
    rollout = get_im(namespace, CANARY_MODEL)["status"].get("rollout") or {}
    return rollout.get("phase")


def annotate_model(namespace: str, annotation: str) -> None:
    kubectl("annotate", "im", CANARY_MODEL, "-n", namespace, annotation)


def test_promoting_a_canary_under_the_hpa_never_lowers_serving_capacity(
    namespace: str, emulated_cluster: None
) -> None:
    with CpuLoad(namespace, CANARY_MODEL) as load:
        old, n = _loaded_stable(namespace, load)
        watch = DeploymentWatch(namespace, CANARY_MODEL)
        try:
            with Recorder(namespace, CANARY_MODEL, lambda: load.per_pod) as recorder:
                canary = _start_canary(namespace, "2")
                new = f"{CANARY_MODEL}-{canary}"
                annotate_model(namespace, f"serving.kinfer.io/promote={canary}")
                wait_until(lambda: rollout_phase(namespace) == "Succeeded", 60, "the promotion")

                def hpa_target() -> str:
                    hpa = kubectl_json("get", "hpa", CANARY_MODEL, "-n", namespace)
                    return str(hpa["spec"]["scaleTargetRef"]["name"])

                wait_until(lambda: hpa_target() == new, 30, "the HPA to target the new stable")
                wait_until(
                    lambda: not kubectl("get", "deploy", old, "-n", namespace, check=False).stdout,
                    30,
                    "the old stable Deployment to go",
                )
                time.sleep(2)
        finally:
            watch.stop()
    title = f"Canary promotion under the HPA (N={n}, canary weight {CANARY_WEIGHT}%)"
    print("\n" + recorder.table(title) + "\n\n" + watch.table(title + ", every Deployment event"))

    replay = list(watch.replay())
    as_canary = [live[new] for _, live in replay if new in live and live[new].track == "canary"]
    # Sized from the weight on top of the HPA's stable, then to N before it takes over.
    assert {d.spec for d in as_canary} >= {CANARY_SIZE, n}, as_canary
    deletions = [(e, live) for e, live in replay if e.name == old and e.type == "DELETED"]
    assert deletions, "the old stable Deployment was never deleted"
    event, live = deletions[0]
    assert new in live and live[new].track == "stable", live
    assert live[new].ready >= n, f"at {event.t:.1f}s the new stable had {live[new].ready}/{n} ready"
    # Stable was never reduced while it served (only once the new stable had all N ready,
    # when the retire pace takes the old one down step by step), and serving capacity never
    # dipped below N.
    for e, live in replay:
        if e.name == old and e.type != "DELETED" and not live[old].deleting:
            replaced = new in live and live[new].track == "stable" and live[new].ready >= n
            assert live[old].spec >= n or replaced, (
                f"old stable scaled to {live[old].spec} at {e.t:.1f}s before the new one served"
            )
        serving = sum(d.ready for name, d in live.items() if name in (old, new))
        assert serving >= n, f"only {serving} ready at {e.t:.1f}s ({e.type} {e.name})"
    assert hpa_target() == new
    assert get_im(namespace, CANARY_MODEL)["status"]["stableRevision"] == canary


def test_aborting_a_canary_under_the_hpa_keeps_the_stable_replicas(
    namespace: str, emulated_cluster: None
) -> None:
    with CpuLoad(namespace, CANARY_MODEL) as load:
        stable, n = _loaded_stable(namespace, load)
        watch = DeploymentWatch(namespace, CANARY_MODEL)
        try:
            with Recorder(namespace, CANARY_MODEL, lambda: load.per_pod) as recorder:
                canary = _start_canary(namespace, "2")
                annotate_model(namespace, f"serving.kinfer.io/abort={canary}")
                wait_until(lambda: rollout_phase(namespace) == "RolledBack", 60, "the rollback")
                wait_until(
                    lambda: (
                        kubectl("get", "deploy", "-n", namespace, "-o", "name").stdout.split()
                        == [f"deployment.apps/{stable}"]
                    ),
                    30,
                    "the canary Deployment to be removed",
                )
                time.sleep(2)
        finally:
            watch.stop()
    title = f"Canary abort under the HPA (N={n}, canary weight {CANARY_WEIGHT}%)"
    print("\n" + recorder.table(title) + "\n\n" + watch.table(title + ", every Deployment event"))

    replay = list(watch.replay())
    name = f"{CANARY_MODEL}-{canary}"
    assert CANARY_SIZE in {live[name].spec for _, live in replay if name in live}, "no canary"
    for event, live in replay:
        assert stable in live, f"stable Deployment gone at {event.t:.1f}s"
        assert live[stable].spec >= n and live[stable].ready >= n, (event, live[stable])
    hpa = kubectl_json("get", "hpa", CANARY_MODEL, "-n", namespace)
    assert hpa["spec"]["scaleTargetRef"]["name"] == stable
    status = get_im(namespace, CANARY_MODEL)["status"]
    assert status["rollout"]["reason"] == "ManualAbort" and status["stableRevision"] in stable
