"""Every flag comes from a KINFER_* variable with exactly the name the operator sets."""

import argparse
from pathlib import Path

import pytest
from kinfer_runtime.config import ENV, Settings, add_serve_arguments, settings_from_args

OPERATOR_CONTRACT = {
    "KINFER_MODEL_URI",
    "KINFER_MODEL_NAME",
    "KINFER_MODEL_VERSION",
    "KINFER_MODEL_FORMAT",
    "KINFER_MODEL_SHA256",
    "KINFER_MODEL_CACHE_DIR",
    "KINFER_MODEL_AUTH_HEADER",
    "KINFER_PORT",
    "KINFER_GRPC_PORT",
    "KINFER_METRICS_PORT",
    "KINFER_CLASSIFIED_PORT",
    "KINFER_MAX_BATCH_SIZE",
    "KINFER_MAX_QUEUE_DELAY_US",
    "KINFER_MAX_QUEUE_SIZE",
    "KINFER_PRIORITY_LEVELS",
    "KINFER_DEFAULT_PRIORITY",
    "KINFER_REQUEST_TIMEOUT_S",
    "KINFER_MAX_BODY_BYTES",
    "KINFER_DEVICE",
    "KINFER_TORCH_DTYPE",
    "KINFER_REVISION",
}


def parse(argv: list[str], environ: dict[str, str]) -> Settings:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser, environ)
    return settings_from_args(parser.parse_args(argv), environ)


FULL_ENV = {
    "KINFER_MODEL_URI": "https://models.example/m.onnx",
    "KINFER_MODEL_NAME": "resnet",
    "KINFER_MODEL_VERSION": "7",
    "KINFER_MODEL_FORMAT": "onnx",
    "KINFER_MODEL_SHA256": "A" * 64,
    "KINFER_MODEL_CACHE_DIR": "/cache",
    "KINFER_MODEL_AUTH_HEADER": "Bearer t0ken",
    "KINFER_PORT": "8081",
    "KINFER_METRICS_PORT": "9091",
    "KINFER_GRPC_PORT": "8082",
    "KINFER_CLASSIFIED_PORT": "8092",
    "KINFER_PRIORITY_LEVELS": "4",
    "KINFER_DEFAULT_PRIORITY": "3",
    "KINFER_LOWER_PRIORITY_MAX_BATCH_SIZE": "2",
    "KINFER_HANDLER_THREADS": "3",
    "KINFER_HANDLER": "pkg.mod:Handler",
    "KINFER_MAX_BATCH_SIZE": "32",
    "KINFER_MAX_QUEUE_DELAY_US": "500",
    "KINFER_MAX_QUEUE_SIZE": "64",
    "KINFER_REQUEST_TIMEOUT_S": "2.5",
    "KINFER_MAX_BODY_BYTES": "1000",
    "KINFER_DEVICE": "cpu",
    "KINFER_TORCH_DTYPE": "bf16",
    "KINFER_REVISION": "abc123",
    "KINFER_DRAIN_DELAY_S": "0.5",
}


def test_operator_variables_are_all_read() -> None:
    assert set(ENV.values()) >= OPERATOR_CONTRACT


def test_environment_alone_configures_everything() -> None:
    s = parse([], FULL_ENV)
    assert (s.model_uri, s.model_name, s.model_version) == (
        "https://models.example/m.onnx",
        "resnet",
        "7",
    )
    assert s.model_format == "onnx"
    assert s.model_sha256 == "a" * 64
    assert s.model_cache_dir == Path("/cache")
    assert s.model_auth_header == "Bearer t0ken"
    assert (s.port, s.metrics_port, s.grpc_port, s.classified_port) == (8081, 9091, 8082, 8092)
    assert (s.priority_levels, s.default_priority, s.lower_priority_max_batch_size) == (4, 3, 2)
    assert (s.max_batch_size, s.max_queue_delay_us, s.max_queue_size) == (32, 500, 64)
    assert (s.request_timeout_s, s.max_body_bytes) == (2.5, 1000)
    assert (s.device, s.torch_dtype, s.revision, s.drain_delay_s) == ("cpu", "bf16", "abc123", 0.5)
    assert (s.handler, s.handler_threads) == ("pkg.mod:Handler", 3)


def test_flags_override_the_environment() -> None:
    s = parse(["--model-name", "other", "--max-batch-size", "4", "--device", "cuda"], FULL_ENV)
    assert (s.model_name, s.max_batch_size, s.device) == ("other", 4, "cuda")


def test_defaults() -> None:
    s = parse(["--model-uri", "m.onnx", "--model-name", "m"], {})
    assert (s.port, s.metrics_port, s.model_version, s.revision) == (8080, 9090, "1", "")
    assert (s.grpc_port, s.priority_levels, s.default_priority) == (8081, 1, 1)
    assert s.classified_port == 8090
    assert s.lower_priority_max_batch_size == 0  # auto: 1 on a CPU, no cap on a GPU
    assert s.model_format is None and s.model_auth_header is None
    assert s.termination_log == Path("/dev/termination-log")


def test_empty_variables_count_as_unset() -> None:
    s = parse(
        [],
        {
            "KINFER_MODEL_URI": "m.onnx",
            "KINFER_MODEL_NAME": "m",
            "KINFER_MODEL_SHA256": "",
            "KINFER_PORT": "",
        },
    )
    assert s.model_sha256 is None and s.port == 8080


def test_model_uri_and_name_are_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse([], {})
    assert "--model-uri" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("KINFER_PORT", "http"),
        ("KINFER_MAX_BATCH_SIZE", "0"),
        ("KINFER_MODEL_SHA256", "xyz"),
        ("KINFER_REQUEST_TIMEOUT_S", "-1"),
        ("KINFER_MAX_QUEUE_DELAY_US", "-5"),
        ("KINFER_CLASSIFIED_PORT", "70000"),
        ("KINFER_CLASSIFIED_PORT", "-1"),
    ],
)
def test_invalid_variable_is_rejected_naming_it(
    variable: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse([], {"KINFER_MODEL_URI": "m.onnx", "KINFER_MODEL_NAME": "m", variable: value})
    assert variable in capsys.readouterr().err


def test_auth_header_is_environment_only_and_never_printed() -> None:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser, {})
    assert "--model-auth-header" not in parser.format_help()
    assert "t0ken" not in repr(parse([], FULL_ENV))


def test_default_priority_must_be_one_of_the_levels() -> None:
    env = {"KINFER_MODEL_URI": "m.onnx", "KINFER_MODEL_NAME": "m", "KINFER_PRIORITY_LEVELS": "2"}
    with pytest.raises(ValueError, match="KINFER_DEFAULT_PRIORITY"):
        parse(["--default-priority", "3"], env)
    assert parse(["--default-priority", "2"], env).default_priority == 2


@pytest.mark.parametrize("shared", ["KINFER_PORT", "KINFER_GRPC_PORT", "KINFER_METRICS_PORT"])
def test_the_classified_port_must_be_a_port_of_its_own(shared: str) -> None:
    # On a shared port, clients of the public API could set the shadow and pinned markers.
    env = {"KINFER_MODEL_URI": "m.onnx", "KINFER_MODEL_NAME": "m", shared: "8090"}
    with pytest.raises(ValueError, match=f"KINFER_CLASSIFIED_PORT 8090 is also {shared}"):
        parse([], env)
    assert parse([], env | {"KINFER_CLASSIFIED_PORT": "0"}).classified_port == 0
