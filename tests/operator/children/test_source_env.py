"""How pods and fill Jobs reach an object store: endpoint, region, keys from the Secret."""

from __future__ import annotations

import pytest
from kinfer_operator.children import build_deployment
from kinfer_operator.children.modelcache import build_fill_job
from kinfer_operator.model import InferenceModel
from kinfer_operator.references import references_of
from pydantic import ValidationError
from support.factories import model_body

S3 = {
    "uri": "s3://models/resnet/v3/model.onnx",
    "endpoint": "http://10.0.0.5:4568",
    "credentials": {"name": "store"},
    "sha256": "d" * 64,
}


def _env(obj: dict) -> dict[str, object]:
    container = obj["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_s3_keys_come_from_the_secret_in_pods_and_fill_jobs() -> None:
    model = InferenceModel.from_body(model_body({"model": {**S3, "cache": {"claimName": "c"}}}))
    for obj in (build_deployment(model, "stable"), build_fill_job(model, ())):
        env = _env(obj)
        assert env["KINFER_MODEL_ENDPOINT"] == "http://10.0.0.5:4568"
        assert env["KINFER_MODEL_REGION"] == "us-east-1"
        assert env["KINFER_MODEL_SECRET_ACCESS_KEY"] == {
            "secretKeyRef": {"name": "store", "key": "AWS_SECRET_ACCESS_KEY"}
        }
        assert "KINFER_MODEL_AUTH_HEADER" not in env
    # The Secret is never read by the operator: only the cache claim is checked up front.
    assert [(r.kind, r.name) for r in references_of(model)] == [("PersistentVolumeClaim", "c")]


def test_azure_account_and_key_come_from_the_secret() -> None:
    azure = {
        "uri": "azure://models/resnet/model.onnx",
        "endpoint": "http://10.0.0.5:10000/devstoreaccount1",
        "credentials": {"name": "store"},
    }
    model = InferenceModel.from_body(model_body({"model": azure}))
    env = _env(build_deployment(model, "stable"))
    assert env["KINFER_MODEL_ENDPOINT"] == "http://10.0.0.5:10000/devstoreaccount1"
    assert env["KINFER_MODEL_ACCESS_KEY_ID"] == {
        "secretKeyRef": {"name": "store", "key": "AZURE_STORAGE_ACCOUNT"}
    }
    assert env["KINFER_MODEL_SECRET_ACCESS_KEY"] == {
        "secretKeyRef": {"name": "store", "key": "AZURE_STORAGE_KEY"}
    }
    assert references_of(model) == []  # the kubelet reports a missing Secret or key


def test_http_credentials_stay_an_authorization_header() -> None:
    model = InferenceModel.from_body(model_body({"model": {"credentials": {"name": "tok"}}}))
    env = _env(build_deployment(model, "stable"))
    assert env["KINFER_MODEL_AUTH_HEADER"] == {
        "secretKeyRef": {"name": "tok", "key": "authorization"}
    }
    assert "KINFER_MODEL_REGION" not in env


def test_endpoint_needs_a_url() -> None:
    with pytest.raises(ValidationError, match="endpoint"):
        InferenceModel.from_body(model_body({"model": {**S3, "endpoint": "not a url"}}))


def test_endpoint_may_carry_a_path_but_no_query() -> None:
    path = InferenceModel.from_body(
        model_body({"model": {**S3, "endpoint": "http://10.0.0.5:10000/devstoreaccount1"}})
    )
    assert path.spec.model.endpoint == "http://10.0.0.5:10000/devstoreaccount1"
    with pytest.raises(ValidationError, match="endpoint"):
        InferenceModel.from_body(model_body({"model": {**S3, "endpoint": "http://h/?x=1"}}))


ROLE = "arn:aws:iam::111122223333:role/models-reader"


def _volumes(obj: dict) -> dict[str, dict]:
    return {v["name"]: v for v in obj["spec"]["template"]["spec"]["volumes"]}


def _mounts(obj: dict) -> dict[str, dict]:
    container = obj["spec"]["template"]["spec"]["containers"][0]
    return {m["name"]: m for m in container["volumeMounts"]}


def test_web_identity_mounts_an_sts_token_and_names_the_role_in_pods_and_fill_jobs() -> None:
    source = {**S3, "cache": {"claimName": "c"}, "webIdentity": {"roleArn": ROLE}}
    del source["credentials"]
    body = model_body({"model": source, "runtime": {"serviceAccountName": "models"}})
    model = InferenceModel.from_body(body)
    for obj in (build_deployment(model, "stable"), build_fill_job(model, ())):
        env = _env(obj)
        assert env["AWS_ROLE_ARN"] == ROLE
        token_file = env["AWS_WEB_IDENTITY_TOKEN_FILE"]
        assert "KINFER_MODEL_SECRET_ACCESS_KEY" not in env
        [source_] = _volumes(obj)["web-identity"]["projected"]["sources"]
        assert source_["serviceAccountToken"]["audience"] == "sts.amazonaws.com"
        mount = _mounts(obj)["web-identity"]
        assert mount["readOnly"] and token_file == f"{mount['mountPath']}/token"
        # The token is the ServiceAccount's whose trust the role names: the same in both.
        assert obj["spec"]["template"]["spec"]["serviceAccountName"] == "models"


def test_irsa_needs_no_spec_the_fill_job_runs_as_the_pods_service_account() -> None:
    source = {**S3, "cache": {"claimName": "c"}}
    del source["credentials"]
    body = model_body({"model": source, "runtime": {"serviceAccountName": "irsa-models"}})
    job = build_fill_job(InferenceModel.from_body(body), ())
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "irsa-models"
    assert "web-identity" not in _volumes(job) and "AWS_ROLE_ARN" not in _env(job)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({**S3, "webIdentity": {"roleArn": ROLE}}, "not with credentials"),
        (
            {"uri": "gs://models/m.onnx", "webIdentity": {"roleArn": ROLE}},
            "only to s3://",
        ),
        ({"uri": "s3://models/m.onnx", "webIdentity": {"roleArn": "role/x"}}, "roleArn"),
    ],
)
def test_web_identity_is_s3_only_alone_and_a_role_arn(model: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        InferenceModel.from_body(model_body({"model": model}))
