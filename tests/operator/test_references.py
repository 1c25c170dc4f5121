"""Referenced objects: PVCs are checked up front; a missing credentials Secret or key is read
from the kubelet's message, since the operator may not read Secrets."""

from __future__ import annotations

from collections.abc import Callable

from kinfer_operator.model import InferenceModel
from kinfer_operator.references import references_of, secret_problem

MakeModel = Callable[..., InferenceModel]
HUB = {"model": {"credentials": {"name": "hub", "key": "token"}}}


def test_a_missing_secret_names_the_field_and_the_namespace(make_model: MakeModel) -> None:
    model = make_model(HUB)
    assert secret_problem(model, 'secret "hub" not found') == (
        "spec.model.credentials: Secret 'hub' not found in namespace ml"
    )


def test_a_missing_key_names_the_field_the_secret_and_the_key(make_model: MakeModel) -> None:
    model = make_model(HUB)
    assert secret_problem(model, "couldn't find key token in Secret ml/hub") == (
        "spec.model.credentials: Secret 'hub' has no key 'token'"
    )


def test_a_secret_the_spec_does_not_name_is_reported_without_a_field(
    make_model: MakeModel,
) -> None:
    assert secret_problem(make_model(HUB), 'secret "other" not found') == (
        "Secret 'other' not found in namespace ml"
    )


def test_config_errors_not_about_a_secret_are_not_secret_problems(make_model: MakeModel) -> None:
    model = make_model(HUB)
    assert secret_problem(model, "container has runAsNonRoot and image will run as root") is None
    assert secret_problem(model, 'configmap "x" not found') is None
    assert secret_problem(model, None) is None


def test_secrets_are_not_checked_up_front_only_claims(make_model: MakeModel) -> None:
    model = make_model(
        {"model": {"uri": "pvc://weights/resnet.onnx", "credentials": {"name": "hub"}}}
    )
    assert [(r.kind, r.name, r.field) for r in references_of(model)] == [
        ("PersistentVolumeClaim", "weights", "spec.model.uri")
    ]
