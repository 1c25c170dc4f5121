"""The command line: demo-model, and how `serve` fails when the model cannot be served."""

import socket
from pathlib import Path

import pytest
from kinfer_runtime.cli import main


def test_demo_model_writes_the_requested_variant(tmp_path: Path, capsys) -> None:
    assert main(["demo-model", "--out", str(tmp_path), "--variant", "slow", "--onnx-only"]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "model.onnx")]
    assert (tmp_path / "model.onnx").stat().st_size > 1_000_000


def test_unknown_variant_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo-model", "--out", str(tmp_path), "--variant", "fast"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("broken", "onnxruntime cannot load model.onnx"),
        ("sha256", "sha256 mismatch"),
        ("missing", "does not exist"),
    ],
)
def test_model_that_cannot_be_served_exits_1_with_one_line_reason_and_termination_log(
    case: str, reason: str, variant_dir, demo_dir: Path, server_process, tmp_path: Path
) -> None:
    uri = {
        "broken": variant_dir("broken") / "model.onnx",
        "sha256": demo_dir / "model.onnx",
        "missing": tmp_path / "absent.onnx",
    }[case]
    log = tmp_path / "termination-log"
    env = {
        "KINFER_MODEL_URI": str(uri),
        "KINFER_MODEL_NAME": "demo",
        "KINFER_TERMINATION_LOG": str(log),
    }
    if case == "sha256":
        env["KINFER_MODEL_SHA256"] = "0" * 64
    process = server_process(env).process
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    lines = [line for line in stderr.splitlines() if line.startswith("kinfer-runtime: error:")]
    assert len(lines) == 1, stderr
    assert f"cannot serve model 'demo' from {uri}" in lines[0]
    assert reason in lines[0]
    assert log.read_text() == lines[0]


@pytest.mark.parametrize("variable", ["KINFER_PORT", "KINFER_CLASSIFIED_PORT"])
def test_port_already_in_use_exits_1_naming_it(
    variable: str, demo_dir: Path, server_process, tmp_path
):
    log = tmp_path / "termination-log"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            "KINFER_MODEL_URI": str(demo_dir / "model.onnx"),
            "KINFER_MODEL_NAME": "demo",
            "KINFER_TERMINATION_LOG": str(log),
            variable: str(port),
        }
        server = server_process(env)
        _, stderr = server.process.communicate(timeout=60)
    assert server.process.returncode == 1
    assert f"kinfer-runtime: error: cannot listen on 127.0.0.1:{port}" in stderr
    assert log.read_text() == f"kinfer-runtime: error: cannot listen on 127.0.0.1:{port}"
