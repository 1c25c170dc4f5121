"""The chart's CRDs are the generated ones in crds/: one source of truth, upgraded by Helm."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kinfer"
Render = Callable[..., list[dict[str, Any]]]
KEEP = "helm.sh/resource-policy"


def _crds(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "CustomResourceDefinition"}


def _source_crds() -> dict[str, dict[str, Any]]:
    docs = [d for p in sorted((REPO / "crds").glob("*.yaml")) for d in yaml.safe_load_all(p.open())]
    return _crds([d for d in docs if d])


def test_chart_crd_files_are_byte_identical_to_crds_dir() -> None:
    chart_files = {p.name: p.read_bytes() for p in (CHART / "files" / "crds").glob("*.yaml")}
    source_files = {p.name: p.read_bytes() for p in (REPO / "crds").glob("*.yaml")}
    stale = sorted(name for name in source_files if chart_files.get(name) != source_files[name])
    extra = sorted(set(chart_files) - set(source_files))
    assert not stale and not extra, (
        f"charts/kinfer/files/crds differs from crds/ (stale: {stale}, extra: {extra}); "
        "run: cp crds/*.yaml charts/kinfer/files/crds/"
    )


def test_rendered_crds_equal_the_generated_ones_plus_the_keep_policy(render: Render) -> None:
    rendered = _crds(render())
    source = _source_crds()
    assert rendered.keys() == source.keys()
    for name, crd in rendered.items():
        annotations = crd["metadata"].pop("annotations")
        assert annotations == {KEEP: "keep"}, name
        assert crd == source[name], f"{name} was altered by the template"


def test_keep_false_lets_helm_uninstall_delete_the_crds(render: Render) -> None:
    for crd in _crds(render(**{"crds.keep": "false"})).values():
        assert KEEP not in (crd["metadata"].get("annotations") or {})


def test_install_false_renders_no_crds(render: Render) -> None:
    assert _crds(render(**{"crds.install": "false"})) == {}


def test_chart_has_no_crds_dir_that_helm_would_never_upgrade() -> None:
    assert not Path(CHART / "crds").exists()
