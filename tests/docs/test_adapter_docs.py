"""The prometheus-adapter rules ship in examples/ only; the docs must not say the chart
ships them while it renders no such thing."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CLAIM = re.compile(
    r"adapter.{0,60}?\brules\b[^.;]{0,20}?\bship(?:s|ped)? in[^.;()]*?"
    r"(?:\bthe chart\b|charts/kinfer)"
)


def _docs() -> dict[str, str]:
    paths = [REPO / "README.md", *sorted((REPO / "charts").rglob("*.md"))]
    paths += sorted((REPO / "examples").rglob("*.md"))
    return {str(p.relative_to(REPO)): " ".join(p.read_text().split()) for p in paths}


def _chart_renders_adapter_rules() -> bool:
    templates = (REPO / "charts" / "kinfer" / "templates").glob("*")
    return any("seriesQuery" in t.read_text() for t in templates)


def test_claim_pattern_catches_the_old_wording() -> None:
    assert CLAIM.search("prometheus-adapter rules ship in `examples/autoscaling/` and the chart")
    assert CLAIM.search("prometheus-adapter-rules.yaml (the same rules ship in charts/kinfer)")
    assert not CLAIM.search("adapter rules ship in `examples/`, as values for the adapter's chart")


def test_docs_say_the_chart_ships_adapter_rules_only_if_it_renders_them() -> None:
    if _chart_renders_adapter_rules():
        return
    claims = {name: m.group(0) for name, text in _docs().items() if (m := CLAIM.search(text))}
    assert not claims, f"the chart renders no adapter rules, yet: {claims}"


def test_the_two_adapter_rule_files_hold_the_same_rules() -> None:
    rules = yaml.safe_load(
        (REPO / "examples/autoscaling/prometheus-adapter-rules.yaml").read_text()
    )
    values = yaml.safe_load(
        (REPO / "examples/observability/prometheus-adapter-values.yaml").read_text()
    )
    assert rules["rules"] == values["rules"]["custom"]
