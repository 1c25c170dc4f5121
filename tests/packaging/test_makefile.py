"""`make help` is the README's index of entry points: it must name every documented target."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def documented_targets(makefile: str) -> list[str]:
    """Targets whose rule line carries a `## description` (any legal target name)."""
    return re.findall(r"^([A-Za-z0-9_.-]+):(?!=).*?## ", makefile, flags=re.MULTILINE)


def _help_lines() -> list[str]:
    out = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), "help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return [line for line in out.splitlines() if line.strip()]


def test_documented_target_scan_sees_names_with_digits() -> None:
    text = "e2e: venv ## suite\nhelp: ## list\nX := 1 ## not a target\nclean: cluster-down\n"
    assert documented_targets(text) == ["e2e", "help"]


def test_make_help_lists_every_documented_target_by_name() -> None:
    targets = documented_targets((REPO / "Makefile").read_text())
    assert {"help", "demo", "test", "e2e"} <= set(targets)
    listed = [line.split()[0] for line in _help_lines()]
    assert listed == targets


def test_make_help_prints_each_target_with_its_description() -> None:
    makefile = (REPO / "Makefile").read_text()
    descriptions = dict(re.findall(r"^([A-Za-z0-9_.-]+):(?!=).*?## (.*)$", makefile, re.M))
    for line in _help_lines():
        name, _, text = line.strip().partition(" ")
        assert text.strip() == descriptions[name], line
        assert "$$" not in text, f"{name}: make's escaping shows through: {line}"
