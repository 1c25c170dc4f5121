"""e2e/run.sh: the kwok and real lanes on several pytest-xdist workers (a module per worker),
the exclusive lane alone and serial, each lane with its own namespace prefix and port span.

A stand-in pytest records each lane's arguments and environment, so no cluster is needed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")


def _run(
    tmp_path: Path, exit_codes: dict[str, int] | None = None, **env: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, dict[str, str]]]:
    """Run e2e/run.sh with a stand-in pytest; (the run, each lane's recorded call)."""
    calls = tmp_path / "calls"
    calls.mkdir()
    codes = exit_codes or {}
    fake = tmp_path / "pytest"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        "lane=${KINFER_E2E_SESSION%????}\n"
        f"out={calls}/$lane\n"
        'printf "args=%s\\nsession=%s\\nports=%s\\n" "$*" "$KINFER_E2E_SESSION" '
        '"$KINFER_E2E_PORTS" >"$out"\n'
        'echo "pytest output of $lane"\n'
        + "".join(f"[[ $lane == {lane} ]] && exit {rc}\n" for lane, rc in codes.items())
        + "exit 0\n"
    )
    fake.chmod(0o755)
    scrubbed = ("KINFER_E2E_KWOK_WORKERS", "KINFER_E2E_REAL_WORKERS", "KINFER_E2E_SESSION")
    base = {k: v for k, v in os.environ.items() if k not in scrubbed}
    run = subprocess.run(
        ["bash", str(REPO / "e2e" / "run.sh"), "-x"],
        env={**base, "PYTEST": str(fake), "CLUSTER_DIR": str(tmp_path / "cluster"), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    lanes = {}
    for path in calls.iterdir():
        lanes[path.name] = dict(
            line.split("=", 1) for line in path.read_text().splitlines() if "=" in line
        )
    return run, lanes


def _span(ports: str) -> range:
    first, last = (int(p) for p in ports.split("-"))
    return range(first, last + 1)


def test_kwok_and_real_lanes_run_on_workers_and_the_exclusive_lane_serially(
    tmp_path: Path,
) -> None:
    run, lanes = _run(tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert set(lanes) == {"kwok", "real", "exclusive"}
    kwok, real, exclusive = lanes["kwok"]["args"], lanes["real"]["args"], lanes["exclusive"]["args"]
    assert "-n 0 --dist loadfile" in kwok and "not exclusive and not real_node" in kwok
    assert "-n 0 --dist loadfile" in real and "real_node and not exclusive" in real
    assert "-n " not in exclusive and "-m exclusive" in exclusive
    for args in (kwok, real, exclusive):
        assert args.startswith("--durations=0 --durations-min=1.0 -x ")  # run.sh's own args
    sessions = {lane["session"] for lane in lanes.values()}
    assert len(sessions) == 3  # a namespace prefix per lane
    spans = [set(_span(lane["ports"])) for lane in lanes.values()]
    assert not (spans[0] & spans[1] or spans[0] & spans[2] or spans[1] & spans[2])
    ephemeral = Path("/proc/sys/net/ipv4/ip_local_port_range")
    low = int(ephemeral.read_text().split()[0]) if ephemeral.exists() else 32768
    assert max(max(s) for s in spans) < min(low, 30000)  # nor the kernel's, nor NodePorts
    for name in ("kwok", "real", "exclusive"):
        assert f"===== e2e lane {name} =====\npytest output of {name}" in run.stdout


def test_worker_counts_come_from_the_environment(tmp_path: Path) -> None:
    run, lanes = _run(tmp_path, KINFER_E2E_KWOK_WORKERS="5", KINFER_E2E_REAL_WORKERS="0")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "-n 5 --dist loadfile" in lanes["kwok"]["args"]
    assert "-n 0 --dist loadfile" in lanes["real"]["args"]  # xdist's -n 0: one process


@pytest.mark.parametrize(("lane", "rc", "expected"), [("real", 1, 1), ("kwok", 5, 0)])
def test_a_failing_lane_fails_the_run_and_an_empty_one_does_not(
    tmp_path: Path, lane: str, rc: int, expected: int
) -> None:
    run, lanes = _run(tmp_path, {lane: rc})
    assert run.returncode == expected, run.stdout + run.stderr
    assert set(lanes) == {"kwok", "real", "exclusive"}  # every lane still runs
    summary = (tmp_path / "cluster" / "e2e-logs" / "lanes.txt").read_text()
    assert f"rc={1 if expected else 0}" in next(
        line for line in summary.splitlines() if f" {lane} " in line
    )
