"""Spec parsing: the examples are valid, and pydantic agrees with the schema's bounds."""

from __future__ import annotations

from pathlib import Path

import pytest
from kinfer_operator.api import InferenceModelSpec
from pydantic import ValidationError
from support.factories import EXAMPLES, load_example


@pytest.mark.parametrize("path", sorted(p.name for p in Path(EXAMPLES).glob("*.yaml")))
def test_every_example_parses(path: str) -> None:
    doc = load_example(path)
    assert doc["kind"] == "InferenceModel"
    InferenceModelSpec.model_validate(doc["spec"])


def test_unknown_field_is_rejected() -> None:
    spec = load_example("resnet-gpu.yaml")["spec"]
    spec["runtime"]["gpus"] = 1
    with pytest.raises(ValidationError, match="gpus"):
        InferenceModelSpec.model_validate(spec)


def test_defaults_fill_batching_and_format() -> None:
    spec = InferenceModelSpec.model_validate(
        {"model": {"uri": "file:///m.onnx", "version": "1"}, "runtime": {"image": "img"}}
    )
    assert spec.model.format == "onnx"
    assert spec.runtime.batching.max_batch_size == 32
    assert spec.gpu_count == 0
    assert spec.fixed_replicas == 1


def test_priority_levels_default_to_one_and_the_default_level_must_exist() -> None:
    base = {"model": {"uri": "file:///m.onnx", "version": "1"}, "runtime": {"image": "img"}}
    batching = InferenceModelSpec.model_validate(base).runtime.batching
    assert (batching.priority_levels, batching.default_priority_level) == (1, 1)
    base["runtime"]["batching"] = {"priorityLevels": 2, "defaultPriorityLevel": 3}  # type: ignore[index]
    with pytest.raises(ValidationError, match="at most priorityLevels"):
        InferenceModelSpec.model_validate(base)
