"""The Helm chart on a real API server: its RBAC is enough for the core cases, and no more.

The chart is installed for real (restricted PodSecurity in its namespace), then the operator
runs as a local process that authenticates with a token of the chart's ServiceAccount, so the
API server enforces exactly the chart's ClusterRole (or, namespaced, its Roles). The session's
own operator is stopped meanwhile, so every write is the chart-account operator's. In cluster
mode that operator watches the whole cluster, as the chart configures it: for its ~15 s it
also reconciles models of other e2e sessions sharing the cluster (harmless: same code, same
field manager).

The kind path (KINFER_E2E_OPERATOR=incluster) skips this module: there the whole suite
already drives the operator the chart installed in the cluster.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import OPERATOR_MODE, LocalOperator
from harness import (
    condition,
    example,
    helm_binary,
    kubectl,
    kubectl_apply,
    kubectl_json,
    wait_until,
)

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "kinfer"
MODEL = "demo-cpu"

pytestmark = pytest.mark.skipif(
    OPERATOR_MODE == "incluster", reason="kind path: the chart's operator already runs in-cluster"
)


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str

    @property
    def account(self) -> str:
        """The chart's ServiceAccount (the release's full name)."""
        return f"{self.name}-kinfer"

    @property
    def lease(self) -> str:
        """The leader-election Lease (the release's full name, in the release namespace)."""
        return f"{self.name}-kinfer"

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.account}"


@contextmanager
def chart_on_real_node(operator: LocalOperator | None, **values: str) -> Iterator[Release]:
    """The chart from this run's images (the operator's, and the runtime's for the activator),
    placed on the real node, with the suite's local operator stopped meanwhile so only the
    chart's acts. `values` add to or override the common ones."""
    from realnode import NODE_KEY, images  # the real lane only

    repository, _, tag = images()["KINFER_OPERATOR_IMAGE"].rpartition(":")
    common = {
        "image.repository": repository,
        "image.tag": tag,
        "image.pullPolicy": "Never",
        # The activator runs the runtime image: the one this run built, not a registry's.
        "runtime.image": images()["KINFER_RUNTIME_IMAGE"],
        "runtime.imagePullPolicy": "Never",
        "tolerations[0].key": NODE_KEY,
        "tolerations[0].operator": "Exists",
        "operator.resyncSeconds": "5",
    }
    if operator is not None:
        operator.stop()
    try:
        node_selector = {"nodeSelector." + NODE_KEY.replace(".", "\\."): "true"}
        with installed_chart(node_selector, **{**common, **values}) as release:
            yield release
    finally:
        if operator is not None:
            operator.start()


@contextmanager
def installed_chart(strings: dict[str, str] | None = None, **values: str) -> Iterator[Release]:
    """helm install into a fresh namespace that enforces the restricted Pod Security level.
    `strings` go in with --set-string (a node selector's "true" must stay a string)."""
    suffix = secrets.token_hex(3)
    release = Release(f"kc{suffix}", f"kinfer-chart-{suffix}")
    kubectl("create", "namespace", release.namespace)
    kubectl(
        "label", "namespace", release.namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    # The suite's session fixture installed the CRDs (kubectl apply), so the chart must not.
    settings = {"crds.install": "false", **values}
    args = [arg for k, v in settings.items() for arg in ("--set", f"{k}={v}")]
    args += [arg for k, v in (strings or {}).items() for arg in ("--set-string", f"{k}={v}")]
    args += ["--wait", "--timeout", "120s"]
    helm = helm_binary()
    try:
        proc = subprocess.run(
            [helm, "install", release.name, str(CHART), "-n", release.namespace, *args],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, f"helm install failed:\n{proc.stderr}"
        yield release
    finally:
        subprocess.run(
            [helm, "uninstall", release.name, "-n", release.namespace],
            capture_output=True,
            check=False,
        )
        kubectl("delete", "namespace", release.namespace, "--wait=false", check=False)


def _account_kubeconfig(release: Release, path: Path) -> Path:
    """A kubeconfig for the current cluster that authenticates as the chart's ServiceAccount."""
    token = kubectl(
        "create", "token", release.account, "-n", release.namespace, "--duration=1h"
    ).stdout.strip()
    current = json.loads(kubectl("config", "view", "--minify", "--raw", "-o", "json").stdout)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": current["clusters"][0]["cluster"]}],
        "users": [{"name": release.account, "user": {"token": token}}],
        "contexts": [{"name": "chart", "context": {"cluster": "e2e", "user": release.account}}],
        "current-context": "chart",
    }
    path.write_text(yaml.safe_dump(config))
    whoami = json.loads(kubectl("--kubeconfig", str(path), "auth", "whoami", "-o", "json").stdout)
    assert whoami["status"]["userInfo"]["username"] == release.user
    return path


@contextmanager
def operator_as_chart_account(
    release: Release, session_operator: LocalOperator | None, log_dir: Path, **env: str
) -> Iterator[LocalOperator]:
    """The operator under the chart's ServiceAccount, the session's operator stopped meanwhile."""
    kubeconfig = _account_kubeconfig(release, log_dir / "chart-account.kubeconfig")
    chart_operator = LocalOperator(
        log_dir,
        # Exactly the chart's configuration: no --namespace pattern (the session operator's
        # would make kopf list namespaces, which the chart never needs nor grants).
        args=("--log-format", "plain", "--verbose"),
        env={
            "KUBECONFIG": str(kubeconfig),
            "KINFER_LEADER_ELECTION": release.lease,
            "KINFER_LEADER_ELECTION_NAMESPACE": release.namespace,
            **env,
        },
        name="chart-account-operator",
    )
    if session_operator is not None:
        session_operator.stop()
    try:
        chart_operator.start()
        yield chart_operator
    finally:
        chart_operator.stop()
        print(f"\nchart-account operator log: {chart_operator.log_path}")
        if session_operator is not None:
            session_operator.start()


def can_i(release: Release, verb: str, resource: str, *args: str) -> bool:
    """`kubectl auth can-i ... --as` the chart's ServiceAccount, answered by the API server.

    `resource` may name a subresource (`deployments.apps/scale`); kubectl would read what
    follows the slash as an object's name.
    """
    resource, _, subresource = resource.partition("/")
    if subresource:
        args = (*args, f"--subresource={subresource}")
    proc = kubectl("auth", "can-i", verb, resource, *args, f"--as={release.user}", check=False)
    return proc.stdout.strip() == "yes"


def _can_on_lease(release: Release, verb: str, lease: str) -> bool:
    """`kubectl auth can-i VERB lease/NAME` in the release namespace, as the chart's account."""
    proc = kubectl(
        "auth",
        "can-i",
        verb,
        f"leases.coordination.k8s.io/{lease}",
        "-n",
        release.namespace,
        f"--as={release.user}",
        check=False,
    )
    return proc.stdout.strip() == "yes"


def _lease_holder(release: Release) -> str:
    lease = kubectl_json("get", "lease", release.lease, "-n", release.namespace)
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def _rbac_denials(log: Path) -> list[str]:
    """Log lines where the API server refused the account (an RBAC denial names the user)."""
    return [
        line
        for line in log.read_text().splitlines()
        if "system:serviceaccount:" in line and " cannot " in line
    ]


def _wait_ready(namespace: str, replicas: int) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        im = kubectl_json("get", "im", MODEL, "-n", namespace)
        cond = condition(im, "Ready")
        serving = (im.get("status") or {}).get("readyReplicas") == replicas
        return im if serving and cond and cond["status"] == "True" else None

    return wait_until(ready, 90, f"{MODEL} Ready with {replicas} replicas")


def test_core_cases_pass_under_the_cluster_role(
    quiet_cluster: str, operator: LocalOperator | None, tmp_path: Path
) -> None:
    # Cluster-wide, this operator reconciles every model: measure its RBAC on a quiet cluster.
    namespace = quiet_cluster
    with (
        installed_chart() as release,
        operator_as_chart_account(release, operator, tmp_path) as chart_operator,
    ):
        # The chart's operator Deployment itself was admitted under restricted PodSecurity.
        deployment = kubectl_json("get", "deployment", release.account, "-n", release.namespace)
        assert deployment["status"].get("availableReplicas") == 2

        # Leader election: the replica took the release's Lease under the chart's Role.
        wait_until(lambda: _lease_holder(release), 15, "the operator to take the chart's Lease")
        assert chart_operator.metric("kinfer_operator_leader") == 1

        kubectl_apply(example("demo-cpu.yaml"), namespace)
        im = _wait_ready(namespace, replicas=2)
        assert im["status"]["observedGeneration"] == im["metadata"]["generation"]
        events = kubectl_json("get", "events", "-n", namespace)["items"]
        assert any(e.get("reportingComponent") == "kinfer-operator" for e in events)

        kubectl("scale", "-n", namespace, f"im/{MODEL}", "--replicas=3")
        _wait_ready(namespace, replicas=3)

        # Deletion needs the account to remove kopf's finalizer; then the GC takes the rest.
        kubectl("delete", "im", MODEL, "-n", namespace, "--timeout=60s")
        selector = f"serving.kinfer.io/model={MODEL}"

        def all_gone() -> bool:
            return not kubectl(
                "get", "deploy,svc,pdb,pods", "-n", namespace, "-l", selector, "-o", "name"
            ).stdout.strip()

        wait_until(all_gone, 90, "the garbage collector to remove every child")
        assert chart_operator.metric("kinfer_operator_api_writes_total") > 0
        assert not _rbac_denials(chart_operator.log_path)


def test_cluster_role_forbids_what_the_operator_never_does(crds: None) -> None:
    with installed_chart() as release:
        # What it needs...
        for verb, resource in [
            ("watch", "inferencemodels.serving.kinfer.io"),
            ("patch", "inferencemodels.serving.kinfer.io/status"),
            ("create", "deployments.apps"),
            ("patch", "deployments.apps/scale"),
            ("get", "persistentvolumeclaims"),
        ]:
            assert can_i(release, verb, resource, "-A"), (verb, resource)
        # The Lease, in the release namespace only, and only the release's to renew.
        assert can_i(release, "create", "leases.coordination.k8s.io", "-n", release.namespace)
        for verb in ("get", "update"):
            assert _can_on_lease(release, verb, release.lease), verb
            assert not _can_on_lease(release, verb, "someone-elses"), verb
        assert not can_i(release, "create", "leases.coordination.k8s.io", "-n", "default")
        assert not can_i(release, "delete", "leases.coordination.k8s.io", "-n", release.namespace)
        # ...and what it must not do, enforced by the API server.
        for verb, resource in [
            ("get", "secrets"),  # a missing Secret is read from the pods' kubelet status
            ("list", "secrets"),
            ("watch", "secrets"),
            ("delete", "secrets"),
            ("create", "pods"),
            ("delete", "pods"),
            ("update", "inferencemodels.serving.kinfer.io"),
            ("patch", "inferencemodels.serving.kinfer.io"),
            ("delete", "inferencemodels.serving.kinfer.io"),
            ("patch", "deployments.apps/status"),
            ("create", "clusterroles.rbac.authorization.k8s.io"),
            ("get", "nodes"),
            ("create", "httproutes.gateway.networking.k8s.io"),
            ("create", "grpcroutes.gateway.networking.k8s.io"),
        ]:
            assert not can_i(release, verb, resource, "-A"), (verb, resource)


def test_namespaced_mode_serves_its_namespace_without_cluster_rights(
    namespace: str, operator: LocalOperator | None, tmp_path: Path
) -> None:
    with installed_chart(watchNamespaces=f"{{{namespace}}}", replicas="1") as release:
        assert can_i(release, "list", "inferencemodels.serving.kinfer.io", "-n", namespace)
        assert not can_i(release, "list", "inferencemodels.serving.kinfer.io", "-A")
        assert not can_i(release, "create", "deployments.apps", "-n", release.namespace)
        assert not can_i(release, "list", "customresourcedefinitions.apiextensions.k8s.io")

        with operator_as_chart_account(
            release, operator, tmp_path, KINFER_WATCH_NAMESPACES=namespace
        ) as chart_operator:
            # The Lease lives in the release namespace, not in the watched one.
            wait_until(lambda: _lease_holder(release), 15, "the operator to take the Lease")
            kubectl_apply(example("demo-cpu.yaml"), namespace)
            _wait_ready(namespace, replicas=2)
            assert not _rbac_denials(chart_operator.log_path)
