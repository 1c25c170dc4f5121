"""Fixtures for operator unit tests, and the Hypothesis settings of the fuzz tests:
deterministic and bounded in CI, long on request (KINFER_FUZZ_EXAMPLES=5000 runs that many
examples per property, with fresh random inputs on each run instead of the fixed,
derandomized ones CI replays).

Not a conftest.py at the top of tests/: `tests` is on sys.path, so one there would shadow
e2e/conftest.py for every `from conftest import ...` in the e2e suite.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from kinfer_operator.model import InferenceModel
from support.factories import model_body

_LONG = os.environ.get("KINFER_FUZZ_EXAMPLES")

settings.register_profile(
    "kinfer",
    max_examples=int(_LONG or 200),
    deadline=None,  # a whole reconcile pass per example; wall time depends on the machine
    derandomize=not _LONG,
    database=None,  # nothing written into the work tree
    # Specs are filtered through pydantic (rules the schema cannot express), so many are
    # dropped; the properties still see hundreds of accepted ones.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    print_blob=True,
)
settings.load_profile("kinfer")


@pytest.fixture
def make_model() -> Callable[..., InferenceModel]:
    """make_model(spec_overrides) -> InferenceModel, starting from the issue's example."""

    def make(spec: dict[str, Any] | None = None, **meta: Any) -> InferenceModel:
        return InferenceModel.from_body(model_body(spec, **meta))

    return make
