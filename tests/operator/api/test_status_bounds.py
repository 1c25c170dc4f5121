"""Status text is bounded in the schema and truncated before it is written, never refused;
spec.rollout.analysis names an operator endpoint and no longer takes a URL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from kinfer_operator.api.crdgen import build_crd
from kinfer_operator.api.spec import Analysis
from kinfer_operator.api.status import (
    AnalysisRun,
    InferenceModelStatus,
    RolloutStatus,
    bounded,
)
from pydantic import ValidationError

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _schema() -> dict[str, Any]:
    return dict(build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def _strings(node: dict[str, Any], path: str):  # type: ignore[no-untyped-def]
    if node.get("type") == "string":
        yield path, node
    for key, child in (node.get("properties") or {}).items():
        yield from _strings(child, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        yield from _strings(node["items"], f"{path}[]")


def test_every_status_string_is_bounded() -> None:
    status = _schema()["properties"]["status"]
    unbounded = [
        path
        for path, node in _strings(status, "status")
        if not {"maxLength", "enum", "pattern", "format"} & node.keys()
    ]
    assert unbounded == []
    assert [p for p, _ in _strings(status, "status")], "the walk found no strings at all"


def test_every_status_list_is_bounded_where_text_repeats() -> None:
    status = _schema()["properties"]["status"]
    assert status["properties"]["conditions"]["maxItems"] == 16
    rollout = status["properties"]["rollout"]["properties"]
    assert rollout["lastAnalysis"]["properties"]["metrics"]["maxItems"] == 32


def test_long_text_is_truncated_not_refused() -> None:
    run = AnalysisRun(time=NOW, step=0, decision="Error", message="x" * 100_000)
    assert len(run.message) == 4096 and run.message.endswith("...")


def test_text_set_without_validation_is_truncated_before_publishing() -> None:
    rollout = RolloutStatus(
        phase="Progressing", revision="r2", from_revision="r1", started_at=NOW
    ).model_copy(update={"message": "m" * 50_000, "route_message": "r" * 50_000})
    status = InferenceModelStatus(rollout=rollout)
    published = bounded(status).rollout
    assert published is not None
    assert len(published.message or "") == 4096 and len(published.route_message or "") == 4096


def test_prometheus_url_is_gone_from_the_api() -> None:
    analysis = _schema()["properties"]["spec"]["properties"]["rollout"]["properties"]["analysis"]
    assert "prometheusUrl" not in analysis["properties"]
    # Structural and not preserving unknown fields: the API server's strict field
    # validation (kubectl's default) refuses the field by name instead of keeping it.
    assert "x-kubernetes-preserve-unknown-fields" not in analysis
    with pytest.raises(ValidationError, match="prometheusUrl"):
        Analysis.model_validate({"prometheusUrl": "http://169.254.169.254"})


@pytest.mark.parametrize("name", ["http://prom:9090", "Thanos", "a" * 64, "-x"])
def test_the_endpoint_name_is_a_bounded_dns_label(name: str) -> None:
    node = _schema()["properties"]["spec"]["properties"]["rollout"]["properties"]["analysis"][
        "properties"
    ]["prometheus"]
    assert node["maxLength"] == 63 and node["pattern"]
    with pytest.raises(ValidationError, match="prometheus"):
        Analysis.model_validate({"prometheus": name})
