"""e2e/tools/npm/<server>/: the lockfiles objectstores.sh installs the npm servers from with
`npm ci --ignore-scripts` agree with versions.env and pin every package by hash."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
NPM = REPO / "e2e" / "tools" / "npm"
SERVERS = sorted(p.name for p in NPM.iterdir() if p.is_dir())


def _versions_env() -> dict[str, str]:
    text = (REPO / "e2e" / "tools" / "versions.env").read_text()
    return dict(re.findall(r"^([A-Z0-9_]+)=(\S+)$", text, flags=re.MULTILINE))


def _json(server: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((NPM / server / name).read_text())
    return data


def _locked(server: str) -> dict[str, dict[str, Any]]:
    """The lockfile's packages other than the root project."""
    packages: dict[str, dict[str, Any]] = _json(server, "package-lock.json")["packages"]
    return {path: entry for path, entry in packages.items() if path}


def test_both_npm_servers_have_a_lock_directory() -> None:
    assert SERVERS == ["azurite", "s3rver"]


@pytest.mark.parametrize("server", SERVERS)
def test_package_json_pins_the_versions_env_version_exactly(server: str) -> None:
    wanted = _versions_env()[f"{server.upper()}_VERSION"]
    assert _json(server, "package.json")["dependencies"] == {server: wanted}


@pytest.mark.parametrize("server", SERVERS)
def test_lockfile_matches_package_json_and_versions_env(server: str) -> None:
    lock = _json(server, "package-lock.json")
    assert lock["lockfileVersion"] >= 2, "npm ci needs the packages map (npm >= 7)"
    assert lock["packages"][""]["dependencies"] == _json(server, "package.json")["dependencies"]
    wanted = _versions_env()[f"{server.upper()}_VERSION"]
    assert _locked(server)[f"node_modules/{server}"]["version"] == wanted


@pytest.mark.parametrize("server", SERVERS)
def test_every_locked_package_has_an_exact_version_and_integrity_hash(server: str) -> None:
    unpinned = [
        path
        for path, entry in _locked(server).items()
        if not re.fullmatch(r"\d+\.\d+\.\d+(-[\w.]+)?", entry.get("version", ""))
        or not str(entry.get("integrity", "")).startswith("sha512-")
    ]
    assert unpinned == []


@pytest.mark.parametrize("server", SERVERS)
def test_lockfile_names_no_registry_and_needs_no_install_script(server: str) -> None:
    """Installs come from the client's configured registry (no host name in the repo), and
    `--ignore-scripts` skips nothing a package needs."""
    entries = _locked(server)
    assert [p for p, e in entries.items() if "resolved" in e] == []
    assert [p for p, e in entries.items() if e.get("hasInstallScript")] == []
