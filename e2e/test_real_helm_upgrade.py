"""`helm upgrade` of the operator under load: the chart's operator (from its image, on the real
node) serves models that take continuous traffic; an upgrade that changes the pod template
the operator builds (operator.templateMark, standing in for a new release's template) restarts
the operator's own pods and then rolls every model, at most `operator.maxTemplateRolls` at
once, each through its surge and readiness. Not one request may fail, and every model ends on
the new template.

The operator restarts and watches the whole cluster, so this runs alone (quiet_cluster marks
it exclusive) with the session's local operator stopped meanwhile (as in test_real_operator).
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from conftest import LocalOperator
from harness import BackgroundLoop, helm_binary, kubectl_apply, kubectl_json, wait_until
from kinfer_operator.reconcile.template_rolls import is_rolling
from realnode import LoadGenerator, model_manifest, serving_url
from test_chart import CHART, Release, chart_on_real_node
from test_core import pods_of, wait_ready
from test_upgrade import MARK_ANNOTATION, _deployments, _rolling

pytestmark = pytest.mark.real_node

MODELS = ("up-a", "up-b", "up-c")
MAX_ROLLS = 1
"""One model at a time: the three rolls follow each other, so the load sees every step."""
LOAD_PER_MODEL = 20
"""Answered requests per model before the upgrade, and again after the last roll."""


@pytest.fixture
def chart_release(quiet_cluster: str, operator: LocalOperator | None) -> Iterator[Release]:
    """The chart from the operator image, on the real node, no template mark yet."""
    values = {
        "operator.maxTemplateRolls": str(MAX_ROLLS),
        "leaderElection.leaseDuration": "10",
        "leaderElection.renewDeadline": "6",
    }
    with chart_on_real_node(operator, **values) as release:
        yield release


class RollSampler(BackgroundLoop):
    """How many models roll a template change the operator let through, twice a second, as
    the operator counts them (its template-roll mark on a Deployment not yet updated): a
    readiness blip of a settled model under load is no roll."""

    interval = 0.5

    def __init__(self, namespace: str) -> None:
        super().__init__()
        self.namespace = namespace
        self.counts: list[int] = []

    def tick(self) -> None:
        self.counts.append(sum(is_rolling(d) for d in _deployments(self.namespace)))


def helm_upgrade(release: Release, **values: str) -> None:
    """`helm upgrade` of the release to the same chart with `values` on top of its own."""
    args = [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]
    proc = subprocess.run(
        [
            helm_binary(),
            "upgrade",
            release.name,
            str(CHART),
            "-n",
            release.namespace,
            "--reuse-values",
            *args,
            "--wait",
            "--timeout",
            "180s",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, f"helm upgrade failed:\n{proc.stderr}"


def on_template(namespace: str, mark: str) -> bool:
    """Every model's Deployment carries the new template and has settled, and only pods of
    that template are left."""
    deployments = _deployments(namespace)
    if len(deployments) != len(MODELS):
        return False
    for dep in deployments:
        annotations = dep["spec"]["template"]["metadata"].get("annotations") or {}
        if annotations.get(MARK_ANNOTATION) != mark or _rolling(dep):
            return False
    return all(
        (pod["metadata"].get("annotations") or {}).get(MARK_ANNOTATION) == mark
        for name in MODELS
        for pod in pods_of(namespace, name)
    )


def operator_pods_on(release: Release, mark: str) -> bool:
    """The operator's own Deployment rolled to the upgraded release (its env has the mark)."""
    pods = kubectl_json(
        "get", "pods", "-n", release.namespace, "-l", "app.kubernetes.io/name=kinfer-operator"
    )["items"]
    envs = [
        {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env", [])}
        for pod in pods
        if not pod["metadata"].get("deletionTimestamp")
    ]
    return bool(envs) and all(env.get("KINFER_TEMPLATE_MARK") == mark for env in envs)


@pytest.mark.timeout(900)
def test_helm_upgrade_under_load_rolls_every_model_without_a_failed_request(
    quiet_cluster: str, chart_release: Release, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace, release = quiet_cluster, chart_release
    for name in MODELS:
        kubectl_apply(model_manifest(name, replicas=2), namespace)
    for name in MODELS:
        wait_ready(namespace, name, timeout=180)
    wait_until(
        lambda: not any(_rolling(d) for d in _deployments(namespace)),
        120,
        "every Deployment to settle",
    )

    mark = f"helm-{secrets.token_hex(3)}"
    with ExitStack() as stack:
        loads = {
            name: stack.enter_context(LoadGenerator(serving_url(namespace, name), name, clients=2))
            for name in MODELS
        }
        wait_until(
            lambda: all(load.total >= LOAD_PER_MODEL for load in loads.values()),
            60,
            "traffic to every model",
        )
        with RollSampler(namespace) as sampler:
            helm_upgrade(release, **{"operator.templateMark": mark})
            assert operator_pods_on(release, mark)
            wait_until(lambda: on_template(namespace, mark), 480, "every model on the new template")
        # Requests after the last old pod went away count too.
        after = {name: load.total for name, load in loads.items()}
        wait_until(
            lambda: all(loads[n].total >= after[n] + LOAD_PER_MODEL for n in MODELS),
            60,
            "traffic after the upgrade",
        )

    with capsys.disabled():
        total = sum(load.total for load in loads.values())
        failed = sum(load.outcomes["failed"] for load in loads.values())
        peak = max(sampler.counts, default=0)
        print(f" [{total} requests, {failed} failed; at most {peak} model(s) rolling]", end="")
    for name, load in loads.items():
        assert load.outcomes["failed"] == 0, (name, load.failures[:10])
    assert 0 < max(sampler.counts, default=0) <= MAX_ROLLS, sampler.counts
    for name in MODELS:
        assert wait_ready(namespace, name, timeout=30)["status"]["readyReplicas"] == 2
