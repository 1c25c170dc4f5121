"""Revision hashes: what starts a rollout and what does not."""

from __future__ import annotations

from collections.abc import Callable

from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import revision_of

MakeModel = Callable[..., InferenceModel]


def test_scaling_does_not_change_the_revision(make_model: MakeModel) -> None:
    assert revision_of(make_model({"replicas": 2})) == revision_of(make_model({"replicas": 7}))


def test_autoscaling_does_not_change_the_revision(make_model: MakeModel) -> None:
    fixed = make_model()
    scaled = make_model({"replicas": None, "autoscaling": {"maxReplicas": 4}})
    assert revision_of(fixed) == revision_of(scaled)


def test_model_version_changes_the_revision(make_model: MakeModel) -> None:
    assert revision_of(make_model()) != revision_of(make_model({"model": {"version": "4"}}))


def test_runtime_template_changes_the_revision(make_model: MakeModel) -> None:
    base = make_model()
    assert revision_of(base) != revision_of(make_model({"runtime": {"image": "other:1"}}))


def test_explicit_default_equals_omitted_default(make_model: MakeModel) -> None:
    explicit = make_model({"model": {"format": "onnx"}, "runtime": {"precision": "fp32"}})
    assert revision_of(explicit) == revision_of(make_model())


def test_reverting_the_spec_restores_the_revision(make_model: MakeModel) -> None:
    before = revision_of(make_model())
    make_model({"model": {"version": "4"}})
    assert revision_of(make_model()) == before
