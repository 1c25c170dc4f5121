"""Whole passes with spec.model.cache: fill first, then pods; eviction keeps live versions."""

from __future__ import annotations

from typing import Any

from kinfer_operator.children.modelcache import fill_job_name
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import TRACK_LABEL
from kinfer_operator.reconcile.run import Reconciler
from support.clock import EPOCH
from support.factories import model_body
from support.fake_kube import FakeKube

V1 = "a" * 64
V2 = "b" * 64
CACHE = {"claimName": "model-cache", "maxSize": "10Gi"}


def _spec(sha: str, version: str = "3") -> dict[str, Any]:
    return {"model": {"sha256": sha, "version": version, "cache": CACHE}}


def _setup(sha: str = V1) -> tuple[FakeKube, Reconciler]:
    kube = FakeKube(model_body(_spec(sha)))
    return kube, Reconciler(kube, clock=lambda: EPOCH)


def _job(kube: FakeKube, sha: str) -> str:
    return fill_job_name(InferenceModel.from_body(kube.model), sha[:32])


def _ready(kube: FakeKube) -> tuple[str, str, str]:
    for c in kube.model["status"]["conditions"]:
        if c["type"] == "Ready":
            return c["status"], c["reason"], c["message"]
    raise AssertionError("no Ready condition")


def _env(kube: FakeKube, job: str) -> dict[str, str]:
    container = kube.children[("Job", job)]["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_no_deployment_until_the_version_is_cached() -> None:
    kube, reconciler = _setup()
    outcome = reconciler.reconcile("ml", "resnet50")
    assert outcome is not None and outcome.requeue_after == 2.0  # comes back for progress
    job = _job(kube, V1)
    assert ("Job", job) in kube.children and kube.deployments() == []
    assert _ready(kube)[:2] == ("False", "CachingModel")

    kube.fill_logs[job] = "kinfer-progress done=431882240 total=1073741824\n"
    reconciler.reconcile("ml", "resnet50")
    message = _ready(kube)[2]
    assert message.startswith("Downloading model 412/1024 MiB into model-cache")
    assert kube.model["status"]["message"] == message  # the MESSAGE column

    kube.finish_job(job, message="downloaded 1024 MiB in 3.0s")
    reconciler.reconcile("ml", "resnet50")
    (deployment,) = kube.deployments()
    pod = deployment["spec"]["template"]["spec"]
    mounts = pod["containers"][0]["volumeMounts"]
    assert next(m for m in mounts if m["name"] == "model-shared-cache")["readOnly"] is True
    assert _ready(kube)[2] == "Model cached in model-cache: downloaded 1024 MiB in 3.0s"
    reconciler.reconcile("ml", "resnet50")
    assert _ready(kube)[2].startswith("Loading model: 0/2 replicas")


def test_a_failed_fill_is_degraded_with_the_fills_own_message() -> None:
    kube, reconciler = _setup()
    reconciler.reconcile("ml", "resnet50")
    kube.finish_job(_job(kube, V1), "Failed", "cannot cache https://m/x: sha256 mismatch")
    reconciler.reconcile("ml", "resnet50")
    status, reason, message = _ready(kube)
    assert (status, reason) == ("False", "ModelCacheFailed")
    assert "sha256 mismatch" in message and kube.deployments() == []
    degraded = next(c for c in kube.model["status"]["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True"


def test_a_new_version_keeps_the_serving_one_and_old_jobs_go() -> None:
    kube, reconciler = _setup()
    reconciler.reconcile("ml", "resnet50")
    kube.finish_job(_job(kube, V1))
    reconciler.reconcile("ml", "resnet50")
    kube.settle()
    reconciler.reconcile("ml", "resnet50")

    kube.set_spec(model_body(_spec(V2, "4"))["spec"])
    reconciler.reconcile("ml", "resnet50")
    job2 = _job(kube, V2)
    assert set(_env(kube, job2)["KINFER_CACHE_KEEP"].split(",")) == {V1[:32], V2[:32]}
    assert _env(kube, job2)["KINFER_CACHE_MAX_BYTES"] == str(10 * 2**30)
    assert len(kube.deployments()) == 1  # v1 serves on; v2 waits for its fill

    kube.finish_job(job2)
    reconciler.reconcile("ml", "resnet50")
    kube.settle()
    reconciler.reconcile("ml", "resnet50")
    reconciler.reconcile("ml", "resnet50")
    assert len(kube.deployments()) == 1
    assert ("Job", _job(kube, V1)) not in kube.children  # v1 no longer live
    assert ("Job", job2) in kube.children


def test_a_steady_state_pass_with_the_cache_writes_nothing() -> None:
    kube, reconciler = _setup()
    reconciler.reconcile("ml", "resnet50")
    kube.finish_job(_job(kube, V1))
    reconciler.reconcile("ml", "resnet50")
    kube.settle()
    reconciler.reconcile("ml", "resnet50")
    reconciler.reconcile("ml", "resnet50")
    outcome = reconciler.reconcile("ml", "resnet50")
    assert outcome is not None and outcome.writes == 0 and outcome.requeue_after is None


ROLLOUT = {
    "canary": {"steps": [{"weight": 50, "pauseSeconds": 0}]},
    "analysis": {"errorRate": None},
}


def test_a_canary_waits_for_its_fill_and_then_starts_from_the_cache() -> None:
    kube = FakeKube(model_body({**_spec(V1), "rollout": ROLLOUT}))
    reconciler = Reconciler(kube, clock=lambda: EPOCH)
    reconciler.reconcile("ml", "resnet50")
    kube.finish_job(_job(kube, V1))
    reconciler.reconcile("ml", "resnet50")
    kube.settle()
    reconciler.reconcile("ml", "resnet50")
    assert _ready(kube)[:2] == ("True", "Serving")

    kube.set_spec(model_body({**_spec(V2, "4"), "rollout": ROLLOUT})["spec"])
    for _ in range(3):  # however many passes run while the fill does
        reconciler.reconcile("ml", "resnet50")
    assert len(kube.deployments()) == 1  # no canary pod yet: it would only download
    assert (kube.model["status"].get("rollout") or {}).get("phase") != "RolledBack"
    assert _ready(kube)[1] == "CachingModel"

    kube.finish_job(_job(kube, V2))
    reconciler.reconcile("ml", "resnet50")
    canary = [d for d in kube.deployments() if d["metadata"]["labels"].get(TRACK_LABEL) == "canary"]
    assert len(canary) == 1
    env = {
        e["name"]: e.get("value")
        for e in canary[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["KINFER_SHARED_CACHE_DIR"] == "/var/cache/kinfer-shared/resnet50"


def test_a_fill_waiting_for_its_credentials_secret_is_invalid_spec_until_it_exists() -> None:
    spec = _spec(V1)
    spec["model"]["credentials"] = {"name": "hub", "key": "token"}
    kube = FakeKube(model_body(spec))
    reconciler = Reconciler(kube, clock=lambda: EPOCH)
    reconciler.reconcile("ml", "resnet50")
    job = _job(kube, V1)
    kube.children[("Job", job)]["status"] = {"active": 1}
    waiting = {"reason": "CreateContainerConfigError", "message": 'secret "hub" not found'}
    kube.pods.append(
        {
            "metadata": {"name": f"{job}-x", "labels": {"job-name": job}},
            "status": {"phase": "Pending", "containerStatuses": [{"state": {"waiting": waiting}}]},
        }
    )
    reconciler.reconcile("ml", "resnet50")
    status, reason, message = _ready(kube)
    assert (status, reason) == ("False", "InvalidSpec")
    assert message == (
        f"spec.model.credentials: Secret 'hub' not found in namespace ml: "
        f"cache-fill Job {job} waits for it"
    )
    kube.pods.clear()  # the Secret was created: the kubelet starts the fill
    reconciler.reconcile("ml", "resnet50")
    assert _ready(kube)[:2] == ("False", "CachingModel")
