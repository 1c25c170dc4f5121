"""The shadow phase: the state machine's steps, the children it wants, the analysis it reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from kinfer_operator.api.spec import Analysis
from kinfer_operator.api.status import RolloutStatus
from kinfer_operator.children import build_deployment
from kinfer_operator.children.shadow import build_shadow_config, build_shadow_service
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import MODEL_LABEL, REVISION_LABEL, revision_of
from kinfer_operator.rollout.analysis import AnalysisTarget, analysis_queries, run_analysis
from kinfer_operator.rollout.machine import RolloutDecision
from kinfer_operator.rollout.shadow import plan_shadow
from kinfer_operator.world import Observed
from support.factories import model_body

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = T0 + timedelta(seconds=60)


ROLLOUT = {"canary": {"steps": [{"weight": 20}]}}
SHADOW = {"percent": 25, "pauseSeconds": 30, "timeoutSeconds": 2, "maxQueue": 64}


def _model(version: str = "4", shadow: dict[str, Any] | None = SHADOW) -> InferenceModel:
    rollout = {**ROLLOUT, "shadow": shadow} if shadow is not None else ROLLOUT
    return InferenceModel.from_body(
        model_body({"replicas": 4, "rollout": rollout, "model": {"version": version}})
    )


def _decision(
    model: InferenceModel,
    phase: str = "Progressing",
    shadow_percent: int | None = 25,
    started: bool = True,
    canary_kept: bool = True,
) -> RolloutDecision:
    status = RolloutStatus(
        phase=phase,  # type: ignore[arg-type]
        revision=revision_of(model),
        from_revision=STABLE,
        started_at=T0,
        step_started_at=T1 if started else None,
        shadow_percent=shadow_percent,
    )
    return RolloutDecision(status, canary_revision=revision_of(model) if canary_kept else None)


STABLE = revision_of(_model("3"))


# --- the children it wants -------------------------------------------------------------------


def _with_service(ip: str | None, model: InferenceModel) -> Observed:
    service = build_shadow_service(model, revision_of(model))
    if ip is not None:
        service["spec"]["clusterIP"] = ip
    return Observed(services=(service,))


def test_in_shadow_the_service_is_pinned_to_stable_and_the_config_points_at_the_candidate() -> None:
    model = _model()
    plan = plan_shadow(model, _with_service("10.96.0.9", model), _decision(model), STABLE)
    assert plan.pin_revision == STABLE
    kinds = {a["kind"]: a for a in plan.applies}
    assert kinds["Service"]["spec"]["selector"] == {
        MODEL_LABEL: model.name,
        REVISION_LABEL: revision_of(model),
    }
    config = json.loads(kinds["ConfigMap"]["data"]["mirror.json"])
    assert config == {
        "revision": revision_of(model),
        "target": "http://10.96.0.9:8090",  # the classified port: counted as shadow there
        "percent": 25,
        "timeoutSeconds": 2,
        "maxQueue": 64,
        "maxConcurrency": 4,
    }
    assert plan.deletes == []


def test_mirroring_stays_off_until_the_candidate_is_ready_and_has_an_address() -> None:
    model = _model()
    for observed, decision in [
        (Observed(), _decision(model)),  # the shadow Service has no ClusterIP yet
        (_with_service("10.96.0.9", model), _decision(model, started=False)),  # not ready
        (_with_service("10.96.0.9", model), _decision(model, phase="RolledBack")),
    ]:
        plan = plan_shadow(model, observed, decision, STABLE)
        config = next(a for a in plan.applies if a["kind"] == "ConfigMap")
        assert json.loads(config["data"]["mirror.json"]) == {}
        # Pinned all along: the candidate never serves a user, even after a rollback.
        assert plan.pin_revision == STABLE


def test_the_pin_is_lifted_once_a_rolled_back_candidate_is_gone() -> None:
    model = _model()
    decision = _decision(model, phase="RolledBack", canary_kept=False)
    plan = plan_shadow(model, _with_service("10.96.0.9", model), decision, STABLE)
    assert plan.pin_revision is None
    assert plan.deletes == [("Service", f"{model.name}-shadow")]


def test_after_the_shadow_phase_the_pin_and_the_shadow_service_go_and_mirroring_stops() -> None:
    model = _model()
    decision = _decision(model, shadow_percent=None)
    plan = plan_shadow(model, _with_service("10.96.0.9", model), decision, STABLE)
    assert plan.pin_revision is None
    assert plan.deletes == [("Service", f"{model.name}-shadow")]
    config = next(a for a in plan.applies if a["kind"] == "ConfigMap")
    assert json.loads(config["data"]["mirror.json"]) == {}


def test_without_shadow_in_spec_nothing_is_created_and_a_leftover_config_is_deleted() -> None:
    model = _model(shadow=None)
    assert plan_shadow(model, Observed(), None, "r1").applies == []
    leftover = build_shadow_config(model, None)
    plan = plan_shadow(model, Observed(configmaps=(leftover,)), None, "r1")
    assert plan.deletes == [("ConfigMap", f"{model.name}-shadow")]
    assert plan.pin_revision is None


def test_pods_mount_the_optional_config_so_toggling_shadow_never_changes_the_template() -> None:
    with_shadow = build_deployment(_model(), "stable")
    without = build_deployment(_model(shadow=None), "stable")
    assert with_shadow["spec"]["template"] == without["spec"]["template"]
    pod = with_shadow["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "shadow")
    assert volume["configMap"] == {"name": "resnet50-shadow", "optional": True}
    container = pod["containers"][0]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "shadow")
    assert mount == {"name": "shadow", "mountPath": "/etc/kinfer/shadow", "readOnly": True}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KINFER_SHADOW_CONFIG"] == "/etc/kinfer/shadow/mirror.json"


def test_the_shadow_service_exposes_only_the_candidates_classified_port() -> None:
    ports = build_shadow_service(_model(), "abc")["spec"]["ports"]
    assert ports == [
        {"name": "classified", "port": 8090, "targetPort": "classified", "protocol": "TCP"}
    ]


def test_shadow_children_are_owned_by_the_model() -> None:
    model = _model()
    for child in (build_shadow_config(model, None), build_shadow_service(model, "abc")):
        assert child["metadata"]["ownerReferences"] == [model.owner_reference]


# --- the analysis it reads -------------------------------------------------------------------


def test_shadow_analysis_reads_only_mirrored_requests_and_the_steps_exclude_them() -> None:
    analysis = Analysis.model_validate(
        {
            "latencyP99": {"maxSeconds": 1},
            "custom": [{"name": "c", "query": "sum(x{ {{selector}} })", "max": 1}],
        }
    )
    shadow = AnalysisTarget("ml", "m", "abc", 30, source="shadow")
    count, checks = analysis_queries(analysis, shadow)
    for query in (count, *(c.query for c in checks)):
        assert 'revision="abc",source="shadow"' in query, query
    live = AnalysisTarget("ml", "m", "abc", 30, source="live")
    count, checks = analysis_queries(analysis, live)
    for query in (count, *(c.query for c in checks)):
        assert 'source!~"shadow|cold_start"' in query, query
    plain, _ = analysis_queries(analysis, AnalysisTarget("ml", "m", "abc", 30))
    assert "source" not in plain


def test_a_failed_shadow_analysis_says_it_ran_on_mirrored_requests() -> None:
    target = AnalysisTarget("ml", "m", "abc", 30, source="shadow")

    def fetch(query: str) -> float:
        return 100.0 if query.startswith("sum(increase") else 0.5

    run = run_analysis(Analysis(), target, fetch, step=0, now=T0)
    assert run.decision == "Fail"
    assert run.message.startswith("in shadow (mirrored requests): error-rate = 0.5")
