"""After `make cluster-down`: the host is as it was before `make cluster`.

The snapshot (e2e/node/hostcheck.py) was taken before the control plane and the real node
started; .ci/phases.sh runs this directory alone, after teardown, with
KINFER_HOSTCHECK_SNAPSHOT naming it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path
from types import ModuleType

import pytest


def _load_hostcheck() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "node" / "hostcheck.py"
    spec = importlib.util.spec_from_file_location("hostcheck", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hostcheck = _load_hostcheck()


@pytest.fixture(scope="module")
def differences() -> list[str]:
    before = json.loads(Path(os.environ["KINFER_HOSTCHECK_SNAPSHOT"]).read_text())
    return list(hostcheck.differences(before, hostcheck.snapshot()))


@pytest.mark.parametrize(
    "kind",
    [
        "processes",
        "mounts",
        "links",
        "addresses",
        "routes",
        "iptables",
        "nftables",
        "sysctl",
        "cgroups",
        "paths",
    ],
)
def test_teardown_left_nothing_behind(differences: list[str], kind: str) -> None:
    left = [d for d in differences if d.startswith(kind)]
    assert not left, "\n".join(left)


def test_the_check_sees_a_leftover() -> None:
    """The check can fail: a link made now shows as left behind (and is removed again)."""
    before = hostcheck.snapshot()
    subprocess.run(["ip", "link", "add", "kinfer-hc0", "type", "bridge"], check=True)
    try:
        found = hostcheck.differences(before, hostcheck.snapshot())
    finally:
        subprocess.run(["ip", "link", "del", "kinfer-hc0"], check=True)
    assert "links: left behind: kinfer-hc0" in found
