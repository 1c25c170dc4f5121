"""The runtime's test-only knob for the warm-up e2e case (KINFER_TEST_SLOW_START_S)."""

import time
from collections.abc import Mapping

import numpy as np
import pytest
from kinfer_runtime import service


@pytest.mark.parametrize(
    ("value", "seconds"), [(None, 0.0), ("", 0.0), ("10", 10.0), ("-3", 0.0), ("x", 0.0)]
)
def test_the_slow_start_knob_reads_seconds_and_ignores_anything_else(
    value: str | None, seconds: float
) -> None:
    environ = {} if value is None else {service.TEST_SLOW_START_ENV: value}
    assert service._test_slow_start_s(environ) == seconds


def test_a_slow_start_delays_calls_inside_its_window_only(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    calls: list[Mapping[str, np.ndarray]] = []

    def infer(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(inputs)
        return {"out": np.zeros(1)}

    slow = service._slow_start(infer, 3600)
    slow({"x": np.zeros(1)})
    over = service._slow_start(infer, 0)
    over({"x": np.zeros(1)})
    assert slept == [service.TEST_SLOW_START_DELAY_S]
    assert len(calls) == 2
