"""Dockerfile.operator and Dockerfile.runtime install what pyproject.toml pins, and run
non-root. (e2e/images.sh builds them with buildah and the real-node lane runs them.)"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
from kinfer_operator.runtime_contract import RUNTIME_UID
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
# Our own wheel with extras, e.g. "$(echo /wheels/kinfer-*.whl)[operator]".
OWN_WHEEL = re.compile(r"kinfer-\*\.whl\)?\[(?P<extras>[a-z,]+)\]$")
EXPECTED_EXTRAS = {
    "Dockerfile.operator": {"operator"},
    "Dockerfile.runtime": {"runtime", "torch", "gpu"},
}


def _pyproject() -> dict[str, object]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _pins() -> dict[str, str]:
    """Every requirement pyproject.toml pins, name -> version."""
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    specs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        specs.extend(extra)
    pins: dict[str, str] = {}
    for spec in specs:
        req = Requirement(spec)
        (pin,) = req.specifier  # pyproject pins every dependency to one version
        pins[canonicalize_name(req.name)] = pin.version
    return pins


def _instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined, comments dropped, and build
    args that have a default expanded (`${KINFER_EXTRAS}`): what a plain build runs."""
    text = (REPO / dockerfile).read_text()
    defaults = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
    text = re.sub(r"\$\{(\w+)\}", lambda m: defaults.get(m[1], m[0]), text)
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, args = line.strip().partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def _pip_installs(dockerfile: str) -> list[list[str]]:
    """The non-flag arguments of every `pip install` in a RUN."""
    installs = []
    for instruction, args in _instructions(dockerfile):
        if instruction != "RUN":
            continue
        for command in re.split(r"&&|;", args):
            words = shlex.split(command)
            if len(words) >= 2 and words[0].endswith("pip") and words[1] == "install":
                installs.append([w for w in words[2:] if not w.startswith("-")])
    return installs


def _final_stage(dockerfile: str) -> list[tuple[str, str]]:
    steps = _instructions(dockerfile)
    last_from = max(i for i, (ins, _) in enumerate(steps) if ins == "FROM")
    return steps[last_from:]


@pytest.mark.parametrize("dockerfile", sorted(EXPECTED_EXTRAS))
def test_dockerfile_installs_only_pyproject_extras_and_pins(dockerfile: str) -> None:
    pins = _pins()
    extras_defined = set(_pyproject()["project"]["optional-dependencies"])  # type: ignore[index]
    extras_used: set[str] = set()
    for packages in _pip_installs(dockerfile):
        for package in packages:
            own = OWN_WHEEL.search(package)
            if own:
                extras_used |= set(own["extras"].split(","))
                continue
            req = Requirement(package)
            name = canonicalize_name(req.name)
            assert str(req.specifier) == f"=={pins.get(name)}", (
                f"{dockerfile}: {package} is not pyproject.toml's pin ({name}=={pins.get(name)})"
            )
    assert extras_used == EXPECTED_EXTRAS[dockerfile]
    assert extras_used <= extras_defined


@pytest.mark.parametrize("dockerfile", sorted(EXPECTED_EXTRAS))
def test_base_images_are_pinned_by_tag(dockerfile: str) -> None:
    for instruction, line in _instructions(dockerfile):
        if instruction == "FROM":
            image = line.split()[0]
            if image == "builder":
                continue
            tag = image.rpartition(":")[2]
            assert ":" in image and tag != "latest" and re.search(r"\d", tag), image


@pytest.mark.parametrize(
    ("dockerfile", "entrypoint", "ports"),
    [
        ("Dockerfile.operator", '["kinfer-operator"]', "8080 8081"),
        ("Dockerfile.runtime", '["kinfer-runtime", "serve"]', "8080 8081 9090"),
    ],
)
def test_final_image_runs_non_root_with_its_entrypoint(
    dockerfile: str, entrypoint: str, ports: str
) -> None:
    final = dict(_final_stage(dockerfile))
    # The operator pins this UID in the pod (runAsUser), the chart does for the operator.
    assert final["USER"] == f"{RUNTIME_UID}:{RUNTIME_UID}"
    assert final["ENTRYPOINT"] == entrypoint
    assert final["EXPOSE"] == ports


def test_runtime_image_bakes_the_demo_models_and_caches_in_var_cache() -> None:
    runs = " ".join(a for ins, a in _instructions("Dockerfile.runtime") if ins == "RUN")
    assert "kinfer-runtime demo-model --out /models/demo" in runs
    # The real-node e2e lane loads these from the image (file://).
    assert "for variant in slow broken faulty" in runs
    final = _final_stage("Dockerfile.runtime")
    assert ("COPY", "--from=builder /models /models") in final
    env = " ".join(a for ins, a in final if ins == "ENV")
    assert "KINFER_MODEL_CACHE_DIR=/var/cache/kinfer" in env
    # Writable for the runtime user even without the pod's emptyDir (e.g. `docker run`).
    assert f"--owner {RUNTIME_UID} --group {RUNTIME_UID}" in runs
