"""The runtime's test-only knobs: the warm-up e2e case's (KINFER_TEST_SLOW_START_S) and the
least-queue bench's slow replica (KINFER_TEST_SLOWDOWN)."""

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


@pytest.mark.parametrize(
    ("value", "factor"),
    [
        (None, 1.0),
        ("", 1.0),
        ("2", 2.0),
        ("1.5", 1.5),
        ("0.5", 1.0),
        ("-2", 1.0),
        ("x", 1.0),
        ("nan", 1.0),
        ("inf", 1.0),
    ],
)
def test_the_slowdown_knob_reads_a_factor_of_at_least_one_and_ignores_anything_else(
    value: str | None, factor: float
) -> None:
    environ = {} if value is None else {service.TEST_SLOWDOWN_ENV: value}
    assert service._test_slowdown(environ) == factor


def test_a_slowdown_sleeps_factor_minus_one_times_each_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = iter([10.0, 10.5, 20.0, 20.25])  # calls of 0.5 s and 0.25 s
    monkeypatch.setattr(time, "perf_counter", lambda: next(clock))
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    out = {"out": np.ones(1)}

    def infer(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return out

    half_speed = service._slowed_down(infer, 2.0)
    assert half_speed({"x": np.zeros(1)}) is out
    third_speed = service._slowed_down(infer, 3.0)
    assert third_speed({"x": np.zeros(1)}) is out
    assert slept == [0.5, 0.5]
