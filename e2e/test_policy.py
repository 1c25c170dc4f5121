"""The chart's opt-in admission policy on a real API server: each rule refuses a manifest
with a message naming the rule, a manifest within policy is accepted, and the scale
subresource may lower replicas but not raise them.

The policy and its bindings are cluster-scoped but named after a release of this module's
own, and the bindings select only this module's namespace (by a label of its own), so the
module runs beside the rest of the suite. Models are sent with --dry-run=server (admission
runs, nothing is stored), except the one the scale case needs. No operator is involved.
"""

from __future__ import annotations

import copy
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import example, helm_binary, kubectl, kubectl_apply, wait_until

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "kinfer"
SCOPE_LABEL = "kinfer.io/policy-e2e"
SCOPE_KEY = SCOPE_LABEL.replace(".", "\\.")  # helm --set escapes the dots of a key
SHOW_ONLY = ("--show-only", "templates/policy.yaml")
BASE = example("resnet-gpu.yaml")  # image kinfer/runtime:dev, 1 GPU x 2 replicas


def _rendered_policy(release: str, namespace: str, token: str) -> str:
    values = {
        "policy.enabled": "true",
        "policy.params.allowedImagePrefixes": "{kinfer/runtime:}",
        "policy.params.allowedServiceAccounts": "{model-reader}",
        "policy.params.maxGPUsPerModel": "8",
        "policy.params.allowShadow": "false",
        f"policy.namespaceSelector.matchLabels.{SCOPE_KEY}": token,
    }
    args = [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]
    proc = subprocess.run(
        [helm_binary(), "template", release, str(CHART), "-n", namespace, *SHOW_ONLY, *args],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def policy_namespace(crds: None) -> Iterator[str]:
    """A namespace under the policy, whose params ConfigMap it also holds (the release's)."""
    token = f"t{secrets.token_hex(3)}"  # never all digits: --set would make it a number
    release = f"kp{token}"
    namespace = f"kinfer-policy-{token}"
    kubectl("create", "namespace", namespace)
    kubectl("label", "namespace", namespace, "kinfer.io/e2e=true", f"{SCOPE_LABEL}={token}")
    rendered = _rendered_policy(release, namespace, token)
    cluster_scoped = [
        f"{doc['kind'].lower()}/{doc['metadata']['name']}"
        for doc in yaml.safe_load_all(rendered)
        if doc and doc["kind"].startswith("ValidatingAdmissionPolicy")
    ]
    try:
        kubectl("apply", "-n", namespace, "-f", "-", input=rendered)
        # Enforcement lags the objects' creation by a few seconds.
        wait_until(
            lambda: "kinfer-policy/image-prefix" in _refusal(BAD_IMAGE, namespace),
            60,
            "the policy to refuse a known-bad image",
            interval=1,
        )
        yield namespace
    finally:
        kubectl("delete", *cluster_scoped, "--ignore-not-found", check=False)
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _with(path: str, value: Any) -> dict[str, Any]:
    """The GPU example with one field set."""
    doc = copy.deepcopy(BASE)
    *parents, leaf = path.split(".")
    node = doc
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return doc


def _dry_run(manifest: dict[str, Any], namespace: str) -> subprocess.CompletedProcess[str]:
    text = yaml.safe_dump(manifest)
    return kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=text, check=False)


def _refusal(manifest: dict[str, Any], namespace: str) -> str:
    """kubectl's error for a server-side dry run ('' if accepted)."""
    proc = _dry_run(manifest, namespace)
    return proc.stderr if proc.returncode != 0 else ""


BAD_IMAGE = _with("spec.runtime.image", "evil.example.com/miner:1")
AUTOSCALED = _with("spec.autoscaling", {"minReplicas": 1, "maxReplicas": 9})
AUTOSCALED["spec"].pop("replicas")
ROLLOUT = {"canary": {"stepWeight": 25}, "shadow": {"percent": 5}}

CASES = [
    ("image", BAD_IMAGE, "image-prefix"),
    ("lookalike-image", _with("spec.runtime.image", "kinfer/runtime-evil:1"), "image-prefix"),
    ("service-account", _with("spec.runtime.serviceAccountName", "admin"), "service-account"),
    (
        "gpu-resource",
        _with("spec.runtime.gpu.resourceName", "nvidia.com/mig-1g.10gb"),
        "gpu-resource",
    ),
    ("gpus-replicas", _with("spec.runtime.gpu.count", 5), "gpus-per-model"),
    ("gpus-autoscaling", AUTOSCALED, "gpus-per-model"),
    ("shadow", _with("spec.rollout", ROLLOUT), "shadow"),
]


@pytest.mark.parametrize(("manifest", "rule"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_rule_refuses_naming_itself(
    policy_namespace: str, manifest: dict[str, Any], rule: str
) -> None:
    message = _refusal(manifest, policy_namespace)
    assert f"kinfer-policy/{rule}:" in message, message


def test_a_model_within_policy_is_accepted(policy_namespace: str) -> None:
    within = _with("spec.runtime.serviceAccountName", "model-reader")
    proc = _dry_run(within, policy_namespace)
    assert proc.returncode == 0, proc.stderr
    four = _with("spec.runtime.gpu.count", 4)  # 4 x 2 replicas = 8, the maximum
    assert _dry_run(four, policy_namespace).returncode == 0


def test_kubectl_scale_may_lower_replicas_but_not_raise_them(policy_namespace: str) -> None:
    cpu_model = copy.deepcopy(BASE)  # 2 replicas, no GPU: nothing needs scheduling
    del cpu_model["spec"]["runtime"]["gpu"]
    kubectl_apply(cpu_model, policy_namespace)
    name = f"im/{BASE['metadata']['name']}"
    up = kubectl("scale", name, "-n", policy_namespace, "--replicas=3", check=False)
    assert up.returncode != 0 and "kinfer-policy/scale-up:" in up.stderr, up.stderr
    kubectl("scale", name, "-n", policy_namespace, "--replicas=1")


def test_a_malformed_limit_refuses_every_model_naming_the_key(policy_namespace: str) -> None:
    configmaps = kubectl("get", "configmap", "-n", policy_namespace, "-o", "name").stdout.split()
    (params,) = [c for c in configmaps if c.endswith("-policy")]
    patch = '{"data": {"maxGPUsPerModel": "eight"}}'
    kubectl("patch", params, "-n", policy_namespace, "--type=merge", "-p", patch)
    try:
        message = wait_until(
            lambda: "kinfer-policy/params:" in (m := _refusal(BASE, policy_namespace)) and m,
            60,
            "the policy to see the malformed maxGPUsPerModel",
            interval=1,
        )
        assert "maxGPUsPerModel" in message
    finally:
        restore = '{"data": {"maxGPUsPerModel": "8"}}'
        kubectl("patch", params, "-n", policy_namespace, "--type=merge", "-p", restore)
        wait_until(
            lambda: _dry_run(BASE, policy_namespace).returncode == 0,
            60,
            "the policy to see the restored maxGPUsPerModel",
            interval=1,
        )
