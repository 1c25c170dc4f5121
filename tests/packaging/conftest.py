"""Fixtures for the packaging tests: rendering the Helm chart, finding the repository files.

helm comes from PATH or from the pinned control-plane binaries (`make binaries`). Without it
the chart tests skip and say why, unless KINFER_REQUIRE_HELM=1 (the chart-check phase) makes
a missing helm a failure.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kinfer"

Render = Callable[..., list[dict[str, Any]]]


def _pinned_k8s_version() -> str:
    for line in (REPO / "e2e" / "tools" / "versions.env").read_text().splitlines():
        if line.startswith("K8S_VERSION="):
            return line.partition("=")[2].strip()
    raise AssertionError("K8S_VERSION missing from e2e/tools/versions.env")


def find_helm() -> str | None:
    """helm on PATH, else the one `make binaries` built."""
    found = shutil.which("helm")
    if found:
        return found
    cache = Path(os.environ.get("KINFER_CACHE", Path.home() / ".cache" / "kinfer"))
    pinned = cache / f"k8s-{_pinned_k8s_version()}" / "bin" / "helm"
    return str(pinned) if pinned.exists() else None


@pytest.fixture(scope="session")
def helm() -> str:
    path = find_helm()
    if path is None:
        if os.environ.get("KINFER_REQUIRE_HELM") == "1":
            pytest.fail("helm not found on PATH nor in the pinned binaries (make binaries)")
        pytest.skip("helm not on PATH and `make binaries` has not built it")
    return path


def _set_args(values: dict[str, str]) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


@pytest.fixture(scope="session")
def render(helm: str) -> Render:
    """render(**{"a.b": "v"}) -> the chart's manifests for those --set values."""

    cache: dict[tuple[tuple[str, str], ...], list[dict[str, Any]]] = {}

    def run(**values: str) -> list[dict[str, Any]]:
        key = tuple(sorted(values.items()))
        if key not in cache:  # helm takes ~0.2 s a render; tests share value sets
            proc = subprocess.run(
                [helm, "template", "kinfer", str(CHART), "-n", "kinfer-system", *_set_args(values)],
                capture_output=True,
                text=True,
                check=True,
            )
            cache[key] = [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
        return copy.deepcopy(cache[key])  # tests may edit what they get

    return run


@pytest.fixture(scope="session")
def render_error(helm: str) -> Callable[..., str]:
    """render_error(**values) -> helm's error message; fails the test if rendering works."""

    def run(**values: str) -> str:
        proc = subprocess.run(
            [helm, "template", "kinfer", str(CHART), *_set_args(values)],
            capture_output=True,
            text=True,
        )
        assert proc.returncode != 0, f"helm template accepted {values}"
        return proc.stderr

    return run
