"""Whole reconcile passes over random valid specs and random observed worlds.

Specs come from the generated CRD schema (support/spec_strategies.py), with the CRD's
defaults applied. The CRD's CEL rules are not evaluated, so specs that pydantic's
InferenceModel.from_body rejects (it mirrors the rules the operator relies on) are filtered
out rather than reported; Hypothesis's filter_too_much health check fails the test if the
generator drifts into producing mostly rejected specs. Worlds are built by the operator itself
from earlier specs, then disturbed the way controllers, kubelets and users disturb them:
replicas that are not ready, stale or failing Deployments, pods stuck pending or crashing,
children deleted, track labels lost, a Deployment resized behind the operator's back, a fill
Job finished or failed, and a restarted operator.

Properties, for every pass: it does not raise, the model has a status the CRD admits (the fake
refuses any other with 422, as the API server would), every condition carries the model's
generation, and on a world that nothing but the operator changes the passes come to rest: a
pass writes nothing, and so does the one after it.

The example count per property is the Hypothesis profile's (tests/operator/conftest.py): a
few hundred, derandomized, in the unit suite; KINFER_FUZZ_EXAMPLES=5000 for a long run.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kinfer_operator._kube import WriteError
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import REVISION_LABEL, TRACK_LABEL
from kinfer_operator.reconcile.run import Outcome, Reconciler
from kinfer_operator.rollout._prometheus import PrometheusError
from kinfer_operator.rollout.endpoints import Endpoint, PrometheusConfig
from pydantic import ValidationError
from support.clock import Clock
from support.factories import model_body, pod
from support.fake_kube import FakeKube
from support.spec_strategies import specs

SLOW = pytest.mark.timeout(1200)
"""A few hundred whole histories per property: minutes on a busy two-core machine."""

MAX_PASSES = 6
"""Passes a frozen world may take to come to rest (a promotion takes two: relabel, delete)."""

NAMES = st.from_regex(r"\A[a-z]([-a-z0-9]{0,38}[a-z0-9])?\Z")
"""metadata.name as the CRD's CEL rule admits it: a DNS-1035 label of at most 40."""


def _valid(spec: dict[str, Any]) -> bool:
    try:
        InferenceModel.from_body(_body("m", spec))
    except ValidationError:
        return False
    return True


VALID_SPECS = specs().filter(_valid)


def _body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    body = model_body(name=name)
    body["spec"] = copy.deepcopy(spec)
    return body


# -- the operator's surroundings -------------------------------------------------------------

ANSWERS = st.sampled_from([None, 0.0, 3.0, 100.0, 5000.0, "down"])
"""What Prometheus answers every query with: nothing, a number, or an error."""


def _reconciler(kube: FakeKube, clock: Clock, answer: float | str | None) -> Reconciler:
    def query(_endpoint: Endpoint, _promql: str, _timeout: float, _name: str) -> float | None:
        if isinstance(answer, str):
            raise PrometheusError("Prometheus unreachable")
        return answer

    return Reconciler(
        kube,
        clock=clock.now,
        monotonic=clock.monotonic,
        prometheus=PrometheusConfig(url="http://prometheus.invalid:9090"),
        query=query,
    )


def _pass(kube: FakeKube, reconciler: Reconciler) -> Outcome:
    meta = kube.model["metadata"]
    outcome = reconciler.reconcile(meta["namespace"], meta["name"], trigger="fuzz")
    assert outcome is not None
    return outcome


POD_STATES: list[dict[str, Any]] = [
    {"phase": "Running", "containerStatuses": [{"ready": True, "restartCount": 0}]},
    {"phase": "Pending", "scheduled_message": "0/3 nodes are available: 3 Insufficient gpu."},
    {
        "phase": "Running",
        "containerStatuses": [
            {
                "ready": False,
                "restartCount": 7,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
                "lastState": {"terminated": {"exitCode": 1, "message": "model failed to load"}},
            }
        ],
    },
    {
        "phase": "Pending",
        "containerStatuses": [
            {"ready": False, "state": {"waiting": {"reason": "ImagePullBackOff"}}}
        ],
    },
    {"phase": "Failed", "reason": "Evicted", "message": "node was low on memory"},
]


@st.composite
def _disturb(draw: st.DrawFn, kube: FakeKube) -> None:
    """What controllers, kubelets and people do to the children between two passes.

    Every draw's simplest value (0, False) leaves things be: Hypothesis favours simple values,
    and shrinks a failure towards the fewest disturbances."""
    name = kube.model["metadata"]["name"]
    kube.pods = []
    for (kind, child), obj in list(kube.children.items()):
        if draw(st.integers(0, 9)) == 9:
            del kube.children[(kind, child)]  # someone deleted it
            continue
        if kind == "Job" and draw(st.booleans()):
            kube.finish_job(child, draw(st.sampled_from(["Complete", "Failed"])), "fill: 42%")
        if kind != "Deployment":
            continue
        meta, spec = obj["metadata"], obj["spec"]
        if draw(st.integers(0, 3)) == 3:  # an HPA or a person resized it
            spec["replicas"] = draw(st.integers(0, 6))
        labels = meta.setdefault("labels", {})
        if draw(st.integers(0, 5)) == 5:
            labels.pop(TRACK_LABEL, None)
        want = int(spec.get("replicas", 1))
        have = want - draw(st.integers(0, want))
        ready = have - draw(st.integers(0, have))
        conditions = []
        if draw(st.integers(0, 4)) == 4:
            conditions.append(
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
            )
        if draw(st.integers(0, 4)) == 4:
            conditions.append(
                {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "reason": "FailedCreate",
                    "message": 'pods "x" is forbidden: exceeded quota',
                }
            )
        generation = int(meta.get("generation", 1))
        obj["status"] = {
            "observedGeneration": draw(st.sampled_from([generation, generation - 1])),
            "replicas": have,
            "updatedReplicas": have - draw(st.integers(0, have)),
            "readyReplicas": ready,
            "availableReplicas": ready - draw(st.integers(0, ready)),
            "conditions": conditions,
        }
        revision = labels.get(REVISION_LABEL, "")
        for state in draw(st.lists(st.sampled_from(POD_STATES), max_size=3)):
            kube.pods.append(pod(name, revision, **state))


VERSIONS = st.from_regex(r"\A[0-9A-Za-z]([-0-9A-Za-z_.]{0,10}[0-9A-Za-z])?\Z")


def _new_version(spec: dict[str, Any], version: str) -> dict[str, Any]:
    """The same spec serving another model version: a new revision, rolled out."""
    return {**spec, "model": {**spec["model"], "version": version}}


def _same_revision(spec: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """`spec`'s pods (model, runtime, scheduling) with `other`'s replicas, autoscaling and
    rollout: an edit that starts no new revision, e.g. mid-rollout."""
    shaping = {k: v for k, v in spec.items() if k in REVISION_FIELDS}
    return {**{k: v for k, v in other.items() if k not in REVISION_FIELDS}, **shaping}


REVISION_FIELDS = ("model", "runtime", "scheduling")


@st.composite
def worlds(draw: st.DrawFn) -> tuple[FakeKube, Reconciler, Clock]:
    """A model whose children an operator made from earlier specs, disturbed since, now with
    a spec that may differ, and a freshly started operator to reconcile it."""
    name = draw(NAMES)
    first = draw(VALID_SPECS)
    later = st.one_of(VERSIONS.map(lambda v: _new_version(first, v)), st.just(first), VALID_SPECS)
    earlier = [first, draw(later)]
    current = draw(
        st.one_of(
            st.sampled_from(earlier),
            VALID_SPECS,
            VALID_SPECS.map(lambda other: _same_revision(earlier[-1], other)).filter(_valid),
        )
    )
    kube = FakeKube(_body(name, earlier[0]))
    clock = Clock()
    answer = draw(ANSWERS)
    reconciler = _reconciler(kube, clock, answer)
    for spec in earlier:
        if spec is not earlier[0]:
            kube.set_spec(spec)
        for _ in range(draw(st.integers(1, 3))):
            _pass(kube, reconciler)
            draw(_disturb(kube))
            clock.t += draw(st.integers(0, 3600))
    if current != kube.model["spec"]:
        kube.set_spec(current)
    rollout = (kube.model.get("status") or {}).get("rollout")
    if rollout:
        # Written under other rollout settings (they start no new revision), or by an
        # operator that died mid-rollout.
        rollout["step"] += draw(st.integers(0, 20))
        rollout["phase"] = draw(st.sampled_from([rollout["phase"], "Progressing", "Promoting"]))
    return kube, _reconciler(kube, clock, answer), clock


# -- the properties ----------------------------------------------------------------------------


def _check_status(kube: FakeKube) -> None:
    """A status the fake admitted (so the CRD does), naming the current generation."""
    generation = kube.model["metadata"]["generation"]
    status = kube.model.get("status")
    assert status, "the pass left the model without a status"
    assert status["observedGeneration"] == generation
    types = {c["type"]: c for c in status["conditions"]}
    assert {"Ready", "Stalled", "Degraded", "Progressing"} <= types.keys()
    stale = {t: c.get("observedGeneration") for t, c in types.items()}
    assert set(stale.values()) == {generation}, stale


def _comes_to_rest(kube: FakeKube, reconciler: Reconciler) -> None:
    """Passes on a world only the operator changes stop writing, and stay stopped."""
    writes = []
    for _ in range(MAX_PASSES):
        outcome = _pass(kube, reconciler)
        _check_status(kube)
        writes.append(outcome.writes)
        if outcome.writes == 0:
            break
    assert writes[-1] == 0, f"still writing after {MAX_PASSES} passes: {writes}"
    assert _pass(kube, reconciler).writes == 0, f"wrote again after a quiet pass: {writes}"


@SLOW
@given(spec=VALID_SPECS, name=NAMES, answer=ANSWERS)
def test_a_new_model_gets_a_valid_status_and_comes_to_rest(
    spec: dict[str, Any], name: str, answer: float | str | None
) -> None:
    kube = FakeKube(_body(name, spec))
    clock = Clock()
    reconciler = _reconciler(kube, clock, answer)
    _pass(kube, reconciler)
    _check_status(kube)
    _comes_to_rest(kube, reconciler)


@SLOW
@given(world=worlds())
def test_any_observed_world_gets_a_valid_status_and_comes_to_rest(
    world: tuple[FakeKube, Reconciler, Clock],
) -> None:
    kube, reconciler, _ = world
    _pass(kube, reconciler)
    _check_status(kube)
    _comes_to_rest(kube, reconciler)


# -- the fake's schema, which the properties lean on ------------------------------------------


def test_the_fake_refuses_a_status_the_crd_refuses() -> None:
    kube = FakeKube(model_body())
    condition = {"type": "Ready", "status": "True", "reason": "Serving"}
    bad = {"phase": "Sleeping", "conditions": [{**condition, "lastTransitionTime": "today"}] * 2}
    with pytest.raises(WriteError) as refused:
        kube.patch_model_status("ml", "resnet50", bad)
    assert refused.value.failure.code == 422
    message = refused.value.failure.message
    assert "status.phase" in message and "date-time" in message and "Duplicate" in message
    assert "status" not in kube.model


def test_the_fake_prunes_unknown_status_fields_and_fills_defaults() -> None:
    kube = FakeKube(model_body())
    condition = {"type": "Ready", "status": "True", "reason": "Serving"}
    now = {**condition, "lastTransitionTime": "2026-01-01T00:00:00Z", "extra": 1}
    kube.patch_model_status("ml", "resnet50", {"conditions": [now], "unknown": "x"})
    (stored,) = kube.model["status"]["conditions"]
    assert "unknown" not in kube.model["status"] and "extra" not in stored
    assert stored["message"] == ""  # the CRD's default
