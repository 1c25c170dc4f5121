"""CI cannot lose the real lane silently: `.ci/run` requires the real node, and with that
requirement a missing node makes the real-lane e2e cases error instead of skip.

The e2e suite runs here in a subprocess against a stand-in `kubectl` that lists no nodes,
so no cluster is needed; the stand-in logs its calls, which shows that nothing else (CRDs,
the operator) was set up before the verdict.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REAL_LANE_MODULE = "e2e/test_real_failures.py"
HOST_SERVICES_MODULE = "e2e/test_canary.py"
_SCRUBBED = ("CI", "KINFER_REAL_NODE", "KINFER_E2E_CLUSTER", "KINFER_E2E_OPERATOR")


def _stand_in(tmp_path: Path, name: str, body: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / name
    tool.write_text(f"#!/bin/sh\n{body}\n")
    tool.chmod(0o755)
    return bin_dir


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    bin_dir = _stand_in(
        tmp_path, "kubectl", f'echo "$*" >> {tmp_path}/kubectl.log\necho \'{{"items": []}}\''
    )
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    env["KUBECONFIG"] = str(tmp_path / "kubeconfig")
    return {**env, **extra}


def _e2e(tmp_path: Path, *modules: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", *modules, "-p", "no:cacheprovider", "-q", "-rs"],
        cwd=REPO,
        env=_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _kubectl_calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "kubectl.log"
    return log.read_text().splitlines() if log.exists() else []


def test_missing_real_node_is_an_error_when_the_real_node_is_required(tmp_path: Path) -> None:
    run = _e2e(tmp_path, REAL_LANE_MODULE, KINFER_REAL_NODE="1")
    assert run.returncode != 0, run.stdout
    assert " error" in run.stdout and "skipped" not in run.stdout, run.stdout
    assert "no Ready real node" in run.stdout
    assert _kubectl_calls(tmp_path), "the real node was never looked for"
    assert all(c.startswith("get nodes -l node.kinfer.io/real") for c in _kubectl_calls(tmp_path))


def test_missing_real_node_skips_when_not_required(tmp_path: Path) -> None:
    run = _e2e(tmp_path, REAL_LANE_MODULE)
    assert run.returncode == 0, run.stdout
    assert "skipped" in run.stdout and "error" not in run.stdout, run.stdout
    assert "no Ready real node" in run.stdout


def test_own_cluster_skips_cases_needing_the_local_cluster_with_the_reason(
    tmp_path: Path,
) -> None:
    run = _e2e(
        tmp_path,
        REAL_LANE_MODULE,
        HOST_SERVICES_MODULE,
        KINFER_E2E_CLUSTER="own",
        KINFER_REAL_NODE="1",
    )
    assert run.returncode == 0, run.stdout
    assert "passed" not in run.stdout and "error" not in run.stdout, run.stdout
    assert "own cluster: needs the local cluster's real node" in run.stdout
    assert "own cluster: needs a Prometheus on this host" in run.stdout
    assert _kubectl_calls(tmp_path) == []


def test_unknown_cluster_mode_is_refused_by_name(tmp_path: Path) -> None:
    run = _e2e(tmp_path, REAL_LANE_MODULE, KINFER_E2E_CLUSTER="kind")
    assert run.returncode != 0
    assert "KINFER_E2E_CLUSTER='kind'" in run.stdout + run.stderr


@pytest.mark.skipif(not (REPO / ".ci" / "run").exists(), reason="no .ci/run")
def test_ci_entry_point_requires_the_real_node(tmp_path: Path) -> None:
    out = tmp_path / "make-env"
    bin_dir = _stand_in(tmp_path, "make", f'echo "$* KINFER_REAL_NODE=$KINFER_REAL_NODE" > {out}')
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    subprocess.run(["bash", str(REPO / ".ci" / "run")], env=env, check=True, timeout=30)
    assert out.read_text().split() == ["test", "KINFER_REAL_NODE=1"]
