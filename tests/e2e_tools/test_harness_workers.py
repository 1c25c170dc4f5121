"""e2e/harness.py under pytest-xdist: each worker its own block of the lane's host ports, and
shared setup (the CRDs) done once per lane whatever the number of workers."""

from __future__ import annotations

import importlib.util
import socket
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _harness(monkeypatch: pytest.MonkeyPatch, **env: str) -> ModuleType:
    """A fresh e2e/harness.py, imported under `env` (it reads its port block at import)."""
    for key in ("KINFER_E2E_PORTS", "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location("e2e_harness", REPO / "e2e" / "harness.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "e2e_harness", module)
    spec.loader.exec_module(module)
    return module


def test_each_worker_gets_its_own_block_of_the_lane_span(monkeypatch: pytest.MonkeyPatch) -> None:
    harness = _harness(monkeypatch)
    blocks = [harness.worker_ports("20000-23999", f"gw{i}", 3) for i in range(3)]
    assert blocks == [range(20000, 21333), range(21333, 22666), range(22666, 23999)]
    assert harness.worker_ports("20000-23999", None, 1) == range(20000, 24000)
    assert harness.worker_ports(None, "gw1", 2) is None
    with pytest.raises(ValueError, match="cannot give worker gw3"):
        harness.worker_ports("20000-20001", "gw3", 4)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _quiet_span(width: int) -> int:
    """The first port of `width` ports in a row that nothing on this host uses now."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + width < 65536 and all(_bindable(p) for p in range(base, base + width)):
            return base
    raise AssertionError("no run of free ports on this host")


def test_free_port_hands_out_the_worker_block_in_turn_skipping_bound_ports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = _quiet_span(8)
    harness = _harness(
        monkeypatch,
        KINFER_E2E_PORTS=f"{base}-{base + 7}",
        PYTEST_XDIST_WORKER="gw1",
        PYTEST_XDIST_WORKER_COUNT="2",
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base + 5))
        taken.listen()
        got = [harness.free_port() for _ in range(4)]
    # gw1's block is the upper half; the port in use is skipped; then the block starts over.
    assert got == [base + 4, base + 6, base + 7, base + 4]


def test_free_port_without_a_span_lets_the_kernel_choose(monkeypatch: pytest.MonkeyPatch) -> None:
    harness = _harness(monkeypatch)
    port = harness.free_port()
    assert 0 < port < 65536


def test_once_per_run_runs_the_action_once_for_all_workers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    harness = _harness(monkeypatch)
    calls: list[int] = []

    def install() -> None:
        calls.append(1)
        time.sleep(0.2)  # the others wait on the lock meanwhile, then find it done

    workers = [
        threading.Thread(target=harness.once_per_run, args=(tmp_path, "crds", install))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert calls == [1]
    assert (tmp_path / "crds.done").exists()


def test_once_per_run_tries_again_after_a_failed_action(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    harness = _harness(monkeypatch)
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise RuntimeError("API server down")

    for _ in range(2):
        with pytest.raises(RuntimeError, match="API server down"):
            harness.once_per_run(tmp_path, "crds", broken)
    assert calls == [1, 1] and not (tmp_path / "crds.done").exists()
