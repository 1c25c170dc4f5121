""".ci/venv.sh (`make venv`): third-party packages built once into a venv under the cache,
keyed by pyproject.toml; each clone's .venv holds the project itself, editable from that
clone, and runs the shared packages' console scripts under its own interpreter.

Offline: the projects here build with a minimal in-tree PEP 517 backend, and the one
"third-party" package is a local directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("flock") is None, reason="needs flock(1)")

BACKEND = '''
"""A PEP 517 backend for these tests: a pure-Python wheel from a few settings."""
import os, zipfile
from pathlib import Path

NAME, SCRIPT, REQUIRES = open("settings.txt").read().split("|")

def _wheel(directory, files):
    dist = f"{NAME}-0.1.0.dist-info"
    meta = f"Metadata-Version: 2.1\\nName: {NAME}\\nVersion: 0.1.0\\nProvides-Extra: dev\\n"
    if REQUIRES.strip():
        meta += f"Requires-Dist: {REQUIRES.strip()} ; extra == 'dev'\\n"
    files = {
        **files,
        f"{dist}/METADATA": meta,
        f"{dist}/WHEEL": "Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
        f"{dist}/entry_points.txt": f"[console_scripts]\\n{SCRIPT} = {NAME}:main\\n",
    }
    name = f"{NAME}-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(directory, name), "w") as whl:
        for path, text in files.items():
            whl.writestr(path, text)
        whl.writestr(f"{dist}/RECORD", "".join(f"{p},,\\n" for p in [*files, f"{dist}/RECORD"]))
    return name

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _wheel(wheel_directory, {f"{NAME}/__init__.py": Path(NAME, "__init__.py").read_text()})

def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _wheel(wheel_directory, {f"{NAME}.pth": os.path.abspath(".") + "\\n"})

def get_requires_for_build_wheel(config_settings=None):
    return []

get_requires_for_build_editable = get_requires_for_build_wheel
'''

PYPROJECT = """[build-system]
requires = []
build-backend = "backend"
backend-path = ["."]

[project]
name = "{name}"
version = "0.1.0"
"""


def _project(root: Path, name: str, script: str, requires: str = "") -> Path:
    """A project whose extra `dev` requires `requires` (the backend's metadata says so)."""
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT.format(name=name))
    (root / "backend.py").write_text(BACKEND)
    (root / "settings.txt").write_text(f"{name}|{script}|{requires}")
    (root / name).mkdir()
    (root / name / "__init__.py").write_text(
        "import sys\ndef main():\n    import app\n    print(sys.executable, app.__file__)\n"
        if name == "tool"
        else "def main():\n    print(__file__)\n"
    )
    return root


def _venv(clone: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    env.update(
        KINFER_CACHE=str(cache),
        KINFER_PIP_ARGS="--no-index --no-build-isolation",
        PYTHON=sys.executable,
    )
    return subprocess.run(
        ["bash", str(REPO / ".ci" / "venv.sh"), ".venv", "dev"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def clones(tmp_path: Path) -> tuple[Path, Path, Path]:
    tool = _project(tmp_path / "tool-src", "tool", "tool-cli")
    first = _project(tmp_path / "clone-1", "app", "app-cli", requires=f"tool @ {tool.as_uri()}")
    second = tmp_path / "clone-2"
    shutil.copytree(first, second)
    return first, second, tmp_path / "cache"


def test_clones_share_the_packages_built_once_and_each_runs_its_own_project(
    clones: tuple[Path, Path, Path],
) -> None:
    first, second, cache = clones
    built = _venv(first, cache)
    assert built.returncode == 0, built.stdout + built.stderr
    assert "building the shared packages" in built.stdout
    reused = _venv(second, cache)
    assert reused.returncode == 0, reused.stdout + reused.stderr
    assert "shared packages from" in reused.stdout  # built once
    (shared,) = cache.glob("venv-*[!k]")  # the venv, not its lock
    assert not list(shared.glob("lib/python*/site-packages/app*"))  # the project is not shared

    for clone in (first, second):
        own = subprocess.run(
            [str(clone / ".venv" / "bin" / "app-cli")], capture_output=True, text=True
        )
        assert own.stdout.strip() == str(clone / "app" / "__init__.py")
        # A shared package's script, run by the clone's interpreter: it sees the clone.
        tool = subprocess.run(
            [str(clone / ".venv" / "bin" / "tool-cli")], capture_output=True, text=True
        )
        assert tool.returncode == 0, tool.stderr
        assert tool.stdout.split() == [
            str(clone / ".venv" / "bin" / "python"),
            str(clone / "app" / "__init__.py"),
        ]

    # Another pyproject.toml: another shared venv (the first stays, in use elsewhere).
    pyproject = second / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "0.1.0"', 'version = "0.2.0"'))
    rebuilt = _venv(second, cache)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "building the shared packages" in rebuilt.stdout
    assert len([p for p in cache.glob("venv-*") if p.is_dir()]) == 2
