"""The cache-fill Job builder and the runtime pod's cache mount."""

from __future__ import annotations

import pytest
from kinfer_operator.children import build_deployment
from kinfer_operator.children.modelcache import build_fill_job
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import revision_of
from pydantic import ValidationError
from support.factories import model_body

SHA = "c" * 64


def _model(**cache: object) -> InferenceModel:
    spec = {"model": {"sha256": SHA, "cache": {"claimName": "models", **cache}}}
    return InferenceModel.from_body(model_body(spec))


def test_fill_job_writes_the_models_own_directory_and_is_owned() -> None:
    job = build_fill_job(_model(), keep={"k" * 32})
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["command"] == ["kinfer-runtime", "fill-cache"]
    assert env["KINFER_SHARED_CACHE_DIR"] == "/var/cache/kinfer-shared/resnet50"
    assert env["KINFER_CACHE_KEEP"] == ",".join(sorted({"k" * 32, SHA[:32]}))
    assert "KINFER_CACHE_MAX_BYTES" not in env
    assert pod["volumes"][1]["persistentVolumeClaim"] == {"claimName": "models"}
    assert job["metadata"]["ownerReferences"][0]["kind"] == "InferenceModel"
    assert job["metadata"]["name"] == f"resnet50-cache-{SHA[:10]}"
    assert pod["automountServiceAccountToken"] is False  # reports progress through its log
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_fill_job_has_requests_and_limits_and_a_bounded_tmp_by_default() -> None:
    pod = build_fill_job(_model(), keep=set())["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # Both sides of cpu and memory: a ResourceQuota that requires them admits the Job.
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    assert pod["volumes"][0] == {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}


def test_fill_resources_from_the_spec_override_each_default_they_name() -> None:
    model = _model(fillResources={"requests": {"cpu": "500m"}, "limits": {"memory": "4Gi"}})
    resources = build_fill_job(model, keep=set())["spec"]["template"]["spec"]["containers"][0][
        "resources"
    ]
    assert resources == {
        "requests": {"cpu": "500m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "4Gi"},
    }


def test_a_request_raised_above_the_default_limit_raises_the_limit_with_it() -> None:
    model = _model(fillResources={"requests": {"memory": "2Gi", "cpu": "2"}})
    resources = build_fill_job(model, keep=set())["spec"]["template"]["spec"]["containers"][0][
        "resources"
    ]
    assert resources["limits"] == {"cpu": "2", "memory": "2Gi"}


def test_the_fill_jobs_tmp_follows_the_runtime_scratch_setting() -> None:
    spec = {
        "model": {"sha256": SHA, "cache": {"claimName": "models"}},
        "runtime": {"scratch": {"tmp": "300Mi"}},
    }
    job = build_fill_job(InferenceModel.from_body(model_body(spec)), keep=set())
    assert job["spec"]["template"]["spec"]["volumes"][0]["emptyDir"] == {"sizeLimit": "300Mi"}


def test_changing_the_fill_resources_starts_no_rollout() -> None:
    changed = _model(fillResources={"limits": {"memory": "4Gi"}})
    assert revision_of(changed) == revision_of(_model())


def test_changing_the_size_limit_starts_no_rollout() -> None:
    assert revision_of(_model(maxSize="1Gi")) == revision_of(_model(maxSize="2Gi"))
    assert revision_of(_model()) != revision_of(InferenceModel.from_body(model_body()))


def test_runtime_pods_mount_the_cache_read_only_and_know_its_key() -> None:
    dep = build_deployment(_model(), "stable")
    pod = dep["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "model-shared-cache")
    assert volume["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["KINFER_SHARED_CACHE_DIR"] == "/var/cache/kinfer-shared/resnet50"
    assert dep["metadata"]["annotations"]["serving.kinfer.io/cache-key"] == SHA[:32]


def test_cache_without_a_pinned_http_source_is_refused() -> None:
    body = model_body({"model": {"cache": {"claimName": "models"}}})
    with pytest.raises(ValidationError, match="needs an http"):
        InferenceModel.from_body(body)
