"""The operator and the runtime agree on the environment variables that configure a pod."""

from __future__ import annotations

import argparse

from kinfer_operator import runtime_contract as rc
from kinfer_runtime.config import ENV, Settings, add_serve_arguments, settings_from_args
from kinfer_runtime.routes.inference import PINNED_MARKER_HEADER


def test_every_variable_the_operator_sets_is_one_the_runtime_reads() -> None:
    assert set(rc.ALL_ENV) <= set(ENV.values())


def test_the_runtime_reads_every_otel_variable_the_operator_sets() -> None:
    from kinfer_runtime.tracing import OTEL_ENV

    assert set(rc.OTEL_ENV) == set(OTEL_ENV)


def test_cache_fill_variables_and_progress_lines_match_the_fill_command() -> None:
    from kinfer_runtime import cachefill

    assert set(rc.FILL_ENV) <= set(cachefill.FILL_ENV)
    assert rc.PROGRESS_PREFIX == cachefill.PROGRESS_PREFIX


def test_the_route_sets_the_pinned_marker_the_runtime_reads() -> None:
    assert rc.PINNED_MARKER_HEADER == PINNED_MARKER_HEADER


def test_the_classified_port_is_the_runtimes_default() -> None:
    # The operator sets it explicitly too; the default only matters for a hand-run runtime.
    assert Settings(model_uri="m", model_name="m").classified_port == rc.CLASSIFIED_PORT


def test_operator_values_reach_the_runtime_settings() -> None:
    env = {
        rc.ENV_MODEL_URI: "file:///m/model.onnx",
        rc.ENV_MODEL_NAME: "resnet50",
        rc.ENV_MODEL_VERSION: "3",
        rc.ENV_MODEL_FORMAT: "onnx",
        rc.ENV_PORT: str(rc.HTTP_PORT),
        rc.ENV_GRPC_PORT: str(rc.GRPC_PORT),
        rc.ENV_METRICS_PORT: str(rc.METRICS_PORT),
        rc.ENV_CLASSIFIED_PORT: str(rc.CLASSIFIED_PORT),
        rc.ENV_MAX_BATCH_SIZE: "8",
        rc.ENV_MAX_QUEUE_DELAY_US: "500",
        rc.ENV_MAX_QUEUE_SIZE: "64",
        rc.ENV_PRIORITY_LEVELS: "3",
        rc.ENV_DEFAULT_PRIORITY: "2",
        rc.ENV_LOWER_PRIORITY_MAX_BATCH_SIZE: "4",
        rc.ENV_HANDLER_THREADS: "6",
        rc.ENV_DEVICE: "cpu",
        rc.ENV_TORCH_DTYPE: "fp16",
        rc.ENV_REVISION: "abc123",
        rc.ENV_GRPC_MAX_CONNECTION_AGE_S: "60",
        rc.ENV_GRPC_MAX_CONNECTION_AGE_GRACE_S: "10",
        rc.ENV_WARMUP_WINDOW_S: "15",
    }
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser, env)
    settings = settings_from_args(parser.parse_args([]), env)
    assert (settings.model_name, settings.model_version, settings.revision) == (
        "resnet50",
        "3",
        "abc123",
    )
    assert (settings.port, settings.grpc_port, settings.metrics_port) == (
        rc.HTTP_PORT,
        rc.GRPC_PORT,
        rc.METRICS_PORT,
    )
    assert settings.classified_port == rc.CLASSIFIED_PORT
    assert (settings.priority_levels, settings.default_priority) == (3, 2)
    assert settings.lower_priority_max_batch_size == 4
    assert settings.handler_threads == 6
    assert (settings.max_batch_size, settings.max_queue_delay_us, settings.max_queue_size) == (
        8,
        500,
        64,
    )
    assert (settings.device, settings.torch_dtype) == ("cpu", "fp16")
    assert (settings.grpc_max_connection_age_s, settings.grpc_max_connection_age_grace_s) == (
        60,
        10,
    )
    assert settings.warmup_window_s == 15
