"""Fixtures for operator unit tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kinfer_operator.model import InferenceModel
from support.factories import model_body


@pytest.fixture
def make_model() -> Callable[..., InferenceModel]:
    """make_model(spec_overrides) -> InferenceModel, starting from the issue's example."""

    def make(spec: dict[str, Any] | None = None, **meta: Any) -> InferenceModel:
        return InferenceModel.from_body(model_body(spec, **meta))

    return make
