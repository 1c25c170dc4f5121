"""Real pods: the runtime image serves on the kubelet node, under the operator's pod spec.

Nothing is faked here: the runtime container runs from the image e2e/images.sh built, its
probes are the kubelet's, and requests go through the model's ClusterIP Service (kube-proxy).
"""

from __future__ import annotations

import numpy as np
import pytest
from harness import kubectl, kubectl_apply, kubectl_json
from realnode import (
    NODE_NAME,
    images,
    infer,
    model_manifest,
    reference_logits,
    serving_url,
)
from test_core import pods_of, wait_ready

pytestmark = pytest.mark.real_node


def test_model_answers_correctly_through_its_service(namespace: str) -> None:
    kubectl_apply(model_manifest("demo", replicas=2), namespace)
    im = wait_ready(namespace, "demo", timeout=180)
    assert im["status"]["readyReplicas"] == 2
    pods = pods_of(namespace, "demo")
    assert {p["spec"]["nodeName"] for p in pods} == {NODE_NAME}
    assert all(
        p["spec"]["containers"][0]["image"] == images()["KINFER_RUNTIME_IMAGE"] for p in pods
    )

    url = serving_url(namespace, "demo")
    batch = np.random.default_rng(1).standard_normal((4, 3, 32, 32)).astype(np.float32)
    expected = reference_logits(batch)
    for binary in (False, True):
        got = infer(url, "demo", batch, binary=binary)
        assert got.shape == (4, 10)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    # Every replica answers: the Service spreads requests over both pod IPs.
    for pod in pods:
        got = infer(f"http://{pod['status']['podIP']}:8080", "demo", batch[:1], binary=True)
        np.testing.assert_allclose(got, expected[:1], rtol=1e-4, atol=1e-4)


def test_restricted_namespace_runs_runtime_without_privileges(namespace: str) -> None:
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    kubectl_apply(model_manifest("demo"), namespace)
    wait_ready(namespace, "demo", timeout=180)
    (pod,) = pods_of(namespace, "demo")
    status = kubectl(
        "exec", "-n", namespace, pod["metadata"]["name"], "--", "cat", "/proc/1/status"
    ).stdout
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["Uid"].split()[0] == "65532"
    assert int(fields["CapEff"], 16) == 0 and int(fields["CapPrm"], 16) == 0
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Seccomp"].strip() == "2"  # filter mode: RuntimeDefault
    touched = kubectl(
        "exec", "-n", namespace, pod["metadata"]["name"], "--", "touch", "/opt/x", check=False
    )
    assert touched.returncode != 0 and "Read-only file system" in touched.stderr

    # The same namespace refuses a pod that asks for root and privilege escalation.
    control = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "privileged"},
        "spec": {
            "nodeSelector": {"node.kinfer.io/real": "true"},
            "tolerations": [{"key": "node.kinfer.io/real", "operator": "Exists"}],
            "containers": [
                {
                    "name": "c",
                    "image": images()["KINFER_RUNTIME_IMAGE"],
                    "imagePullPolicy": "Never",
                    "securityContext": {"privileged": True, "runAsUser": 0},
                }
            ],
        },
    }
    refused = kubectl_apply(control, namespace, check=False)
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in refused.stderr
    assert "privileged" in refused.stderr
    assert not kubectl_json(
        "get", "pods", "-n", namespace, "--field-selector=metadata.name=privileged"
    )["items"]
